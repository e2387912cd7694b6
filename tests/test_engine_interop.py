"""Regressions found by running hbd beside a real Heartbeat 3.0.6 node
(tests/test_interop_heartbeat.py), pinned at the engine level with frames captured from the
real daemon (tests/vectors/heartbeat).

Heartbeat in haresources mode (crm no, auto_failback on or off) sends `t=starting` when it
goes active and then waits for a peer's `t=resource ... isstable=1`: until one comes it
acquires none of its own groups and a SIGTERM only logs "Shutdown delayed until current
resource activity finishes." -- forever. hbd running no groups must answer that it holds
none and is stable.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from test_engine import SERIAL, UDP, engine, events, frames, keys

from hbd.core.engine import ECHO_INTERVAL, Engine
from hbd.core.errors import LocalProtocolError
from hbd.core.events import MessageReceived
from hbd.core.wire import Dropped
from hbd.core.wire import ha_control as ctl
from hbd.core.wire.ha_message import HaMessage
from hbd.core.wire.heartbeat import decode_frame, encode_netstring

VECTORS = Path(__file__).parent / "vectors" / "heartbeat"


def feed(e: Engine, data: list[bytes], start: float = 0.0) -> list[tuple[str, HaMessage]]:
    """Every frame of `data` in turn, 0.25 s apart; what the engine sent (decoded)."""
    sent: list[tuple[str, HaMessage]] = []
    now = start
    for frame in data:
        now += 0.25
        e.receive_frame(UDP, frame, now, source="10.9.0.1")
        e.handle_timer(now)
        for pid, out in e.frames_to_send(now):
            msg = decode_frame(out, keys())
            assert not isinstance(msg, Dropped), msg
            sent.append((pid, msg))
    return sent


def typed(sent: list[tuple[str, HaMessage]], t: str) -> list[tuple[str, HaMessage]]:
    return [(pid, m) for pid, m in sent if m.get("t") == t]


def captured(method: str, sender: str, t: str) -> HaMessage:
    """The first message of type `t` that real Heartbeat node `sender` sent over UDP."""
    for line in (VECTORS / method / "frames.jsonl").read_text().splitlines():
        d = json.loads(line)
        if d["medium"] != "udp" or d["from"] != sender:
            continue
        msg = decode_frame(bytes.fromhex(d["hex"]), keys())
        if not isinstance(msg, Dropped) and msg.get("t") == t:
            return msg
    raise AssertionError(f"no t={t} from {sender} in {method}")


def test_a_starting_heartbeat_peer_hears_that_we_hold_nothing_and_are_stable() -> None:
    e = engine()
    sent = feed(e, frames("sha1", "hb1"))
    starts = [m for m in events(e) if isinstance(m, MessageReceived) and m.type == "starting"]
    assert len(starts) == 1  # hb1 went active once in the capture
    answers = typed(sent, "resource")
    # one message, sent once on every path (the same seq on each, counted once by the peer)
    assert sorted(pid for pid, _ in answers) == sorted([SERIAL, UDP])
    (_, first), (_, second) = answers
    assert first.get("seq") == second.get("seq")
    assert first.get("rsc_hold") == "none"
    assert first.get("rtype") == "full"
    assert first.get("isstable") == "1"
    assert first.get("src") == "hb2"
    assert first.get("info") is None
    # the same fields, in the same order, as Heartbeat's own T_RESOURCES (minus auth)
    real = captured("sha1", "hb1", "resource")
    assert first.names() == real.names()


def test_the_answer_is_kept_for_retransmission() -> None:
    e = engine()
    sent = feed(e, frames("sha1", "hb1"))
    (_, answer), _ = typed(sent, "resource")
    seq = int(answer.get("seq") or "0", 16)
    rexmit = ctl.rexmit_message(
        "hb1", bytes(range(0x10, 0x20)), "hb2", None, seq, seq, 0x2A, 0x6B05FFB9
    )
    e.receive_frame(UDP, encode_netstring(rexmit, keys().active), 100.0)
    again = [decode_frame(d, keys()) for _, d in e.frames_to_send(100.0)]
    resent = [m for m in again if not isinstance(m, Dropped) and m.get("t") == "resource"]
    assert resent and resent[0].get("seq") == answer.get("seq")


def test_a_retransmission_resends_the_same_bytes_until_the_key_changes() -> None:
    """Kept frames are re-sent as they were (no encoding or signing per request); after a
    reload that rolls the key, they are signed again with the new one."""
    e = engine()
    sent = feed(e, frames("sha1", "hb1"))
    (_, answer), _ = typed(sent, "resource")
    seq = int(answer.get("seq") or "0", 16)

    def rexmit(now: float) -> list[bytes]:
        req = ctl.rexmit_message(
            "hb1", bytes(range(0x10, 0x20)), "hb2", None, seq, seq, 0x2A, 0x6B05FFB9
        )
        e.receive_frame(UDP, encode_netstring(req, keys().active), now)
        return [d for p, d in e.frames_to_send(now) if p == UDP and b"t=resource" in d]

    first = rexmit(100.0)
    assert first and first == rexmit(200.0)  # past max_rexmit_delay: the same bytes again
    rolled = keys()
    rolled = dataclasses.replace(rolled, active=rolled.entries[2], rotation=frozenset({1}))
    e.reconfigure(dataclasses.replace(e.settings, auth=rolled), 250.0)
    e.frames_to_send(250.0)
    again = rexmit(300.0)
    assert again and again != first
    msg = decode_frame(again[0], rolled)
    assert not isinstance(msg, Dropped) and msg.get("seq") == answer.get("seq")


def test_resource_messages_from_the_peer_are_not_answered() -> None:
    e = engine()

    def is_starting(frame: bytes) -> bool:
        msg = decode_frame(frame, keys())
        return not isinstance(msg, Dropped) and msg.get("t") == "starting"

    data = [f for f in frames("sha1", "hb1") if not is_starting(f)]
    sent = feed(e, data)
    got = [m.type for m in events(e) if isinstance(m, MessageReceived)]
    assert "resource" in got and "starting" not in got
    assert typed(sent, "resource") == []


def test_with_groups_of_its_own_hbd_leaves_the_answer_to_the_resource_protocol() -> None:
    e = engine()
    e.answers_starting = False  # the node has groups: hbd.core.hbresources answers
    sent = feed(e, frames("sha1", "hb1"))
    assert typed(sent, "resource") == []
    assert any(isinstance(m, MessageReceived) and m.type == "starting" for m in events(e))


def test_resource_message_refuses_an_unknown_holding() -> None:
    with pytest.raises(LocalProtocolError, match="rsc_hold"):
        ctl.resource_message("hb2", bytes(16), 1, 1, 1, "some", True)
    msg = ctl.resource_message("hb2", bytes(16), 1, 1, 1, "all", False, comment="shutdown")
    assert (msg.get("rsc_hold"), msg.get("isstable"), msg.get("info")) == ("all", "0", "shutdown")


def test_a_heartbeat_peer_is_never_sent_hbds_round_trip_probe() -> None:
    # Heartbeat logs an unsequenced message of a type it does not know as an error, with
    # a dump of it: "process_clustermsg: missing seqno". Its status carries no `hbdwd`,
    # so hbd knows it for Heartbeat and measures no round trip to it.
    e = engine()
    data = frames("sha1", "hb1")
    assert len(data) * 0.25 > 2 * ECHO_INTERVAL  # long enough for two rounds of probes
    sent = feed(e, data)
    assert "hb1" in e.membership.live_nodes()
    assert typed(sent, "hbd-echo") == [] and typed(sent, "hbd-echo-reply") == []
    assert {e.rtt("hb1", pid) for pid in (SERIAL, UDP)} == {None}
