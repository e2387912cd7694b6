"""The engine against real Heartbeat 3.0.6 frames (captured in tests/vectors) and itself."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest

from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.engine import (
    ADVERT_INTERVAL,
    ADVERT_REPEAT_MAX,
    BEAT_MARGIN,
    ECHO_INTERVAL,
    Engine,
    EngineSettings,
    PathKind,
)
from hbd.core.errors import DropReason, LocalProtocolError
from hbd.core.events import (
    Event,
    FrameDropped,
    LocalActive,
    MessageReceived,
    NodeActive,
    NodeUp,
    PathUp,
)
from hbd.core.model import WireFormat
from hbd.core.states import LocalState, NodeState, PathState
from hbd.core.wire import Dropped
from hbd.core.wire import heartbeat as heartbeat_codec
from hbd.core.wire.heartbeat import decode_frame
from hbd.core.wire.native import cluster_id, decode_native

VECTORS = Path(__file__).parent / "vectors" / "heartbeat"
UDP, SERIAL = "bcast:hbc0", "serial:/dev/ttyS0"
UDP2 = "ucast:hbc1:10.0.0.1"


def keys(method: str = "sha1") -> AuthKeys:
    """The vectors' keys, signing with sha1 and accepting md5 too (a rotation); with
    `method="crc"` the crc entry alone (crc is never accepted beside a key)."""
    raw = json.loads((VECTORS / "keys.json").read_text())
    entries = {
        int(i): AuthEntry(int(i), AuthMethod(e["method"]), e["key"].encode())
        for i, e in raw.items()
    }
    if method == "crc":
        return AuthKeys(active=entries[3], entries={3: entries[3]})
    return AuthKeys(active=entries[1], entries=entries, rotation=frozenset({2}))


def engine(
    wire: WireFormat = WireFormat.HEARTBEAT, node: str = "hb2", method: str = "sha1"
) -> Engine:
    settings = EngineSettings(
        node=node,
        uuid=bytes(range(0x10, 0x20)) if node == "hb1" else bytes(range(0xA0, 0xB0)),
        generation=0x2B,
        nodes=("hb1", "hb2"),
        paths=((SERIAL, PathKind.SERIAL), (UDP, PathKind.DATAGRAM)),
        auth=keys(method),
        keepalive=1.0,
        deadtime=8.0,
        warntime=4.0,
        initdead=16.0,
        wire=wire,
        cluster_id=cluster_id(("hb1", "hb2"), 694),
        wall_offset=1_700_000_000.0,
    )
    return Engine(settings, now=0.0)


def events(e: Engine) -> list[Event]:
    return list(iter(e.next_event, None))


def frames(method: str, sender: str) -> list[bytes]:
    lines = (VECTORS / method / "frames.jsonl").read_text().splitlines()
    return [
        bytes.fromhex(d["hex"])
        for d in map(json.loads, lines)
        if d["medium"] == "udp" and d["from"] == sender
    ]


@pytest.mark.parametrize("method", ["sha1", "md5", "crc"])
def test_real_heartbeat_peer_over_udp_is_heard_and_answered(method: str) -> None:
    e = engine(method=method)
    sent: list[tuple[str, bytes]] = []
    now = 0.0
    for data in frames(method, "hb1"):
        now += 0.25
        e.receive_frame(UDP, data, now, source="10.9.0.1")
        e.handle_timer(now)
        sent += e.frames_to_send(now)
    got = events(e)
    assert [x for x in got if isinstance(x, FrameDropped)] == []
    assert NodeUp("hb1", "up", 0x2A, UDP) in got and NodeActive("hb1") in got
    assert PathUp("hb1", UDP) in got
    assert e.membership.path_state("hb1", SERIAL) is PathState.INIT
    # other cluster messages (t=starting, t=resource) reach the caller
    assert {m.type for m in got if isinstance(m, MessageReceived)} >= {"starting", "resource"}
    # hb1 asked us (hb2) for the node list: we answered, in both formats, properly signed
    replies = [decode_frame(data, keys(method)) for _, data in sent]
    assert not any(isinstance(r, Dropped) for r in replies)
    types = [(r.get("t"), r.get("dest")) for r in replies if not isinstance(r, Dropped)]
    assert ("repnodes", "hb1") in types
    rep = next(r for r in replies if not isinstance(r, Dropped) and r.get("t") == "repnodes")
    assert rep.get("nodelist") == "hb1 hb2 "
    status = [r for r in replies if not isinstance(r, Dropped) and r.get("t") == "status"]
    assert status and status[0].names()[:4] == ("t", "st", "dt", "protocol")
    assert status[0].get("dt") == "1f40" and status[0].get("src") == "hb2"


def test_real_heartbeat_serial_stream_byte_at_a_time() -> None:
    raw = (VECTORS / "sha1" / "serial-hb1.raw").read_bytes()
    whole, single = engine(), engine()
    whole.receive_frame(SERIAL, raw, 1.0)
    for i in range(len(raw)):
        single.receive_frame(SERIAL, raw[i : i + 1], 1.0)
    a, b = events(whole), events(single)
    assert a == b
    assert PathUp("hb1", SERIAL) in a and not any(isinstance(x, FrameDropped) for x in a)


def test_we_go_active_only_after_repnodes() -> None:
    e = engine()
    hb1 = frames("sha1", "hb1")
    e.receive_frame(UDP, hb1[0], 1.0)  # its first heartbeat: all peers heard
    e.handle_timer(1.0)
    out = [decode_frame(d, keys()) for _, d in e.frames_to_send(1.0)]
    assert any(not isinstance(m, Dropped) and m.get("t") == "reqnodes" for m in out)
    assert e.local_state is LocalState.UP
    repnodes = next(d for d in hb1 if b"t=repnodes" in d)
    for data in hb1[1:]:
        e.receive_frame(UDP, data, 1.5)
        if data == repnodes:
            break
    after: LocalState = e.local_state
    assert after is LocalState.ACTIVE and LocalActive("hb2") in events(e)


def test_own_frames_echoed_and_strangers_are_dropped() -> None:
    e = engine(node="hb1")
    own = frames("sha1", "hb1")[0]
    e.receive_frame(UDP, own, 1.0)
    stranger = engine(node="hb2")  # same keys, but hb3 is no node of ours
    bad = Engine(
        EngineSettings(
            node="hb3",
            uuid=b"\x03" * 16,
            generation=1,
            nodes=("hb1", "hb3"),
            paths=((UDP, PathKind.DATAGRAM),),
            auth=keys(),
            wire=WireFormat.HEARTBEAT,
        ),
        now=0.0,
    )
    for _, data in bad.frames_to_send(0.0):
        e.receive_frame(UDP, data, 1.0)
    reasons = [x.reason for x in events(e) if isinstance(x, FrameDropped)]
    assert reasons == [DropReason.FROM_SELF, DropReason.UNKNOWN_NODE]
    assert stranger.local_state is LocalState.UP


def test_forged_and_replayed_frames_are_dropped() -> None:
    e = engine()
    good = frames("sha1", "hb1")[1]
    e.receive_frame(UDP, good, 1.0)
    e.receive_frame(UDP, good, 1.1)  # the same copy again on the same path
    forged = good.replace(b"st=up", b"st=ok")
    e.receive_frame(UDP, forged, 1.2)
    reasons = [x.reason for x in events(e) if isinstance(x, FrameDropped)]
    assert reasons == [DropReason.REPLAYED, DropReason.BAD_SIGNATURE]


def test_native_wire_sends_compact_frames_on_every_path() -> None:
    e = engine(WireFormat.HBD)
    out = dict(e.frames_to_send(0.0))
    assert len(out[UDP]) == 44 and len(out[SERIAL]) <= 48
    frame = decode_native(out[UDP], keys(), cluster_id(("hb1", "hb2"), 694))
    assert not isinstance(frame, Dropped) and frame.deadtime_ms == 8000
    assert e.get_timer() == 1.0


def test_two_engines_talk_both_formats_and_one_frame_counts_once() -> None:
    for wire in WireFormat:
        a, b = engine(wire, "hb1"), engine(wire, "hb2")
        now = 0.0
        for _ in range(5):
            for src, dst in ((a, b), (b, a)):
                for path, data in src.frames_to_send(now):
                    dst.receive_frame(path, data, now + 0.01, "10.0.0.1")
            now += 1.0
            for x in (a, b):
                x.handle_timer(now)
        assert a.membership.node_state("hb2") is NodeState.ACTIVE
        st = b.node_status("hb1", now)
        assert st.generation == 0x2B
        # Heartbeat frames carry the uuid; native frames identify nodes by name hash only
        assert st.uuid == (bytes(range(0x10, 0x20)) if wire is WireFormat.HEARTBEAT else None)
        assert [p.lost for p in st.paths] == [0, 0]
        assert a.local_state is b.local_state is LocalState.ACTIVE


def test_misuse_raises() -> None:
    e = engine()
    with pytest.raises(LocalProtocolError, match="nosuch"):
        e.receive_frame("nosuch", b"x", 0.0)
    with pytest.raises(LocalProtocolError, match="not in the node list"):
        EngineSettings(node="zed", uuid=b"", generation=1, nodes=("a",), paths=(), auth=keys())


def frame_kinds(wire: WireFormat, out: list[tuple[str, bytes]]) -> set[str]:
    """The kinds of the frames in `out` on the datagram path UDP: heartbeat, advert, echo."""
    cid = cluster_id(("hb1", "hb2"), 694)
    got = set()
    for path, data in out:
        if path != UDP:
            continue
        if wire is WireFormat.HBD:
            frame = decode_native(data, keys(), cid)
            assert not isinstance(frame, Dropped)
            got.add(frame.kind.name.lower())
        elif b"hbd-advert" in data:
            got.add("advert")
        elif b"hbd-echo" in data:
            got.add("echo")
        elif b"status" in data:
            got.add("heartbeat")
    return got


@pytest.mark.parametrize("keepalive", [0.2, 1.0, 2.0])
@pytest.mark.parametrize("wire", list(WireFormat), ids=lambda w: w.value)
def test_an_unchanged_advert_rides_with_a_heartbeat_ever_less_often_and_no_turn_of_its_own(
    wire: WireFormat, keepalive: float
) -> None:
    base = engine(wire, "hb1")
    e = Engine(dataclasses.replace(base.settings, keepalive=keepalive), now=0.0)

    def kinds(out: list[tuple[str, bytes]]) -> set[str]:
        return frame_kinds(wire, out)

    e.frames_to_send(0.0)
    e.set_advert(b"\x02\x00\x00group-state", 0.1)
    assert e.get_timer() == 0.1  # a changed advert goes at once...
    assert kinds(e.frames_to_send(0.1)) == {"advert"}  # ...on its own
    adverts: list[float] = []
    now = 0.1
    while now < 100.0:
        now = e.get_timer() or now + keepalive
        e.handle_timer(now)
        got = kinds(e.frames_to_send(now))
        if "advert" in got:
            assert "heartbeat" in got, f"an advert repeat at {now:.2f} woke a turn of its own"
            adverts.append(now)
    gaps = [b - a for a, b in zip([0.1, *adverts], adverts, strict=False)]
    nominal = [min(ADVERT_INTERVAL * 2**i, ADVERT_REPEAT_MAX) for i in range(len(gaps))]
    assert len(gaps) >= 7 and nominal[-1] == ADVERT_REPEAT_MAX  # 1, 2, 4, 8, 16, 16, ...
    assert all(
        n - keepalive / 2 <= g <= max(n, keepalive) + keepalive
        for n, g in zip(nominal, gaps, strict=True)
    ), gaps


@pytest.mark.parametrize("keepalive", [0.2, 1.0, 2.0, 7.0])
def test_a_round_trip_probe_rides_with_a_heartbeat_and_wakes_no_turn_of_its_own(
    keepalive: float,
) -> None:
    base = engine(WireFormat.HBD, "hb1")
    e = Engine(dataclasses.replace(base.settings, keepalive=keepalive), now=0.0)
    echoes: list[float] = []
    now = 0.0
    while now < 60.0:
        now = e.get_timer() or now + keepalive
        e.handle_timer(now)
        got = frame_kinds(WireFormat.HBD, e.frames_to_send(now))
        assert got, f"a turn at {now:.2f} sent nothing: a wake-up for nothing"
        if "echo" in got:
            assert "heartbeat" in got, f"an echo at {now:.2f} woke a turn of its own"
            echoes.append(now)
    gaps = [b - a for a, b in itertools.pairwise(echoes)]
    assert echoes and echoes[0] <= ECHO_INTERVAL + keepalive * (1 + BEAT_MARGIN)
    assert gaps and all(
        ECHO_INTERVAL <= g <= ECHO_INTERVAL + keepalive * (1 + BEAT_MARGIN) for g in gaps
    )


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every frame the Heartbeat codec parses from now on (it still parses them)."""
    decoded: list[bytes] = []
    real = heartbeat_codec.decode_frame

    def counted(data: bytes, keys: AuthKeys) -> object:
        decoded.append(data)
        return real(data, keys)

    monkeypatch.setattr(heartbeat_codec, "decode_frame", counted)
    return decoded


def test_a_heartbeat_format_copy_on_a_second_path_is_verified_once_and_still_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    two = ((UDP, PathKind.DATAGRAM), (UDP2, PathKind.DATAGRAM))
    a = Engine(dataclasses.replace(engine(WireFormat.HEARTBEAT, "hb1").settings, paths=two), 0.0)
    b = Engine(dataclasses.replace(engine(WireFormat.HEARTBEAT, "hb2").settings, paths=two), 0.0)
    out = a.frames_to_send(0.0)
    assert len(out) == 2 and len({data for _path, data in out}) == 1  # the same bytes on both
    decoded = count_decodes(monkeypatch)
    for path, data in out:
        b.receive_frame(path, data, 0.01)
    assert len(decoded) == 1  # parsed and verified once...
    heard = {p.path: p.received for p in b.node_status("hb1", 0.02).paths}
    assert heard == {UDP: 1, UDP2: 1}  # ...and counted on both paths
    events(b)
    b.receive_frame(UDP2, out[1][1], 0.03)  # the same copy again on one path: a replay
    assert [x.reason for x in events(b) if isinstance(x, FrameDropped)] == [DropReason.REPLAYED]
    forged = out[0][1].replace(b"st=up", b"st=ok")
    b.receive_frame(UDP, forged, 0.04)  # other bytes: verified on their own
    assert [x.reason for x in events(b) if isinstance(x, FrameDropped)] == [
        DropReason.BAD_SIGNATURE
    ]


@pytest.mark.parametrize("serial_first", [False, True], ids=["udp-first", "serial-first"])
def test_a_heartbeat_message_in_both_formats_is_parsed_once_and_counted_on_every_path(
    monkeypatch: pytest.MonkeyPatch, serial_first: bool
) -> None:
    """Heartbeat sends a message in classic text on serial and as netstring on UDP: the
    copy in the other format, byte for byte the frame that message makes, is the message
    verified already; the serial path is still refreshed, a replay on it still refused."""
    paths = ((UDP, PathKind.DATAGRAM), (UDP2, PathKind.DATAGRAM), (SERIAL, PathKind.SERIAL))
    a = Engine(dataclasses.replace(engine(WireFormat.HEARTBEAT, "hb1").settings, paths=paths), 0)
    b = Engine(dataclasses.replace(engine(WireFormat.HEARTBEAT, "hb2").settings, paths=paths), 0)
    out = a.frames_to_send(0.0)
    assert {data[:3] for _path, data in out} == {b"###", b">>>"}
    if serial_first:
        out.sort(key=lambda x: x[0] != SERIAL)
    else:
        out.sort(key=lambda x: x[0] == SERIAL)
    decoded = count_decodes(monkeypatch)
    for path, data in out:
        b.receive_frame(path, data, 0.01)
    assert len(decoded) == 1  # the first copy alone was parsed
    heard = {p.path: p.received for p in b.node_status("hb1", 0.02).paths}
    assert heard == {UDP: 1, UDP2: 1, SERIAL: 1}
    events(b)
    serial_copy = next(data for path, data in out if path == SERIAL)
    b.receive_frame(SERIAL, serial_copy, 0.03)
    assert [x.reason for x in events(b) if isinstance(x, FrameDropped)] == [DropReason.REPLAYED]
    # a classic frame of other bytes (the next heartbeat, forged) is verified on its own
    out = a.frames_to_send(1.5)
    forged = next(data for path, data in out if path == SERIAL).replace(b"st=up", b"st=ok")
    b.receive_frame(SERIAL, forged, 1.51)
    assert [x.reason for x in events(b) if isinstance(x, FrameDropped)] == [
        DropReason.BAD_SIGNATURE
    ]


@pytest.mark.parametrize("wire", list(WireFormat), ids=lambda w: w.value)
def test_a_node_sends_its_heartbeat_right_behind_its_peers_and_never_much_later(
    wire: WireFormat,
) -> None:
    # Two engines on one path with 1 ms latency, started 0.3 s apart (of a 1 s keepalive).
    one = ((UDP, PathKind.DATAGRAM),)
    a = Engine(dataclasses.replace(engine(wire, "hb1").settings, paths=one), 0.0)
    b = Engine(dataclasses.replace(engine(wire, "hb2").settings, paths=one), 0.3)
    name = {id(a): "a", id(b): "b"}
    peer = {id(a): b, id(b): a}
    in_flight: list[tuple[float, Engine, bytes]] = []
    beats: dict[str, list[tuple[float, str]]] = {"a": [], "b": []}  # (when, woken by)

    def turn(e: Engine, now: float, woken_by: str, newest: int) -> None:
        for _path, data in e.frames_to_send(now):
            in_flight.append((now + 0.001, peer[id(e)], data))
        if e.newest_sent > newest:
            beats[name[id(e)]].append((now, woken_by))

    turn(a, 0.0, "timer", 0)
    now = 0.0
    while now < 30.0:
        timers = [(t, e) for e in (a, b) if (t := e.get_timer()) is not None and t >= 0.3]
        due, who = min(timers, key=lambda x: x[0])
        in_flight.sort(key=lambda x: x[0])
        if in_flight and in_flight[0][0] <= due:
            now, dst, data = in_flight.pop(0)
            newest = dst.newest_sent
            dst.receive_frame(UDP, data, now, "10.0.0.1")
            turn(dst, now, "frame", newest)
        else:
            now, newest = due, who.newest_sent
            who.handle_timer(now)
            turn(who, now, "timer", newest)
    woken = {w: {by for t, by in got if t > 5.0} for w, got in beats.items()}
    assert {"frame"} in woken.values()  # one sends only right behind the other's beat
    for who, got in beats.items():
        times = [t for t, _by in got]
        gaps = [y - x for x, y in itertools.pairwise(times)]
        assert max(gaps) <= 1.0 + BEAT_MARGIN + 1e-9, (who, max(gaps))  # never later
        assert len([t for t in times if t > 5.0]) <= 26  # and no ping-pong: ~1 a second
