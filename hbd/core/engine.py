"""The sans-I/O engine for one node: wire codecs and membership behind one object.

After aioquic's `QuicConnection`: one method per input (`receive_frame`, `handle_timer`),
`get_timer()` says when to call `handle_timer` next, `frames_to_send(now)` hands over the
frames to write (path id, bytes) and `next_event()` the events, in order. No callbacks,
no clock: `now` is monotonic seconds from the caller.

Every keepalive it sends one heartbeat on every path in the configured format (hbd
native frames, or Heartbeat's: classic text on serial, netstring on UDP); one sequence
number per message, the same on every path, so receivers count it once. On receive it
accepts hbd's format on every path, and Heartbeat's with `wire heartbeat` or when
`accept_heartbeat` says so (`receive.py`), verifies, and drops with a reason
(a `FrameDropped` event) anything forged, garbled, replayed, from an unknown node or
from itself. See `membership.py` for what is decided from what arrives.

A native heartbeat that repeats, byte for byte, what the path's last one said of its
sender (same key, generation, state, advertised timings and path hash) takes a short way
(`_receive_steady`): its signature is verified and its sequence and acknowledgements are
taken as the whole way takes them, and nothing else is asked, since nothing else can
change. Anything else, or anything membership finds not steady, goes the whole way.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hbd.core import acks
from hbd.core.auth import AuthEntry, AuthKeys
from hbd.core.errors import DropReason, LocalProtocolError
from hbd.core.events import (
    AdvertReceived,
    Event,
    FrameDropped,
    LocalActive,
    MessageReceived,
    NodeDead,
    NodeRestarted,
)
from hbd.core.membership import Beat, Membership, NodeStatus
from hbd.core.model import WireFormat
from hbd.core.receive import FrameFormat, Segment, SerialDemux, classify_datagram
from hbd.core.states import LocalState, PathState
from hbd.core.wire import Dropped
from hbd.core.wire import ha_control as ctl
from hbd.core.wire import heartbeat as hb
from hbd.core.wire import native as nat


class PathKind(enum.Enum):
    """How a path carries bytes: a serial stream, or one frame per datagram."""

    SERIAL = "serial"
    DATAGRAM = "datagram"


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Everything an engine needs, as plain values (the shell builds them from the config).

    `paths` maps each path id (as `Medium.path_id`) to `PathKind.SERIAL` or
    `PathKind.DATAGRAM`. Times are seconds. `uuid` is this node's 16-byte uuid,
    `generation` goes up at every start (Heartbeat's `hg`). `cluster_id` is for native
    frames (`hbd.core.wire.native.cluster_id(nodes, udpport)`). `watchdog_timeout` is
    advertised in every heartbeat (None: no watchdog).
    """

    node: str
    uuid: bytes
    generation: int
    nodes: tuple[str, ...]
    paths: tuple[tuple[str, PathKind], ...]
    auth: AuthKeys = field(repr=False)
    keepalive: float = 1.0
    deadtime: float = 30.0
    warntime: float = 10.0
    initdead: float = 60.0
    wire: WireFormat = WireFormat.HEARTBEAT
    cluster_id: int = 0
    watchdog_timeout: float | None = None
    adaptive_detector: bool = False
    wall_offset: float = 0.0  # wall-clock seconds minus `now`: Heartbeat's `ts` field
    # Heartbeat-format frames accepted (ha.cf `wire_accept`); None: only with wire heartbeat
    accept_heartbeat: bool | None = None
    max_rexmit_delay: float = 0.25  # a message is resent at most this often (Heartbeat's)
    # (peer, generation, highest seq) heard before this node started: the state directory's
    peer_generations: tuple[tuple[str, int, int], ...] = ()

    @property
    def heartbeat_frames(self) -> bool:
        """Whether Heartbeat-format frames are accepted: with `wire heartbeat` always, with
        `wire hbd` only when the operator said a peer still sends them (`wire_accept`)."""
        if self.accept_heartbeat is None:
            return self.wire is WireFormat.HEARTBEAT
        return self.accept_heartbeat

    def __post_init__(self) -> None:
        if self.node not in self.nodes:
            raise LocalProtocolError(f"local node {self.node!r} is not in the node list")
        ids = [p for p, _ in self.paths]
        if len(set(ids)) != len(ids):
            raise LocalProtocolError(f"duplicate path ids in {ids}")
        for pid, kind in self.paths:
            if not isinstance(kind, PathKind):
                raise LocalProtocolError(f"path {pid}: kind {kind!r} is not serial or datagram")
        if not 0 <= self.generation <= 0xFFFFFFFF:
            raise LocalProtocolError(f"generation {self.generation} out of range")
        if not (0 < self.keepalive < self.deadtime and math.isfinite(self.deadtime)):
            raise LocalProtocolError(
                f"keepalive {self.keepalive} must be positive and below deadtime {self.deadtime}"
            )


_NATIVE_STATUS = {
    nat.NodeState.INIT: "init",
    nat.NodeState.UP: "up",
    nat.NodeState.ACTIVE: "active",
    nat.NodeState.STANDBY: "active",
    nat.NodeState.LEAVING: "up",
    nat.NodeState.DEAD: "up",
}


HISTORY = 200  # sequenced messages kept for NS_rexmit, as Heartbeat's history
MAX_REXMIT = 32  # sequences one rexmit request or answer covers at most
REXMIT_PATIENCE = 5.0  # seconds a missing message holds back our acks
REQNODES_RETRY = 1.0  # Heartbeat asks again every second


@dataclass(slots=True)
class _Kept:
    """A sequenced message kept for retransmission, and the frames it went out as."""

    msg: hb.HaMessage
    auth: AuthEntry  # the key entry the frames were signed with
    classic: bytes | None = None
    netstring: bytes | None = None


# a changed advert goes at once, and so does an unchanged one when a peer may lack it (it
# restarted, or heard nothing of us for a while, or starts counting us alive again); then
# it is repeated, always with a heartbeat (no wake-up of its own, and the peer reads both
# frames in one turn), the first repeat at least ADVERT_INTERVAL - keepalive/2 after it,
# each next one twice as late, up to ADVERT_REPEAT_MAX: a lost copy is made good within
# about a second, and an idle cluster does not send (nor read) the same bytes every beat
ADVERT_INTERVAL = 1.0
ADVERT_REPEAT_MAX = 16.0
BEAT_MARGIN = 0.1  # of a keepalive: how late a heartbeat sent behind a peer's may be, once
VERIFIED_KEPT = 8  # Heartbeat-format frames remembered as verified, for their copies


def _serial_and_datagram(paths: dict[str, PathKind]) -> bool:
    """Paths of both kinds: a Heartbeat-format message comes in both formats."""
    kinds = set(paths.values())
    return PathKind.SERIAL in kinds and PathKind.DATAGRAM in kinds


@dataclass(frozen=True, slots=True)
class _Verified:
    """A Heartbeat-format frame verified and parsed once, for the copies of it that
    arrive on the other paths."""

    msg: hb.HaMessage
    origin: ctl.HaOrigin | None  # None: no src/ts/seq/hg (dropped as MALFORMED)
    mtype: str
    status: ctl.HaStatus | None  # a `t=status` heartbeat's fields

    @classmethod
    def of(cls, msg: hb.HaMessage) -> _Verified:
        origin = ctl.parse_origin(msg)
        mtype = msg.get("t") or ""
        status = ctl.parse_status(msg, origin) if mtype == "status" else None
        return cls(msg, origin, mtype, status)


# a round-trip probe on every datagram path this often, always right behind a heartbeat (no
# wake-up of its own: the peer reads it with the heartbeat and answers in the turn its own
# heartbeat goes in)...
ECHO_INTERVAL = 5.0
SERIAL_ECHO_EVERY = 4  # ...and on serial paths every fourth time (a slow line's bytes count)
GENERATIONS_SAVE_INTERVAL = 60.0  # seconds between saves of the peers' newest sequences
ECHOES_REMEMBERED = 16  # nonces answered, per peer and path, refused if they come again
RTT_WEIGHT = 0.25  # weight of a new sample in the smoothed round-trip time
SENT_KEPT = 4096  # send times kept for acknowledgements (minutes at 10 heartbeats a second)
# What NS_rexmit requests of one peer may make us send: a bucket of messages (each resent
# or naked on every path), full at first and refilled with time. NS_* messages carry no
# seq, so a captured request can be replayed at will: whatever the replay rate, the answers
# stay within REXMIT_RATE messages a second after one burst of REXMIT_BURST (one full
# answer). Lost messages asked for once are resent at once. One request, or one timer
# turn, answers at most REXMIT_PER_TURN of them; the rest are owed and answered on turns
# REXMIT_SPACING apart, so no input costs more than a few frames' encoding.
REXMIT_BURST = MAX_REXMIT
REXMIT_RATE = 8.0
REXMIT_PER_TURN = 8
REXMIT_SPACING = 0.05


@dataclass(frozen=True, slots=True)
class Contact:
    """What this node knows of one peer's hearing of it (from the peer's acknowledgements,
    `hbd.core.acks`).

    `acks`: the peer acknowledges (an hbd node; Heartbeat does not). `acked_until`: the
    send time of our newest message the peer has, or, for a peer incarnation that has not
    acknowledged anything yet, when we first heard that incarnation (it cannot count us dead
    sooner than a deadtime after it started). None: never heard. `ack_frame_at`: when the
    peer's latest acknowledging heartbeat arrived."""

    acks: bool
    acked_until: float | None
    ack_frame_at: float | None
    back_at: float | None = None  # when its frames started arriving again after a silence
    listed: bool = False  # its latest heartbeat lists us: it counts us alive
    probed: bool = False  # it counts us dead, but our addresses answer its probes


@dataclass(slots=True)
class _Contact:
    acks: bool = False
    generation: int | None = None
    acked_until: float | None = None
    ack_frame_at: float | None = None
    last_frame: float | None = None
    back_at: float | None = None
    listed: bool = False
    probed: bool = False


@dataclass(frozen=True, slots=True)
class _Steady:
    """A path's latest native heartbeat that went the whole way, by the bytes its peer's
    next heartbeats on that path repeat while nothing changes: `head`, bytes 0..16 (magic,
    version, kind and sender state, key index, cluster id, node id, generation), and
    `tail`, bytes 20..28 (advertised deadtime and watchdog timeout, path hash). What those
    bytes said is kept beside them, decoded. See `Engine._receive_steady`."""

    head: bytes
    tail: bytes
    signed: Callable[[bytes], bool]  # by the authkeys entry the head names
    node: str
    generation: int
    status: str
    deadtime: float | None
    watchdog: float | None
    path_hash: int


@dataclass(slots=True)
class _AckTrack:
    generation: int = -1
    highest: int = 0
    missing: dict[int, float] = field(default_factory=dict)  # seq -> when noticed


class Engine:
    """One node's protocol state: feed it inputs, collect frames and events."""

    # heartbeats that change nothing but freshness take `_receive_steady`'s short way;
    # tests switch it off to compare whole runs both ways (tests/test_steady.py)
    TAKE_STEADY = True

    def __init__(self, settings: EngineSettings, now: float) -> None:
        self.settings = settings
        self._paths = dict(settings.paths)
        self._demux = {
            pid: SerialDemux() for pid, kind in settings.paths if kind is PathKind.SERIAL
        }
        self._both_formats = _serial_and_datagram(self._paths)
        self.membership = Membership(
            settings.node,
            settings.nodes,
            self._paths,
            keepalive=settings.keepalive,
            deadtime=settings.deadtime,
            warntime=settings.warntime,
            initdead=settings.initdead,
            now=now,
            adaptive=settings.adaptive_detector,
            remembered={n: (g, q) for n, g, q in settings.peer_generations},
            local_uuid=settings.uuid,
        )
        self._by_id: dict[int, str] = {}
        for name in settings.nodes:
            nid = nat.node_id(name)
            if nid in self._by_id and self._by_id[nid].lower() != name.lower():
                raise LocalProtocolError(f"nodes {self._by_id[nid]} and {name} share a node id")
            self._by_id[nid] = name
        self._my_id = nat.node_id(settings.node)
        self._local = LocalState.UP
        self._seq = 0
        self._next_beat = now
        self._beat_behind = False  # the next heartbeat goes right behind a peer's
        # heartbeats sent so far: what else is periodic and may wait a keepalive (the
        # node's slow probes) goes in a turn this moved in, instead of waking one
        self.beats_sent = 0
        self._out: list[tuple[str, bytes]] = []
        self._events: deque[Event] = deque()
        self._advert: bytes | None = None  # ours, as last set by the policy
        self._advert_due: float | None = None  # a changed advert: when it goes (at once)
        self._advert_repeat_at: float | None = None  # the unchanged one, with a heartbeat
        self._advert_gap = ADVERT_INTERVAL  # from the copy just sent to its repeat
        self._adverts: dict[str, bytes] = {}  # the latest from each live peer
        self._last_words: dict[str, bytes] = {}  # the last advert of a peer now dead
        self._leaving = False
        self._next_echo = now + ECHO_INTERVAL  # nobody can answer before the first beats
        self._nonces = 0  # echo nonces drawn (see `_fresh_nonce`)
        self._challenges: dict[str, tuple[int, int, float]] = {}  # peer -> (nonce, gen, at)
        self._generations_saved: tuple[tuple[str, int, int], ...] | None = None
        self._generations_saved_at = now
        self._generation_changes_seen = -1  # the first call builds the snapshot
        self._peer_went = False  # a peer died or left since the generations were saved
        self._echo_round = 0
        self._echo_out: dict[str, tuple[int, float]] = {}  # path -> (nonce, sent at)
        self._rtt: dict[tuple[str, str], float] = {}  # (node, path) -> smoothed seconds
        self._hbd_peers: set[str] = set()  # peers whose Heartbeat-format status says "hbd"
        self._heartbeat_peers: set[str] = set()  # peers whose latest status says "not hbd"
        # answer a Heartbeat peer's t=starting with "none, stable" (a node with no groups);
        # a node with groups leaves the resource protocol to hbd.core.hbresources
        self.answers_starting = True
        self._by_name = {n.lower(): n for n in settings.nodes}
        self._reqnodes_at: float | None = None  # when we last asked for the node list
        # our sequenced Heartbeat messages, with the frames they were sent as (under the
        # active key: a retransmission re-sends those bytes instead of encoding and signing
        # again; a reload that changes the key drops them)
        self._history: dict[int, _Kept] = {}
        self._acks: dict[str, _AckTrack] = {}
        self._sent_at: dict[int, float] = {}  # our sequence -> when sent
        self._sorted = tuple(sorted(settings.nodes))
        self._my_index = self._sorted.index(settings.node)
        self._contacts: dict[str, _Contact] = {n: _Contact() for n in settings.nodes}
        self.contact_changes = 0  # goes up whenever what `contact()` gives may have changed
        self._answering: frozenset[str] = frozenset()
        self._ack_trigger = {n: nat.node_id(n) % 10 for n in settings.nodes}
        self._resent_at: dict[tuple[str, int], float] = {}  # (peer, seq) -> last resent
        # the sender's path hash each of our paths carries from each peer, and back
        self._path_hash: dict[tuple[str, str], int] = {}  # (peer, our path) -> its hash
        self._hash_path: dict[tuple[str, int], str] = {}  # (peer, its hash) -> our path
        # echoes answered, per (peer, path): (its generation, recent nonces, last answer)
        self._echoes_answered: dict[tuple[str, str], tuple[int, deque[int], float]] = {}
        self._rexmit_budget: dict[str, tuple[float, float]] = {}  # peer -> (messages, at)
        # sequences asked for and not yet answered: peer -> (its generation, seqs in order)
        self._rexmit_owed: dict[str, tuple[int, list[int]]] = {}
        self._rexmit_due: float | None = None  # when the owed answers are next paid
        # the Heartbeat-format frames last verified, by their bytes (see _receive_heartbeat)
        self._verified: dict[bytes, _Verified] = {}
        # per path, the native heartbeat its peer's next ones repeat (see _receive_steady)
        self._steady: dict[str, _Steady] = {}
        # per datagram path, the last Heartbeat-format status heartbeat of each sender read
        # the whole way, newest first: the next one like it is read without a parse
        # (hb.NetstringTemplate); at most one per node of ha.cf (`_hb_template_read`)
        self._hb_templates: dict[str, list[hb.NetstringTemplate]] = {}

    # -- inputs ---------------------------------------------------------------------

    def receive_frame(
        self, path_id: str, data: bytes, now: float, source: str | None = None
    ) -> bool:
        """Bytes read from `path_id` (a datagram, or a chunk of a serial stream). True: a
        datagram heartbeat that took the short way (`_receive_steady`), which changed
        nothing but freshness and the peer's acknowledgements: no event came of it."""
        demux = self._demux.get(path_id)
        if demux is None:  # a datagram: one frame
            steady = self._steady.get(path_id)
            if steady is not None and self._receive_steady(steady, path_id, data, now, source):
                return True  # a heartbeat that changes nothing but freshness
            if path_id not in self._paths:
                raise LocalProtocolError(f"unknown path id {path_id!r}")
        pieces = demux.feed(data) if demux is not None else [classify_datagram(data)]
        for piece in pieces:
            if isinstance(piece, Dropped):
                self._drop(path_id, piece, source)
            else:
                self._receive_segment(path_id, piece, now, source)
            self._collect()
            self._maybe_activate(now)
        return False

    def handle_timer(self, now: float) -> None:
        """Let every deadline at or before `now` pass (call at `get_timer()`)."""
        self.membership.handle_timer(now)
        self._collect()
        self._maybe_activate(now)
        if self._rexmit_due is not None and now >= self._rexmit_due:
            self._pay_rexmit(now)
        if now >= self._next_beat:
            self._send_heartbeat(now)

    def reconfigure(self, settings: EngineSettings, now: float) -> None:
        """A reload: new paths, timings, keys or wire format, keeping the incarnation
        (generation, sequence), membership and adverts, so peers notice nothing but what
        changed. The node, its uuid and the node list cannot change here."""
        old = self.settings
        if (settings.node, settings.nodes, settings.uuid) != (old.node, old.nodes, old.uuid):
            raise LocalProtocolError("the node name, uuid or node list changed: restart instead")
        self.settings = dataclasses.replace(settings, generation=old.generation)
        self._paths = dict(settings.paths)
        self._demux = {
            pid: self._demux.get(pid) or SerialDemux()
            for pid, kind in settings.paths
            if kind is PathKind.SERIAL
        }
        self._both_formats = _serial_and_datagram(self._paths)
        self.membership.reconfigure(
            self._paths,
            keepalive=settings.keepalive,
            deadtime=settings.deadtime,
            warntime=settings.warntime,
            initdead=settings.initdead,
            adaptive=settings.adaptive_detector,
        )
        self._echo_out = {p: v for p, v in self._echo_out.items() if p in self._paths}
        self._verified.clear()  # verified with the keys of before
        self._steady.clear()  # and so were these
        self._hb_templates.clear()
        self._next_beat = min(self._next_beat, now + settings.keepalive)

    # -- outputs --------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When `handle_timer` should next be called: never None while running (after
        `leave()` only membership's deadlines are left)."""
        if self._leaving:
            return self.membership.get_timer()
        deadlines = [self._next_beat]
        if self._reqnodes_at is not None and self._local is LocalState.UP:
            deadlines.append(self._reqnodes_at + REQNODES_RETRY)
        m = self.membership.get_timer()
        if m is not None:
            deadlines.append(m)
        if self._advert_due is not None:
            deadlines.append(self._advert_due)
        if self._rexmit_due is not None:
            deadlines.append(self._rexmit_due)
        return min(deadlines)

    def frames_to_send(self, now: float) -> list[tuple[str, bytes]]:
        """Frames to write now, as (path id, bytes); a heartbeat when one is due."""
        if self._leaving:  # said goodbye: only what is already queued goes out
            out, self._out = self._out, []
            return out
        if now >= self._next_beat:
            self._send_heartbeat(now)
        if self._advert_due is not None and now >= self._advert_due:
            self._send_advert(now)
        out, self._out = self._out, []
        return out

    def _advert_repeat_due(self, now: float) -> bool:
        return self._advert_repeat_at is not None and now >= self._advert_repeat_at

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- status ---------------------------------------------------------------------

    @property
    def node(self) -> str:
        return self.settings.node

    @property
    def local_state(self) -> LocalState:
        return self._local

    @property
    def generation(self) -> int:
        return self.settings.generation

    @property
    def newest_sent(self) -> int:
        """The sequence number of our newest sequenced message (0 before the first)."""
        return self._seq

    @property
    def path_ids(self) -> tuple[str, ...]:
        return tuple(self._paths)

    def nodes_status(self, now: float) -> tuple[NodeStatus, ...]:
        """Every peer with its paths, for `hbctl status`."""
        return self.membership.status(now)

    def node_status(self, name: str, now: float) -> NodeStatus:
        return self.membership.node_status(name, now)

    # -- internals ------------------------------------------------------------------

    def _drop(self, path: str, d: Dropped, source: str | None) -> None:
        self._events.append(FrameDropped(path, d.reason, d.detail, source))

    def _collect(self) -> None:
        while (e := self.membership.next_event()) is not None:
            if isinstance(e, NodeRestarted):  # a new incarnation may use new path ids
                for key in [k for k in self._path_hash if k[0] == e.node]:
                    self._hash_path.pop((e.node, self._path_hash.pop(key)), None)
            if isinstance(e, NodeDead):
                self._peer_went = True
            if isinstance(e, NodeDead | NodeRestarted):
                last = self._adverts.pop(e.node, None)  # it no longer speaks for now...
                if isinstance(e, NodeRestarted):
                    self._last_words.pop(e.node, None)  # ...and a restart voids it
                elif last is not None:
                    self._last_words[e.node] = last
            self._events.append(e)

    # -- leaving --------------------------------------------------------------------

    def leave(self, now: float) -> None:
        """A clean stop: tell the peers at once (Heartbeat's t=shutdone, or a native
        heartbeat with state leaving) so they need not wait for deadtime."""
        self._leaving = True
        self._steady.clear()
        s = self.settings
        if s.wire is WireFormat.HEARTBEAT:
            self._send_ha(
                lambda seq, ts: ctl.shutdone_message(
                    *self._src(), seq, s.generation, ts, ttl=self._ttl
                ),
                now,
            )
            return
        self._native_all(nat.FrameKind.HEARTBEAT, b"", self._next_seq(now))

    # -- round trips ----------------------------------------------------------------

    # -- acknowledgements ---------------------------------------------------------

    def contact(self, node: str) -> Contact:
        """What `node` has acknowledged of ours (see `Contact`)."""
        c = self._contacts[node]
        return Contact(c.acks, c.acked_until, c.ack_frame_at, c.back_at, c.listed, c.probed)

    def remembered_generations(self) -> tuple[tuple[str, int, int], ...]:
        """(peer, generation, highest sequence) for every peer heard, now or before this
        node started: what the shell keeps in the state directory, so that after a restart
        a replay of what was heard before is told from the live peer (membership.py)."""
        out = []
        for name in self.membership.node_names:
            got = self.membership.remembered(name)
            if got is not None:
                out.append((name, *got))
        return tuple(out)

    def generations_to_save(
        self, now: float, *, force: bool = False
    ) -> tuple[tuple[str, int, int], ...] | None:
        """The remembered generations when they should be written now, else None: a peer's
        generation changed, a peer died or left (its last sequence is then final), or
        GENERATIONS_SAVE_INTERVAL passed with new sequences; `force` at a clean stop."""
        changes = self.membership.generation_changes
        due = now - self._generations_saved_at >= GENERATIONS_SAVE_INTERVAL
        if not (force or due or self._peer_went or changes != self._generation_changes_seen):
            return None  # nothing that could make it due: no snapshot built (every input)
        self._generation_changes_seen = changes
        snapshot = self.remembered_generations()
        saved = self._generations_saved
        if snapshot == saved:
            return None
        changed = saved is None or [(n, g) for n, g, _ in snapshot] != [(n, g) for n, g, _ in saved]
        if not (force or changed or due or self._peer_went):
            return None
        self._generations_saved, self._generations_saved_at = snapshot, now
        self._peer_went = False
        return snapshot

    def set_answering(self, peers: frozenset[str]) -> None:
        """The peers whose addresses answer our probes now: listed as probed while we
        count them dead, so they know we will not take their groups over."""
        self._answering = peers

    def _my_acks(self) -> tuple[acks.Ack, ...]:
        out: list[acks.Ack] = []
        live = self.membership.live_nodes()
        for index, name in enumerate(self._sorted):
            probed = name not in live
            if name == self.settings.node or (probed and name not in self._answering):
                continue  # a peer we count dead is not listed: it learns it is unheard
            newest = self.membership.newest_heard(name)
            gen, seq = newest if newest is not None else (0, 0)
            if newest is not None or probed:
                out.append(acks.Ack(index, gen & 0xFF, seq % acks.SEQ_MOD, probed))
        return tuple(out)

    def _note_frame(self, node: str, generation: int, now: float) -> None:
        """An accepted frame of `node`: a new incarnation of it has heard nothing of ours
        yet, but cannot count us dead before a deadtime from now."""
        c = self._contacts[node]
        if c.last_frame is None or now - c.last_frame >= self.settings.deadtime:
            c.back_at = now  # heard again after a silence: its acks lag by a round trip
            self.contact_changes += 1
            self._advert_at_once(now)  # and it may have counted us dead, our advert gone
        c.last_frame = now
        if c.generation != generation:
            self.contact_changes += 1
            c.back_at = now  # a new incarnation: it has not had a round trip to hear us
            c.generation = generation
            c.acked_until = now if c.acked_until is None else max(c.acked_until, now)
            self._advert_at_once(now)  # nor our advert

    def _take_acks(self, node: str, entries: tuple[acks.Ack, ...], now: float) -> None:
        self.contact_changes += 1
        c = self._contacts[node]
        c.acks = True
        c.ack_frame_at = now
        was_listed = c.listed
        c.listed = c.probed = False
        for entry in entries:
            if entry.index == self._my_index and entry.probed:
                c.probed = True  # it does not hear us, but sees us: it will not take over
                continue
            if entry.index != self._my_index or entry.generation != self.generation & 0xFF:
                continue  # about another node, or about an incarnation of ours before this
            c.listed = True
            seq = acks.full_seq(entry.seq, self._seq)
            sent = self._sent_at.get(seq) if seq is not None else None
            if sent is None and seq is not None and self._sent_at:
                sent = next(iter(self._sent_at.values()))  # older than we keep: that old
            if sent is not None and (c.acked_until is None or sent > c.acked_until):
                c.acked_until = sent
        if c.listed and not was_listed:
            self._advert_at_once(now)  # it counts us alive again: it dropped our advert

    def rtt(self, node: str, path: str) -> float | None:
        """The smoothed round-trip time to `node` over `path`, seconds (None: no answer yet;
        a Heartbeat peer never answers hbd's echo)."""
        return self._rtt.get((node, path))

    def _send_echoes(self, now: float) -> None:
        self._next_echo = now + ECHO_INTERVAL
        if self.settings.wire is WireFormat.HEARTBEAT:
            # Heartbeat logs an unsequenced message of a type it does not know as an error
            # ("missing seqno", and a dump of it), so the probe goes out only while every
            # live peer has said in its status (`hbdwd`) that it is hbd.
            live = self.membership.live_nodes()
            if not live or not self._hbd_peers.issuperset(live):
                return
        self._echo_round += 1
        for pid, kind in self.settings.paths:
            if kind is PathKind.SERIAL and self._echo_round % SERIAL_ECHO_EVERY != 1:
                continue
            nonce = self._fresh_nonce()
            self._echo_out[pid] = (nonce, now)
            self._send_echo(pid, nonce, None, now)

    def _fresh_nonce(self) -> int:
        """A nonce this node never used before, in this incarnation or an earlier one (the
        generation goes up at every start), so no recorded answer can match it."""
        self._nonces += 1
        seed = b"hbd echo\0%d\0%d\0%d" % (self._my_id, self.settings.generation, self._nonces)
        return int.from_bytes(hashlib.sha256(seed).digest()[:4], "big")

    def _challenge(self, node: str, path: str, generation: int, now: float) -> None:
        """Ask `node` for a fresh echo answer on `path`: frames of its `generation` are
        refused (UNCONFIRMED) until one comes (at most one question a keepalive)."""
        asked = self._challenges.get(node)
        if asked is not None and now - asked[2] < self.settings.keepalive:
            return
        nonce = self._fresh_nonce()
        self._challenges[node] = (nonce, generation, now)
        self._send_echo(path, nonce, None, now)

    def _send_echo(self, pid: str, nonce: int, reply_to: str | None, now: float) -> None:
        s = self.settings
        if s.wire is WireFormat.HEARTBEAT:
            msg = ctl.echo_message(
                *self._src(), s.generation, self._ts(now), nonce, reply_to=reply_to, ttl=self._ttl
            )
            self._queue_ha(msg, only=pid)
            return
        kind = nat.FrameKind.ECHO_REPLY if reply_to else nat.FrameKind.ECHO
        self._out.append((pid, self._native(pid, kind, nonce.to_bytes(4, "big"), self._seq)))

    def _echo_received(
        self,
        node: str,
        path: str,
        reply: bool,
        nonce: int,
        now: float,
        generation: int,
        source: str | None,
    ) -> None:
        if not reply:
            refused = self._echo_refused(node, path, nonce, generation, now)
            if refused is not None:
                self._drop(path, refused, source)
                return
            self._send_echo(path, nonce, node, now)  # answer on the path it came over
            return
        asked = self._challenges.get(node)
        if asked is not None and asked[0] == nonce and asked[1] == generation:
            del self._challenges[node]  # answered, live, in the generation in question
            self.membership.confirm(node, generation)
            return
        out = self._echo_out.get(path)
        if out is None or out[0] != nonce:
            return  # not our latest probe on this path: late, replayed or forged
        del self._echo_out[path]  # one sample per probe: a replayed answer gives none
        sample = now - out[1]
        old = self._rtt.get((node, path))
        self._rtt[(node, path)] = sample if old is None else old + RTT_WEIGHT * (sample - old)

    def _echo_refused(
        self, node: str, path: str, nonce: int, generation: int, now: float
    ) -> Dropped | None:
        """Whether a probe must go unanswered: signed echoes carry no sequence number, so a
        recorded one could be replayed for signed answers at will. Each (generation, nonce)
        is answered once per path, none of an incarnation older than the peer's current,
        and at most one a keepalive (probes come every few seconds)."""
        newest = self.membership.newest_heard(node)
        if newest is not None and generation < newest[0]:
            return Dropped(
                DropReason.STALE, f"echo of generation {generation}, the peer is at {newest[0]}"
            )
        key = (node, path)
        seen = self._echoes_answered.get(key)
        if seen is None or generation > seen[0]:
            seen = (generation, deque(maxlen=ECHOES_REMEMBERED), -math.inf)
        elif generation < seen[0]:
            return Dropped(DropReason.STALE, f"echo of generation {generation}, not {seen[0]}")
        gen, nonces, last = seen
        if nonce in nonces:
            return Dropped(DropReason.REPLAYED, f"echo {nonce:x} of generation {gen} answered")
        if now - last < min(self.settings.keepalive, ECHO_INTERVAL / 2):
            return Dropped(DropReason.REPLAYED, f"echo {nonce:x} within a keepalive of the last")
        nonces.append(nonce)
        self._echoes_answered[key] = (gen, nonces, now)
        return None

    def _wrong_path(self, node: str, path: str, sender_hash: int) -> str | None:
        """Why a native frame of `node` cannot count for our `path`, or None. Each of our
        paths learns the path hash `node`'s frames on it carry (the sender's end of that
        wire); a frame with a hash another live path of ours carries was sent on that other
        wire -- relayed, replayed or crossed -- and proves nothing about this one. A path
        learns anew once it is down (the peer renamed its end), and on a new incarnation."""
        mine = self._path_hash.get((node, path))
        if mine == sender_hash:
            return None
        owner = self._hash_path.get((node, sender_hash))
        if owner is not None and self.membership.path_state(node, owner) is PathState.UP:
            return (
                f"path hash {sender_hash:04x}: {node} sent it on the wire our {owner} carries, "
                f"not this one (relayed or replayed?)"
            )
        if mine is not None and self.membership.path_state(node, path) is PathState.UP:
            return f"path hash {sender_hash:04x}: {node}'s frames on {path} carry {mine:04x}"
        if mine is not None:
            self._hash_path.pop((node, mine), None)
        if owner is not None:
            self._path_hash.pop((node, owner), None)
        self._path_hash[(node, path)] = sender_hash
        self._hash_path[(node, sender_hash)] = path
        return None

    # -- adverts --------------------------------------------------------------------

    def set_advert(self, payload: bytes, now: float) -> None:
        """What this node advertises about its groups; sent at once when it changed."""
        if payload != self._advert:
            self._advert = payload
            self._advert_at_once(now)

    def _advert_at_once(self, now: float) -> None:
        """Ours goes in this turn (a peer may lack it), then repeats from a second on."""
        if self._advert is not None and not self._leaving:
            self._advert_due = now
            self._advert_gap = ADVERT_INTERVAL

    def speaks_heartbeat(self, node: str) -> bool:
        """`node`'s latest status came without hbd's `hbdwd`: it is a Heartbeat node."""
        return node in self._heartbeat_peers

    def send_message(self, mtype: str, fields: tuple[tuple[str, str], ...], now: float) -> None:
        """Send a sequenced Heartbeat cluster message (the resource protocol's) on every
        path; it is kept for retransmission like every other."""
        s = self.settings
        self._send_ha(
            lambda seq, ts: ctl.cluster_message(
                *self._src(), seq, s.generation, ts, mtype, fields, ttl=self._ttl
            ),
            now,
        )

    def advert_of(self, node: str) -> bytes | None:
        """The latest advert of a live peer, or None (never heard one, or it died)."""
        return self._adverts.get(node)

    def last_advert_of(self, node: str) -> bytes | None:
        """The last advert a now-dead peer sent (what it said it ran when it went)."""
        return self._last_words.get(node)

    def _advert_received(self, node: str, payload: bytes) -> None:
        """A peer's advert: news (an AdvertReceived event, which has the policy look again)
        only when it differs from the one held; a repeat of it changes nothing."""
        if self._adverts.get(node) == payload:
            return
        self._adverts[node] = payload
        self._events.append(AdvertReceived(node, payload))

    def _send_advert(self, now: float) -> None:
        payload = self._advert
        if payload is None:
            return
        self._advert_due = None
        self._advert_repeat_at = now + self._advert_gap - self.settings.keepalive / 2
        self._advert_gap = min(2 * self._advert_gap, ADVERT_REPEAT_MAX)
        s = self.settings
        if s.wire is WireFormat.HEARTBEAT:
            self._send_ha(
                lambda seq, ts: ctl.advert_message(
                    *self._src(), seq, s.generation, ts, payload, ttl=self._ttl
                ),
                now,
            )
            return
        self._native_all(nat.FrameKind.ADVERT, payload, self._next_seq(now))

    def _receive_segment(self, path: str, seg: Segment, now: float, source: str | None) -> None:
        if seg.format is FrameFormat.NATIVE:
            self._receive_native_datagram(path, seg.data, now, source)
        elif seg.format is FrameFormat.NATIVE_SERIAL:
            datagram = nat.unstuff(seg.data)
            if isinstance(datagram, Dropped):
                self._drop(path, datagram, source)
                return
            steady = self._steady.get(path)
            if steady is None or not self._receive_steady(steady, path, datagram, now, source):
                self._receive_native_datagram(path, datagram, now, source)
        elif not self.settings.heartbeat_frames:
            # refused before any parsing: under `wire hbd` nothing speaks Heartbeat's format
            # unless the operator says so, so it is no way in (not even for a crc forgery)
            detail = (
                f"a Heartbeat-format ({seg.format.value}) frame, but this node says 'wire hbd' "
                "and no 'wire_accept heartbeat': no peer sends that format"
            )
            self._drop(path, Dropped(DropReason.UNSUPPORTED, detail), source)
        else:
            self._receive_heartbeat(path, seg, now, source)

    def _receive_native_datagram(
        self, path: str, datagram: bytes, now: float, source: str | None
    ) -> None:
        frame = nat.decode_native(datagram, self.settings.auth, self.settings.cluster_id)
        if isinstance(frame, Dropped):
            self._drop(path, frame, source)
            return
        name = self._receive_native(path, frame, now, source)
        if name is not None and self.TAKE_STEADY:
            self._remember_steady(path, datagram, frame, name)

    def _remember_steady(
        self, path: str, datagram: bytes, frame: nat.NativeFrame, name: str
    ) -> None:
        head, tail = datagram[:16], datagram[20:28]
        known = self._steady.get(path)
        if known is not None and known.head == head and known.tail == tail:
            return
        entry = self.settings.auth.get(datagram[3])
        assert entry is not None  # the frame was verified with it
        self._steady[path] = _Steady(
            head,
            tail,
            nat.tag_checker(entry.key),
            name,
            frame.generation,
            _NATIVE_STATUS[frame.state],
            frame.deadtime_ms / 1000 if frame.deadtime_ms else None,
            frame.watchdog_ms / 1000 if frame.watchdog_ms else None,
            frame.path_hash,
        )

    def _receive_steady(
        self, steady: _Steady, path: str, data: bytes, now: float, source: str | None
    ) -> bool:
        """Take native datagram `data` on `path` as `_receive_native` would, if it is a
        heartbeat that changes nothing but freshness (False: nothing done, it goes the
        whole way). Every heartbeat of a peer, on each of its paths, comes here first: the
        whole way decodes it into objects, checks who sent it and how, and asks membership
        everything it asks any frame, which is most of an idle node's work. Here the
        frame's bytes are compared with the path's last heartbeat that went the whole way
        (`_Steady`): the same sender, key, generation, state, advertised timings and path
        hash. Then only what can differ is looked at: the signature (always verified), the
        sequence and the acknowledgements. Membership takes it as steady or says it is not
        (`Membership.receive_steady`); a frame that would be dropped, or change a state,
        a source or a path's learnt hash, goes the whole way, which drops or reports it.
        tests/test_steady.py runs whole clusters both ways and compares every event."""
        n = len(data)
        if (
            n < nat.HEARTBEAT_LEN
            or n > nat.MAX_FRAME_LEN
            or data[:16] != steady.head
            or data[20:28] != steady.tail
            or self._local is not LocalState.ACTIVE
            or self._path_hash.get((steady.node, path)) != steady.path_hash
            or not steady.signed(data)
        ):
            return False
        name, generation = steady.node, steady.generation
        seq = int.from_bytes(data[16:20], "big")
        fresh = self.membership.receive_steady(
            name,
            path,
            generation,
            seq,
            steady.status,
            steady.deadtime,
            steady.watchdog,
            source,
            now,
        )
        if fresh is None:
            return False
        self._note_frame(name, generation, now)
        if fresh:
            self._beat_with(now)
            entries = acks.decode_acks(data[nat.HEADER_LEN : -nat.TAG_LEN])
            if entries is not None:
                self._take_acks(name, entries, now)
        return True

    def _receive_native(
        self, path: str, frame: nat.NativeFrame, now: float, source: str | None
    ) -> str | None:
        """Handle a verified native frame. The sender's name when the frame was one of its
        heartbeats, accepted (the next ones may repeat it: `_remember_steady`), else None."""
        if frame.node_id == self._my_id:
            self._drop(path, Dropped(DropReason.FROM_SELF, "our own frame echoed"), source)
            return None
        name = self._by_id.get(frame.node_id)
        if name is None:
            detail = f"node id {frame.node_id:08x} is no node in ha.cf"
            self._drop(path, Dropped(DropReason.UNKNOWN_NODE, detail), source)
            return None
        wrong = self._wrong_path(name, path, frame.path_hash)
        if wrong is not None:
            self._drop(path, Dropped(DropReason.WRONG_PATH, wrong), source)
            return None
        if frame.kind in (nat.FrameKind.ECHO, nat.FrameKind.ECHO_REPLY):
            if len(frame.payload) == 4:  # signed, so from a key holder; matched by nonce
                reply = frame.kind is nat.FrameKind.ECHO_REPLY
                nonce = int.from_bytes(frame.payload, "big")
                self._echo_received(name, path, reply, nonce, now, frame.generation, source)
            return None
        beat = Beat(
            node=name,
            path=path,
            generation=frame.generation,
            seq=frame.seq,
            status=_NATIVE_STATUS[frame.state],
            deadtime=frame.deadtime_ms / 1000 if frame.deadtime_ms else None,
            watchdog=frame.watchdog_ms / 1000 if frame.watchdog_ms else None,
            source=source,
        )
        verdict = self.membership.receive(beat, now)
        if isinstance(verdict, Dropped):
            self._drop(path, verdict, source)
            if verdict.reason is DropReason.UNCONFIRMED:
                self._challenge(name, path, frame.generation, now)
            return None
        self._note_frame(name, frame.generation, now)
        if verdict and frame.kind is nat.FrameKind.HEARTBEAT:  # a copy's acks are the same
            self._beat_with(now)
            entries = acks.decode_acks(frame.payload)
            if entries is not None:
                self._take_acks(name, entries, now)
        if verdict and frame.kind is nat.FrameKind.ADVERT:
            self._collect()
            self._advert_received(name, frame.payload)
        elif verdict and frame.state is nat.NodeState.LEAVING:
            self.membership.leave(name, now)
            self._collect()
        if frame.kind is nat.FrameKind.HEARTBEAT and frame.state is not nat.NodeState.LEAVING:
            return name
        return None

    def _receive_heartbeat(self, path: str, seg: Segment, now: float, source: str | None) -> None:
        # a message goes out byte for byte the same on every datagram path: the copy on the
        # second path is the message already parsed and verified (what it means is still
        # checked below: membership refreshes that path and refuses a replay on it); and
        # so is its copy in the other format (classic text on serial, netstring on UDP)
        # when it is byte for byte the frame hb.other_format_copy makes of it
        verified = self._verified.get(seg.data)
        if verified is None:
            netstring = seg.format is FrameFormat.NETSTRING
            template, read = self._hb_template_read(path, seg.data) if netstring else (None, None)
            decoded: hb.HaMessage | Dropped
            if read is not None:
                decoded = read
            else:
                decoded = hb.decode_frame(seg.data, self.settings.auth)
                if isinstance(decoded, Dropped):
                    self._drop(path, decoded, source)
                    return
                if netstring and self.TAKE_STEADY and decoded.get("t") == "status":
                    template = hb.NetstringTemplate.of(seg.data, decoded)
                    if template is not None:
                        src = template.src  # it replaces that sender's older one
                        kept = [t for t in self._hb_templates.get(path, ()) if t.src != src]
                        kept.insert(0, template)
                        self._hb_templates[path] = kept[: len(self.settings.nodes)]
            verified = _Verified.of(decoded)
            self._remember_verified(seg.data, verified)
            if self._both_formats:
                if read is not None and template is not None:  # read by the template
                    other = template.classic_copy(read, self.settings.auth)
                else:
                    other = hb.other_format_copy(decoded, self.settings.auth, netstring)
                if other is not None:
                    self._remember_verified(other, verified)
        msg, origin, status = verified.msg, verified.origin, verified.status
        if origin is None:
            self._drop(path, Dropped(DropReason.MALFORMED, "no src, ts, seq or hg"), source)
            return
        name = self._by_name.get(origin.src.lower())
        if name == self.settings.node:
            self._drop(path, Dropped(DropReason.FROM_SELF, "our own frame echoed"), source)
            return
        if name is None:
            detail = f"node {origin.src!r} is not in ha.cf"
            self._drop(path, Dropped(DropReason.UNKNOWN_NODE, detail), source)
            return
        mtype = verified.mtype
        if origin.seq is None:
            # NS_* control messages carry no seq: they cannot be replay-checked, so they
            # never count as proof of life; they are only answered.
            self._receive_unsequenced(name, path, mtype, msg, now)
            return
        deadtime = status.deadtime_ms / 1000 if status and status.deadtime_ms else None
        watchdog = status.watchdog_ms / 1000 if status and status.watchdog_ms else None
        verdict: bool | Dropped | None = None
        if status is not None and self.TAKE_STEADY:
            # a status heartbeat that changes nothing but freshness: membership's short way
            verdict = self.membership.receive_steady(
                name,
                path,
                origin.generation,
                origin.seq,
                status.status,
                deadtime,
                watchdog,
                source,
                now,
                uuid=origin.srcuuid,
            )
        if verdict is None:
            beat = Beat(
                node=name,
                path=path,
                generation=origin.generation,
                seq=origin.seq,
                status=status.status if status is not None else None,
                uuid=origin.srcuuid,
                deadtime=deadtime,
                watchdog=watchdog,
                source=source,
            )
            verdict = self.membership.receive(beat, now)
        if isinstance(verdict, Dropped):
            self._drop(path, verdict, source)
            # only an hbd peer can answer; a Heartbeat one stays refused, as Heartbeat does
            if verdict.reason is DropReason.UNCONFIRMED and status and status.from_hbd:
                self._challenge(name, path, origin.generation, now)
            return
        self._note_frame(name, origin.generation, now)
        if not verdict:
            return  # a copy of a message already handled via another path (its acks too)
        ack_text = msg.get(ctl.ACK_FIELD) if status is not None else None
        if ack_text is not None:
            entries = acks.parse_acks_text(ack_text)
            if entries is not None:
                self._take_acks(name, entries, now)
        self._track_for_ack(name, origin.generation, origin.seq, now)
        if status is not None:
            self._beat_with(now)
            if status.from_hbd:
                self._hbd_peers.add(name)
                self._heartbeat_peers.discard(name)
            else:
                self._hbd_peers.discard(name)
                self._heartbeat_peers.add(name)
        self._collect()  # membership's events come before what this message means
        if mtype != "status":
            self._heartbeat_message(name, path, mtype, msg, now, source)

    def _hb_template_read(
        self, path: str, data: bytes
    ) -> tuple[hb.NetstringTemplate | None, hb.HaMessage | None]:
        """Netstring frame `data` read by one of `path`'s templates (the one that read it,
        moved to the front, and the message), or (None, None): it goes the whole way."""
        kept = self._hb_templates.get(path)
        if not kept:
            return None, None
        for i, template in enumerate(kept):
            read = template.read(data, self.settings.auth)
            if read is not None:
                if i:
                    kept.insert(0, kept.pop(i))
                return template, read
        return None, None

    def _remember_verified(self, data: bytes, verified: _Verified) -> None:
        self._verified[data] = verified
        if len(self._verified) > VERIFIED_KEPT:
            del self._verified[next(iter(self._verified))]

    def _heartbeat_message(
        self, name: str, path: str, mtype: str, msg: hb.HaMessage, now: float, source: str | None
    ) -> None:
        """What a new, authenticated, sequenced Heartbeat-format message from `name` means."""
        dest = msg.get("dest")
        to_me = dest is not None and dest.lower() == self.settings.node.lower()
        if mtype == "shutdone":
            self.membership.leave(name, now)
            self._collect()
        elif mtype == "reqnodes":
            if to_me:
                self._send_ha(
                    lambda seq, ts: ctl.repnodes_message(
                        *self._src(),
                        name,
                        self.membership.uuid_of(name),
                        seq,
                        self.settings.generation,
                        ts,
                        self.settings.nodes,
                        ttl=self._ttl,
                    ),
                    now,
                )
        elif mtype == "repnodes":
            if to_me and self._local is LocalState.UP and self._reqnodes_at is not None:
                self._become_active(now)
        elif mtype == "hbd-advert":
            try:
                payload = bytes.fromhex(msg.get("advert") or "")
            except ValueError:
                self._drop(path, Dropped(DropReason.MALFORMED, "advert is not hex"), source)
                return
            self._advert_received(name, payload)
        else:
            if mtype == "starting" and self.answers_starting:
                # A Heartbeat node going active asks what its peers hold and waits, acquiring
                # none of its groups and unable to shut down, until one answers "stable".
                # A node without groups holds none. (With groups, hbd.core.hbresources
                # answers, by Heartbeat's own rules.)
                self._send_ha(
                    lambda seq, ts: ctl.resource_message(
                        *self._src(), seq, self.settings.generation, ts, "none", True, ttl=self._ttl
                    ),
                    now,
                )
            fields = tuple((f.name, f.value) for f in msg if isinstance(f.value, str))
            self._events.append(MessageReceived(name, path, mtype, fields))

    def _receive_unsequenced(
        self, node: str, path: str, mtype: str, msg: hb.HaMessage, now: float
    ) -> None:
        """An unsequenced message (NS_* flow control, hbd's round-trip echo): answered, never
        taken as proof of life."""
        if mtype in ("hbd-echo", "hbd-echo-reply"):
            nonce = msg.get_hex("echo") if msg.get("echo") else None
            to_me = mtype == "hbd-echo" or (msg.get("dest") or "").lower() == self.node
            if nonce is not None and to_me:
                generation = ctl.parse_origin(msg)
                gen = generation.generation if generation is not None else 0
                self._echo_received(node, path, mtype == "hbd-echo-reply", nonce, now, gen, None)
            return
        dest = msg.get("dest")
        if dest is None or dest.lower() != self.settings.node.lower():
            return
        if mtype == "NS_rexmit":
            req = ctl.parse_rexmit(msg)
            if req is not None:
                self._answer_rexmit(node, req, now)
        # NS_ackmsg and NS_nak_rexmit need no answer: we keep no send window to open.

    def _answer_rexmit(self, node: str, req: ctl.HaRexmit, now: float) -> None:
        """Resend what `node` asks for, as Heartbeat does, within four limits: only a
        request of the peer's current incarnation (a replay from before its restart, or a
        generation never heard, gets nothing); each message at most once per
        max_rexmit_delay; the peer's byte budget (REXMIT_BURST, REXMIT_RATE); and at most
        REXMIT_PER_TURN messages now, the rest owed to later turns (`_pay_rexmit`)."""
        newest = self.membership.newest_heard(node)
        if newest is None or req.origin.generation != newest[0]:
            return
        generation, owed = self._rexmit_owed.get(node, (newest[0], []))
        if generation != newest[0]:
            owed = []
        last = min(req.lastseq, req.firstseq + MAX_REXMIT - 1, self._seq)  # never the future
        asked = set(owed)
        owed += [seq for seq in range(req.firstseq, last + 1) if seq not in asked]
        self._rexmit_owed[node] = (newest[0], owed[:MAX_REXMIT])
        self._pay_rexmit(now, only=node)

    def _pay_rexmit(self, now: float, only: str | None = None) -> None:
        """Answer up to REXMIT_PER_TURN owed sequences of each peer (or of `only`) that its
        budget allows: the message again, or a NAK when it is no longer in the history.
        What is left stays owed, paid REXMIT_SPACING later (or when the budget refills)."""
        due: list[float] = []
        for node in list(self._rexmit_owed):
            generation, owed = self._rexmit_owed[node]
            newest = self.membership.newest_heard(node)
            if newest is None or newest[0] != generation:
                del self._rexmit_owed[node]  # it restarted (or left): the request is void
                continue
            if only is not None and node != only:
                if self._rexmit_due is not None:
                    due.append(self._rexmit_due)
                continue
            bucket, at = self._rexmit_budget.get(node, (float(REXMIT_BURST), now))
            bucket = min(float(REXMIT_BURST), bucket + max(0.0, now - at) * REXMIT_RATE)
            paid = 0
            while owed and paid < REXMIT_PER_TURN and bucket >= 1:
                seq = owed.pop(0)
                resent = self._resent_at.get((node, seq))
                if resent is not None and now - resent < self.settings.max_rexmit_delay:
                    continue
                self._resent_at[(node, seq)] = now
                bucket -= 1
                paid += 1
                self._resend(node, seq, now)
            self._rexmit_budget[node] = (bucket, now)
            if not owed:
                del self._rexmit_owed[node]
            elif bucket >= 1:
                due.append(now + REXMIT_SPACING)
            else:
                due.append(now + max(REXMIT_SPACING, (1 - bucket) / REXMIT_RATE))
        self._rexmit_due = min(due, default=None)
        while len(self._resent_at) > HISTORY * len(self._sorted):
            del self._resent_at[next(iter(self._resent_at))]

    def _resend(self, node: str, seq: int, now: float) -> None:
        """Message `seq` again on every path, or a NAK for it if the history has lost it."""
        old = self._history.get(seq)
        if old is not None:
            self._queue_ha(old.msg, kept=old)
            return
        self._queue_ha(
            ctl.nak_rexmit_message(
                *self._src(),
                node,
                self.membership.uuid_of(node),
                seq,
                "not in history",
                self.settings.generation,
                self._ts(now),
                ttl=self._ttl,
            )
        )

    def _track_for_ack(self, node: str, generation: int, seq: int, now: float) -> None:
        """Heartbeat's flow control: ack every tenth message, unless some are missing."""
        t = self._acks.setdefault(node, _AckTrack())
        if generation != t.generation:
            t.generation, t.highest, t.missing = generation, seq, {}
        elif seq > t.highest:
            gap = range(max(t.highest + 1, seq - MAX_REXMIT), seq)
            for missing in gap:
                t.missing[missing] = now
            if gap:
                self._queue_ha(
                    ctl.rexmit_message(
                        *self._src(),
                        node,
                        self.membership.uuid_of(node),
                        gap[0],
                        gap[-1],
                        self.settings.generation,
                        self._ts(now),
                        ttl=self._ttl,
                    )
                )
            t.highest = seq
        else:
            t.missing.pop(seq, None)
        for old in [s for s, since in t.missing.items() if now - since > REXMIT_PATIENCE]:
            del t.missing[old]  # given up on: do not let one lost message stall the acks
        first_missing = min(t.missing, default=None)
        if seq % 10 != self._ack_trigger[node] or (
            first_missing is not None and seq > first_missing
        ):
            return
        self._queue_ha(
            ctl.ack_message(
                *self._src(),
                node,
                self.membership.uuid_of(node),
                seq,
                self.settings.generation,
                self._ts(now),
                ttl=self._ttl,
            )
        )

    def _src(self) -> tuple[str, bytes]:
        return self.settings.node, self.settings.uuid

    @property
    def _ttl(self) -> int:
        return 1 + len(self.settings.nodes)  # hopfudge 1 + nodes, as Heartbeat

    def _ts(self, now: float) -> int:
        return max(0, int(now + self.settings.wall_offset))

    def _send_ha(self, build: Callable[[int, int], hb.HaMessage], now: float) -> None:
        """Build a sequenced Heartbeat message with the next seq, keep it for rexmit, send."""
        seq = self._next_seq(now)
        msg = build(seq, self._ts(now))
        kept = _Kept(msg, self.settings.auth.active)
        self._history[seq] = kept
        while len(self._history) > HISTORY:
            del self._history[next(iter(self._history))]
        self._queue_ha(msg, kept=kept)

    def _queue_ha(
        self, msg: hb.HaMessage, only: str | None = None, kept: _Kept | None = None
    ) -> None:
        """Queue a Heartbeat-format message on every path (or on `only`); `kept` holds (and
        gets) the frames it was encoded as, while the key is the one they were signed with."""
        auth = self.settings.auth.active
        if kept is not None and kept.auth != auth:
            kept.auth, kept.classic, kept.netstring = auth, None, None
        classic = kept.classic if kept is not None else None
        netstring = kept.netstring if kept is not None else None
        if classic is None and netstring is None and (flat := hb.flat_frames(msg, auth)):
            classic, netstring = flat  # hbd's own heartbeats: both formats in one pass
        signed: hb.ClassicSigned | None = None  # checked and signed once for both formats
        for pid, kind in self.settings.paths:
            if only is not None and pid != only:
                continue
            if kind is PathKind.SERIAL:
                if classic is None:
                    signed = signed or hb.sign_classic(msg, auth)
                    classic = hb.classic_frame(signed)
                self._out.append((pid, classic))
            else:
                if netstring is None:
                    signed = signed or hb.sign_classic(msg, auth)
                    netstring = hb.netstring_frame(signed, auth)
                self._out.append((pid, netstring))
        if kept is not None:
            kept.classic, kept.netstring = classic, netstring

    def _native_all(self, kind: nat.FrameKind, payload: bytes, seq: int) -> None:
        """One native frame on every path: built once, signed per path (its path hash)."""
        frame = self._native_frame(kind, payload, seq)
        paths = self.settings.paths
        hashes = [nat.path_hash(pid) for pid, _ in paths]
        datagrams = nat.encode_native_each(frame, self.settings.auth.active, hashes)
        for (pid, path_kind), datagram in zip(paths, datagrams, strict=True):
            if path_kind is PathKind.SERIAL:
                datagram = nat.stuff(datagram)
            self._out.append((pid, datagram))

    def _native(self, pid: str, kind: nat.FrameKind, payload: bytes, seq: int) -> bytes:
        """One native frame for path `pid`, framed for it (COBS on serial, bare on UDP)."""
        frame = self._native_frame(kind, payload, seq, nat.path_hash(pid))
        if self._paths[pid] is PathKind.SERIAL:
            return nat.encode_native_serial(frame, self.settings.auth.active)
        return nat.encode_native(frame, self.settings.auth.active)

    def _native_frame(
        self, kind: nat.FrameKind, payload: bytes, seq: int, path_hash: int = 0
    ) -> nat.NativeFrame:
        s = self.settings
        state = nat.NodeState.ACTIVE if self._local is LocalState.ACTIVE else nat.NodeState.UP
        if self._leaving:
            state = nat.NodeState.LEAVING
        return nat.NativeFrame(
            cluster_id=s.cluster_id,
            node_id=self._my_id,
            generation=s.generation,
            seq=seq,
            state=state,
            deadtime_ms=min(nat.MAX_MS, round(s.deadtime * 1000)),
            watchdog_ms=min(nat.MAX_MS, round((s.watchdog_timeout or 0) * 1000)),
            path_hash=path_hash,
            kind=kind,
            payload=payload,
        )

    def _maybe_activate(self, now: float) -> None:
        """Heartbeat's check_comm_isup: once every peer is heard or dead, ask one live peer
        for the node list (wire heartbeat) and go active on its answer, or at once."""
        if self._local is not LocalState.UP or not self.membership.all_heard_or_dead():
            return
        live = self.membership.live_nodes()
        if self.settings.wire is WireFormat.HBD or not live:
            self._become_active(now)
            return
        if self._reqnodes_at is not None and now < self._reqnodes_at + REQNODES_RETRY:
            return
        self._reqnodes_at = now
        dest = live[0]
        self._send_ha(
            lambda seq, ts: ctl.reqnodes_message(
                *self._src(),
                dest,
                self.membership.uuid_of(dest),
                seq,
                self.settings.generation,
                ts,
                ttl=self._ttl,
            ),
            now,
        )

    def _become_active(self, now: float) -> None:
        self._local = LocalState.ACTIVE  # UP -> ACTIVE
        self._reqnodes_at = None
        self._events.append(LocalActive(self.settings.node))
        self._next_beat = now  # tell the peers at once, as Heartbeat's set_local_status

    def _next_seq(self, now: float) -> int:
        """The next sequence number; its send time is kept so acknowledgements of it tell
        when a peer last heard us."""
        self._seq += 1
        self._sent_at[self._seq] = now
        while len(self._sent_at) > SENT_KEPT:
            del self._sent_at[next(iter(self._sent_at))]
        return self._seq

    def _beat_with(self, now: float) -> None:
        """A peer's heartbeat just arrived: when ours is due within half a keepalive, it
        goes now, in this turn, and the next is due a keepalive and BEAT_MARGIN from now
        (so the peer's next heartbeat, a keepalive away, arrives first and carries ours
        again; should it not come, ours is at most BEAT_MARGIN late, once). Two nodes
        settle within a period into one sending right behind the other, so the follower's
        heartbeat costs no wake-up of its own; the one that just sent is a whole keepalive
        from its next beat, so they never answer each other round and round."""
        keepalive = self.settings.keepalive
        if not self._leaving and now < self._next_beat <= now + keepalive / 2:
            self._next_beat = now
            self._beat_behind = True

    def _send_heartbeat(self, now: float) -> None:
        self.beats_sent += 1
        self._next_beat += self.settings.keepalive
        if self._next_beat <= now:  # the caller fell behind: do not burst
            self._next_beat = now + self.settings.keepalive
        if self._beat_behind:  # sent right behind a peer's (`_beat_with`)
            self._beat_behind = False
            self._next_beat = now + self.settings.keepalive * (1 + BEAT_MARGIN)
        s = self.settings
        heard = self._my_acks()
        if s.wire is WireFormat.HEARTBEAT:
            status = self._local.value
            self._send_ha(
                lambda seq, ts: ctl.status_message(
                    *self._src(),
                    seq,
                    s.generation,
                    status,
                    min(0xFFFFFFFF, round(s.deadtime * 1000)),
                    ts,
                    ttl=self._ttl,
                    watchdog_ms=round((s.watchdog_timeout or 0) * 1000),  # 0: hbd, no watchdog
                    acks=acks.acks_text(heard),
                ),
                now,
            )
        else:
            self._native_all(nat.FrameKind.HEARTBEAT, acks.encode_acks(heard), self._next_seq(now))
        if self._advert_repeat_due(now):
            self._send_advert(now)  # right behind the heartbeat, on every path
        if now >= self._next_echo:
            self._send_echoes(now)  # and so is a round-trip probe
