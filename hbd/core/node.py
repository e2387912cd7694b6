"""One node, whole: engine, membership, witnesses, policy, resource groups and fencing.

After aioquic's `QuicConnection`, one sans-I/O object with one method per input and the
results of every action fed back as inputs:

    inputs                                   outputs
    receive_frame(path, data, now, source)   frames_to_send(now) -> [(path, bytes)]
    witness_reply(address, rtt, now)         next_action() -> RunAgent | PetWatchdog |
    probe_reply(address, now)                    GoingDown | SendPings | SendProbes |
    agent_done / agent_timed_out /               RememberPeerAddresses
        agent_failed(group, index, op, ...)  next_event() -> membership, witness, resource
    standby(mode, now), takeover(mode, now)      events and policy Decided, in order
    begin_stop(now), leave(now)              get_timer() -> when handle_timer is due
    reconfigure(settings, now)
    qnetd_connected / qnetd_data /           QnetdConnect | QnetdSend | QnetdStartTls |
        qnetd_tls_started / qnetd_failed         QnetdClose (the arbiter's connection)
    handle_timer(now)

The daemon shell (`hbd.shell.daemon`) and the simulator (`hbd.testing.sim`) are carriers:
they move bytes, run agents, send probes and pet the device as the node says. The policy
is evaluated when an input changed something it reads, or when its own timer is due --
not on every call. A pet is only given after every deadline up to now was looked at
(`hbd.core.fencing`). docs/policy.md has the outcomes this composes.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from hbd.core import events as ev
from hbd.core import resources as rs
from hbd.core.advert import NO_NODE, Advert, Standby, decode_advert
from hbd.core.engine import Contact, Engine, EngineSettings, PathKind
from hbd.core.errors import LocalProtocolError
from hbd.core.fencing import Fencing
from hbd.core.hbresources import MESSAGE_TYPES, HbDecision, HeartbeatResources, Rsc
from hbd.core.membership import NodeStatus
from hbd.core.model import AutoFailback, ResourceGroup, WireFormat
from hbd.core.policy import (
    Acquire,
    Arbiter,
    Decision,
    GroupInfo,
    HeartbeatView,
    Isolation,
    LocalGroup,
    PeerView,
    Policy,
    PolicySettings,
    Release,
    SelfFence,
    Vote,
)
from hbd.core.qnetd import client as qc
from hbd.core.qnetd import msg as qm
from hbd.core.states import NodeState
from hbd.core.witness import Witnesses, WitnessEvent

DEAF_GRACE = 0.1  # seconds beyond two keepalives: latency both ways
PROBE_SLOW = 5.0  # seconds between probes while the peer is heard (they only prove they work)
# the parts whose deadlines `Node.get_timer` is the earliest of, by name (`Node.due`)
TIMER_NAMES = (
    "engine",
    "witnesses",
    "resources",
    "fencing",
    "policy",
    "unheard",
    "probes",
    "qnetd",
    "hbresources",
)


def probe_window(keepalive: float, deadtime: float) -> float:
    """How long the probes of a silent peer must go unanswered before it counts as gone:
    several probes (one per keepalive), at least 2 s, never more than deadtime. A live
    kernel answers ARP within milliseconds, so a few misses in a row mean it is down; a
    short window lets a peer that was reset be taken over before it has booted again."""
    return min(deadtime, max(4 * keepalive, 2.0))


@dataclass(frozen=True, slots=True)
class ArbiterSettings:
    """corosync-qnetd as the arbiter (ha.cf `qnetd`, docs/qnetd.md)."""

    host: str
    port: int
    cluster_name: str
    node_ids: tuple[tuple[str, int], ...]  # every node's qdevice node id
    algorithm: str = "ffsplit"
    tie_breaker: str = "lowest"  # lowest, highest, or a node id
    tls: bool = False


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Everything a node needs, as plain values (the shell builds them from the config)."""

    engine: EngineSettings
    groups: tuple[ResourceGroup, ...] = ()
    auto_failback: AutoFailback = AutoFailback.ON
    ping_nodes: tuple[str, ...] = ()
    ping_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    deadping: float | None = None  # None: deadtime
    watchdog_timeout: float | None = None  # the armed watchdog's timeout; None: none armed
    peer_watchdog_timeout: float | None = None  # assumed for a peer never heard since start
    resource_timeouts: rs.Timeouts = field(default_factory=rs.Timeouts)
    peer_addresses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    service_addresses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    arbiter: ArbiterSettings | None = None

    def __post_init__(self) -> None:
        names = {g.name for g in self.groups}
        for group in self.service_addresses:
            if group not in names:
                raise LocalProtocolError(f"service addresses for an unknown group {group!r}")
        for peer in self.peer_addresses:
            if peer not in self.engine.nodes or peer == self.engine.node:
                raise LocalProtocolError(f"addresses for {peer!r}, which is no peer")

    @property
    def node(self) -> str:
        return self.engine.node


# -- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PetWatchdog:
    """Pet the watchdog device now."""


@dataclass(frozen=True, slots=True)
class GoingDown:
    """This node must go: everything it runs is being released, and from now on it pets no
    more (an armed device resets it within its timeout)."""

    reason: str


@dataclass(frozen=True, slots=True)
class SendPings:
    """Send one ICMP echo to each ping witness address; answers come to `witness_reply`."""

    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SendProbes:
    """Probe each address (ARP when on a local link, ICMP echo otherwise); an answer comes
    back to `probe_reply`."""

    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RememberPeerAddresses:
    """Keep these addresses of `peer` across restarts (the state directory), so a node that
    restarts during a partition can still probe it."""

    peer: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RememberPeerGenerations:
    """Keep (peer, generation, highest sequence) across restarts (the state directory,
    written durably), so that after a restart replays of what was heard before are refused
    (`EngineSettings.peer_generations` gives them back)."""

    generations: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class QnetdConnect:
    """Open a TCP connection to qnetd; report `qnetd_connected` or `qnetd_failed`."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class QnetdSend:
    """Write these bytes on the qnetd connection."""

    data: bytes


@dataclass(frozen=True, slots=True)
class QnetdStartTls:
    """Wrap the qnetd connection in TLS now; report `qnetd_tls_started` or `qnetd_failed`."""


@dataclass(frozen=True, slots=True)
class QnetdClose:
    """Close the qnetd connection (the node already counts it closed)."""

    reason: str


NodeAction = (
    rs.RunAgent
    | PetWatchdog
    | GoingDown
    | SendPings
    | SendProbes
    | RememberPeerAddresses
    | RememberPeerGenerations
    | QnetdConnect
    | QnetdSend
    | QnetdStartTls
    | QnetdClose
)


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decided:
    """A line of the policy's reasoning (`hbd.core.policy.Decision`)."""

    decision: Decision


@dataclass(frozen=True, slots=True)
class Stalled:
    """The node was not called for `gap` seconds (hung, stopped or starved)."""

    gap: float
    going: bool  # it may be running something, so it goes


@dataclass(frozen=True, slots=True)
class WitnessesUnproven:
    """No ping node has answered since start although a peer was heard over the network:
    a configuration problem (address, route, firewall), not evidence of isolation -- unless
    a ping node answers that peer (`reaches`): then this node's way to it is broken, and
    it counts as isolated."""

    witnesses: tuple[str, ...]
    reaches: str | None = None  # a peer a ping node answers


NodeEvent = (
    ev.Event | WitnessEvent | rs.Event | Decided | Stalled | WitnessesUnproven | qc.QnetdEvent
)


@dataclass(slots=True)
class _Probe:
    owner: str  # a peer name, or "group:NAME" for a service address
    answered: float | None = None
    validated: bool = False  # answered while its peer was heard: it is known to work


class Node:
    """One hbd node as a sans-I/O object. See the module docstring."""

    def __init__(self, settings: NodeSettings, now: float) -> None:
        self.settings = settings
        self.name = settings.node
        self.started = now
        s = settings.engine
        self.engine = Engine(s, now)
        self._kinds = dict(s.paths)
        self.witnesses = self._make_witnesses(settings, now)
        self.rm = rs.ResourceManager(
            settings.groups,
            self.name,
            timeouts=settings.resource_timeouts,
            watchdog_armed=settings.watchdog_timeout is not None,
        )
        self.policy = Policy(self._policy_settings(settings), now=now)
        self.fencing = Fencing(
            settings.watchdog_timeout,
            stall_bound=max(s.deadtime - s.keepalive, s.keepalive),
            now=now,
        )
        self._actions: deque[NodeAction] = deque()
        self._events: deque[NodeEvent] = deque()
        self._failed: set[str] = set()
        self._dirty = True
        self._last_timers: tuple[float | None, ...] = (None,) * len(TIMER_NAMES)  # get_timer's
        self._deaf: dict[str, bool] = {}
        self._peers = tuple(n for n in settings.engine.nodes if n != self.name)
        self._unheard: dict[str, bool] = {}  # peer -> it may count us dead (as last looked)
        self._unheard_times: dict[str, float | None] = {}  # peer -> when that flips to True
        self._unheard_contacts = -1  # the engine's contact_changes when they were looked up
        self._deaf_contacts = -1  # ... and when the peers' deafness was
        self._heard_on_network = False
        self._witness_reaches_peer: str | None = None  # a ping node answers it, its advert said
        self._reached_by_reported: str | None = None
        self._unproven_reported = False
        self._stopping_since: float | None = None
        self._decisions_seen = 0
        self._probes: dict[str, _Probe] = {}
        self._remembered: dict[str, tuple[str, ...]] = {
            p: tuple(a) for p, a in settings.peer_addresses.items()
        }
        self._next_probe = now
        self._probing_fast = False  # every keepalive (a peer silent or dead), not PROBE_SLOW
        self._beats_seen = 0  # the engine's `beats_sent` when a probe was last looked at
        self._rebuild_probes()
        self.qnetd: qc.QnetdClient | None = None
        self._qnetd_ids: dict[str, int] = {}
        self._qnetd_view: qc.QnetdView | None = None
        self._solo_count = 0
        self._last_members: frozenset[int] | None = None
        self._make_arbiter(settings, now)
        # a Heartbeat 3.0.6 peer: its resource protocol (hbd.core.hbresources)
        self.engine.answers_starting = not settings.groups
        self.hbres: HeartbeatResources | None = None
        self._hb_live = False
        if settings.groups:
            self.rm.probe_all(now)
            self._drain_rm(now)

    @property
    def active(self) -> bool:
        """Whether this node runs resource groups at all (only then it sends adverts)."""
        return bool(self.settings.groups)

    # -- inputs -------------------------------------------------------------------------

    def receive_frame(self, path: str, data: bytes, now: float, source: str | None = None) -> None:
        self._observe(now)
        engine = self.engine
        if not engine.receive_frame(path, data, now, source):
            self._collect_engine(now)  # a steady heartbeat has no event (nor generation)
        if engine.contact_changes != self._deaf_contacts:  # else no peer's changed
            self._deaf_contacts = engine.contact_changes
            self._check_deaf()
        self._after_input(now)

    def witness_reply(self, address: str, rtt: float, now: float) -> None:
        self._observe(now)
        self.witnesses.reply(address, rtt, now)
        self._collect_witnesses()
        self._after_input(now)

    def probe_reply(self, address: str, now: float) -> None:
        """`address` answered a probe. Only the change from silent to answering can change
        a decision, and only while its owner is not heard: the policy reads the answers of
        a peer it lost (and the service addresses of groups one may run) to hold a takeover
        back, so only such a change makes it look again."""
        self._observe(now)
        probe = self._probes.get(address)
        if probe is None:
            return  # not a target (any more): a late or stray answer
        window = self.policy.settings.probe_window
        fresh = probe.answered is None or now - probe.answered >= window
        if fresh and not self._all_heard(probe.owner):
            self._dirty = True
        probe.answered = now
        if not probe.validated and self._owner_heard(probe.owner):
            probe.validated = True
        self._after_input(now)

    def agent_done(
        self,
        group: str,
        index: int,
        op: rs.Op,
        rc: int,
        output: str,
        now: float,
        duration_ms: int | None = None,
    ) -> None:
        self._observe(now)
        self.rm.operation_done(group, index, op, rc, output, now, duration_ms)
        self._drain_rm(now)
        self._after_input(now)

    def agent_timed_out(
        self, group: str, index: int, op: rs.Op, now: float, duration_ms: int | None = None
    ) -> None:
        self._observe(now)
        self.rm.operation_timed_out(group, index, op, now, duration_ms)
        self._drain_rm(now)
        self._after_input(now)

    def agent_failed(self, group: str, index: int, op: rs.Op, reason: str, now: float) -> None:
        """The agent could not be run at all (no file, no memory, no process): a failed
        operation, judged as an agent that exited with a generic error."""
        self._observe(now)
        self.rm.operation_done(group, index, op, rs.OCF_ERR_GENERIC, reason, now)
        self._drain_rm(now)
        self._after_input(now)

    def standby(self, mode: str, now: float) -> None:
        self._need_groups("standby")
        self.policy.standby(mode, now)
        if self.hbres is not None:
            self._heartbeat_standby(Standby.parse(mode), now)
        if mode in ("off", "none"):
            self._failed.clear()
        self._dirty = True
        self._after_input(now)

    def takeover(self, mode: str, now: float) -> None:
        self._need_groups("takeover")
        if self.hbres is not None and self._hb_live:
            self.hbres.takeover(mode, now)  # hb_takeover: the peer hands them over
            self.hbres.refuse_groups(Rsc.NONE)
            self.policy.standby("off", now)
            self._failed.clear()
            self._flush_heartbeat(now)
            return
        self.policy.takeover(mode, now)
        self._failed.clear()
        self._dirty = True
        self._after_input(now)

    def release(self, mode: str, now: float) -> None:
        """Ask the peer to take these groups, once (Heartbeat's hb_standby)."""
        self._need_groups("release")
        if self.hbres is not None and self._hb_live:
            self.hbres.standby(mode, now)  # hb_standby; raises if Heartbeat's rules refuse
            self._dirty = True
            self._after_input(now)
            return
        self.policy.release(mode, now)
        self._dirty = True
        self._after_input(now)

    def begin_stop(self, now: float) -> None:
        """A clean stop: hand every group over (standby all) before going."""
        if self._stopping_since is None:
            self._stopping_since = now
            if self.active:
                self.policy.standby("all", now)
                if self.hbres is not None:
                    self.hbres.shutdown(now)  # hb_giveup_resources: all go, then shutdone
            self._dirty = True
            self._after_input(now)

    def stop_began(self) -> float:
        """When `begin_stop` was called (now, if it was not)."""
        return self._stopping_since if self._stopping_since is not None else self.started

    def give_up(self, now: float, reason: str) -> None:
        """A clean stop could not stop the groups: they may still run, so the node goes
        (with a watchdog it pets no more) instead of ever reporting them stopped."""
        self._go(now, reason)
        self._after_input(now)

    def qnetd_connected(self, now: float) -> None:
        self._arbiter_call(now, lambda c: c.connection_made(now))

    def qnetd_tls_started(self, now: float) -> None:
        self._arbiter_call(now, lambda c: c.tls_started(now))

    def qnetd_data(self, data: bytes, now: float) -> None:
        self._arbiter_call(now, lambda c: c.data_received(data, now))

    def qnetd_failed(self, reason: str, now: float) -> None:
        """The connection to qnetd could not be made, or broke."""
        self._arbiter_call(now, lambda c: c.connection_failed(reason, now))

    def leave(self, now: float) -> None:
        """Say goodbye (the last thing before the process exits)."""
        self.engine.leave(now)
        self._collect_engine(now)
        self._save_generations(now, force=True)

    def _save_generations(self, now: float, force: bool = False) -> None:
        snapshot = self.engine.generations_to_save(now, force=force)
        if snapshot is not None:
            self._actions.append(RememberPeerGenerations(snapshot))

    def handle_timer(self, now: float) -> None:
        self._observe(now)
        self.engine.set_answering(self._peers_answering(now))
        self.engine.handle_timer(now)
        self._collect_engine(now)
        self.witnesses.handle_timer(now)
        self._collect_witnesses()
        t = self.rm.get_timer()
        if t is not None and t <= now:
            self.rm.handle_timer(now)
            self._drain_rm(now)
        if self.hbres is not None:
            t = self.hbres.get_timer()
            if t is not None and t <= now:
                self.hbres.handle_timer(now)
                self._dirty = True
        pings = self.witnesses.due_echoes(now)
        if pings:
            self._actions.append(SendPings(pings))
        self._ride_heartbeat(now)
        if self.qnetd is not None:
            t = self.qnetd.get_timer()
            if t is not None and t <= now:
                self.qnetd.handle_timer(now)
                self._collect_arbiter(now)
        self._after_input(now)

    def reconfigure(self, settings: NodeSettings, now: float) -> None:
        """A reload: new paths, timings, witnesses or keys, keeping everything peers hear
        (generation, sequence, membership, adverts). Groups and the watchdog must not
        change (that needs a restart); raises LocalProtocolError if they do."""
        old = self.settings
        if settings.groups != old.groups:
            raise LocalProtocolError("the resource groups changed: that needs a restart")
        if settings.watchdog_timeout != old.watchdog_timeout:
            raise LocalProtocolError("the watchdog changed: that needs a restart")
        if settings.engine.node != old.engine.node or settings.engine.nodes != old.engine.nodes:
            raise LocalProtocolError("the node list changed: that needs a restart")
        self.settings = settings
        self.engine.reconfigure(settings.engine, now)
        self._kinds = dict(settings.engine.paths)
        if (settings.ping_nodes, settings.ping_groups) != (old.ping_nodes, old.ping_groups) or (
            settings.deadping != old.deadping
        ):
            self.witnesses = self._make_witnesses(settings, now)
        self.policy.settings = self._policy_settings(settings)
        e = settings.engine
        self.fencing.stall_bound = max(e.deadtime - e.keepalive, e.keepalive)
        for peer, addresses in settings.peer_addresses.items():
            known = self._remembered.get(peer, ())
            self._remembered[peer] = tuple(dict.fromkeys((*known, *addresses)))
        self._rebuild_probes()
        self._deaf_contacts = self._unheard_contacts = -1  # timings changed: look again
        if settings.arbiter != old.arbiter:
            if self.qnetd is not None and self.qnetd.state is not qc.State.DISCONNECTED:
                self._actions.append(QnetdClose("the qnetd configuration changed"))
            self._qnetd_view = None
            self._last_members = None
            self._make_arbiter(settings, now)
        self._dirty = True
        self._after_input(now)

    # -- outputs ------------------------------------------------------------------------

    def frames_to_send(self, now: float) -> list[tuple[str, bytes]]:
        out = self.engine.frames_to_send(now)
        self._collect_engine(now)
        if self.engine.beats_sent != self._beats_seen:
            self._ride_heartbeat(now)  # a slow probe or qnetd's echo due goes with it
        return out

    def next_action(self) -> NodeAction | None:
        return self._actions.popleft() if self._actions else None

    def next_event(self) -> NodeEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        self._last_timers = timers = self._timers()
        return min([t for t in timers if t is not None], default=None)

    def due(self, now: float) -> list[str]:
        """Which parts' deadlines, as the last `get_timer` found them, have come by `now`
        ("engine", "fencing", ...): what woke a timer turn armed at that deadline, for the
        loop's counters (a pet that wakes a turn of its own shows as "fencing" alone)."""
        timers = zip(TIMER_NAMES, self._last_timers, strict=True)
        return [name for name, t in timers if t is not None and t <= now]

    def _timers(self) -> tuple[float | None, ...]:
        """Every part's next deadline, in TIMER_NAMES' order."""
        active = self.active
        return (
            self.engine.get_timer(),
            self.witnesses.get_timer(),
            self.rm.get_timer(),
            self.fencing.get_timer(),
            self.policy.get_timer() if active else None,
            self._unheard_timer() if active else None,
            self._probe_timer(),
            self.qnetd.get_timer() if self.qnetd is not None else None,
            self.hbres.get_timer() if self.hbres is not None else None,
        )

    # -- state for status and the shell ---------------------------------------------

    @property
    def fenced(self) -> str | None:
        return None if self.fencing.fenced is None else self.fencing.fenced.reason

    def stopped(self, now: float) -> bool:
        """After `begin_stop`: True once every group is stopped here and a live peer has
        taken it over (or there is none to take it, or it waited 2 x deadtime)."""
        if not self.active:
            return True
        since = self._stopping_since if self._stopping_since is not None else now
        if not all(self.rm.is_stopped(g.name) for g in self.settings.groups):
            return False
        adverts = self.policy.peer_adverts()
        if not adverts or now - since > 2 * self.settings.engine.deadtime:
            return True
        return all(
            any(a.running[i] for a in adverts.values()) for i in range(len(self.settings.groups))
        )

    def probe_status(self, now: float) -> list[dict[str, object]]:
        """Every probe target: whose, when it last answered, whether it is known to work."""
        return [
            {
                "address": address,
                "of": probe.owner,
                "answered_ms_ago": None
                if probe.answered is None
                else round((now - probe.answered) * 1000),
                "proven": probe.validated,
            }
            for address, probe in self._probes.items()
        ]

    def probe_targets(self) -> tuple[str, ...]:
        return tuple(self._probes)

    def last_answer(self) -> float | None:
        """When any probe target last answered (None: never)."""
        return max((p.answered for p in self._probes.values() if p.answered), default=None)

    def holders(self) -> dict[str, str | None]:
        """Who holds each group, as far as this node knows."""
        out: dict[str, str | None] = {}
        for g in self.settings.groups:
            out[g.name] = self.name if self.rm.may_be_running(g.name) else None
        for name, advert in self.policy.peer_adverts().items():
            for i, g in enumerate(self.settings.groups):
                if advert.running[i] and out[g.name] is None:
                    out[g.name] = name
        hb = self.hbres
        if hb is not None and self._hb_live:
            for g in self.settings.groups:
                cls = Rsc.LOCAL if g.preferred == self.name else Rsc.FOREIGN
                if out[g.name] is None and hb.peer_holds & cls:
                    out[g.name] = hb.peer
        return out

    # -- internals ----------------------------------------------------------------------

    def _need_groups(self, what: str) -> None:
        if not self.active:
            raise LocalProtocolError(f"{what}: this node runs no resource groups")

    @staticmethod
    def _make_witnesses(settings: NodeSettings, now: float) -> Witnesses:
        e = settings.engine
        return Witnesses(
            settings.ping_nodes,
            settings.ping_groups,
            deadping=settings.deadping if settings.deadping is not None else e.deadtime,
            interval=e.keepalive,
            now=now,
        )

    @staticmethod
    def _policy_settings(settings: NodeSettings) -> PolicySettings:
        e = settings.engine
        return PolicySettings(
            local=e.node,
            nodes=e.nodes,
            groups=tuple(
                GroupInfo(g.name, g.preferred, tuple(settings.service_addresses.get(g.name, ())))
                for g in settings.groups
            ),
            auto_failback=settings.auto_failback,
            watchdog_armed=settings.watchdog_timeout is not None,
            keepalive=e.keepalive,
            deadping=settings.deadping if settings.deadping is not None else e.deadtime,
            probe_window=probe_window(e.keepalive, e.deadtime),
            peer_watchdog=settings.peer_watchdog_timeout,
            arbiter=Node._arbiter_times(settings),
        )

    @staticmethod
    def _arbiter_times(settings: NodeSettings) -> Arbiter | None:
        if settings.arbiter is None:
            return None
        e = settings.engine
        hb = qc.heartbeat_interval(e.keepalive, e.deadtime)
        return Arbiter(
            decision=qc.decision_time(hb),
            loss=qc.loss_detection(hb),
            nack_first=settings.arbiter.algorithm == "ffsplit",
        )

    def _observe(self, now: float) -> None:
        gap = self.fencing.observe(now)
        if gap is None or self.fencing.fenced is not None:
            return  # on time, or already going: a stall changes nothing more
        going = any(self.rm.may_be_running(g.name) for g in self.settings.groups)
        self._events.append(Stalled(gap, going))
        reason = (
            f"the event loop stalled for {gap:.1f} s (more than "
            f"{self.fencing.stall_bound:.1f} s): peers may already count this node dead"
        )
        if going:
            self._go(now, reason)
        elif self.active:
            dead = max(self.settings.engine.deadtime, self.policy.settings.deadping)
            self.policy.suspend_takeovers(now + dead, now, reason)
        self._dirty = True

    def _go(self, now: float, reason: str) -> None:
        fenced = self.fencing.fence(now, reason)
        if fenced is not None:
            self.policy.fenced_elsewhere(now, reason)
            self._actions.append(GoingDown(reason))
            self._dirty = True

    def _after_input(self, now: float) -> None:
        """Decide if anything the policy reads changed or its timer is due; then pet."""
        if self.qnetd is not None and self._dirty:
            self._sync_arbiter(now)
        if self.active:
            self._check_unheard(now)
            t = self.policy.get_timer()
            if self._dirty or (t is not None and t <= now):
                self._evaluate(now)
        if self.fencing.pet_due(now):
            self._actions.append(PetWatchdog())

    def _evaluate(self, now: float) -> None:
        """Hand the policy the current view, carry its actions into the resource manager,
        and publish the advert that results."""
        self._dirty = False
        engine = self.engine
        peers: list[PeerView] = []
        adverts: dict[str, Advert] = {}
        last_words: dict[str, Advert] = {}
        for n in engine.nodes_status(now):
            if n.name == self.name:
                continue
            peers.append(self._peer_view(n, now))
            for source, into in ((engine.advert_of, adverts), (engine.last_advert_of, last_words)):
                raw = source(n.name)
                advert = decode_advert(raw) if raw is not None else None
                if advert is not None:
                    into[n.name] = advert
                    if advert.witness and self._witness_reaches_peer is None:
                        self._witness_reaches_peer = n.name
        heartbeat = self._heartbeat_view(now, last_words)
        self.policy.update(
            now,
            peers=tuple(peers),
            adverts=adverts,
            isolation=self._isolation(now),
            local=self._local_groups(),
            group_answered={
                g.name: self._answered(f"group:{g.name}") for g in self.settings.groups
            },
            last_words=last_words,
            vote=self._vote(),
            heartbeat=heartbeat,
        )
        if self.policy.fenced is None and self.fencing.fenced is not None:
            self.fencing.unfence()  # no watchdog: the policy let it serve again
        while (action := self.policy.next_action()) is not None:
            if isinstance(action, Acquire):
                self.rm.acquire(action.group, now)
            elif isinstance(action, Release):
                self.rm.release(action.group, now)
            elif isinstance(action, SelfFence):
                self._go(now, action.reason)
        self._drain_rm(now)
        self._flush_heartbeat(now)
        self._emit_decisions()
        engine.set_advert(self.policy.advert().encode(), now)
        self._rebuild_probes()

    def _peer_view(self, n: NodeStatus, now: float) -> PeerView:
        """One peer as the policy sees it: membership, acknowledgements, probe answers."""
        alive = n.state in (NodeState.UP, NodeState.ACTIVE)
        contact = self.engine.contact(n.name)
        unheard_at = self._unheard_at(contact, n.last_heard)
        if unheard_at is not None:
            unheard = now >= unheard_at
            deaf = alive and self._is_deaf(contact)
        else:  # a Heartbeat peer acknowledges nothing: it counts us dead when we it
            unheard, deaf = not alive, False
        return PeerView(
            n.name,
            alive=alive,
            known=n.state is not NodeState.INIT,
            last_heard=n.last_heard,
            watchdog=n.watchdog,
            deadtime=n.deadtime,
            generation=n.generation,
            left=self.engine.membership.has_left(n.name),
            unheard=unheard,
            deaf=deaf,
            answered=self._answered(n.name),
        )

    def _unheard_at(self, contact: Contact, last_heard: float | None) -> float | None:
        """When the peer may count this node dead: our deadtime after the newest frame of
        ours it acknowledged (None: a Heartbeat peer, which acknowledges nothing)."""
        if not contact.acks and last_heard is not None:
            return None
        acked = contact.acked_until if contact.acked_until is not None else self.started
        return acked + self.settings.engine.deadtime

    def _check_unheard(self, now: float) -> None:
        """A peer's `unheard` flips when its moment passes or an acknowledgement moves it
        (a flip changes the decision; the moment itself is `_unheard_timer`'s). The moments
        are looked up again only when a contact (or anything else the policy reads) changed."""
        membership = self.engine.membership
        if self.engine.contact_changes == self._unheard_contacts and not self._dirty:
            for peer, at in self._unheard_times.items():
                if at is not None and now >= at:
                    self._unheard_times[peer] = None
                    self._unheard[peer] = True
                    self._dirty = True
            return
        self._unheard_contacts = self.engine.contact_changes
        for peer in self._peers:
            at = self._unheard_at(self.engine.contact(peer), membership.last_heard(peer))
            unheard = at is not None and now >= at
            self._unheard_times[peer] = None if unheard else at
            if self._unheard.get(peer, False) != unheard:
                self._unheard[peer] = unheard
                self._dirty = True

    def _unheard_timer(self) -> float | None:
        return min((t for t in self._unheard_times.values() if t is not None), default=None)

    def _local_groups(self) -> dict[str, LocalGroup]:
        return {
            g.name: LocalGroup(
                self.rm.may_be_running(g.name),
                g.name in self._failed,
                self.rm.state(g.name) is rs.GroupState.STARTED,
            )
            for g in self.settings.groups
        }

    def _isolation(self, now: float) -> Isolation:
        w = self.witnesses
        if not w.configured():
            return Isolation.NO_WITNESSES
        if w.any_up():
            return Isolation.REACHES
        if w.ever_up():
            return Isolation.ISOLATED
        deadping = self.policy.settings.deadping
        if now - self.started < deadping:
            return Isolation.UNKNOWN
        if self._witness_reaches_peer is not None:
            if self._reached_by_reported != self._witness_reaches_peer:
                self._reached_by_reported = self._witness_reaches_peer
                self._events.append(
                    WitnessesUnproven(w.never_answered(), reaches=self._witness_reaches_peer)
                )
            return Isolation.PEER_REACHES
        if self._heard_on_network:
            if not self._unproven_reported:
                self._unproven_reported = True
                self._events.append(WitnessesUnproven(w.never_answered()))
            return Isolation.UNPROVEN
        return Isolation.UNKNOWN

    # -- the arbiter ----------------------------------------------------------------------

    def _make_arbiter(self, settings: NodeSettings, now: float) -> None:
        a = settings.arbiter
        if a is None:
            self.qnetd = None
            return
        ids = dict(a.node_ids)
        missing = [n for n in settings.engine.nodes if n not in ids]
        if missing:
            raise LocalProtocolError(f"no qnetd node id for {', '.join(missing)}")
        if a.tie_breaker in ("lowest", "highest"):
            mode = qm.TieBreakerMode[a.tie_breaker.upper()]
            tie = qm.TieBreaker(mode)
        else:
            tie = qm.TieBreaker(qm.TieBreakerMode.NODE_ID, int(a.tie_breaker))
        e = settings.engine
        client_settings = qc.ClientSettings(
            host=a.host,
            port=a.port,
            cluster_name=a.cluster_name,
            node_id=ids[self.name],
            node_ids=tuple(ids[n] for n in e.nodes),
            algorithm=qm.Algorithm[a.algorithm.upper()],
            tie_breaker=tie,
            heartbeat=qc.heartbeat_interval(e.keepalive, e.deadtime),
            tls=a.tls,
        )
        self._qnetd_ids = ids
        self.qnetd = qc.QnetdClient(client_settings, now)

    def _arbiter_call(self, now: float, call: object) -> None:
        self._observe(now)
        if self.qnetd is None:
            return
        assert callable(call)
        call(self.qnetd)
        self._collect_arbiter(now)
        self._after_input(now)

    def _collect_arbiter(self, now: float) -> None:
        c = self.qnetd
        assert c is not None
        data = c.data_to_send()
        while (action := c.next_action()) is not None:
            if isinstance(action, qc.Connect):
                self._actions.append(QnetdConnect(action.host, action.port))
            elif isinstance(action, qc.StartTls):
                if data:
                    self._actions.append(QnetdSend(data))
                    data = b""
                self._actions.append(QnetdStartTls())
            else:
                self._actions.append(QnetdClose(action.reason))
        if data:
            self._actions.append(QnetdSend(data))
        while (event := c.next_event()) is not None:
            self._events.append(event)
        view = c.view()
        if view != self._qnetd_view:
            self._qnetd_view = view
            self._dirty = True

    def _sync_arbiter(self, now: float) -> None:
        """Tell qnetd this node's membership -- itself and the peers it hears and that hear
        it -- and its heuristics (does it reach a ping node)."""
        c = self.qnetd
        assert c is not None
        membership = self.engine.membership
        live = set(membership.live_nodes())
        members = {self.name} | {p for p in live if p != self.name and not self._deaf.get(p, False)}
        ids = frozenset(self._qnetd_ids[n] for n in members)
        if ids != self._last_members and len(ids) == 1:
            self._solo_count += 1
        self._last_members = ids
        gen = self.engine.generation
        if len(ids) == 1:
            ring = qm.RingId(
                self._qnetd_ids[self.name],
                (1 << 62) | (gen & 0xFFFFFFFF) << 20 | (self._solo_count & 0xFFFFF),
            )
        else:
            gens = []
            for n in sorted(members):
                g = gen if n == self.name else membership.node_status(n, now).generation
                gens.append(f"{self._qnetd_ids[n]}:{g}")
            digest = hashlib.sha256(",".join(gens).encode()).digest()
            ring = qm.RingId(min(ids), int.from_bytes(digest[:8], "big") & ((1 << 62) - 1))
        iso = self._isolation(now)
        if iso is Isolation.REACHES:
            heuristics = qm.Heuristics.PASS
        elif iso.cut_off:
            heuristics = qm.Heuristics.FAIL
        else:
            heuristics = qm.Heuristics.UNDEFINED
        c.set_membership(ids, ring, heuristics, now)
        self._collect_arbiter(now)

    def _vote(self) -> Vote | None:
        if self.qnetd is None:
            return None
        v = self.qnetd.view()
        if not v.connected and v.vote is None:
            return Vote(False, reason=v.reason, lost_at=self.qnetd.lost_at)
        names = {i: n for n, i in self._qnetd_ids.items()}
        members = frozenset(names[i] for i in (v.members or ()) if i in names)
        ack = None if v.vote is None else v.vote is qm.Vote.ACK
        return Vote(v.connected, ack, members, v.since, v.reason, self.qnetd.lost_at)

    def arbiter_status(self, now: float) -> dict[str, object] | None:
        """`qnetd` in `hbctl status`: connected, the vote, the last change and why."""
        c = self.qnetd
        if c is None:
            return None
        v = c.view()
        names = {i: n for n, i in self._qnetd_ids.items()}
        return {
            "server": f"{c.settings.host}:{c.settings.port}",
            "connected": v.connected,
            "state": c.state.value,
            "vote": None if v.vote is None else v.vote.name,
            "members": sorted(names.get(i, str(i)) for i in (v.members or ())),
            "last_change_ms_ago": None if v.changed is None else round((now - v.changed) * 1000),
            "reason": v.reason,
            "rtt_ms": None if c.rtt is None else round(c.rtt * 1000, 3),
            "heartbeat_ms": round(c.settings.heartbeat * 1000),
            "degraded": not v.connected,
        }

    # -- a Heartbeat peer -------------------------------------------------------------

    def _heartbeat_peer(self) -> str | None:
        """The peer, when this node has groups and its one peer is a Heartbeat node
        (Heartbeat's resource protocol is for two nodes)."""
        e = self.settings.engine
        if not self.active or len(e.nodes) != 2 or e.wire is not WireFormat.HEARTBEAT:
            return None
        peer = next(n for n in e.nodes if n != self.name)
        return peer if self.engine.speaks_heartbeat(peer) else None

    def _heartbeat_event(self, event: object, now: float) -> None:
        """Carry the peer's resource messages and its coming and going into hbres."""
        peer = self._heartbeat_peer()
        if peer is None:
            return
        self._sync_heartbeat(peer, now)
        hb = self.hbres
        if hb is None:
            return
        if isinstance(event, ev.NodeDead | ev.NodeRestarted) and event.node == peer:
            if self._hb_live:
                self._hb_live = False  # a new incarnation starts the protocol afresh
                if self.engine.membership.has_left(peer):
                    hb.peer_left(now)
                else:
                    hb.peer_lost(now)
            self._sync_heartbeat(peer, now)
        elif (
            isinstance(event, ev.MessageReceived)
            and event.node == peer
            and self._hb_live
            and event.type in MESSAGE_TYPES
        ):
            try:
                hb.message(now, event.type, dict(event.fields))
            except LocalProtocolError as e:
                hb.decisions.append(HbDecision(now, f"t={event.type} from {peer} ignored", str(e)))
            self._dirty = True

    def _sync_heartbeat(self, peer: str, now: float) -> None:
        """Join the peer's resource protocol once it is active and this node knows what
        it runs (every group probed, none being stopped): announce a start, or say what it
        serves -- every group that may run here, a start under way included (a peer told
        "none" while a takeover is still starting here would start the group too)."""
        if self._hb_live or self.engine.node_status(peer, now).state is not NodeState.ACTIVE:
            return
        settling = (rs.GroupState.UNKNOWN, rs.GroupState.STOPPING)
        if any(self.rm.state(g.name) in settling for g in self.settings.groups):
            return
        if self.hbres is None:
            self.hbres = HeartbeatResources(self.name, peer, self.settings.auto_failback, now)
        self._hb_live = True
        serving = Rsc.NONE
        for g in self.settings.groups:
            if self.rm.may_be_running(g.name):
                serving |= Rsc.LOCAL if g.preferred == self.name else Rsc.FOREIGN
        self.hbres.begin(now, serving)
        self._dirty = True

    def _hb_classes(self) -> tuple[Rsc, Rsc, Rsc]:
        """This node's groups by Heartbeat class: any running, all started, all stopped."""
        running = started = stopped = Rsc.NONE
        for cls, local in ((Rsc.LOCAL, True), (Rsc.FOREIGN, False)):
            groups = [g.name for g in self.settings.groups if (g.preferred == self.name) == local]
            if any(self.rm.may_be_running(g) for g in groups):
                running |= cls
            done = (rs.GroupState.STARTED, rs.GroupState.FAILED)
            if all(self.rm.state(g) in done for g in groups):
                started |= cls
            if all(self.rm.is_stopped(g) for g in groups):
                stopped |= cls
        return running, started, stopped

    def _heartbeat_view(self, now: float, last_words: dict[str, Advert]) -> HeartbeatView | None:
        peer = self._heartbeat_peer()
        if peer is not None:
            self._sync_heartbeat(peer, now)
        elif self._hb_live:
            self._hb_live = False  # the peer speaks hbd now: adverts decide again
        hb = self.hbres
        if hb is None:
            return None
        hb.local_state(now, *self._hb_classes())
        if not self._hb_live:
            if self.engine.membership.has_left(hb.peer):
                # it released everything before t=shutdone: its last word is "none"
                n = len(self.settings.groups)
                last_words[hb.peer] = Advert(
                    digest=self.policy.digest, running=(False,) * n, targets=(NO_NODE,) * n
                )
            return None
        return HeartbeatView(hb.peer, hb.wants(True), hb.wants(False))

    def _heartbeat_standby(self, mode: Standby, now: float) -> None:
        """hbctl standby beside a Heartbeat peer: refuse those groups and hand over the
        ones held here; `standby off` asks for this node's own groups back (failback)."""
        hb = self.hbres
        assert hb is not None
        refuse = Rsc(
            (Rsc.LOCAL if mode.covers(True) else 0) | (Rsc.FOREIGN if mode.covers(False) else 0)
        )
        hb.refuse_groups(refuse)
        if not self._hb_live:
            return
        held = hb.hold & refuse
        if held:
            try:
                hb.standby(held.wire, now)
            except LocalProtocolError as e:
                hb.decisions.append(HbDecision(now, "hand over later", str(e)))
        elif (
            refuse is Rsc.NONE
            and self.settings.auto_failback is AutoFailback.ON
            and hb.peer_holds & Rsc.LOCAL
            and any(g.preferred == self.name for g in self.settings.groups)
        ):
            hb.takeover("local", now)
        self._flush_heartbeat(now)

    def _flush_heartbeat(self, now: float) -> None:
        hb = self.hbres
        if hb is None:
            return
        while (msg := hb.next_message()) is not None:
            self.engine.send_message(msg.type, msg.fields, now)
        while hb.decisions:
            d = hb.decisions.popleft()
            self.policy.note(d.at, d.decision, d.reason)
        self._emit_decisions()

    def _emit_decisions(self) -> None:
        decisions = self.policy.decisions
        new = self.policy.decisions_made - self._decisions_seen
        for d in list(decisions)[max(0, len(decisions) - new) :]:
            self._events.append(Decided(d))
        self._decisions_seen = self.policy.decisions_made

    def _collect_engine(self, now: float) -> None:
        self._save_generations(now)
        while (event := self.engine.next_event()) is not None:
            self._events.append(event)
            if isinstance(event, ev.FrameDropped | ev.LateHeartbeat):
                continue
            self._heartbeat_event(event, now)
            if isinstance(event, ev.PathUp) and self._kinds.get(event.path) is PathKind.DATAGRAM:
                self._heard_on_network = True
                self._learn_addresses(event.node)
            self._dirty = True

    def _collect_witnesses(self) -> None:
        while (event := self.witnesses.next_event()) is not None:
            self._events.append(event)
            self._dirty = True

    def _check_deaf(self) -> None:
        """A frame whose acknowledgements turn a peer deaf (or hearing again) changes the
        decision; other frames do not."""
        for peer in self.settings.engine.nodes:
            if peer == self.name:
                continue
            deaf = self._is_deaf(self.engine.contact(peer))
            if self._deaf.get(peer, False) != deaf:
                self._deaf[peer] = deaf
                self._dirty = True

    def _is_deaf(self, c: Contact) -> bool:
        """The peer's latest heartbeat leaves us out: it counts us dead. A peer heard again
        after a silence, or a new incarnation of it, gets a round trip (two keepalives)
        first: its first frames were sent before ours could reach it."""
        e = self.settings.engine
        if not c.acks or c.ack_frame_at is None or c.listed or c.probed:
            return False
        return c.back_at is None or c.ack_frame_at - c.back_at > 2 * e.keepalive + DEAF_GRACE

    def _drain_rm(self, now: float) -> None:
        while (action := self.rm.next_action()) is not None:
            if isinstance(action, rs.RunAgent):
                self._actions.append(action)
            else:  # rs.SelfFence: a resource that cannot be stopped
                self._go(now, action.reason)
        while (event := self.rm.next_event()) is not None:
            self._events.append(event)
            if isinstance(event, rs.GroupStarted | rs.GroupStopped | rs.GroupFailed):
                self.policy.settled(event.group)
                self._dirty = True
            if isinstance(event, rs.GroupFailed) and not event.may_be_running:
                self._failed.add(event.group)
            if isinstance(event, rs.ProbeFinished | rs.GroupProbed):
                self._dirty = True

    # -- probes -------------------------------------------------------------------------

    def _learn_addresses(self, peer: str) -> None:
        datagram = [p for p, kind in self._kinds.items() if kind is PathKind.DATAGRAM]
        learned = self.engine.membership.addresses_of(peer, datagram)
        known = self._remembered.get(peer, ())
        service = self._service_addresses()
        new = tuple(a for a in learned if a not in known and a not in service)
        if new:
            self._remembered[peer] = (*known, *new)
            self._actions.append(RememberPeerAddresses(peer, self._remembered[peer]))
            self._rebuild_probes()

    def _service_addresses(self) -> frozenset[str]:
        return frozenset(
            a for addresses in self.settings.service_addresses.values() for a in addresses
        )

    def _rebuild_probes(self) -> None:
        """The targets: every peer's own addresses (configured, remembered, learned), and
        the service addresses of groups that are not running here (an address held here
        answers for this node, not for a peer).

        A service address is never a peer's own, even when the peer's frames came from it
        (IPv6 source selection picks the newest address of a prefix, a service address
        once one is added): it answers for whoever holds the group."""
        wanted: dict[str, str] = {}
        service = self._service_addresses()
        for peer, addresses in self._remembered.items():
            for address in addresses:
                if address not in service:
                    wanted.setdefault(address, peer)
        for g in self.settings.groups:
            if self.rm.may_be_running(g.name):
                continue
            for address in self.settings.service_addresses.get(g.name, ()):
                wanted.setdefault(address, f"group:{g.name}")
        if wanted.keys() == self._probes.keys() and all(
            self._probes[a].owner == o for a, o in wanted.items()
        ):
            return
        old = self._probes
        self._probes = {}
        for address, owner in wanted.items():
            probe = old.get(address)
            if probe is None or probe.owner != owner:
                probe = _Probe(owner)
            self._probes[address] = probe

    def _all_heard(self, owner: str) -> bool:
        """Every peer the answers of `owner`'s address could speak for is alive: a peer's
        own address speaks for it, a group's service address for any peer."""
        membership = self.engine.membership
        live = membership.live_nodes()
        if owner.startswith("group:"):
            return len(live) == len(membership.node_names)
        return owner in live

    def _owner_heard(self, owner: str) -> bool:
        live = self.engine.membership.live_nodes()
        if owner.startswith("group:"):
            return bool(live)
        return owner in live

    def _peers_answering(self, now: float) -> frozenset[str]:
        """Peers an address of which answered within two keepalives and a little: the
        probed mark goes off within a keepalive of the last answer (docs/policy.md)."""
        fresh = now - 2 * self.settings.engine.keepalive - DEAF_GRACE
        return frozenset(
            p.owner
            for p in self._probes.values()
            if p.answered is not None and p.answered >= fresh and not p.owner.startswith("group:")
        )

    def _answered(self, owner: str) -> float | None:
        times = [p.answered for p in self._probes.values() if p.owner == owner and p.answered]
        return max(times, default=None)

    def _quiet_for(self) -> float:
        """A peer silent this long is probed fast: two keepalives, and never so late that
        the first fast probe's answer could miss its death (at its deadtime)."""
        e = self.settings.engine
        return min(2 * e.keepalive, e.deadtime / 2)

    def _probe_fast(self, now: float) -> bool:
        """Probe every keepalive once a peer is dead or has been silent for `_quiet_for`
        -- so its answers are fresh by the time it is declared dead -- slowly otherwise."""
        membership = self.engine.membership
        if len(membership.live_nodes()) < len(membership.node_names):
            return True
        quiet = self._quiet_for()
        for name in membership.node_names:
            heard = membership.last_heard(name)
            if heard is not None and heard + quiet <= now:  # as `_probe_timer` computes it
                return True
        return False

    def _probe_timer(self) -> float | None:
        """The next probe, or the moment a live peer's silence makes probing fast (a
        deadline of its own: no other turn may be counted on to notice it in time). A slow
        probe has none: it goes in the turn of the first heartbeat at or after its time
        (`_maybe_probe`), which the engine's deadline wakes."""
        if not self._probes:
            return None
        if self._probing_fast:
            return self._next_probe
        membership = self.engine.membership
        heard = [membership.last_heard(n) for n in membership.node_names]
        silent = [t + self._quiet_for() for t in heard if t is not None]
        return min(silent, default=None)

    def _ride_heartbeat(self, now: float) -> None:
        """What may go in a turn a heartbeat went out in (the engine's `beats_sent` moved)
        rather than wake one of its own: a slow probe, qnetd's echo request."""
        beat = self.engine.beats_sent != self._beats_seen
        self._beats_seen = self.engine.beats_sent
        self._maybe_probe(now, beat)
        if beat and self.qnetd is not None and self.qnetd.ride(now):
            self._collect_arbiter(now)

    def _maybe_probe(self, now: float, beat: bool) -> None:
        """Probe when due: fast ones at their time; a slow one only in a turn a heartbeat
        went out in (`beat`). Slow probes only prove that probing works, so one waits for a
        heartbeat (at most a keepalive and a little) rather than wake a turn of its own."""
        if not self._probes:
            return
        fast = self._probe_fast(now)
        if fast and not self._probing_fast:
            self._next_probe = now  # a peer just went silent: probe it at once
        self._probing_fast = fast
        keepalive = self.settings.engine.keepalive
        interval = keepalive if fast else max(PROBE_SLOW, keepalive)
        self._next_probe = min(self._next_probe, now + interval)
        if now < self._next_probe or not (fast or beat):
            return
        self._next_probe = now + interval
        self._actions.append(SendProbes(tuple(self._probes)))
