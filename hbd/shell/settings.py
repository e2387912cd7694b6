"""The core's settings from a loaded configuration: the shell hands the core plain values."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from hbd.config.model import Config, MediumKind
from hbd.core.engine import EngineSettings, PathKind
from hbd.core.model import AgentKind, WireFormat
from hbd.core.node import ArbiterSettings, NodeSettings
from hbd.core.resources import Timeouts
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
        max_rexmit_delay=cf.max_rexmit_delay,
        accept_heartbeat=None if cf.wire_accept is None else WireFormat.HEARTBEAT in cf.wire_accept,
    )


def service_addresses(config: Config) -> dict[str, tuple[str, ...]]:
    """Each group's service addresses: the IPaddr/IPaddr2/IPv6addr resources' addresses
    (a link-local IPv6 one as `fe80::5%eth0`, the interface its argument names)."""
    out: dict[str, tuple[str, ...]] = {}
    for g in config.groups:
        addrs = []
        for r in g.resources:
            if r.name in ("IPaddr", "IPaddr2", "IPv6addr") and r.agent is AgentKind.BUILTIN:
                address, *rest = r.args[0].split("/")
                if address.lower().startswith("fe80:") and len(rest) > 1:
                    address = f"{address}%{rest[1]}"
                addrs.append(address)
        out[g.name] = tuple(addrs)
    return out


def node_settings(
    config: Config,
    *,
    uuid: bytes,
    generation: int,
    watchdog_timeout: float | None,
    peer_addresses: Mapping[str, tuple[str, ...]],
    wall_offset: float = 0.0,
    peer_generations: tuple[tuple[str, int, int], ...] = (),
) -> NodeSettings:
    """The whole node's settings. `watchdog_timeout` is the armed device's (None: none)."""
    cf = config.hacf
    engine = dataclasses.replace(
        engine_settings(config, uuid=uuid, generation=generation, wall_offset=wall_offset),
        watchdog_timeout=watchdog_timeout,
        peer_generations=peer_generations,
    )
    peer_watchdog = cf.peer_watchdog_timeout
    if peer_watchdog is None:
        peer_watchdog = watchdog_timeout
    return NodeSettings(
        engine=engine,
        groups=config.groups,
        auto_failback=cf.auto_failback,
        ping_nodes=tuple(p.address for p in cf.ping_nodes),
        ping_groups=tuple((g.name, g.addresses) for g in cf.ping_groups),
        deadping=cf.deadping,
        watchdog_timeout=watchdog_timeout,
        peer_watchdog_timeout=peer_watchdog or None,
        resource_timeouts=Timeouts(
            start=cf.resource_timeout_start,
            stop=cf.resource_timeout_stop,
            status=cf.resource_timeout_status,
        ),
        peer_addresses={
            n: a for n, a in peer_addresses.items() if n in cf.nodes and n != config.node_name
        },
        service_addresses=service_addresses(config),
        arbiter=None
        if cf.qnetd is None
        else ArbiterSettings(
            host=cf.qnetd,
            port=cf.qnetd_port,
            cluster_name=cf.cluster,
            node_ids=tuple(cf.qnetd_node_ids().items()),
            algorithm=cf.qnetd_algorithm,
            tie_breaker=cf.qnetd_tie_breaker,
            tls=cf.qnetd_tls,
        ),
    )
