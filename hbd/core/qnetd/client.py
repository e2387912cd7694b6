"""A sans-I/O qdevice-net client: hbd's side of corosync-qnetd's protocol.

It speaks as corosync-qdevice 3.0.x does (`qdevice-net-send.c`, `qdevice-net-msg-received.c`):

    connect -> PREINIT(cluster name)        <- PREINIT_REPLY(tls supported, cert required)
            [-> STARTTLS, then TLS]          (the shell wraps the socket; `tls_started`)
            -> INIT(node id, algorithm, heartbeat interval, tie-breaker, ring id)
                                             <- INIT_REPLY(error code, sizes, algorithms)
            -> SET_OPTION(keep active partition tie-breaker), when the server knows it
            -> NODE_LIST(initial config: every node id)
            -> NODE_LIST(membership: the nodes this node hears, ring id, heuristics)
                                             <- NODE_LIST_REPLY(vote), VOTE_INFO(vote)
            -> VOTE_INFO_REPLY               (at once: ffsplit sends its ACKs only after
                                              every NACK was acknowledged)
            -> ECHO_REQUEST every heartbeat  <- ECHO_REPLY; none by the next one: drop
                                             (one answered may go up to a quarter
                                              heartbeat early, in a turn the node is
                                              awake for anyway: `ride`)

Votes are ACK and NACK for the ring id they name; ASK_LATER and WAIT_FOR_REPLY mean
"no decision yet" (the server decides when every connected node's membership agrees,
or by its own timer), NO_CHANGE keeps what was. A vote for another ring id than the
last one sent is stale and ignored, as qdevice ignores it. Losing the connection loses
the vote (qdevice's ffsplit client votes NACK when disconnected).

The client holds no opinion about what the vote means to hbd: `view()` says whether it
is connected, the vote in force, for which membership, and since when; the policy
decides (docs/policy.md, "With an arbiter").
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from hbd.core.qnetd import msg as m
from hbd.core.qnetd.msg import (
    Heuristics,
    Message,
    MsgType,
    NodeInfo,
    NodeListType,
    QnetdFrameError,
    RingId,
    TieBreaker,
    Vote,
)

MIN_HEARTBEAT = 1.0  # qnetd's default heartbeat_interval_min (1000 ms)
ECHO_RIDE = 0.25  # of a heartbeat: how early an echo request may go in a turn awake anyway
MAX_HEARTBEAT = 120.0
DPD_COEFFICIENT = 1.5  # qnetd drops a client silent for this many heartbeat intervals
LOWEST = TieBreaker(m.TieBreakerMode.LOWEST)  # qdevice's default tie-breaker


def heartbeat_interval(keepalive: float, deadtime: float) -> float:
    """qdevice sends echo requests every 0.8 x its timeout; hbd's timeout is deadtime. The
    result is kept within what qnetd accepts by default (1 s .. 2 min), and never below a
    keepalive."""
    return min(MAX_HEARTBEAT, max(MIN_HEARTBEAT, 0.8 * deadtime, keepalive))


def decision_time(heartbeat: float) -> float:
    """How long after this node changed its membership qnetd may take to decide: a dead
    peer's connection is dropped by qnetd once it has been silent for 1.5 heartbeats, and
    the vote then comes within a round trip; half a heartbeat covers latency and timers."""
    return (DPD_COEFFICIENT + 0.5) * heartbeat


def loss_detection(heartbeat: float) -> float:
    """A node whose connection to qnetd broke silently notices within two heartbeats (its
    echo request gets no reply before the next one is due)."""
    return 2 * heartbeat


class State(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    WAITING_PREINIT_REPLY = "waiting for preinit reply"
    WAITING_STARTTLS = "starting TLS"
    WAITING_INIT_REPLY = "waiting for init reply"
    READY = "connected"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    host: str
    port: int
    cluster_name: str
    node_id: int
    node_ids: tuple[int, ...]  # every node of the cluster, this one included
    algorithm: m.Algorithm = m.Algorithm.FFSPLIT
    tie_breaker: TieBreaker = LOWEST
    heartbeat: float = 1.0  # seconds
    tls: bool = False
    keep_active_partition: bool = True  # qdevice's default


# -- actions and events ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a TCP connection to host:port; report `connection_made` or `connection_failed`."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class StartTls:
    """Wrap the connection in TLS now (after the STARTTLS message went out); report
    `tls_started` or `connection_failed`."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection (the client already counts it closed)."""

    reason: str


ClientAction = Connect | StartTls | Close


@dataclass(frozen=True, slots=True)
class QnetdEvent:
    """Something worth a log line: a reply, a vote, a connection change, with its reason."""

    kind: str  # "connected", "disconnected", "vote", "reply", "error"
    text: str


@dataclass(frozen=True, slots=True)
class QnetdView:
    """What the policy needs of the arbiter."""

    connected: bool
    vote: Vote | None  # ACK or NACK in force for `members`; None: no vote
    members: frozenset[int] | None  # the membership the vote is for
    since: float | None  # when this vote started to be held
    changed: float | None  # the last change of connection or vote
    reason: str


class QnetdClient:
    """One node's connection to qnetd as a sans-I/O state machine. See the module docstring."""

    def __init__(self, settings: ClientSettings, now: float) -> None:
        self.settings = settings
        self.state = State.DISCONNECTED
        self._seq = 0
        self._echo_expected = 0
        self._echo_received = 0
        self._echo_at: float | None = None
        self._connect_at: float | None = now  # connect at once
        self._connect_deadline: float | None = None
        self._out = bytearray()
        self._decoder = m.Decoder()
        self._actions: deque[ClientAction] = deque()
        self._events: deque[QnetdEvent] = deque()
        self._members: frozenset[int] = frozenset({settings.node_id})
        self._ring = RingId(settings.node_id, 0)
        self._heuristics = Heuristics.UNDEFINED
        self._sent_ring: RingId | None = None
        self._server_heuristics = False
        self._server_kap = False
        self.vote: Vote | None = None
        self.vote_members: frozenset[int] | None = None
        self.vote_since: float | None = None
        self.changed: float | None = None
        self.reason = "not connected yet"
        self.server: dict[str, object] = {}  # what the server said, for qnetd-test and status
        self.rtt: float | None = None
        self.lost_at: float | None = None  # when a connection that was up was last lost
        self._echo_sent_at: dict[int, float] = {}

    # -- inputs ---------------------------------------------------------------------------

    def set_membership(
        self, members: frozenset[int], ring: RingId, heuristics: Heuristics, now: float
    ) -> None:
        """This node's membership (itself and the peers it hears) and its heuristics result.
        A new membership is sent at once with its ring id (the vote held so far was for
        the old one and lapses); new heuristics alone go as a heuristics change."""
        if self.settings.node_id not in members:
            raise ValueError("the membership must contain this node")
        membership_changed = members != self._members or ring != self._ring
        heuristics_changed = heuristics != self._heuristics
        self._members, self._ring, self._heuristics = members, ring, heuristics
        if self.state is not State.READY:
            return
        if membership_changed:
            self._send_membership(now)
        elif heuristics_changed and self._server_heuristics:
            self._send(
                Message(MsgType.HEURISTICS_CHANGE, seq=self._next_seq(), heuristics=heuristics)
            )

    def connection_made(self, now: float) -> None:
        if self.state is not State.CONNECTING:
            return
        self._decoder = m.Decoder()
        self._out.clear()
        self._seq = 0
        self._send(Message(MsgType.PREINIT, seq=self._seq, cluster_name=self.settings.cluster_name))
        self.state = State.WAITING_PREINIT_REPLY

    def tls_started(self, now: float) -> None:
        if self.state is State.WAITING_STARTTLS:
            self._send_init()

    def connection_failed(self, reason: str, now: float) -> None:
        """The connection could not be made, or broke (EOF, reset, TLS failure)."""
        if self.state is State.DISCONNECTED:
            return
        self._drop(reason, now, close=False)

    def data_received(self, data: bytes, now: float) -> None:
        if self.state in (State.DISCONNECTED, State.CONNECTING):
            return
        try:
            messages = self._decoder.feed(data)
        except QnetdFrameError as e:
            self._drop(f"bad frame from qnetd {self._where()}: {e}", now)
            return
        for message in messages:
            self._receive(message, now)
            if self._closed():
                return

    def handle_timer(self, now: float) -> None:
        if self.state is State.DISCONNECTED:
            if self._connect_at is not None and now >= self._connect_at:
                self._connect_at = None
                self.state = State.CONNECTING
                self._connect_deadline = now + max(self.settings.heartbeat, 1.0)
                self._actions.append(Connect(self.settings.host, self.settings.port))
            return
        if self.state is not State.READY:
            if self._connect_deadline is not None and now >= self._connect_deadline:
                self._drop(
                    f"no answer from qnetd {self._where()} within "
                    f"{self.settings.heartbeat:g} s ({self.state.value})",
                    now,
                )
            return
        if self._echo_at is not None and now >= self._echo_at:
            if self._echo_received != self._echo_expected:
                self._drop(
                    f"qnetd {self._where()} did not answer the echo request within "
                    f"{self.settings.heartbeat:g} s",
                    now,
                )
                return
            self._send_echo(now)

    def ride(self, now: float) -> bool:
        """A turn the node is awake for anyway (a heartbeat went out): send the next echo
        request now if it is due within a quarter heartbeat and the last one was answered,
        so it costs no wake-up of its own. Its deadline, and the reply's, stay a heartbeat
        after it goes. True when something was sent."""
        due = self._echo_at
        if (
            self.state is not State.READY
            or due is None
            or now < due - ECHO_RIDE * self.settings.heartbeat
            or self._echo_received != self._echo_expected
        ):
            return False
        self._send_echo(now)
        return True

    def _send_echo(self, now: float) -> None:
        self._echo_expected = (self._echo_expected + 1) & 0xFFFFFFFF
        self._echo_sent_at[self._echo_expected] = now
        self._send(Message(MsgType.ECHO_REQUEST, seq=self._echo_expected))
        self._echo_at = now + self.settings.heartbeat

    # -- outputs ----------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_action(self) -> ClientAction | None:
        return self._actions.popleft() if self._actions else None

    def next_event(self) -> QnetdEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        if self.state is State.DISCONNECTED:
            return self._connect_at
        if self.state is not State.READY:
            return self._connect_deadline
        return self._echo_at

    def view(self) -> QnetdView:
        return QnetdView(
            connected=self.state is State.READY,
            vote=self.vote,
            members=self.vote_members,
            since=self.vote_since,
            changed=self.changed,
            reason=self.reason,
        )

    # -- internals --------------------------------------------------------------------------

    def _closed(self) -> bool:
        return self.state is State.DISCONNECTED

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _send(self, message: Message) -> None:
        self._out += m.encode(message)

    def _send_init(self) -> None:
        s = self.settings
        self._send(
            Message(
                MsgType.INIT,
                seq=self._next_seq(),
                supported_messages=tuple(int(t) for t in MsgType),
                supported_options=tuple(int(o) for o in m.Opt),
                node_id=s.node_id,
                decision_algorithm=int(s.algorithm),
                heartbeat_interval=round(s.heartbeat * 1000),
                tie_breaker=s.tie_breaker,
                ring_id=self._ring,
            )
        )
        self.state = State.WAITING_INIT_REPLY

    def _send_membership(self, now: float) -> None:
        self._sent_ring = self._ring
        self._set_vote(None, None, now, "a new membership was sent: waiting for qnetd's vote")
        self._send(
            Message(
                MsgType.NODE_LIST,
                seq=self._next_seq(),
                node_list_type=NodeListType.MEMBERSHIP,
                ring_id=self._ring,
                nodes=tuple(NodeInfo(n) for n in sorted(self._members)),
                heuristics=self._heuristics,
            )
        )

    def _set_vote(
        self, vote: Vote | None, members: frozenset[int] | None, now: float, why: str
    ) -> None:
        if vote == self.vote and members == self.vote_members:
            return
        self.vote, self.vote_members = vote, members
        self.vote_since = now if vote is not None else None
        self.changed = now
        self.reason = why
        text = vote.name if vote is not None else "none"
        self._events.append(QnetdEvent("vote", f"vote {text}: {why}"))

    def _drop(self, reason: str, now: float, close: bool = True) -> None:
        was_ready = self.state is State.READY
        if was_ready:
            self.lost_at = now
        self.state = State.DISCONNECTED
        self._echo_at = None
        self._connect_deadline = None
        self._connect_at = now + self.settings.heartbeat
        self._out.clear()
        self._sent_ring = None
        if close:
            self._actions.append(Close(reason))
        self.reason = reason
        self.changed = now
        if self.vote is not None:
            self.vote, self.vote_members, self.vote_since = None, None, None
        self._events.append(
            QnetdEvent(
                "disconnected" if was_ready else "error", f"{reason}; no vote until connected again"
            )
        )

    def _receive(self, msg: Message, now: float) -> None:
        t = msg.type
        if t is MsgType.PREINIT_REPLY:
            self._preinit_reply(msg, now)
        elif t is MsgType.INIT_REPLY:
            self._init_reply(msg, now)
        elif t is MsgType.SERVER_ERROR:
            code = msg.reply_error_code
            self._drop(
                f"qnetd {self._where()} sent an error: "
                + (m.error_text(code) if code is not None else "no error code"),
                now,
            )
        elif t is MsgType.ECHO_REPLY:
            if msg.seq is None:
                self._drop(
                    f"qnetd {self._where()} sent an echo reply without a sequence number", now
                )
                return
            self._echo_received = msg.seq
            sent = self._echo_sent_at.pop(msg.seq, None)
            if sent is not None:
                self.rtt = now - sent
            self._echo_sent_at = {k: v for k, v in self._echo_sent_at.items() if k > msg.seq}
        elif t is MsgType.SET_OPTION_REPLY:
            self._need_ready(msg, now)
        elif t in (
            MsgType.NODE_LIST_REPLY,
            MsgType.HEURISTICS_CHANGE_REPLY,
            MsgType.ASK_FOR_VOTE_REPLY,
        ):
            if not self._need_ready(msg, now):
                return
            if msg.vote is None or msg.seq is None:
                self._drop(
                    f"qnetd {self._where()} sent a {t.name.lower()} without vote or "
                    "sequence number",
                    now,
                )
                return
            if t is MsgType.NODE_LIST_REPLY and msg.node_list_type is not NodeListType.MEMBERSHIP:
                self._events.append(QnetdEvent("reply", f"{_type_text(msg)}: {msg.vote.name}"))
                return
            self._apply_vote(msg, now)
        elif t is MsgType.VOTE_INFO:
            if not self._need_ready(msg, now):
                return
            if msg.vote is None or msg.seq is None or msg.ring_id is None:
                self._drop(
                    f"qnetd {self._where()} sent a vote info without vote, sequence "
                    "number or ring id",
                    now,
                )
                return
            self._apply_vote(msg, now)
            self._send(Message(MsgType.VOTE_INFO_REPLY, seq=msg.seq))
        else:
            self._drop(
                f"qnetd {self._where()} sent an unexpected {t.name.lower()} message "
                f"({self.state.value})",
                now,
            )

    def _need_ready(self, msg: Message, now: float) -> bool:
        if self.state is not State.READY:
            self._drop(
                f"qnetd {self._where()} sent {msg.type.name.lower()} before init was done", now
            )
            return False
        return True

    def _apply_vote(self, msg: Message, now: float) -> None:
        vote = msg.vote
        assert vote is not None
        name = _type_text(msg)
        if msg.ring_id is not None and msg.ring_id != self._sent_ring:
            self._events.append(
                QnetdEvent("reply", f"{name}: {vote.name} for an old ring id, ignored")
            )
            return
        self._events.append(QnetdEvent("reply", f"{name}: {vote.name}"))
        if vote in (Vote.ACK, Vote.NACK):
            members = self._members
            why = (
                "qnetd gives this node's partition the vote"
                if vote is Vote.ACK
                else "qnetd gives the vote to another partition"
            )
            self._set_vote(vote, members, now, f"{why} ({name})")
        elif vote in (Vote.ASK_LATER, Vote.WAIT_FOR_REPLY):
            self._set_vote(None, None, now, f"qnetd has not decided yet ({vote.name})")
        # NO_CHANGE / UNDEFINED: what was stays

    def _preinit_reply(self, msg: Message, now: float) -> None:
        if self.state is not State.WAITING_PREINIT_REPLY:
            self._drop(f"qnetd {self._where()} sent an unexpected preinit reply", now)
            return
        if msg.tls_supported is None or msg.tls_client_cert_required is None:
            self._drop(
                f"qnetd {self._where()}: preinit reply without tls_supported or "
                "tls_client_cert_required",
                now,
            )
            return
        self.server["tls"] = msg.tls_supported.name.lower()
        self.server["tls_client_cert_required"] = msg.tls_client_cert_required
        server, mine = msg.tls_supported, self.settings.tls
        if server is m.Tls.REQUIRED and not mine:
            self._drop(f"qnetd {self._where()} requires TLS and qnetd_tls is off", now)
            return
        if mine and server is m.Tls.UNSUPPORTED:
            self._drop(f"qnetd {self._where()} does not support TLS and qnetd_tls is on", now)
            return
        if mine:
            self._send(Message(MsgType.STARTTLS, seq=self._next_seq()))
            self.state = State.WAITING_STARTTLS
            self._actions.append(StartTls())
            return
        self._send_init()

    def _init_reply(self, msg: Message, now: float) -> None:
        if self.state is not State.WAITING_INIT_REPLY:
            self._drop(f"qnetd {self._where()} sent an unexpected init reply", now)
            return
        code = msg.reply_error_code
        if code is None:
            self._drop(f"qnetd {self._where()}: init reply without an error code", now)
            return
        if code != 0:
            self._drop(f"qnetd {self._where()} refused init: {m.error_text(code)}", now)
            return
        algorithms = msg.supported_decision_algorithms or ()
        self.server.update(
            {
                "max_request": msg.server_maximum_request_size,
                "max_reply": msg.server_maximum_reply_size,
                "algorithms": [_algo_name(a) for a in algorithms],
            }
        )
        if int(self.settings.algorithm) not in algorithms:
            self._drop(
                f"qnetd {self._where()} does not offer the {self.settings.algorithm.name.lower()} "
                f"algorithm (it offers {', '.join(_algo_name(a) for a in algorithms) or 'none'})",
                now,
            )
            return
        options = msg.supported_options or ()
        self._server_heuristics = m.Opt.HEURISTICS in options
        self._server_kap = m.Opt.KEEP_ACTIVE_PARTITION_TIE_BREAKER in options
        self.state = State.READY
        self._connect_deadline = None
        self.changed = now
        self.reason = "connected"
        self._events.append(QnetdEvent("connected", f"connected to qnetd {self._where()}"))
        if self._server_kap:
            self._send(
                Message(
                    MsgType.SET_OPTION,
                    seq=self._next_seq(),
                    keep_active_partition_tie_breaker=self.settings.keep_active_partition,
                )
            )
        self._send(
            Message(
                MsgType.NODE_LIST,
                seq=self._next_seq(),
                node_list_type=NodeListType.INITIAL_CONFIG,
                nodes=tuple(NodeInfo(n) for n in self.settings.node_ids),
            )
        )
        self._send_membership(now)
        self._echo_expected = self._echo_received = 0
        self._echo_at = now + self.settings.heartbeat


def _type_text(msg: Message) -> str:
    if msg.type is MsgType.NODE_LIST_REPLY and msg.node_list_type is not None:
        return f"{msg.node_list_type.name.lower().replace('_', ' ')} node list reply"
    return msg.type.name.lower().replace("_", " ")


def _algo_name(a: int) -> str:
    try:
        return m.Algorithm(a).name.lower()
    except ValueError:
        return str(a)
