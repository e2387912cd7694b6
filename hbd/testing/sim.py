"""A deterministic simulator of whole hbd nodes: machines, networks, agents, watchdogs.

Every node runs the real sans-I/O `hbd.core.node.Node` -- engine, membership, witnesses,
policy, resource manager, fencing -- on a simulated clock. Nothing sleeps: an event queue
holds frame deliveries and agent completions, the nodes' own timers are asked for with
`get_timer()`, and the clock jumps from one to the next. Randomness (loss, jitter) comes
from one seeded generator, so a run is repeatable to the bit.

The world around the nodes, each part a fault to inject:

- heartbeat paths: each datagram path (`bcast:eth0`) runs over the LAN named by its
  device, each serial path point to point; per direction latency, jitter, loss and a cut
  (a filter: the LAN itself still carries probes);
- LANs: every node has an address on each (10.L.0.N), a node's cable can be pulled
  (`lan_down`), and a LAN can be split between two nodes (`lan_split`): that stops the
  heartbeat paths on it, the probes and the pings across it; with
  `sources_from_service_addresses=True` a machine's datagrams leave from the newest
  service address it holds on their LAN (as IPv6 source selection picks the newest
  address of a prefix);
- ping nodes on a LAN (10.L.0.254), which can die; ICMP to a node can be filtered, and
  ARP probing can be off (as when the raw socket cannot be opened), so probes go by ICMP;
- machines: power loss, power on after a boot delay, the daemon killed (SIGKILL) or
  stalled (SIGSTOP) while the machine runs on, a clean stop, a reload;
- a watchdog per machine that resets it `timeout` after the last pet: its processes and
  resources die, it boots again after the boot delay and may come back still partitioned;
- resource agents with start, stop and status durations, failures and hangs (the
  daemon's timeout then fires); a status of a resource an earlier daemon left half
  started or half stopped (its agent hung, the daemon killed) answers OCF's "failed";
- with `arbiter=True`, a corosync-qnetd (`hbd.testing.simqnetd`, the ffsplit decision)
  every node connects to over TCP-like connections: the server can crash (its kernel
  closes the connections) or lose power (silence), start again, and each node's
  direction to or from it can be cut on its own (`qnetd_cut`).

Ground truth for the explorer's invariants: a node *holds* a group from the moment it
issues a start of any of its resources until every resource is stopped again (a stop
that succeeded, or a reset); `holders(group)` and the `log` of facts say so.

    sim = SimCluster(("alpha", "beta"), keepalive=0.2, deadtime=1.0,
                     groups=(("alpha", ("IPaddr::10.1.0.100/24", "svc")),))
    sim.run_for(5)
    sim.power_off("alpha")
    sim.run_for(5)
    assert sim.holders("IPaddr::10.1.0.100/24") == ["beta"]
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from hbd.core import resources as rs
from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.engine import Engine, EngineSettings, PathKind
from hbd.core.errors import LocalProtocolError
from hbd.core.model import AgentKind, AutoFailback, Resource, ResourceGroup, WireFormat
from hbd.core.node import (
    ArbiterSettings,
    GoingDown,
    Node,
    NodeEvent,
    NodeSettings,
    PetWatchdog,
    QnetdClose,
    QnetdConnect,
    QnetdSend,
    QnetdStartTls,
    RememberPeerAddresses,
    RememberPeerGenerations,
    SendPings,
    SendProbes,
)
from hbd.core.wire.native import cluster_id
from hbd.testing.simqnetd import SimQnetd

E = TypeVar("E")

DEFAULT_PATHS: tuple[tuple[str, PathKind], ...] = (
    ("serial:/dev/ttyS0", PathKind.SERIAL),
    ("bcast:eth0", PathKind.DATAGRAM),
    ("bcast:eth1", PathKind.DATAGRAM),
)
DEFAULT_KEYS = AuthKeys(
    active=AuthEntry(1, AuthMethod.SHA1, b"sim-secret"),
    entries={1: AuthEntry(1, AuthMethod.SHA1, b"sim-secret")},
)


class FakeClock:
    """Simulated monotonic time: it moves only when told to."""

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise LocalProtocolError(f"time cannot go back {seconds} s")
        self.now += seconds
        return self.now

    def jump_to(self, when: float) -> float:
        if when < self.now:
            raise LocalProtocolError(f"time cannot go back from {self.now} to {when}")
        self.now = when
        return self.now


@dataclass(frozen=True, slots=True)
class LinkParams:
    """One direction of one path: delay in seconds, loss as a fraction 0..1."""

    latency: float = 0.001
    jitter: float = 0.0
    loss: float = 0.0
    cut: bool = False


@dataclass(frozen=True, slots=True)
class Sent:
    """A frame one node put on a path, as the simulator saw it (for tests and traces)."""

    time: float
    node: str
    path: str
    data: bytes


@dataclass(frozen=True, slots=True)
class AgentTimes:
    """How long a simulated agent's operations take, seconds."""

    start: float = 0.1
    stop: float = 0.1
    status: float = 0.02


_STOPPED, _STARTING, _RUNNING, _STOPPING = "stopped", "starting", "running", "stopping"


@dataclass
class _Machine:
    name: str
    index: int
    generation: int = 0  # the state directory's counter: +1 at every daemon start
    powered: bool = True
    booted: bool = True  # the kernel is up: its addresses answer (not while booting)
    node: Node | None = None
    boot_at: float | None = None  # powered, daemon starts then
    stalled_until: float | None = None
    inbox: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)  # during a stall
    armed: bool = False  # the watchdog device is armed
    last_pet: float = 0.0
    timer: float | None = None
    spins: int = 0  # handle_timer calls that left the timer at now (a bug if many)
    resources: dict[tuple[str, int], str] = field(default_factory=dict)  # -> state
    vips: dict[str, None] = field(default_factory=dict)  # held, oldest first
    remembered: dict[str, tuple[str, ...]] = field(default_factory=dict)
    generations: tuple[tuple[str, int, int], ...] = ()  # the state directory's
    faults: dict[tuple[str, int, str], list[str]] = field(default_factory=dict)  # -> fail/hang
    resets: int = 0
    qconn: int | None = None  # the daemon's connection to qnetd (its id), if open
    stopping: bool = False  # a clean stop is under way
    settings_tweak: dict[str, Any] = field(default_factory=dict)


class SimCluster:
    """Whole nodes on simulated machines and networks. See the module docstring."""

    def __init__(
        self,
        nodes: Iterable[str] = ("alpha", "beta"),
        paths: Iterable[tuple[str, PathKind]] = DEFAULT_PATHS,
        *,
        keepalive: float = 1.0,
        deadtime: float = 10.0,
        warntime: float | None = None,
        initdead: float | None = None,
        wire: WireFormat = WireFormat.HBD,
        adaptive_detector: bool = False,
        auth: AuthKeys = DEFAULT_KEYS,
        watchdog_timeout: float | None = None,
        peer_watchdog_timeout: float | None = None,
        latency: float = 0.001,
        seed: int = 0,
        start: float = 100.0,
        tweak: Callable[[EngineSettings], EngineSettings] | None = None,
        groups: Sequence[tuple[str, Sequence[str]]] = (),
        auto_failback: AutoFailback = AutoFailback.ON,
        ping_lans: Sequence[str] = (),
        agent_times: AgentTimes = AgentTimes(),
        boot_delay: float = 5.0,
        arp_probes: bool = True,
        record_events: bool = True,
        resource_timeouts: rs.Timeouts | None = None,
        service_lan: str = "eth0",
        arbiter: bool = False,
        tie_breaker: str = "lowest",
        sources_from_service_addresses: bool = False,
    ) -> None:
        self.nodes = tuple(nodes)
        self.sources_from_service_addresses = sources_from_service_addresses
        self.paths = tuple(paths)
        self.clock = FakeClock(start)
        self.random = random.Random(seed)
        self._tweak = tweak
        self.keepalive, self.deadtime = keepalive, deadtime
        self.watchdog_timeout = watchdog_timeout
        self.agent_times = agent_times
        self.boot_delay = boot_delay
        self.arp_probes = arp_probes
        self.record_events = record_events
        self.resource_timeouts = resource_timeouts or rs.Timeouts()
        self._kinds = dict(self.paths)
        # the service LAN (service addresses 10.1.0.x, ping nodes) comes first: "eth0", with
        # or without a heartbeat path over it; then every other LAN a datagram path uses
        self.lans: tuple[str, ...] = tuple(
            dict.fromkeys(
                (service_lan, *(p.split(":")[1] for p, k in self.paths if k is PathKind.DATAGRAM))
            )
        )
        self._lan_of = {p: p.split(":")[1] for p, k in self.paths if k is PathKind.DATAGRAM}
        self.address = {n: self.node_address(n, self.lans[0]) for n in self.nodes}
        self._owner: dict[str, tuple[str, str]] = {}  # node address -> (machine, lan)
        for n in self.nodes:
            for lan in self.lans:
                self._owner[self.node_address(n, lan)] = (n, lan)
        self.pings = {self.ping_address(lan): lan for lan in ping_lans}
        for lan in ping_lans:
            if lan not in self.lans:
                raise LocalProtocolError(f"ping node on {lan!r}, which is no LAN here")
        self._ping_up = dict.fromkeys(self.pings, True)
        self._cable = {(n, lan): True for n in self.nodes for lan in self.lans}
        self._split: set[tuple[str, str, str]] = set()  # (lan, a, b): a's frames miss b
        self._icmp_filtered: set[str] = set()
        self._groups = tuple(self._make_group(i, p, rs_) for i, (p, rs_) in enumerate(groups))
        self._service: dict[str, tuple[tuple[str, str], ...]] = {}  # group -> (vip, lan)
        for g in self._groups:
            vips = []
            for r in g.resources:
                if r.name in ("IPaddr", "IPaddr2") and r.args:
                    vip = r.args[0].split("/", 1)[0]
                    vips.append((vip, self._lan_of_address(vip)))
            self._service[g.name] = tuple(vips)
        self._base = {
            n: EngineSettings(
                node=n,
                uuid=bytes([i + 1]) * 16,
                generation=1,
                nodes=self.nodes,
                paths=self.paths,
                auth=auth,
                keepalive=keepalive,
                deadtime=deadtime,
                warntime=deadtime / 3 if warntime is None else warntime,
                initdead=2 * deadtime if initdead is None else initdead,
                wire=wire,
                cluster_id=cluster_id(self.nodes, 694),
                watchdog_timeout=watchdog_timeout,
                adaptive_detector=adaptive_detector,
            )
            for i, n in enumerate(self.nodes)
        }
        self._node_extra: dict[str, Any] = {
            "auto_failback": auto_failback,
            "peer_watchdog_timeout": peer_watchdog_timeout
            if peer_watchdog_timeout is not None
            else watchdog_timeout,
        }
        self._links: dict[tuple[str, str, str], LinkParams] = {}
        for p, _ in self.paths:
            for a in self.nodes:
                for b in self.nodes:
                    if a != b:
                        self._links[(p, a, b)] = LinkParams(latency=latency)
        self._queue: list[tuple[float, int, str, str, tuple[Any, ...]]] = []
        self._order = 0
        self._fifo: dict[tuple[str, str, str], float] = {}
        self._events: dict[str, list[tuple[float, NodeEvent]]] = {n: [] for n in self.nodes}
        self.sent: list[Sent] = []
        self.record_sent = False
        self.log: list[tuple[Any, ...]] = []  # ground-truth facts, (kind, time, node, ...)
        self.machines = {n: _Machine(n, i) for i, n in enumerate(self.nodes)}
        self.commands: list[tuple[float, str, str, str]] = []  # (time, node, verb, mode)
        # observers, called at once: a node starts or stops holding a group; the network,
        # a power or a boot state changed
        self.on_hold: Callable[[str, str, bool], None] | None = None
        self.on_net: Callable[[], None] | None = None
        self.qnetd: SimQnetd | None = SimQnetd() if arbiter else None
        self._arbiter = (
            ArbiterSettings(
                "qnetd.sim",
                5403,
                "sim",
                tuple((n, i + 1) for i, n in enumerate(self.nodes)),
                tie_breaker=tie_breaker,
            )
            if arbiter
            else None
        )
        self.qnetd_running = arbiter  # the process
        self.qnetd_powered = arbiter  # its machine
        self._qreach = {(n, way): True for n in self.nodes for way in ("up", "down")}
        self._qconns: dict[int, str] = {}  # open at the server: conn -> node
        self._qheld: dict[tuple[str, str], list[tuple[str, tuple[Any, ...]]]] = {}
        self._qnext = 0
        self.qnetd_latency = latency
        for n in self.nodes:
            self._start_daemon(self.machines[n])

    # -- addresses ------------------------------------------------------------------

    def node_address(self, node: str, lan: str) -> str:
        return f"10.{self.lans.index(lan) + 1}.0.{self.nodes.index(node) + 1}"

    def ping_address(self, lan: str) -> str:
        return f"10.{self.lans.index(lan) + 1}.0.254"

    def _lan_of_address(self, address: str) -> str:
        parts = address.split(".")
        if len(parts) == 4 and parts[0] == "10" and parts[1].isdigit():
            i = int(parts[1]) - 1
            if 0 <= i < len(self.lans):
                return self.lans[i]
        raise LocalProtocolError(f"{address} is on no simulated LAN (10.L.0.x, L = 1..)")

    @staticmethod
    def _make_group(i: int, preferred: str, specs: Sequence[str]) -> ResourceGroup:
        resources = []
        for spec in specs:
            name, *args = spec.split("::")
            resources.append(Resource(name, tuple(args), AgentKind.OCF, None, f"sim:{i + 1}"))
        if not resources:
            raise LocalProtocolError("a group needs at least one resource")
        return ResourceGroup(preferred, tuple(resources), f"sim:{i + 1}")

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(g.name for g in self._groups)

    # -- network faults --------------------------------------------------------------

    def link(
        self,
        path: str,
        a: str,
        b: str,
        *,
        both: bool = True,
        latency: float | None = None,
        jitter: float | None = None,
        loss: float | None = None,
    ) -> None:
        """Change latency, jitter or loss of `path` from a to b (and back, when `both`)."""
        for key in self._directions(path, a, b, both):
            old = self._links[key]
            self._links[key] = replace(
                old,
                latency=old.latency if latency is None else latency,
                jitter=old.jitter if jitter is None else jitter,
                loss=old.loss if loss is None else loss,
            )
        self._note_net()

    def cut(self, path: str, a: str, b: str, *, both: bool = True) -> None:
        """Frames on `path` from a stop reaching b (and b's reaching a, when `both`): a
        filter on the heartbeat path only; the LAN still carries probes and pings."""
        for key in self._directions(path, a, b, both):
            self._links[key] = replace(self._links[key], cut=True)
        self._note_net()

    def heal(self, path: str, a: str, b: str, *, both: bool = True) -> None:
        for key in self._directions(path, a, b, both):
            self._links[key] = replace(self._links[key], cut=False, loss=0.0)
        self._note_net()

    def isolate(self, node: str) -> None:
        """Cut every heartbeat path between `node` and every other node."""
        for p, _ in self.paths:
            for other in self.nodes:
                if other != node:
                    self.cut(p, node, other)

    def heal_all(self) -> None:
        """Every path, cable, split, ping node and filter back to normal."""
        for key, params in self._links.items():
            self._links[key] = replace(params, cut=False, loss=0.0)
        for cable in self._cable:
            self._cable[cable] = True
        self._split.clear()
        self._icmp_filtered.clear()
        for address in self._ping_up:
            self._ping_up[address] = True
        if self.qnetd is not None:
            for node, way in list(self._qreach):
                if not self._qreach[(node, way)]:
                    self.qnetd_cut(node, up=way == "up", down=way == "down", cut=False)
            if not self.qnetd_running:
                self.qnetd_start()
        self._note_net()

    def lan_down(self, node: str, lan: str, down: bool = True) -> None:
        """Pull (or plug back) `node`'s cable on `lan`: nothing crosses it either way."""
        if (node, lan) not in self._cable:
            raise LocalProtocolError(f"no LAN {lan!r} at {node!r}")
        self._cable[(node, lan)] = not down
        self._note_net()

    def lan_split(self, lan: str, a: str, b: str, *, both: bool = True, split: bool = True) -> None:
        """Nothing from a reaches b on `lan` (and back, when `both`): a switch fault."""
        if lan not in self.lans:
            raise LocalProtocolError(f"no LAN {lan!r}")
        for key in [(lan, a, b)] + ([(lan, b, a)] if both else []):
            if split:
                self._split.add(key)
            else:
                self._split.discard(key)
        self._note_net()

    def ping_node(self, lan: str, up: bool) -> None:
        address = self.ping_address(lan)
        if address not in self._ping_up:
            raise LocalProtocolError(f"no ping node on {lan!r}")
        self._ping_up[address] = up
        self._note_net()

    def filter_icmp(self, node: str, on: bool = True) -> None:
        """Drop ICMP to `node`'s addresses (its kernel still answers ARP)."""
        if on:
            self._icmp_filtered.add(node)
        else:
            self._icmp_filtered.discard(node)
        self._note_net()

    # -- the arbiter -----------------------------------------------------------------

    def qnetd_crash(self) -> None:
        """The qnetd process dies; its machine's kernel closes every connection (FIN)."""
        self._q_need()
        if not self.qnetd_running:
            return
        self.qnetd_running = False
        for conn, node in list(self._qconns.items()):
            self._q_to_node(node, ("closed", conn, "qnetd closed the connection"))
        self._q_reset_server()

    def qnetd_power_off(self) -> None:
        """qnetd's machine loses power: its connections go silent."""
        self._q_need()
        self.qnetd_running = self.qnetd_powered = False
        self._q_reset_server()

    def qnetd_start(self) -> None:
        """qnetd (and its machine) up again, with no clients: they reconnect."""
        self._q_need()
        self.qnetd_running = self.qnetd_powered = True
        self._note_net()

    def qnetd_cut(self, node: str, *, up: bool = True, down: bool = True, cut: bool = True) -> None:
        """Nothing from `node` reaches qnetd (`up`) / from qnetd reaches `node` (`down`);
        `cut=False` heals those directions (what was held on the way arrives, as TCP's
        retransmissions would bring it)."""
        self._q_need()
        for way, chosen in (("up", up), ("down", down)):
            if chosen:
                self._qreach[(node, way)] = not cut
                if not cut:
                    for kind, data in self._qheld.pop((node, way), []):
                        self._q_push(node, way, kind, data)
        self._note_net()

    def qnetd_reaches(self, node: str) -> bool:
        """Ground truth: `node` and a running qnetd reach each other both ways."""
        return (
            self.qnetd is not None
            and self.qnetd_running
            and self.machines[node].booted
            and self._qreach[(node, "up")]
            and self._qreach[(node, "down")]
        )

    def _q_need(self) -> None:
        if self.qnetd is None:
            raise LocalProtocolError("this simulation has no arbiter (arbiter=True)")

    def _q_reset_server(self) -> None:
        self._qconns.clear()
        self.qnetd = SimQnetd()
        self._qheld = {k: v for k, v in self._qheld.items() if k[1] == "down"}
        self._note_net()

    def _q_connect(self, m: _Machine) -> None:
        self._qnext += 1
        conn = self._qnext
        m.qconn = conn
        self._q_to_server(m.name, ("connect", conn))

    def _q_to_server(self, node: str, data: tuple[Any, ...]) -> None:
        if not self._qreach[(node, "up")]:
            if data[0] != "connect":  # a SYN is lost; data and FINs are retransmitted
                self._qheld.setdefault((node, "up"), []).append(("qsrv", data))
            return
        self._q_push(node, "up", "qsrv", data)

    def _q_to_node(self, node: str, data: tuple[Any, ...]) -> None:
        if not self._qreach[(node, "down")]:
            self._qheld.setdefault((node, "down"), []).append(("qnetd", data))
            return
        self._q_push(node, "down", "qnetd", data)

    def _q_push(self, node: str, way: str, kind: str, data: tuple[Any, ...]) -> None:
        when = self.clock.now + self.qnetd_latency
        key = ("qnetd", node, way)
        when = max(when, self._fifo.get(key, when))  # a byte stream never reorders
        self._fifo[key] = when
        if kind == "qsrv":
            self._push(when, "qsrv", node, data)
        else:
            self._push(when, "qnetd", node, data)

    def _q_server_input(self, node: str, data: tuple[Any, ...]) -> None:
        server = self.qnetd
        assert server is not None
        now = self.clock.now
        what, conn = data[0], data[1]
        if not self.qnetd_powered:
            return  # nothing answers
        if what == "connect":
            if self.qnetd_running:
                self._qconns[conn] = node
                server.accept(conn, node, now)
                self._q_to_node(node, ("made", conn, b""))
            else:
                self._q_to_node(node, ("refused", conn, "connection refused"))
            return
        if conn not in self._qconns:
            if what == "data":  # a connection this server does not know: reset
                self._q_to_node(node, ("closed", conn, "connection reset by qnetd"))
            return
        if what == "data":
            server.receive(conn, data[2], now)
        else:
            del self._qconns[conn]
            server.disconnected(conn, now)
        self._q_flush_server()

    def _q_flush_server(self) -> None:
        server = self.qnetd
        assert server is not None
        out, server.out = server.out, []
        for conn, payload in out:
            node = self._qconns.get(conn)
            if node is not None:
                self._q_to_node(node, ("data", conn, payload))
        closed, server.closed = server.closed, []
        for conn in closed:
            node = self._qconns.pop(conn, None)
            if node is not None:
                self._q_to_node(node, ("closed", conn, "qnetd closed the connection"))

    # -- machine faults --------------------------------------------------------------

    def crash(self, node: str) -> None:
        """Power loss: the node stops dead, its resources die with it; it stays off."""
        self.power_off(node)

    def power_off(self, node: str) -> None:
        m = self._machine(node)
        if not m.powered:
            return
        self._kill_machine(m, "power off")

    def power_on(self, node: str, boot_delay: float | None = None) -> None:
        """Power comes back: the daemon starts after the boot delay."""
        m = self._machine(node)
        if m.powered:
            return
        m.powered = True
        m.booted = False
        delay = self.boot_delay if boot_delay is None else boot_delay
        m.boot_at = self.clock.now + delay
        self.log.append(("power", self.clock.now, node, True))
        self._note_net()

    def restart(self, node: str) -> None:
        """Start the node again now (powered off, or running) with the next generation."""
        m = self._machine(node)
        if not m.powered or not m.booted:
            m.powered = m.booted = True
            self.log.append(("power", self.clock.now, node, True))
            self._note_net()
        elif m.node is not None:
            self._lose_daemon(m, "restart")
        m.boot_at = None
        m.stalled_until = None
        m.inbox.clear()
        self._start_daemon(m)

    def kill_daemon(self, node: str) -> None:
        """SIGKILL: the daemon is gone, its resources keep running; an armed watchdog,
        closed without the magic character, resets the machine `timeout` after its last pet."""
        m = self._machine(node)
        if m.node is not None:
            self._lose_daemon(m, "killed")

    def start_daemon(self, node: str) -> None:
        m = self._machine(node)
        if m.powered and m.node is None and m.boot_at is None:
            self._start_daemon(m)

    def stop_daemon(self, node: str) -> None:
        """A clean stop (SIGTERM): hand the groups over, say goodbye, disarm, exit."""
        m = self._machine(node)
        if m.node is not None and not m.stopping:
            m.stopping = True
            m.node.begin_stop(self.clock.now)
            self._drive(m)

    def stall(self, node: str, seconds: float) -> None:
        """SIGSTOP for `seconds`: the daemon hears, decides and pets nothing meanwhile;
        what arrives waits for it. The machine (and its resources, its addresses) runs on."""
        m = self._machine(node)
        if m.node is not None:
            until = self.clock.now + seconds
            m.stalled_until = until if m.stalled_until is None else max(m.stalled_until, until)
            self.log.append(("stall", self.clock.now, node, seconds))

    def reload(self, node: str, **changes: Any) -> None:
        """SIGHUP with an ha.cf whose engine settings differ by `changes` (none: the same)."""
        m = self._machine(node)
        if m.node is None:
            return
        settings = m.node.settings
        engine = replace(settings.engine, **changes) if changes else settings.engine
        m.node.reconfigure(replace(settings, engine=engine), self.clock.now)
        self._drive(m)

    def standby(self, node: str, mode: str = "all") -> None:
        m = self._machine(node)
        if m.node is not None and m.stalled_until is None:
            self.commands.append((self.clock.now, node, "standby", mode))
            m.node.standby(mode, self.clock.now)
            self._drive(m)

    def takeover(self, node: str, mode: str = "all") -> None:
        m = self._machine(node)
        if m.node is not None and m.stalled_until is None:
            self.commands.append((self.clock.now, node, "takeover", mode))
            m.node.takeover(mode, self.clock.now)
            self._drive(m)

    def release(self, node: str, mode: str = "all") -> None:
        m = self._machine(node)
        if m.node is not None and m.stalled_until is None:
            try:
                m.node.release(mode, self.clock.now)
            except LocalProtocolError:
                return  # refused (no peer heard), as hbctl would be told: nothing changes
            self.commands.append((self.clock.now, node, "release", mode))
            self._drive(m)

    def fail_next(self, node: str, group: str, index: int, op: str, how: str = "fail") -> None:
        """The next `op` of resource `index` of `group` on `node` fails (or hangs)."""
        if how not in ("fail", "hang"):
            raise LocalProtocolError(f"an agent fault is 'fail' or 'hang', not {how!r}")
        self._machine(node).faults.setdefault((group, index, op), []).append(how)

    def inject(self, node: str, path: str, data: bytes, source: str | None = None) -> None:
        """Hand raw bytes to `node` as if read from `path` now (for forgeries and noise)."""
        m = self._machine(node)
        n = self._node(node)
        n.receive_frame(path, data, self.clock.now, source)
        self._drive(m)

    # -- running --------------------------------------------------------------------

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now + seconds)

    def run_until(self, until: float) -> None:
        """Process every delivery and timer up to `until`, then leave the clock there."""
        while True:
            when = self._next_time()
            if when is None or when > until:
                break
            self.clock.jump_to(max(when, self.clock.now))
            self._step(self.clock.now)
        self.clock.jump_to(until)

    # -- observing ------------------------------------------------------------------

    def node(self, name: str) -> Node:
        return self._node(name)

    def engine(self, name: str) -> Engine:
        return self._node(name).engine

    def running(self, name: str) -> bool:
        """The daemon runs (powered, started, not killed)."""
        return self._machine(name).node is not None

    def events(self, node: str) -> list[tuple[float, NodeEvent]]:
        """Every event `node`'s daemons reported so far, with the simulated time."""
        self._machine(node)
        return list(self._events[node])

    def events_of(self, node: str, kind: type[E]) -> list[tuple[float, E]]:
        return [(t, e) for t, e in self.events(node) if isinstance(e, kind)]

    def decisions(self, node: str) -> list[str]:
        m = self._machine(node)
        if m.node is None:
            return []
        return [f"{d.decision}: {d.reason}" for d in m.node.policy.decisions]

    def holders(self, group: str) -> list[str]:
        """Ground truth: the nodes holding `group` now (a start issued, not all stopped)."""
        return [m.name for m in self.machines.values() if self._holds(m, group)]

    def started_on(self, group: str) -> list[str]:
        """The nodes on which every resource of `group` runs."""
        g = self._group(group)
        return [
            m.name
            for m in self.machines.values()
            if all(m.resources.get((group, i)) == _RUNNING for i in range(len(g.resources)))
        ]

    def started_groups(self, node: str) -> list[str]:
        """The groups every resource of which runs on `node`."""
        return [g.name for g in self._groups if node in self.started_on(g.name)]

    def resets(self, node: str) -> int:
        return self._machine(node).resets

    def reaches_ping(self, node: str) -> bool:
        """Ground truth: `node` reaches some ping node (True when none is configured)."""
        if not self.pings:
            return True
        return any(self._ping_reachable(node, a) for a in self.pings)

    def delivers(self, path: str, a: str, b: str) -> bool:
        """Ground truth: a frame `a` sends on `path` now reaches `b` (both daemons aside)."""
        params = self._links[(path, a, b)]
        if params.cut or params.loss >= 1.0:
            return False
        lan = self._lan_of.get(path)
        return lan is None or self._l2(lan, a, b)

    def probe_answers(self, prober: str, address: str) -> bool:
        """Ground truth: would a probe of `address` from `prober` be answered now?"""
        return self._probe_answered(prober, address)

    def service_addresses(self, group: str) -> tuple[str, ...]:
        return tuple(v for v, _ in self._service.get(group, ()))

    def group_def(self, group: str) -> ResourceGroup:
        return self._group(group)

    # -- internals: machines ------------------------------------------------------------

    def _machine(self, node: str) -> _Machine:
        m = self.machines.get(node)
        if m is None:
            raise LocalProtocolError(f"no node {node!r} in the simulation")
        return m

    def _node(self, name: str) -> Node:
        m = self._machine(name)
        if m.node is None:
            raise LocalProtocolError(f"node {name} is not running")
        return m.node

    def _group(self, name: str) -> ResourceGroup:
        for g in self._groups:
            if g.name == name:
                return g
        raise LocalProtocolError(f"no group {name!r}")

    def _settings(self, m: _Machine) -> NodeSettings:
        base = replace(self._base[m.name], generation=m.generation, peer_generations=m.generations)
        if self._tweak is not None:
            base = self._tweak(base)
        ping_nodes = tuple(self.pings)
        return NodeSettings(
            engine=base,
            groups=self._groups,
            auto_failback=self._node_extra["auto_failback"],
            ping_nodes=ping_nodes,
            watchdog_timeout=self.watchdog_timeout,
            peer_watchdog_timeout=self._node_extra["peer_watchdog_timeout"],
            peer_addresses=dict(m.remembered),
            resource_timeouts=self.resource_timeouts,
            service_addresses={g: tuple(v for v, _ in vs) for g, vs in self._service.items()},
            arbiter=self._arbiter,
        )

    def _start_daemon(self, m: _Machine) -> None:
        m.booted = True
        m.generation += 1
        m.boot_at = None
        m.stopping = False
        now = self.clock.now
        m.node = Node(self._settings(m), now)
        if self.watchdog_timeout is not None:
            m.armed = True
            m.last_pet = now
        self.log.append(("daemon", now, m.name, m.generation))
        self._note_net()  # what the new daemon can reach is new to it
        self._drive(m)

    def _lose_daemon(self, m: _Machine, why: str) -> None:
        if m.qconn is not None:
            if why not in ("power off", "watchdog reset"):  # its kernel closes the socket
                self._q_to_server(m.name, ("closed", m.qconn))
            m.qconn = None
        m.node = None
        m.stalled_until = None
        m.inbox.clear()
        m.timer = None
        m.stopping = False
        self.log.append(("daemon-gone", self.clock.now, m.name, why))

    def _kill_machine(self, m: _Machine, why: str) -> None:
        """Power off or reset: everything on the machine dies."""
        if m.node is not None:
            self._lose_daemon(m, why)
        m.powered = m.booted = False
        m.armed = False
        m.boot_at = None
        for key in list(m.resources):
            self._set_resource(m, key, _STOPPED)
        m.vips.clear()
        self.log.append(("power", self.clock.now, m.name, False, why))
        self._note_net()

    def _reset(self, m: _Machine) -> None:
        m.resets += 1
        self.log.append(("reset", self.clock.now, m.name))
        self._kill_machine(m, "watchdog reset")
        m.powered = True
        m.boot_at = self.clock.now + self.boot_delay
        self.log.append(("power", self.clock.now, m.name, True))

    def _holds(self, m: _Machine, group: str) -> bool:
        return any(s != _STOPPED for (g, _), s in m.resources.items() if g == group)

    def _set_resource(self, m: _Machine, key: tuple[str, int], state: str) -> None:
        group = key[0]
        before = self._holds(m, group)
        if state == _STOPPED:
            m.resources.pop(key, None)
        else:
            m.resources[key] = state
        after = self._holds(m, group)
        if before != after:
            self.log.append(("hold", self.clock.now, m.name, group, after))
            if self.on_hold is not None:
                self.on_hold(m.name, group, after)

    # -- internals: the loop ------------------------------------------------------------

    def _next_time(self) -> float | None:
        best = self._queue[0][0] if self._queue else None
        if self.qnetd is not None and self.qnetd_running:
            t = self.qnetd.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        for m in self.machines.values():
            timer = m.timer if m.stalled_until is None else None  # a stalled node waits
            for t in (timer, m.stalled_until, m.boot_at):
                if t is not None and (best is None or t < best):
                    best = t
            if m.armed and m.powered and self.watchdog_timeout is not None:
                t = m.last_pet + self.watchdog_timeout
                if best is None or t < best:
                    best = t
        return best

    def _step(self, now: float) -> None:
        if self.qnetd is not None and self.qnetd_running:
            t = self.qnetd.get_timer()
            if t is not None and t <= now:
                self.qnetd.handle_timer(now)
                self._q_flush_server()
        while self._queue and self._queue[0][0] <= now:
            _, _, kind, dst, data = heapq.heappop(self._queue)
            if kind == "qsrv":
                self._q_server_input(dst, data)
                continue
            m = self.machines[dst]
            if kind == "agent":
                self._agent_finished(m, data)
                continue
            if m.node is None:
                continue
            if m.stalled_until is not None:
                m.inbox.append((kind, data))
                continue
            self._deliver(m, kind, data)
        for m in self.machines.values():
            wd = self.watchdog_timeout
            if m.armed and m.powered and wd is not None and now >= m.last_pet + wd:
                self._reset(m)
                continue
            if m.boot_at is not None and now >= m.boot_at:
                self._start_daemon(m)
                continue
            if m.stalled_until is not None and now >= m.stalled_until:
                m.stalled_until = None
                self.log.append(("resume", now, m.name))
                inbox, m.inbox = m.inbox, []
                for kind, data in inbox:
                    if m.node is not None:
                        self._deliver(m, kind, data)
            timer = m.timer
            if (
                m.node is not None
                and m.stalled_until is None
                and timer is not None
                and timer <= now
            ):
                m.node.handle_timer(now)
                self._drive(m)
                self._check_progress(m, now)

    def _check_progress(self, m: _Machine, now: float) -> None:
        """A node whose timer stays at `now` after handle_timer would spin for ever."""
        if m.timer is not None and m.timer <= now:
            m.spins += 1
            if m.spins > 1000:
                raise LocalProtocolError(
                    f"{m.name}'s timer does not move past {now}: handle_timer(now) left "
                    "get_timer() at or before now a thousand times"
                )
        else:
            m.spins = 0

    def _deliver(self, m: _Machine, kind: str, data: tuple[Any, ...]) -> None:
        node = m.node
        assert node is not None
        now = self.clock.now
        if kind == "frame":
            path, frame, source = data
            node.receive_frame(path, frame, now, source)
        elif kind == "result":
            group, index, op, rc, timed_out = data
            if timed_out:
                node.agent_timed_out(group, index, op, now)
            else:
                node.agent_done(group, index, op, rc, "", now)
        elif kind == "ping":
            (address,) = data
            node.witness_reply(address, 0.001, now)
        elif kind == "probe":
            (address,) = data
            node.probe_reply(address, now)
        elif kind == "qnetd":
            what, conn, payload = data
            if m.qconn != conn:
                pass  # an old connection's leftovers
            elif what == "made":
                node.qnetd_connected(now)
            elif what == "data":
                node.qnetd_data(payload, now)
            else:  # closed, refused
                m.qconn = None
                node.qnetd_failed(payload, now)
        self._drive(m)

    def _drive(self, m: _Machine) -> None:
        """Carry out what the node asks for, then note its next timer."""
        node = m.node
        if node is None:
            return
        now = self.clock.now
        for path, data in node.frames_to_send(now):
            if self.record_sent:
                self.sent.append(Sent(now, m.name, path, data))
            for dst in self.nodes:
                if dst != m.name:
                    self._transmit(now, path, m.name, dst, data)
        while (action := node.next_action()) is not None:
            if isinstance(action, rs.RunAgent):
                self._run_agent(m, action)
            elif isinstance(action, PetWatchdog):
                if m.armed:
                    m.last_pet = now
            elif isinstance(action, GoingDown):
                self.log.append(("go", now, m.name, action.reason))
            elif isinstance(action, SendPings):
                for address in action.addresses:
                    if self._ping_reachable(m.name, address):
                        self._push(now + 0.001, "ping", m.name, (address,))
            elif isinstance(action, SendProbes):
                for address in action.addresses:
                    if self._probe_answered(m.name, address):
                        self._push(now + 0.001, "probe", m.name, (address,))
            elif isinstance(action, RememberPeerAddresses):
                m.remembered[action.peer] = action.addresses
            elif isinstance(action, RememberPeerGenerations):
                m.generations = action.generations
            elif isinstance(action, QnetdConnect):
                self._q_connect(m)
            elif isinstance(action, QnetdSend):
                if m.qconn is not None:
                    self._q_to_server(m.name, ("data", m.qconn, action.data))
            elif isinstance(action, QnetdClose):
                if m.qconn is not None:
                    self._q_to_server(m.name, ("closed", m.qconn))
                    m.qconn = None
            elif isinstance(action, QnetdStartTls):
                raise LocalProtocolError("the simulated qnetd does not do TLS")
        if self.record_events:
            events = self._events[m.name]
            while (event := node.next_event()) is not None:
                events.append((now, event))
        else:
            while node.next_event() is not None:
                pass
        if m.stopping and node.stopped(now):
            node.leave(now)
            for path, data in node.frames_to_send(now):
                for dst in self.nodes:
                    if dst != m.name:
                        self._transmit(now, path, m.name, dst, data)
            if node.fenced is None:
                m.armed = False  # the magic close
            self._lose_daemon(m, "clean stop")
            return
        m.timer = node.get_timer()

    # -- internals: agents ------------------------------------------------------------

    def _run_agent(self, m: _Machine, action: rs.RunAgent) -> None:
        now = self.clock.now
        key = (action.group, action.index)
        op = action.op
        self.log.append(("op", now, m.name, action.group, action.index, op))
        faults = m.faults.get((action.group, action.index, op))
        how = faults.pop(0) if faults else None
        state = m.resources.get(key, _STOPPED)
        if op == "start":
            self._set_resource(m, key, _STARTING)
        elif op == "stop" and state != _STOPPED:
            self._set_resource(m, key, _STOPPING)
        times = self.agent_times
        duration = {"start": times.start, "stop": times.stop, "status": times.status}[op]
        generation = m.generation
        if how == "hang":
            self._push(now + action.timeout, "agent", m.name, (generation, action, None, True))
        else:
            self._push(now + duration, "agent", m.name, (generation, action, how, False))

    def _agent_finished(self, m: _Machine, data: tuple[Any, ...]) -> None:
        generation, action, how, timed_out = data
        if not m.powered:
            return  # the machine went down (and reset its resources) meanwhile
        key = (action.group, action.index)
        state = m.resources.get(key, _STOPPED)
        rc = 0
        if not timed_out:
            if action.op == "start":
                if how == "fail":
                    self._set_resource(m, key, _STOPPED)
                    rc = rs.OCF_ERR_GENERIC
                elif state == _STARTING:
                    self._set_resource(m, key, _RUNNING)
                    self._vip(m, action, True)
            elif action.op == "stop":
                if how == "fail":
                    if state == _STOPPING:
                        self._set_resource(m, key, _RUNNING)
                    rc = rs.OCF_ERR_GENERIC
                else:
                    self._vip(m, action, False)
                    self._set_resource(m, key, _STOPPED)
            elif state in (_STARTING, _STOPPING):
                # half started or half stopped (an earlier daemon's agent hung or is still
                # at it): neither running nor stopped, which OCF's monitor calls failed
                rc = rs.OCF_ERR_GENERIC
            else:
                rc = rs.OCF_SUCCESS if state == _RUNNING else rs.OCF_NOT_RUNNING
                if how == "fail":
                    rc = rs.OCF_ERR_GENERIC
        if m.node is None or m.generation != generation:
            return  # the daemon that asked is gone: nobody hears the result
        result = (action.group, action.index, action.op, rc, timed_out)
        if m.stalled_until is not None:
            m.inbox.append(("result", result))
            return
        self._deliver(m, "result", result)

    def _vip(self, m: _Machine, action: rs.RunAgent, up: bool) -> None:
        r = action.resource
        if r.name in ("IPaddr", "IPaddr2") and r.args:
            vip = r.args[0].split("/", 1)[0]
            if up:
                m.vips[vip] = None
            else:
                m.vips.pop(vip, None)

    # -- internals: the network ---------------------------------------------------------

    def _note_net(self) -> None:
        self.log.append(("net", self.clock.now))
        if self.on_net is not None:
            self.on_net()

    def _l2(self, lan: str, a: str, b: str) -> bool:
        return self._cable[(a, lan)] and self._cable[(b, lan)] and (lan, a, b) not in self._split

    def _ping_reachable(self, node: str, address: str) -> bool:
        lan = self.pings.get(address)
        return (
            lan is not None
            and self._ping_up[address]
            and self._cable[(node, lan)]
            and self.machines[node].booted
        )

    def _probe_answered(self, prober: str, address: str) -> bool:
        owner: tuple[str, str] | None = self._owner.get(address)
        if owner is None:
            for m in self.machines.values():
                if address in m.vips:
                    owner = (m.name, self._lan_of_address(address))
                    break
        if owner is None:
            return False
        target, lan = owner
        if target == prober or not self.machines[target].booted:
            return False
        if not (self._l2(lan, prober, target) and self._l2(lan, target, prober)):
            return False
        return self.arp_probes or target not in self._icmp_filtered

    def _directions(self, path: str, a: str, b: str, both: bool) -> list[tuple[str, str, str]]:
        keys = [(path, a, b)] + ([(path, b, a)] if both else [])
        for key in keys:
            if key not in self._links:
                raise LocalProtocolError(f"no path {path} between {a} and {b}")
        return keys

    def _push(self, when: float, kind: str, dst: str, data: tuple[Any, ...]) -> None:
        self._order += 1
        heapq.heappush(self._queue, (when, self._order, kind, dst, data))

    def _transmit(self, now: float, path: str, src: str, dst: str, data: bytes) -> None:
        if not self.machines[dst].booted:
            return
        params = self._links[(path, src, dst)]
        if params.cut or (params.loss and self.random.random() < params.loss):
            return
        lan = self._lan_of.get(path)
        if lan is not None and not self._l2(lan, src, dst):
            return
        delay = params.latency
        if params.jitter:
            delay += self.random.uniform(0, params.jitter)
        when = now + delay
        if self._kinds[path] is PathKind.SERIAL:  # a byte stream never reorders
            when = max(when, self._fifo.get((path, src, dst), when))
            self._fifo[(path, src, dst)] = when
        self._push(when, "frame", dst, (path, data, self._source(src, lan)))

    def _source(self, node: str, lan: str | None) -> str | None:
        """The source address of `node`'s datagrams on `lan` (None: a serial line)."""
        if lan is None:
            return None
        if self.sources_from_service_addresses:
            held = [v for v in self.machines[node].vips if self._lan_of_address(v) == lan]
            if held:
                return held[-1]
        return self.node_address(node, lan)
