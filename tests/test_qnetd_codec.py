"""The qdevice-net codec and client against byte vectors, some captured from the real qnetd.

`tests/vectors/qnetd/exchange-ffsplit-alone.txt` is one whole exchange with Debian's
corosync-qnetd 3.0.3 (how it was made is at its top). Replaying the server's side into a
fresh client must give, byte for byte, what the client sent then; the hand-made vectors
pin the layout of each option as qdevice's `tlv.c` writes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hbd.core.qnetd import msg as m
from hbd.core.qnetd.client import (
    ClientSettings,
    Close,
    Connect,
    QnetdClient,
    State,
    decision_time,
    heartbeat_interval,
)
from hbd.core.qnetd.msg import (
    Decoder,
    Heuristics,
    Message,
    MsgType,
    NodeInfo,
    NodeListType,
    QnetdFrameError,
    RingId,
    TieBreaker,
    TieBreakerMode,
    Vote,
)

VECTORS = Path(__file__).parent / "vectors" / "qnetd"


def exchange(name: str) -> list[tuple[str, bytes]]:
    out = []
    for line in (VECTORS / name).read_text().splitlines():
        if line and not line.startswith("#"):
            way, hexdata = line.split()
            out.append((way, bytes.fromhex(hexdata)))
    return out


def test_preinit_is_header_then_seq_and_cluster_name() -> None:
    data = m.encode(Message(MsgType.PREINIT, seq=0, cluster_name="hbdtest"))
    assert data.hex() == (
        "0000"
        "00000013"  # type 0, 19 bytes follow
        "0000"
        "0004"
        "00000000"  # msg seq number 0
        "0001"
        "0007"
        "68626474657374"  # cluster name "hbdtest"
    )
    assert m.decode(data) == Message(MsgType.PREINIT, seq=0, cluster_name="hbdtest")


def test_ring_id_tie_breaker_and_node_info_layouts() -> None:
    data = m.encode(
        Message(
            MsgType.NODE_LIST,
            seq=7,
            node_list_type=NodeListType.MEMBERSHIP,
            ring_id=RingId(2, 0x0102030405060708),
            nodes=(NodeInfo(1), NodeInfo(2, 3, m.NodeState.MEMBER)),
            heuristics=Heuristics.FAIL,
        )
    )
    body = data[6:].hex()
    assert "000d000c000000020102030405060708" in body  # ring id: u32 + u64
    assert "001100080009000400000001" in body  # node info {node id 1}
    assert "001100150009000400000002000f0004000000030010000101" in body
    assert body.endswith("0016000102")  # heuristics fail
    tb = m.encode(Message(MsgType.INIT, tie_breaker=TieBreaker(TieBreakerMode.NODE_ID, 9)))
    assert tb[6:].hex() == "001500050300000009"
    decoded = m.decode(data)
    assert decoded.nodes[1] == NodeInfo(2, 3, m.NodeState.MEMBER)
    assert decoded.ring_id == RingId(2, 0x0102030405060708)


def test_unknown_options_are_skipped() -> None:
    data = bytes.fromhex("00090000000d00000004000000050063000101")
    assert m.decode(data) == Message(MsgType.ECHO_REPLY, seq=5)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("006300000000", "unknown message type 99"),
        ("00090000000700000004000000", "option msg_seq_number says 4 bytes, 3 remain"),
        ("0009000000020000", "2 stray bytes at offset 0"),
        ("000d000000050013000107", "option vote has unknown value 7"),
        ("000d00000007001300030000ff", "option vote is 3 bytes, not 1"),
        ("000d00000003001300", "header says 3 bytes"),
        ("0001000000050011000100", "node_info: 1 stray bytes"),
    ],
)
def test_bad_frames_are_named(data: str, needle: str) -> None:
    raw = bytes.fromhex(data)
    with pytest.raises(QnetdFrameError, match=needle.replace("(", r"\(")):
        if needle.startswith("header"):
            m.decode(raw[:-1])
        else:
            Decoder().feed(raw)


def test_decoder_splits_a_stream_fed_a_byte_at_a_time() -> None:
    stream = b"".join(d for way, d in exchange("exchange-ffsplit-alone.txt") if way == "RECV")
    whole = Decoder().feed(stream)
    pieces: list[Message] = []
    d = Decoder()
    for i in range(len(stream)):
        pieces += d.feed(stream[i : i + 1])
    assert pieces == whole
    assert [x.type for x in whole] == [
        MsgType.PREINIT_REPLY,
        MsgType.INIT_REPLY,
        MsgType.SET_OPTION_REPLY,
        MsgType.NODE_LIST_REPLY,
        MsgType.VOTE_INFO,
        MsgType.NODE_LIST_REPLY,
        MsgType.ECHO_REPLY,
    ]


def test_an_oversized_message_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(QnetdFrameError, match="more than the 32768 accepted"):
        Decoder().feed(bytes.fromhex("000b00100000"))


def settings(node_id: int = 1) -> ClientSettings:
    return ClientSettings("127.0.0.1", 15403, "hbdtest", node_id, (1, 2), heartbeat=1.0)


def start(client: QnetdClient, now: float = 0.0) -> None:
    client.handle_timer(now)
    assert client.next_action() == Connect("127.0.0.1", 15403)
    client.connection_made(now)


def test_replaying_the_real_server_gives_back_what_the_client_sent() -> None:
    """The captured exchange: every client write is what a fresh client writes, given the
    server's bytes in the same order; the vote comes out ACK for membership {1}."""
    c = QnetdClient(settings(), 0.0)
    c.set_membership(frozenset({1}), RingId(1, 5), Heuristics.PASS, 0.0)
    start(c)
    now = 0.0
    for way, data in exchange("exchange-ffsplit-alone.txt"):
        if way == "SEND":
            if data[:2] == b"\x00\x08":  # the echo request is due a heartbeat later
                now += 1.0
                c.handle_timer(now)
            assert c.data_to_send().hex() == data.hex()
        else:
            c.data_received(data, now)
    view = c.view()
    assert view.connected and view.vote is Vote.ACK and view.members == frozenset({1})
    assert c.server["algorithms"] == ["test", "ffsplit", "two_node_lms", "lms"]
    assert c.rtt == 0.0


def ready(node_id: int = 1) -> QnetdClient:
    c = QnetdClient(settings(node_id), 0.0)
    c.set_membership(frozenset({1, 2}), RingId(1, 9), Heuristics.PASS, 0.0)
    start(c)
    for way, data in exchange("exchange-ffsplit-alone.txt")[:4]:
        if way == "RECV":
            c.data_received(data, 0.0)
    assert c.state is State.READY
    c.data_to_send()
    return c


def vote_info(seq: int, ring: RingId, vote: Vote) -> bytes:
    return m.encode(Message(MsgType.VOTE_INFO, seq=seq, ring_id=ring, vote=vote))


def test_a_vote_for_an_old_ring_is_ignored_and_a_new_membership_lapses_the_vote() -> None:
    c = ready()
    c.data_received(vote_info(1, RingId(1, 9), Vote.ACK), 0.1)
    assert c.view().vote is Vote.ACK and c.view().members == frozenset({1, 2})
    assert m.decode(c.data_to_send()) == Message(MsgType.VOTE_INFO_REPLY, seq=1)
    c.set_membership(frozenset({1}), RingId(1, 10), Heuristics.PASS, 0.2)
    sent = m.decode(c.data_to_send())
    assert sent.node_list_type is NodeListType.MEMBERSHIP and sent.ring_id == RingId(1, 10)
    assert c.view().vote is None  # the ACK was for {1, 2}
    c.data_received(vote_info(2, RingId(1, 9), Vote.ACK), 0.3)
    assert c.view().vote is None  # stale: for the old ring
    c.data_received(vote_info(3, RingId(1, 10), Vote.NACK), 0.4)
    assert c.view().vote is Vote.NACK and c.view().since == 0.4


def test_a_missing_echo_reply_drops_the_connection_and_the_vote() -> None:
    c = ready()
    c.data_received(vote_info(1, RingId(1, 9), Vote.ACK), 0.1)
    c.handle_timer(1.0)  # echo 1 out
    c.handle_timer(2.0)  # no reply: drop
    assert isinstance(c.next_action(), Close)
    view = c.view()
    assert not view.connected and view.vote is None
    assert "did not answer the echo request within 1 s" in view.reason
    assert c.get_timer() == 3.0  # reconnect a heartbeat later


def test_an_answered_echo_request_rides_a_turn_up_to_a_quarter_heartbeat_early() -> None:
    c = ready()  # READY at 0.0: the first echo request is due at 1.0
    assert not c.ride(0.7) and c.data_to_send() == b""  # too early
    assert c.ride(0.8)
    assert m.decode(c.data_to_send()) == Message(MsgType.ECHO_REQUEST, seq=1)
    assert c.get_timer() == 1.8  # the reply's deadline: a heartbeat after it went
    assert not c.ride(1.6)  # due soon, but the last one is unanswered: wait for the deadline
    c.data_received(m.encode(Message(MsgType.ECHO_REPLY, seq=1)), 0.81)
    assert c.view().connected and c.rtt == pytest.approx(0.01)
    assert c.ride(1.6)
    assert m.decode(c.data_to_send()) == Message(MsgType.ECHO_REQUEST, seq=2)
    c.handle_timer(2.6)  # no reply to the one that rode: dropped at its deadline
    assert isinstance(c.next_action(), Close)
    assert "did not answer the echo request within 1 s" in c.view().reason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (Message(MsgType.SERVER_ERROR, seq=1, reply_error_code=17), "17 (duplicate node id)"),
        (Message(MsgType.ECHO_REQUEST, seq=1), "unexpected echo_request"),
        (
            Message(MsgType.VOTE_INFO, seq=1, vote=Vote.ACK),
            "without vote, sequence number or ring id",
        ),
    ],
)
def test_bad_messages_from_the_server_drop_it_with_a_reason(message: Message, reason: str) -> None:
    c = ready()
    c.data_received(m.encode(message), 0.5)
    assert c.state is State.DISCONNECTED
    assert reason in c.view().reason


def test_garbage_from_the_server_names_server_and_offset() -> None:
    c = ready()
    c.data_received(bytes.fromhex("006300000000"), 0.5)
    assert c.view().reason.startswith(
        "bad frame from qnetd 127.0.0.1:15403: unknown message type 99"
    )


def test_init_refused_and_missing_algorithm() -> None:
    c = QnetdClient(settings(), 0.0)
    start(c)
    c.data_received(exchange("exchange-ffsplit-alone.txt")[1][1], 0.0)
    c.data_to_send()
    reply = Message(
        MsgType.INIT_REPLY, seq=1, reply_error_code=0, supported_decision_algorithms=(3,)
    )
    c.data_received(m.encode(reply), 0.0)
    assert "does not offer the ffsplit algorithm (it offers lms)" in c.view().reason


def test_tls_required_by_the_server_and_off_here_is_refused() -> None:
    c = QnetdClient(settings(), 0.0)
    start(c)
    c.data_received(
        m.encode(
            Message(
                MsgType.PREINIT_REPLY,
                seq=0,
                tls_supported=m.Tls.REQUIRED,
                tls_client_cert_required=True,
            )
        ),
        0.0,
    )
    assert "requires TLS and qnetd_tls is off" in c.view().reason


def test_heartbeat_and_decision_time_from_keepalive_and_deadtime() -> None:
    assert heartbeat_interval(0.2, 1.0) == 1.0  # qnetd's minimum
    assert heartbeat_interval(2.0, 30.0) == 24.0  # 0.8 x deadtime, as qdevice
    assert decision_time(1.0) == 2.0
