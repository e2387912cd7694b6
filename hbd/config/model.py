"""What hbd understood from a Heartbeat configuration directory, as frozen dataclasses.

Times are seconds (float). Every object that came from a line keeps `source`, the
`FILE:LINE` it came from, so later errors and status can point at it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from hbd.core.auth import AuthKeys
from hbd.core.model import AutoFailback, ResourceGroup, WireFormat


class MediumKind(enum.Enum):
    SERIAL = "serial"
    BCAST = "bcast"
    MCAST = "mcast"
    UCAST = "ucast"
    MCAST6 = "mcast6"  # Heartbeat 3.0.6's UDP/IPv6 multicast
    UCAST6 = "ucast6"  # Heartbeat 3.0.6's UDP/IPv6 unicast


@dataclass(frozen=True, slots=True)
class Medium:
    """One heartbeat path to the peers, e.g. `bcast:eth0` or `serial:/dev/ttyS0`.

    `device` is the tty for serial and the interface for UDP media. `port` is the UDP
    port (from `udpport` before the line, or the mcast line's own), `baud` the serial
    speed (from `baud` before the line). `group`, `ttl`, `loop` are mcast's and mcast6's
    (for mcast6 `ttl` is the hop limit); `peer` is ucast's and ucast6's (an IPv6 address
    in its compressed form, without a `%scope`: a link-local peer is reached on `device`).
    """

    kind: MediumKind
    device: str
    source: str
    port: int = 694
    baud: int = 19200
    group: str | None = None
    ttl: int = 1
    loop: bool = False
    peer: str | None = None
    bind: str | None = None  # hbd: `ucast DEV PEER LOCAL` binds to LOCAL (nodes sharing a host)

    @property
    def path_id(self) -> str:
        if self.kind in (MediumKind.MCAST, MediumKind.MCAST6):
            return f"{self.kind.value}:{self.device}:{self.group}"
        if self.kind in (MediumKind.UCAST, MediumKind.UCAST6):
            return f"{self.kind.value}:{self.device}:{self.peer}"
        return f"{self.kind.value}:{self.device}"


@dataclass(frozen=True, slots=True)
class PingNode:
    """A witness: an address answering ICMP echo, never a cluster member.

    `ping` gives an IPv4 address, `ping6` an IPv6 one (compressed; a link-local one as
    `fe80::1%eth0`, the interface it is reached on)."""

    address: str
    source: str

    @property
    def path_id(self) -> str:
        return f"ping:{self.address}"


@dataclass(frozen=True, slots=True)
class PingGroup:
    """A witness that is up while any of its addresses answers."""

    name: str
    addresses: tuple[str, ...]
    source: str

    @property
    def path_id(self) -> str:
        return f"ping_group:{self.name}"


@dataclass(frozen=True, slots=True)
class Respawn:
    """`respawn USER PROGRAM [ARGS]`: a helper program kept running."""

    user: str
    argv: tuple[str, ...]
    source: str


@dataclass(frozen=True, slots=True)
class ApiAuth:
    """`apiauth GROUP uid=... gid=...`: who may use an API group."""

    group: str
    uids: tuple[str, ...]
    gids: tuple[str, ...]
    source: str


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    """Something valid but worth a human's attention, with where it came from."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: warning: {self.message}"


@dataclass(frozen=True, slots=True)
class HaCf:
    """Everything in ha.cf, with Heartbeat's defaults filled in."""

    path: str
    nodes: tuple[str, ...]
    cluster: str = "linux-ha"  # Heartbeat's `cluster` name; hbd derives its native cluster id
    keepalive: float = 1.0
    deadtime: float = 30.0
    warntime: float = 10.0  # Heartbeat: deadtime/3 rounded, unless given; filled by the parser
    initdead: float = 60.0  # Heartbeat: 2 x deadtime unless given; filled by the parser
    deadping: float = 30.0  # Heartbeat: deadtime unless given; filled by the parser
    udpport: int = 694
    baud: int = 19200
    media: tuple[Medium, ...] = ()
    ping_nodes: tuple[PingNode, ...] = ()
    ping_groups: tuple[PingGroup, ...] = ()
    auto_failback: AutoFailback = AutoFailback.LEGACY
    watchdog: str | None = None
    watchdog_line: int | None = None  # where `watchdog` is written, for errors about the device
    watchdog_timeout: float | None = None  # hbd: `watchdog_timeout`; None = ceil(deadtime)
    peer_watchdog_timeout: float | None = None  # hbd: assumed for a peer never heard; None:
    # this node's own watchdog timeout (0 with no watchdog here)
    logfile: str | None = None
    debugfile: str | None = None
    logfacility: str | None = "daemon"
    use_logd: bool = False
    debug: int = 0
    realtime: bool = True
    rtprio: int | None = None
    uuidfrom: str = "file"
    hbgenmethod: str = "file"
    msgfmt: str = "classic"
    max_rexmit_delay: float = 0.25  # seconds; written in ha.cf as milliseconds
    hopfudge: int = 1
    autojoin: str = "none"
    coredumps: bool = True
    respawn: tuple[Respawn, ...] = ()
    apiauth: tuple[ApiAuth, ...] = ()
    wire: WireFormat = WireFormat.HEARTBEAT
    # hbd: `wire_accept`: the formats accepted on receipt; None: both with wire heartbeat,
    # only hbd's with wire hbd
    wire_accept: tuple[WireFormat, ...] | None = None
    accept_keys: tuple[int, ...] = ()  # hbd: authkeys indexes accepted besides `auth N`
    accept_keys_line: int | None = None
    adaptive_detector: bool = False  # hbd: `adaptive_detector on` turns on phi accrual
    resource_timeout_start: float = 60.0  # hbd: `resource_timeout start TIME`
    resource_timeout_stop: float = 60.0  # hbd: `resource_timeout stop TIME`
    resource_timeout_status: float = 20.0  # hbd: `resource_timeout status TIME`
    metrics: tuple[str, int] | None = None  # hbd: `metrics ADDRESS:PORT`, Prometheus; off
    notify: str | None = None  # hbd: `notify SCRIPT`, run for every notice (docs/events.md)
    notify_timeout: float = 10.0  # hbd: `notify_timeout TIME`: for each notify or rc.d run
    rc_hooks: bool = True  # hbd: `rc_hooks on|off`: Heartbeat's rc.d/status and rc.d/ifstat
    qnetd: str | None = None  # hbd: `qnetd HOST[:PORT]`, the corosync-qnetd arbiter
    qnetd_port: int = 5403
    qnetd_line: int | None = None
    qnetd_algorithm: str = "ffsplit"  # hbd: `qnetd_algorithm ffsplit|lms`
    qnetd_tls: bool = False  # hbd: `qnetd_tls on|off`
    qnetd_tie_breaker: str = "lowest"  # hbd: `qnetd_tie_breaker lowest|highest|NODEID`
    qnetd_nodeids: tuple[tuple[str, int], ...] = ()  # hbd: `qnetd_nodeid NAME ID` lines
    warnings: tuple[ConfigWarning, ...] = field(default=())

    def qnetd_node_ids(self) -> dict[str, int]:
        """Every node's qdevice node id: a `qnetd_nodeid` line, else its place among the
        `node` lines (1, 2, ...), as corosync numbers a nodelist without nodeids."""
        ids = {n: i + 1 for i, n in enumerate(self.nodes)}
        ids.update(dict(self.qnetd_nodeids))
        return ids


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration directory as loaded, for this node."""

    directory: str
    node_name: str
    hacf: HaCf
    authkeys: AuthKeys
    groups: tuple[ResourceGroup, ...]
    warnings: tuple[ConfigWarning, ...]
