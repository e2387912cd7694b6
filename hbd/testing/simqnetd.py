"""A simulated corosync-qnetd for SimCluster: the server's side of the real protocol.

It decodes what hbd's qdevice client writes and answers as corosync-qnetd 3.0.3 does
(`qnetd-client-msg-received.c`, `qnetd-algo-ffsplit.c`): preinit and init replies, set
option replies, node list replies, echo replies, and the ffsplit decision -- wait until
every connected node's membership agrees (same ring id, same members), then give the
vote to the partition with more nodes; on an even split to the one with more connected
clients plus heuristics passes minus fails, then more connected clients, then (all
clients asking for it) the one that had the vote before, then the tie-breaker. NACKs go
out first; ACKs only once every NACK was acknowledged. A client silent for 1.5 of its
heartbeat intervals is dropped (qnetd's dead peer detection). Only ffsplit is modelled
(`lms` decides 50:50 splits of two nodes the same way).

The transport is the simulator's: `SimCluster` carries bytes and connection ends with
latency and cuts, as TCP would (held while a direction is cut, delivered when it heals).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hbd.core.qnetd import msg as m
from hbd.core.qnetd.msg import Message, MsgType, NodeListType, RingId, Vote

DPD_COEFFICIENT = 1.5


@dataclass
class ServerClient:
    conn: int
    node: str  # the simulated machine it comes from
    node_id: int = 0
    cluster: str = ""
    heartbeat: float = 1.0
    init_done: bool = False
    tie_breaker: m.TieBreaker = field(default_factory=lambda: m.TieBreaker(m.TieBreakerMode.LOWEST))
    config: tuple[int, ...] = ()
    members: tuple[int, ...] = ()
    ring: RingId | None = None
    heuristics: m.Heuristics = m.Heuristics.UNDEFINED
    kap: bool = False
    state: str = "waiting"  # waiting | nack | ack
    vote_seq: int = 0
    last_msg: float = 0.0
    decoder: m.Decoder = field(default_factory=m.Decoder)


class SimQnetd:
    """The server: connections in, bytes out through `send` (conn, bytes) and `close`."""

    def __init__(self) -> None:
        self.clients: dict[int, ServerClient] = {}
        self.quorate: dict[str, tuple[int, ...]] = {}  # cluster -> last quorate partition
        self.sending: dict[str, str] = {}  # cluster -> "nacks" | "acks" | "idle"
        self.out: list[tuple[int, bytes]] = []
        self.closed: list[int] = []  # connections the server dropped
        self.log: list[tuple[float, str]] = []

    # -- transport --------------------------------------------------------------------------

    def accept(self, conn: int, node: str, now: float) -> None:
        self.clients[conn] = ServerClient(conn, node, last_msg=now)

    def receive(self, conn: int, data: bytes, now: float) -> None:
        c = self.clients.get(conn)
        if c is None:
            return
        c.last_msg = now
        try:
            messages = c.decoder.feed(data)
        except m.QnetdFrameError as e:
            self._drop(c, f"bad frame: {e}", now)
            return
        for msg in messages:
            self._handle(c, msg, now)
            if conn not in self.clients:
                return

    def disconnected(self, conn: int, now: float) -> None:
        """The client's end closed (FIN or RST reached the server)."""
        c = self.clients.get(conn)
        if c is not None:
            self._remove(c, now, "client closed the connection")

    def get_timer(self) -> float | None:
        times = [c.last_msg + DPD_COEFFICIENT * c.heartbeat for c in self.clients.values()]
        return min(times, default=None)

    def handle_timer(self, now: float) -> None:
        for c in list(self.clients.values()):
            if now >= c.last_msg + DPD_COEFFICIENT * c.heartbeat:
                self._drop(c, "dead peer detection: no message for 1.5 heartbeats", now)

    def votes(self) -> dict[str, str]:
        """node -> its ffsplit client state, for tests."""
        return {c.node: c.state for c in self.clients.values()}

    # -- protocol ---------------------------------------------------------------------------

    def _send(self, c: ServerClient, msg: Message) -> None:
        self.out.append((c.conn, m.encode(msg)))

    def _drop(self, c: ServerClient, why: str, now: float) -> None:
        self.closed.append(c.conn)
        self._remove(c, now, why)

    def _remove(self, c: ServerClient, now: float, why: str) -> None:
        del self.clients[c.conn]
        self.log.append((now, f"{c.node} ({c.node_id}) gone: {why}"))
        if c.init_done and c.members:
            self._ffsplit(c.cluster, now)

    def _handle(self, c: ServerClient, msg: Message, now: float) -> None:
        t = msg.type
        if t is MsgType.PREINIT:
            c.cluster = msg.cluster_name or ""
            self._send(
                c,
                Message(
                    MsgType.PREINIT_REPLY,
                    seq=msg.seq,
                    tls_supported=m.Tls.UNSUPPORTED,
                    tls_client_cert_required=True,
                ),
            )
        elif t is MsgType.INIT:
            if any(
                o.cluster == c.cluster and o.node_id == msg.node_id and o.init_done
                for o in self.clients.values()
            ):
                self._send(c, Message(MsgType.INIT_REPLY, seq=msg.seq, reply_error_code=17))
                return
            c.node_id = msg.node_id or 0
            c.heartbeat = (msg.heartbeat_interval or 1000) / 1000.0
            if msg.tie_breaker is not None:
                c.tie_breaker = msg.tie_breaker
            if msg.ring_id is not None:
                c.ring = msg.ring_id
            c.init_done = True
            self._send(
                c,
                Message(
                    MsgType.INIT_REPLY,
                    seq=msg.seq,
                    reply_error_code=0,
                    supported_messages=tuple(int(x) for x in MsgType),
                    supported_options=tuple(int(x) for x in m.Opt),
                    server_maximum_request_size=1 << 15,
                    server_maximum_reply_size=1 << 15,
                    supported_decision_algorithms=(0, 1, 2, 3),
                ),
            )
        elif t is MsgType.SET_OPTION:
            if msg.keep_active_partition_tie_breaker is not None:
                c.kap = msg.keep_active_partition_tie_breaker
            self._send(
                c,
                Message(
                    MsgType.SET_OPTION_REPLY,
                    seq=msg.seq,
                    keep_active_partition_tie_breaker=msg.keep_active_partition_tie_breaker,
                ),
            )
        elif t is MsgType.ECHO_REQUEST:
            self._send(c, Message(MsgType.ECHO_REPLY, seq=msg.seq))
        elif t is MsgType.NODE_LIST:
            ids = tuple(n.node_id for n in msg.nodes)
            if msg.node_list_type in (NodeListType.INITIAL_CONFIG, NodeListType.CHANGED_CONFIG):
                c.config = ids
                vote = Vote.ASK_LATER if not c.members else self._ffsplit(c.cluster, now, c)
            elif msg.node_list_type is NodeListType.MEMBERSHIP:
                c.members = ids
                c.ring = msg.ring_id
                if msg.heuristics is not None:
                    c.heuristics = msg.heuristics
                vote = Vote.ASK_LATER if not c.config else self._ffsplit(c.cluster, now, c)
            else:
                vote = Vote.NO_CHANGE
            self._send(
                c,
                Message(
                    MsgType.NODE_LIST_REPLY,
                    seq=msg.seq,
                    node_list_type=msg.node_list_type,
                    ring_id=c.ring or RingId(0, 0),
                    vote=vote,
                ),
            )
        elif t is MsgType.HEURISTICS_CHANGE:
            c.heuristics = msg.heuristics or m.Heuristics.UNDEFINED
            vote = self._ffsplit(c.cluster, now, c) if c.members and c.config else Vote.ASK_LATER
            self._send(
                c,
                Message(
                    MsgType.HEURISTICS_CHANGE_REPLY,
                    seq=msg.seq,
                    ring_id=c.ring or RingId(0, 0),
                    heuristics=c.heuristics,
                    vote=vote,
                ),
            )
        elif t is MsgType.VOTE_INFO_REPLY:
            if msg.seq == c.vote_seq:
                c.state = "waiting" if c.state != "ack" else "acked"
                self._progress(c.cluster, now)
        else:
            self._send(c, Message(MsgType.SERVER_ERROR, seq=msg.seq, reply_error_code=8))

    # -- ffsplit ----------------------------------------------------------------------------

    def _cluster(self, name: str) -> list[ServerClient]:
        return [c for c in self.clients.values() if c.cluster == name and c.init_done]

    def _ffsplit(self, name: str, now: float, asking: ServerClient | None = None) -> Vote:
        clients = self._cluster(name)
        by_id = {c.node_id: c for c in clients}
        for c1 in clients:
            for n in c1.members:
                c2 = by_id.get(n)
                if c2 is None:
                    continue
                if c2.ring != c1.ring or set(c2.members) != set(c1.members):
                    self.log.append((now, f"{name}: membership not stable"))
                    return Vote.WAIT_FOR_REPLY
        best: ServerClient | None = None
        kap = bool(clients) and all(c.kap for c in clients)
        for c in clients:
            if c.members and self._better(c, best, by_id, kap, name):
                best = c
        quorate = best.members if best is not None else ()
        self.quorate[name] = quorate
        for c in clients:
            c.state = "ack" if c.node_id in quorate else "nack"
        self.log.append((now, f"{name}: quorate partition {sorted(quorate)}"))
        self.sending[name] = "nacks"
        if not self._send_votes(name, "nack"):
            self.sending[name] = "acks"
            if not self._send_votes(name, "ack"):
                self.sending[name] = "idle"
        return Vote.NO_CHANGE

    def _better(
        self,
        c: ServerClient,
        best: ServerClient | None,
        by_id: dict[int, ServerClient],
        kap: bool,
        name: str,
    ) -> bool:
        size = len(c.config) or 2
        if len(c.members) * 2 > size:
            return True
        if len(c.members) * 2 < size:
            return False

        def stats(x: ServerClient | None) -> tuple[int, int]:
            if x is None:
                return 0, 0
            active = [by_id[n] for n in x.members if n in by_id]
            passes = sum(a.heuristics is m.Heuristics.PASS for a in active)
            fails = sum(a.heuristics is m.Heuristics.FAIL for a in active)
            return len(active) + passes - fails, len(active)

        (s1, a1), (s2, a2) = stats(c), stats(best)
        if s1 != s2:
            return s1 > s2
        if a1 != a2:
            return a1 > a2
        previous = self.quorate.get(name, ())
        if kap and best is not None:
            in1, in2 = c.node_id in previous, best.node_id in previous
            if in1 != in2:
                return in1
        tb = c.tie_breaker
        config = c.config or tuple(c.members)
        if tb.mode is m.TieBreakerMode.LOWEST:
            preferred = min(config)
        elif tb.mode is m.TieBreakerMode.HIGHEST:
            preferred = max(config)
        else:
            preferred = tb.node_id
        return preferred in c.members

    def _send_votes(self, name: str, which: str) -> int:
        sent = 0
        for c in self._cluster(name):
            if c.state == which:
                c.vote_seq += 1
                vote = Vote.ACK if which == "ack" else Vote.NACK
                self._send(
                    c,
                    Message(
                        MsgType.VOTE_INFO,
                        seq=c.vote_seq,
                        ring_id=c.ring or RingId(0, 0),
                        vote=vote,
                    ),
                )
                sent += 1
        return sent

    def _progress(self, name: str, now: float) -> None:
        clients = self._cluster(name)
        if self.sending.get(name) == "nacks" and not any(c.state == "nack" for c in clients):
            self.sending[name] = "acks"
            if not self._send_votes(name, "ack"):
                self.sending[name] = "idle"
        elif self.sending.get(name) == "acks" and not any(c.state == "ack" for c in clients):
            self.sending[name] = "idle"
