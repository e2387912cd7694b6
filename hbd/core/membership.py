"""Membership: which peers are alive, over which paths. Theory of operation.

What it decides. For every configured peer node, its state (init -> up -> active -> dead,
see `states.py`), and for every (node, path) pair whether that path carries the node
(init / up / dead). It reports each change as an event, in order.

From which inputs. `receive(beat, now)` for every authenticated frame a codec accepted
(a `Beat`: sender name, path, generation, sequence, the status and deadtime it
advertises, its uuid, the source address), and `handle_timer(now)` when `get_timer()`
says a deadline passed. `now` is monotonic seconds from the caller; nothing here reads
a clock.

How.
- A node is dead only when every path to it has been silent for its deadtime: the
  node's deadline is its last frame on ANY path plus its deadtime, where its deadtime is
  the one it advertises (Heartbeat's `dt`), or ours when it advertises none. Before first
  contact the deadline is start + initdead. Path state never shortens this: a path
  called dead early (by the adaptive detector) cannot make a node dead sooner, and no
  path timeout can make it later.
- A path is dead when it has been silent for the node's deadtime, or, with the adaptive
  detector on, for the (shorter) phi-accrual timeout computed from that path's history.
- Each frame carries (generation, sequence). A per-node replay window counts each
  message once, however many paths it arrived on; a per-(node, path) window refreshes
  every path a copy arrived on but refuses the same copy twice on one path (a replay).
  Sequence gaps seen on a path are its losses.
- A higher generation means the peer restarted (NodeRestarted); an older one is stale
  and dropped, unless the node has been silent for its deadtime: then the lower generation
  may be a new incarnation (a reinstalled node, a lost state directory) -- or a replay of
  frames recorded from an incarnation before the current one, which signed frames cannot
  tell apart (they carry no freshness of their own). So it is `UNCONFIRMED` until the
  engine has had a fresh answer, in that generation, to a nonce it just sent (`confirm`):
  a reinstalled peer is alive and answers; a recording cannot. Then it is taken as a
  restart and reported (GenerationWentBack).
- Across this node's own restarts: `remembered` holds, per peer, the (generation, highest
  sequence) heard before this node stopped (saved by the shell in its state directory).
  Until a peer is heard again, frames of that generation up to that sequence are STALE
  (replays), and an older generation is UNCONFIRMED as above.
- The gap between two status heartbeats from a node, past warntime, is a LateHeartbeat.
- A node name heard with two uuids, one uuid heard under two names, two source
  addresses for one node on one path within deadtime, or an older generation still
  counting up after a restart: two machines claim one identity (a cloned disk image,
  Heartbeat's classic FAQ). That is a DuplicateNode naming both claimants. A peer that
  sends this node's OWN uuid is a clone of this machine (or of its state directory): a
  UuidClash, kept in `uuid_clashes()` until that peer is heard with a uuid of its own.
- Frames from names not in the node list (autojoin none) and from ourselves are
  dropped with a reason.
- An idle cluster's heartbeats change nothing but freshness: `receive_steady` takes one
  whose peer, path, generation, status, timings, uuid and source are what they were, in
  order, as `receive` would (the same branches, nothing else), and hands anything else
  back to `receive`. It is how most heartbeats arrive; tests/test_steady.py holds the
  two ways to the same verdicts, events, status and deadlines.

Why that is safe. Declaring a node dead is what lets a survivor take over its
resources, so it is only ever done on the slowest, most conservative evidence: silence
on every path for the full deadtime the peer itself asked for. Everything faster
(the detector, per-path states, statistics) only informs status and the link policy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hbd.core.detector import ArrivalStats, PhiAccrual
from hbd.core.errors import DropReason, LocalProtocolError
from hbd.core.events import (
    DeadtimeDiffers,
    DuplicateNode,
    Event,
    GenerationWentBack,
    LateHeartbeat,
    NodeActive,
    NodeDead,
    NodeLeft,
    NodeRestarted,
    NodeUp,
    PathDown,
    PathUp,
    UuidClash,
)
from hbd.core.states import (
    NodeInput,
    NodeState,
    PathInput,
    PathState,
    next_node_state,
    next_path_state,
)
from hbd.core.wire import Dropped
from hbd.core.wire.replay import Accepted, ReplayWindow

REPLAY_WIDTH = 256  # sequences a window remembers (Heartbeat resends within ~100)
STILL_COUNTING = 3  # an old generation this far past its last sequence is a live clone


@dataclass(frozen=True, slots=True)
class Beat:
    """One authenticated frame from a peer, as membership sees it, whatever its format.

    `status` is the sender's advertised status ("init", "up", "active") for status
    heartbeats, None for other messages (which still prove the sender alive).
    `deadtime` is the sender's advertised deadtime in seconds, None when absent.
    `source` is the sender's address on datagram paths (IP, no port), None on serial.
    """

    node: str
    path: str
    generation: int
    seq: int
    status: str | None = None
    uuid: bytes | None = None
    deadtime: float | None = None
    watchdog: float | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class PathStatus:
    """One path to one node, for status. Times in seconds; `loss` is 0..1."""

    path: str
    state: PathState
    last_heard: float | None
    last_heard_age: float | None
    mean_interval: float | None
    jitter: float
    loss: float
    received: int
    lost: int
    timeout: float  # silence after which the path is called dead now


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One peer node, for status."""

    name: str
    state: NodeState
    uuid: bytes | None
    generation: int | None
    last_heard: float | None
    last_heard_age: float | None
    deadtime: float  # the deadtime that applies to it (advertised or ours)
    watchdog: float | None  # the watchdog timeout it advertises, seconds
    paths: tuple[PathStatus, ...]


class _Path:
    __slots__ = (
        "former_heard",
        "former_source",
        "last_arrival",
        "last_heard",
        "source",
        "source_heard",
        "state",
        "stats",
        "window",
    )

    def __init__(self) -> None:
        self.state = PathState.INIT
        self.last_heard: float | None = None  # any fresh frame on this path
        self.last_arrival: float | None = None  # last status heartbeat, for intervals
        self.window = ReplayWindow(REPLAY_WIDTH)
        self.stats = ArrivalStats()
        self.source: str | None = None
        self.source_heard: float | None = None
        self.former_source: str | None = None  # the source before the last change
        self.former_heard: float | None = None  # when it was last heard


class _Node:
    __slots__ = (
        "advertised_deadtime",
        "confirmed",
        "first_claim",
        "floor",
        "generation_tops",
        "last_beat",
        "last_heard",
        "left",
        "name",
        "paths",
        "reported",
        "state",
        "status",
        "uuid",
        "watchdog",
        "window",
    )

    def __init__(self, name: str, paths: Iterable[str]) -> None:
        self.name = name
        self.state = NodeState.INIT
        self.status: str | None = None
        self.uuid: bytes | None = None
        self.advertised_deadtime: float | None = None
        self.watchdog: float | None = None
        self.last_heard: float | None = None
        self.last_beat: float | None = None  # last status heartbeat counted
        self.window = ReplayWindow(REPLAY_WIDTH)
        self.generation_tops: dict[int, int] = {}  # older generations -> highest seq seen
        self.left: int | None = None  # the generation that said goodbye (t=shutdone)
        self.paths = {p: _Path() for p in paths}
        self.first_claim = ""
        self.reported: set[str] = set()
        self.floor: tuple[int, int] | None = None  # (generation, seq) heard before our start
        self.confirmed: int | None = None  # a lower generation proven live by an echo


def _describe(beat: Beat) -> str:
    uuid = beat.uuid.hex() if beat.uuid else "-"
    where = f"via {beat.path}" + (f" from {beat.source}" if beat.source else "")
    return f"name={beat.node} uuid={uuid} generation={beat.generation} {where}"


class Membership:
    """Liveness of every peer and every path to it. See the module docstring."""

    def __init__(
        self,
        local_node: str,
        nodes: Iterable[str],
        paths: Iterable[str],
        *,
        keepalive: float,
        deadtime: float,
        warntime: float,
        initdead: float,
        now: float,
        adaptive: bool = False,
        remembered: Mapping[str, tuple[int, int]] | None = None,
        local_uuid: bytes | None = None,
    ) -> None:
        if keepalive <= 0 or deadtime <= 0 or initdead < 0 or warntime < 0:
            raise LocalProtocolError(
                f"bad timing: keepalive={keepalive} deadtime={deadtime} "
                f"warntime={warntime} initdead={initdead}"
            )
        self.local_node = local_node
        self.keepalive = keepalive
        self.deadtime = deadtime
        self.warntime = warntime
        self.initdead = initdead
        self.started = now
        self.path_ids = tuple(dict.fromkeys(paths))
        self.detector = PhiAccrual(keepalive) if adaptive else None
        self._nodes = {n: _Node(n, self.path_ids) for n in dict.fromkeys(nodes) if n != local_node}
        for name, floor in (remembered or {}).items():
            if name in self._nodes:
                self._nodes[name].floor = floor
        self._uuids: dict[bytes, str] = {}  # uuid -> first name heard with it
        self.local_uuid = local_uuid or None
        self._clashes: dict[str, str] = {}  # peer -> what claimed this node's uuid
        self._events: deque[Event] = deque()
        self._timer: float | None = None
        self._timer_stale = True  # recompute get_timer() after any change
        # goes up whenever a peer's (generation) as `remembered` gives it may have changed:
        # the engine rebuilds its snapshot of them only then (or when its interval passed)
        self.generation_changes = 0

    # -- inputs ---------------------------------------------------------------------

    def receive(self, beat: Beat, now: float) -> Dropped | bool:
        """Account for one authenticated frame: True when it is a new message, False when
        it was a copy of one already heard on another path; a Dropped says why refused."""
        if beat.node == self.local_node:
            return Dropped(DropReason.FROM_SELF, f"frame from {beat.node} (this node)")
        node = self._nodes.get(beat.node)
        if node is None:
            return Dropped(DropReason.UNKNOWN_NODE, f"node {beat.node!r} is not in ha.cf")
        path = node.paths.get(beat.path)
        if path is None:
            raise LocalProtocolError(f"unknown path id {beat.path!r}")
        current = node.window.generation
        reinstalled = (
            current is not None and beat.generation < current and self._silent_long(node, now)
        )
        went_back: tuple[int, int] | None = None
        if current is None and node.floor is not None:
            floor_gen, floor_seq = node.floor
            if beat.generation == floor_gen and beat.seq <= floor_seq:
                return Dropped(
                    DropReason.STALE,
                    f"{node.name} generation {floor_gen} seq {beat.seq} was heard before this "
                    f"node restarted (up to seq {floor_seq}): a replay",
                )
            if beat.generation < floor_gen:
                if node.confirmed != beat.generation:
                    return Dropped(
                        DropReason.UNCONFIRMED,
                        f"{node.name} generation {beat.generation} is older than generation "
                        f"{floor_gen} heard before this node restarted: a replay, or a "
                        "reinstalled node, taken once it answers a fresh echo",
                    )
                went_back = (floor_gen, beat.generation)
        if reinstalled and node.confirmed != beat.generation:
            return Dropped(
                DropReason.UNCONFIRMED,
                f"{node.name} generation {beat.generation} is older than its current "
                f"{current}, after a silence: a replay, or a reinstalled node, taken once it "
                "answers a fresh echo",
            )
        if node.left is not None and beat.generation <= node.left and not reinstalled:
            # copies of the goodbye (or anything older) still arriving on other paths
            return Dropped(
                DropReason.STALE, f"{node.name} left the cluster (generation {node.left})"
            )
        self._timer_stale = True
        if reinstalled:
            assert current is not None
            self._reincarnate(node, current, beat.generation)

        before = (node.window.generation, node.window.highest)
        if node.window.seen(beat.generation, beat.seq):
            verdict: Accepted | Dropped | None = None  # a copy: refreshes its path only
        else:
            verdict = node.window.check(beat.generation, beat.seq)
            if node.window.generation != before[0]:
                self.generation_changes += 1  # first contact, a restart or a reinstall
        if verdict is None:
            fresh = False
        elif isinstance(verdict, Dropped):
            if verdict.reason is DropReason.STALE:
                self._check_old_generation(node, beat)
                return verdict
            fresh = False  # the same message came over another path first: refresh only
        else:
            fresh = True
        on_path = path.window.check(beat.generation, beat.seq)
        if isinstance(on_path, Dropped):
            return on_path  # the same copy twice on one path: a replay

        self._check_claims(node, path, beat, now)
        node.floor = None
        if went_back is not None:
            self._events.append(GenerationWentBack(node.name, *went_back))
        if isinstance(verdict, Accepted) and verdict.restarted:
            old_generation, old_top = before
            assert old_generation is not None and old_top is not None
            node.generation_tops[old_generation] = old_top
            node.last_beat = None
            self._events.append(NodeRestarted(node.name, old_generation, beat.generation))

        self._refresh_path(node, path, beat, on_path, now)
        if fresh:
            self._refresh_node(node, beat, now)
        return fresh

    def receive_steady(
        self,
        name: str,
        path_id: str,
        generation: int,
        seq: int,
        status: str,
        deadtime: float | None,
        watchdog: float | None,
        source: str | None,
        now: float,
        uuid: bytes | None = None,
    ) -> bool | None:
        """A status heartbeat that can change nothing but freshness, handled as `receive`
        would handle it -- or None, having changed nothing, when it could change more:
        then it must go through `receive`. True: a new message; False: a copy.

        Steady means: `name` is up or active as the heartbeat's `status` keeps it, in the
        heartbeat's generation, with no goodbye, replay floor or first claim pending;
        `path_id` is up and carried that generation's frames in order up to below `seq`,
        from `source`; the advertised `deadtime` and `watchdog` (None: not advertised) are
        the ones already known, and so is its `uuid` (a Heartbeat-format frame's), under
        no other name and not this node's own; a new message is not late (no LateHeartbeat).
        Every branch `receive` would take for such a heartbeat is here, in the same
        order, and nothing else (tests/test_steady.py compares the two)."""
        node = self._nodes[name]
        path = node.paths.get(path_id)
        if path is None:
            raise LocalProtocolError(f"unknown path id {path_id!r}")
        window, on_path = node.window, path.window
        state = node.state
        steady = (
            path.state is PathState.UP
            and (state is NodeState.ACTIVE if status == "active" else state is NodeState.UP)
            and node.status == status
            and node.left is None
            and node.floor is None
            and node.first_claim
            and window.generation == generation
            and on_path.ahead(generation, seq)
            and (source is None or source == path.source)
            and (deadtime is None or deadtime == node.advertised_deadtime)
            and (watchdog is None or watchdog == node.watchdog)
            and (
                not uuid
                or (
                    uuid == node.uuid
                    and uuid != self.local_uuid
                    and name not in self._clashes
                    and self._uuids.get(uuid) == name
                )
            )
        )
        if not steady:
            return None
        fresh = window.ahead(generation, seq)
        if not fresh and not window.seen(generation, seq):
            return None  # late, or below the window: `receive` tells which
        last_beat = node.last_beat
        if fresh and last_beat is not None and now - last_beat > self.warntime:
            return None  # a LateHeartbeat to report
        self._timer_stale = True
        gap = on_path.advance(seq)
        if fresh:
            window.advance(seq)
        if source is not None:
            path.source_heard = now
        path.stats.observe_frame(gap)
        if path.last_arrival is not None:
            path.stats.observe_interval(now - path.last_arrival)
        path.last_arrival = path.last_heard = now
        if fresh:
            node.last_beat = node.last_heard = now
        return fresh

    def needs_confirming(self, name: str, generation: int) -> bool:
        """Whether frames of `name` in `generation` wait for a fresh echo answer."""
        node = self._node(name)
        return node.confirmed != generation

    def confirm(self, name: str, generation: int) -> None:
        """`name` answered, in `generation`, a nonce the engine just sent: that generation
        is a live incarnation, not a recording (see the module docstring)."""
        self._node(name).confirmed = generation
        self._timer_stale = True

    def remembered(self, name: str) -> tuple[int, int] | None:
        """(generation, highest seq) of `name` to keep across our restart: the newest
        heard since we started, else what was remembered from before."""
        node = self._node(name)
        newest = self.newest_heard(name)
        return newest if newest is not None else node.floor

    def _silent_long(self, node: _Node, now: float) -> bool:
        """Silent for its whole deadtime (or never heard): its old incarnation is gone."""
        if node.state is NodeState.DEAD or node.last_heard is None:
            return True
        return now - node.last_heard >= self._node_deadtime(node)

    def _reincarnate(self, node: _Node, old: int, new: int) -> None:
        """Forget the old incarnation's windows: `new` < `old` starts over."""
        if node.window.highest is not None:
            node.generation_tops[old] = node.window.highest
        node.window = ReplayWindow(REPLAY_WIDTH)
        for path in node.paths.values():
            path.window = ReplayWindow(REPLAY_WIDTH)
        node.left = None
        node.last_beat = None
        self._events.append(GenerationWentBack(node.name, old, new))
        self._events.append(NodeRestarted(node.name, old, new))

    def reconfigure(
        self,
        paths: Iterable[str],
        *,
        keepalive: float,
        deadtime: float,
        warntime: float,
        initdead: float,
        adaptive: bool,
    ) -> None:
        """A reload: paths added (state init) or removed, new timings; every node's state,
        windows and history are kept."""
        if keepalive <= 0 or deadtime <= 0 or initdead < 0 or warntime < 0:
            raise LocalProtocolError(
                f"bad timing: keepalive={keepalive} deadtime={deadtime} "
                f"warntime={warntime} initdead={initdead}"
            )
        self.path_ids = tuple(dict.fromkeys(paths))
        for node in self._nodes.values():
            node.paths = {p: node.paths.get(p) or _Path() for p in self.path_ids}
        if adaptive and (self.detector is None or keepalive != self.keepalive):
            self.detector = PhiAccrual(keepalive)
        elif not adaptive:
            self.detector = None
        self.keepalive, self.deadtime, self.warntime = keepalive, deadtime, warntime
        self.initdead = initdead
        self._timer_stale = True

    def leave(self, name: str, now: float) -> None:
        """`name` said it is leaving (after its message was accepted by `receive`): every
        path to it and the node itself are dead now."""
        node = self._nodes.get(name)
        if node is None or node.state is NodeState.DEAD:
            return
        self._timer_stale = True
        node.left = node.window.generation
        self._events.append(NodeLeft(name))
        for pid, path in node.paths.items():
            if path.state is PathState.UP:
                path.state = next_path_state(path.state, PathInput.SILENT)  # UP -> DEAD
                silent = now - path.last_heard if path.last_heard is not None else 0.0
                self._events.append(PathDown(name, pid, silent, True))
        node.state = next_node_state(node.state, NodeInput.SILENT)  # UP/ACTIVE -> DEAD
        self._events.append(NodeDead(name, node.last_heard, 0.0))

    def handle_timer(self, now: float) -> None:
        """Let every deadline at or before `now` pass: paths first, then nodes."""
        self._timer_stale = True
        for node in self._nodes.values():
            for pid, path in node.paths.items():
                if path.state is PathState.DEAD:
                    continue
                deadline = self._path_deadline(node, path)
                if now >= deadline:
                    was = path.state
                    path.state = next_path_state(path.state, PathInput.SILENT)
                    if was is PathState.UP:
                        assert path.last_heard is not None
                        silent = now - path.last_heard
                        early = silent < self._node_deadtime(node) - 1e-9
                        self._events.append(PathDown(node.name, pid, silent, early))
            if node.state is not NodeState.DEAD and now >= self._node_deadline(node):
                node.state = next_node_state(node.state, NodeInput.SILENT)
                timeout = self.initdead if node.last_heard is None else self._node_deadtime(node)
                self._events.append(NodeDead(node.name, node.last_heard, timeout))

    # -- outputs --------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline still to come, or None when nothing is pending."""
        if not self._timer_stale:
            return self._timer
        earliest: float | None = None
        for node in self._nodes.values():
            deadtime = self._node_deadtime(node)
            if node.state is not NodeState.DEAD:
                t = self._node_deadline(node, deadtime)
                if earliest is None or t < earliest:
                    earliest = t
            for p in node.paths.values():
                if p.state is not PathState.DEAD:
                    t = self._path_deadline(node, p, deadtime)
                    if earliest is None or t < earliest:
                        earliest = t
        self._timer = earliest
        self._timer_stale = False
        return self._timer

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- status ---------------------------------------------------------------------

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(self._nodes)

    def node_state(self, name: str) -> NodeState:
        return self._node(name).state

    def path_state(self, name: str, path: str) -> PathState:
        return self._node(name).paths[path].state

    def all_heard_or_dead(self) -> bool:
        """Every peer heard at least once or declared dead (Heartbeat's check_comm_isup)."""
        return all(
            n.last_heard is not None or n.state is NodeState.DEAD for n in self._nodes.values()
        )

    def newest_heard(self, name: str) -> tuple[int, int] | None:
        """(generation, highest sequence) accepted from `name`, None before its first frame."""
        window = self._node(name).window
        if window.generation is None or window.highest is None:
            return None
        return window.generation, window.highest

    def last_heard(self, name: str) -> float | None:
        """When `name` was last heard on any path (None: not since this node started)."""
        return self._node(name).last_heard

    def has_left(self, name: str) -> bool:
        """`name`'s current incarnation said goodbye (and has not come back since). A
        goodbye belongs to the generation that said it: a peer that stopped cleanly, started
        again and then went silent did not say goodbye this time."""
        node = self._node(name)
        return (
            node.left is not None
            and node.left == node.window.generation
            and node.state is NodeState.DEAD
        )

    def addresses_of(self, name: str, paths: Iterable[str]) -> tuple[str, ...]:
        """The source addresses `name`'s frames came from on `paths` (the datagram ones:
        a serial path's "source" is a device, no address)."""
        node = self._node(name)
        sources = (node.paths[p].source for p in paths if p in node.paths)
        return tuple(dict.fromkeys(s for s in sources if s))

    def uuid_of(self, name: str) -> bytes | None:
        """The uuid `name` last advertised, None if it never did."""
        return self._node(name).uuid

    def live_nodes(self) -> tuple[str, ...]:
        return tuple(
            n.name for n in self._nodes.values() if n.state in (NodeState.UP, NodeState.ACTIVE)
        )

    def status(self, now: float) -> tuple[NodeStatus, ...]:
        """A snapshot of every peer and path, for `hbctl status`."""
        return tuple(self._node_status(n, now) for n in self._nodes.values())

    def node_status(self, name: str, now: float) -> NodeStatus:
        return self._node_status(self._node(name), now)

    # -- internals ------------------------------------------------------------------

    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise LocalProtocolError(f"no peer node {name!r}") from None

    def _node_status(self, node: _Node, now: float) -> NodeStatus:
        paths = tuple(
            PathStatus(
                path=pid,
                state=p.state,
                last_heard=p.last_heard,
                last_heard_age=None if p.last_heard is None else now - p.last_heard,
                mean_interval=p.stats.mean,
                jitter=p.stats.jitter,
                loss=p.stats.loss,
                received=p.stats.received,
                lost=p.stats.lost,
                timeout=self._path_timeout(node, p),
            )
            for pid, p in node.paths.items()
        )
        return NodeStatus(
            name=node.name,
            state=node.state,
            uuid=node.uuid,
            generation=node.window.generation,
            last_heard=node.last_heard,
            last_heard_age=None if node.last_heard is None else now - node.last_heard,
            deadtime=self._node_deadtime(node),
            watchdog=node.watchdog,
            paths=paths,
        )

    def _node_deadtime(self, node: _Node) -> float:
        dt = node.advertised_deadtime
        return dt if dt is not None and dt > 0 else self.deadtime

    def _node_deadline(self, node: _Node, deadtime: float | None = None) -> float:
        """`deadtime`: the node's (`_node_deadtime`), when the caller has it already."""
        if node.last_heard is None:
            return self.started + self.initdead
        return node.last_heard + (self._node_deadtime(node) if deadtime is None else deadtime)

    def _path_timeout(self, node: _Node, path: _Path, deadtime: float | None = None) -> float:
        if deadtime is None:
            deadtime = self._node_deadtime(node)
        if self.detector is None:
            return deadtime
        return self.detector.timeout(path.stats, deadtime)

    def _path_deadline(self, node: _Node, path: _Path, deadtime: float | None = None) -> float:
        if deadtime is None:
            deadtime = self._node_deadtime(node)
        if path.last_heard is None:
            # never carried the node: dead once the node's own first-contact window passed
            start = self.started + self.initdead
            if node.last_heard is not None:
                return max(start, node.last_heard + deadtime)
            return start
        return path.last_heard + self._path_timeout(node, path, deadtime)

    def _refresh_path(
        self, node: _Node, path: _Path, beat: Beat, on_path: Accepted, now: float
    ) -> None:
        if not on_path.first and not on_path.restarted:
            path.stats.observe_frame(on_path.gap)
        else:
            path.stats.observe_frame(0)
        if beat.status is not None:
            if path.last_arrival is not None and path.state is PathState.UP:
                path.stats.observe_interval(now - path.last_arrival)
            path.last_arrival = now
        path.last_heard = now
        was = path.state
        path.state = next_path_state(was, PathInput.HEARD)
        if was is not PathState.UP:
            self._events.append(PathUp(node.name, beat.path))

    def _refresh_node(self, node: _Node, beat: Beat, now: float) -> None:
        if beat.deadtime is not None and beat.deadtime != node.advertised_deadtime:
            node.advertised_deadtime = beat.deadtime
            if beat.deadtime > 0 and abs(beat.deadtime - self.deadtime) > 0.0005:
                self._events.append(DeadtimeDiffers(node.name, beat.deadtime, self.deadtime))
        if beat.watchdog is not None:
            node.watchdog = beat.watchdog
        if beat.uuid:
            node.uuid = beat.uuid
            self._uuids.setdefault(beat.uuid, node.name)
        if beat.status is not None:
            node.status = beat.status
            if (
                node.last_beat is not None
                and node.state in (NodeState.UP, NodeState.ACTIVE)
                and now - node.last_beat > self.warntime
            ):
                interval = round((now - node.last_beat) * 1000)
                self._events.append(LateHeartbeat(node.name, beat.path, interval))
            node.last_beat = now
        node.last_heard = now
        was = node.state
        heard = NodeInput.HEARD_ACTIVE if node.status == "active" else NodeInput.HEARD_UP
        node.state = next_node_state(was, heard)
        if was in (NodeState.INIT, NodeState.DEAD):
            self._events.append(NodeUp(node.name, node.state.value, beat.generation, beat.path))
        if node.state is NodeState.ACTIVE and was is not NodeState.ACTIVE:
            self._events.append(NodeActive(node.name))

    def _report(self, node: _Node, key: str, first: str, second: str, detail: str) -> None:
        if key in node.reported:
            return
        node.reported.add(key)
        self._events.append(DuplicateNode(node.name, first, second, detail))

    def uuid_clashes(self) -> dict[str, str]:
        """Peers whose latest uuid is this node's own: peer -> what was heard."""
        return dict(self._clashes)

    def _check_claims(self, node: _Node, path: _Path, beat: Beat, now: float) -> None:
        # every copy of every frame comes here: what it claims is put in words only when
        # a claim is kept or reported (`_describe(beat)` below), never for the rest
        if not node.first_claim:
            node.first_claim = _describe(beat)
        if beat.uuid and self.local_uuid is not None:
            if beat.uuid == self.local_uuid and node.name not in self._clashes:
                self._clashes[node.name] = _describe(beat)
                self._events.append(UuidClash(node.name, _describe(beat), beat.uuid))
            elif beat.uuid != self.local_uuid and node.name in self._clashes:
                del self._clashes[node.name]
                self._events.append(UuidClash(node.name, _describe(beat), beat.uuid, fixed=True))
        alive = node.state in (NodeState.UP, NodeState.ACTIVE)
        if beat.uuid and node.uuid and beat.uuid != node.uuid and alive:
            self._report(
                node,
                f"uuids:{sorted((node.uuid.hex(), beat.uuid.hex()))}",
                node.first_claim,
                _describe(beat),
                f"node name {node.name} claimed with two uuids",
            )
        if beat.uuid:
            other = self._uuids.get(beat.uuid)
            if other is not None and other != node.name:
                first = self._nodes[other].first_claim
                self._report(
                    node,
                    f"names:{other}",
                    first,
                    _describe(beat),
                    f"uuid {beat.uuid.hex()} claimed by nodes {other} and {node.name}",
                )
        if beat.source is not None and beat.source != path.source:
            # A host's source address may change once (an IPv6 link-local address that
            # finishes its DAD, a service address added to the interface, a DHCP lease):
            # that is one sender. Two senders under one name alternate: the source goes
            # back to the one it left within a deadtime.
            if (
                beat.source == path.former_source
                and path.former_heard is not None
                and now - path.former_heard < self._node_deadtime(node)
            ):
                self._report(
                    node,
                    f"sources:{sorted((path.source or '', beat.source))}",
                    f"name={node.name} via {beat.path} from {path.source}",
                    _describe(beat),
                    f"node {node.name} heard from two addresses on {beat.path}, in turn",
                )
            path.former_source, path.former_heard = path.source, path.source_heard
        if beat.source is not None:
            path.source = beat.source
            path.source_heard = now

    def _check_old_generation(self, node: _Node, beat: Beat) -> None:
        top = node.generation_tops.get(beat.generation)
        if top is None or beat.seq <= top + STILL_COUNTING:
            return
        current = node.window.generation
        self._report(
            node,
            f"generations:{beat.generation}",
            f"name={node.name} generation={current} (current)",
            _describe(beat),
            f"node {node.name}: generation {beat.generation} still sending after "
            f"generation {current} started",
        )
