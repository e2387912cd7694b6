"""The core's settings, from a loaded configuration: the shell hands the core plain values."""

from __future__ import annotations

from hbd.config.model import Config, MediumKind
from hbd.core.engine import EngineSettings, PathKind
from hbd.core.wire import native as nat


def engine_settings(
    config: Config, *, uuid: bytes, generation: int, wall_offset: float = 0.0
) -> EngineSettings:
    """Engine settings for `config.node_name` from a loaded configuration directory."""
    cf = config.hacf
    return EngineSettings(
        node=config.node_name,
        uuid=uuid,
        generation=generation,
        nodes=cf.nodes,
        paths=tuple(
            (m.path_id, PathKind.SERIAL if m.kind is MediumKind.SERIAL else PathKind.DATAGRAM)
            for m in cf.media
        ),
        auth=config.authkeys,
        keepalive=cf.keepalive,
        deadtime=cf.deadtime,
        warntime=cf.warntime,
        initdead=cf.initdead,
        wire=cf.wire,
        cluster_id=nat.cluster_id(cf.nodes, cf.udpport),
        watchdog_timeout=cf.watchdog_timeout if cf.watchdog else None,
        adaptive_detector=cf.adaptive_detector,
        wall_offset=wall_offset,
    )
