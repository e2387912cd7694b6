"""Heartbeat 3.0.6's wire formats against frames captured from the real daemon.

The vectors in tests/vectors/heartbeat/ were captured by tests/tools/capture_heartbeat.py
(two Debian heartbeat 3.0.6 nodes, hb1 and hb2, over UDP broadcast and a serial line; see
the README there). These tests need no root: they only read the committed files.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.errors import DropReason, LocalProtocolError
from hbd.core.wire import Dropped
from hbd.core.wire.heartbeat import (
    ClassicStream,
    FieldType,
    HaField,
    HaMessage,
    NetstringTemplate,
    ack_message,
    decode_frame,
    digest_hex,
    encode_classic,
    encode_netstring,
    flat_frames,
    heartbeat_crc,
    other_format_copy,
    parse_ack,
    parse_repnodes,
    parse_reqnodes,
    parse_rexmit,
    parse_status,
    repnodes_message,
    reqnodes_message,
    rexmit_message,
    status_message,
)

VECTORS = Path(__file__).parent / "vectors" / "heartbeat"
RUNS = {"sha1": 1, "md5": 2, "crc": 3, "rexmit": 1}  # run -> the `auth N` it used


def _entries() -> dict[int, AuthEntry]:
    raw = json.loads((VECTORS / "keys.json").read_text())
    return {
        int(i): AuthEntry(int(i), AuthMethod(v["method"]), v["key"].encode())
        for i, v in raw.items()
    }


@functools.cache
def keys_for(run: str) -> AuthKeys:
    entries = _entries()
    active = entries[RUNS[run]]
    if active.method is AuthMethod.CRC:  # crc is accepted only where no entry has a key
        return AuthKeys(active, {active.index: active})
    return AuthKeys(active, entries)


def frames(run: str) -> list[tuple[str, str, bytes]]:
    out = []
    for line in (VECTORS / run / "frames.jsonl").read_text().splitlines():
        d = json.loads(line)
        out.append((d["medium"], d["from"], bytes.fromhex(d["hex"])))
    return out


def decoded(run: str, medium: str, t: str) -> list[tuple[bytes, HaMessage]]:
    keys = keys_for(run)
    out = []
    for m, _, data in frames(run):
        msg = decode_frame(data, keys)
        assert isinstance(msg, HaMessage), msg
        if m == medium and msg.get("t") == t:
            out.append((data, msg))
    return out


def encode_as(medium: str, msg: HaMessage, auth: AuthEntry) -> bytes:
    return encode_netstring(msg, auth) if medium == "udp" else encode_classic(msg, auth)


# --------------------------------------------------------------------- real frames


@pytest.mark.parametrize("run", sorted(RUNS))
def test_every_captured_frame_verifies_and_reencodes_byte_for_byte(run: str) -> None:
    keys = keys_for(run)
    captured = frames(run)
    assert len(captured) > 50
    for medium, _, data in captured:
        msg = decode_frame(data, keys)
        assert isinstance(msg, HaMessage), f"{medium}: {msg}"
        assert data.startswith(b"###\n" if medium == "udp" else b">>>\n")
        assert encode_as(medium, msg, keys.active) == data


@pytest.mark.parametrize("run", ["sha1", "md5", "crc"])
def test_status_fields_come_in_heartbeats_order(run: str) -> None:
    for medium in ("udp", "serial"):
        for _, msg in decoded(run, medium, "status"):
            assert msg.names() == (
                "t", "st", "dt", "protocol", "src", "srcuuid",
                "seq", "hg", "ts", "ld", "ttl", "auth",
            )  # fmt: skip
            assert msg.field("srcuuid") == HaField(
                "srcuuid", msg.get_binary("srcuuid") or b"", FieldType.BINARY
            )


def test_a_nodes_status_seq_climbs_within_one_generation() -> None:
    by_node: dict[str, list[int]] = {}
    for _, msg in decoded("sha1", "serial", "status"):
        status = parse_status(msg)
        assert status is not None and status.seq is not None
        assert status.origin.srcuuid is not None and len(status.origin.srcuuid) == 16
        by_node.setdefault(status.src, []).append(status.seq)
    assert set(by_node) == {"hb1", "hb2"}
    for seqs in by_node.values():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


@pytest.mark.parametrize("medium", ["udp", "serial"])
def test_status_builder_reproduces_heartbeats_frames(medium: str) -> None:
    keys = keys_for("sha1")
    for data, msg in decoded("sha1", medium, "status"):
        s = parse_status(msg)
        assert s is not None and s.seq is not None and s.deadtime_ms is not None
        assert s.origin.srcuuid is not None and s.origin.ttl is not None and s.load is not None
        built = status_message(
            s.src, s.origin.srcuuid, s.seq, s.generation, s.status, s.deadtime_ms,
            s.origin.ts, ttl=s.origin.ttl, load=s.load, protocol=s.protocol,
        )  # fmt: skip
        assert encode_as(medium, built, keys.active) == data


@pytest.mark.parametrize("medium", ["udp", "serial"])
def test_reqnodes_repnodes_and_ack_builders_reproduce_heartbeats_frames(medium: str) -> None:
    keys = keys_for("sha1")
    seen = set()
    for t in ("reqnodes", "repnodes", "NS_ackmsg"):
        for data, msg in decoded("sha1", medium, t):
            uuid, dest_uuid = msg.get_binary("srcuuid"), msg.get_binary("destuuid")
            assert uuid is not None
            if (req := parse_reqnodes(msg)) is not None:
                o = req.origin
                assert o.seq is not None and o.ttl is not None
                built = reqnodes_message(o.src, uuid, req.dest, dest_uuid, o.seq, o.generation,
                                         o.ts, ttl=o.ttl, load=msg.get("ld") or "")  # fmt: skip
            elif (rep := parse_repnodes(msg)) is not None:
                o = rep.origin
                assert o.seq is not None and o.ttl is not None
                assert rep.nodelist == ("hb1", "hb2") and rep.delnodelist == ()
                built = repnodes_message(o.src, uuid, rep.dest, dest_uuid, o.seq, o.generation,
                                         o.ts, rep.nodelist, rep.delnodelist, ttl=o.ttl,
                                         load=msg.get("ld") or "")  # fmt: skip
            else:
                ack = parse_ack(msg)
                assert ack is not None and ack.origin.seq is None
                o = ack.origin
                assert o.ttl is not None
                built = ack_message(o.src, uuid, ack.dest, dest_uuid, ack.ackseq, o.generation,
                                    o.ts, ttl=o.ttl)  # fmt: skip
            assert encode_as(medium, built, keys.active) == data
            seen.add(t)
    assert seen == {"reqnodes", "repnodes", "NS_ackmsg"}


def test_rexmit_requests_use_decimal_seqs_and_the_builder_reproduces_them() -> None:
    keys = keys_for("rexmit")
    found = decoded("rexmit", "serial", "NS_rexmit")
    assert found
    for data, msg in found:
        rx = parse_rexmit(msg)
        assert rx is not None and rx.firstseq == rx.lastseq  # Heartbeat asks one at a time
        assert msg.get("firstseq") == str(rx.firstseq)
        o = rx.origin
        uuid = msg.get_binary("srcuuid")
        assert uuid is not None and o.ttl is not None
        built = rexmit_message(o.src, uuid, rx.dest, msg.get_binary("destuuid"), rx.firstseq,
                               rx.lastseq, o.generation, o.ts, ttl=o.ttl)  # fmt: skip
        assert encode_classic(built, keys.active) == data


def test_crc_is_the_posix_crc32_without_length() -> None:
    # CRC-32/POSIX catalogue check value (poly 04C11DB7, init 0, xorout FFFFFFFF)
    assert heartbeat_crc(b"123456789") == 0x765E7680


# --------------------------------------------------------------------- signatures


@functools.cache
def a_status(run: str, medium: str) -> bytes:
    return decoded(run, medium, "status")[0][0]


@pytest.mark.parametrize("run", ["sha1", "md5", "crc"])
@pytest.mark.parametrize("medium", ["udp", "serial"])
def test_a_changed_body_fails_the_signature(run: str, medium: str) -> None:
    data = a_status(run, medium)
    # same length, so netstring lengths still hold: only the signature can catch it
    forged = data.replace(b"st=up", b"st=uq", 1).replace(b"st=init", b"st=inix", 1)
    assert forged != data
    got = decode_frame(forged, keys_for(run))
    assert isinstance(got, Dropped) and got.reason is DropReason.BAD_SIGNATURE


def test_a_wrong_key_at_the_same_index_fails_the_signature() -> None:
    other = AuthEntry(1, AuthMethod.SHA1, b"not-the-key")
    keys = AuthKeys(other, {1: other})
    for medium in ("udp", "serial"):
        got = decode_frame(a_status("sha1", medium), keys)
        assert isinstance(got, Dropped) and got.reason is DropReason.BAD_SIGNATURE


def test_an_index_we_do_not_have_is_an_unknown_key() -> None:
    only_md5 = _entries()[2]
    keys = AuthKeys(only_md5, {2: only_md5})
    for medium in ("udp", "serial"):
        got = decode_frame(a_status("sha1", medium), keys)
        assert isinstance(got, Dropped) and got.reason is DropReason.UNKNOWN_KEY


def test_frames_without_a_signature_are_dropped_as_no_auth() -> None:
    keys = keys_for("sha1")
    serial = a_status("sha1", "serial")
    lines = serial.split(b"\n")
    unsigned = b"\n".join(line for line in lines if not line.startswith(b"auth="))
    udp = a_status("sha1", "udp")
    no_trailer = udp[: udp.index(b"%%%\n") + 4]
    for data in (unsigned, no_trailer):
        got = decode_frame(data, keys)
        assert isinstance(got, Dropped) and got.reason is DropReason.NO_AUTH


def test_truncated_and_garbage_frames_are_dropped_with_a_reason() -> None:
    keys = keys_for("sha1")
    serial, udp = a_status("sha1", "serial"), a_status("sha1", "udp")
    cases = {
        serial[:-4]: DropReason.TRUNCATED,
        udp[:100]: DropReason.TRUNCATED,
        b"hello world\n": DropReason.MALFORMED,
        # unsigned: refused at the (missing) signature, before any field is read
        b">>>\nno equals sign\n<<<\n": DropReason.NO_AUTH,
        b">>>\n(9)x=1\n<<<\n": DropReason.NO_AUTH,
        b"###\n5:t=abc,%%%\n": DropReason.NO_AUTH,
    }
    for data, reason in cases.items():
        got = decode_frame(data, keys)
        assert isinstance(got, Dropped) and got.reason is reason, (data, got)
    # signed, then found wanting by the parser
    sha1 = keys.active
    for body, reason in (
        (b"no equals sign\n", DropReason.MALFORMED),
        (b"(9)x=1\n", DropReason.UNSUPPORTED),
    ):
        token = f"auth={sha1.index} {digest_hex(sha1, body)}\n".encode()
        got = decode_frame(b">>>\n" + body + token + b"<<<\n", keys)
        assert isinstance(got, Dropped) and got.reason is reason, (body, got)
    signed = b"###\n5:t=abc,%%%\n"
    token = f"{sha1.index} {digest_hex(sha1, signed)}".encode()
    got = decode_frame(signed + f"{len(token)}:".encode() + token + b",", keys)
    assert isinstance(got, Dropped) and got.reason is DropReason.MALFORMED


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (b"11:(0)t=status,", None),  # the usual field: read inline
        (b"x1:(0)t=status,", DropReason.MALFORMED),  # not a length
        (b":(0)t=status,", DropReason.MALFORMED),  # no length
        (b"11:(0)t=status;", DropReason.MALFORMED),  # not closed by ','
        (b"99:(0)t=status,", DropReason.TRUNCATED),  # runs past the frame
        (b"9999999:(0)t=status,", DropReason.TOO_LONG),
        (b"9:t=status,", DropReason.MALFORMED),  # no type
        (b"8:(0)=abcd,", DropReason.MALFORMED),  # no name
        (b"7:(0)abcd,", DropReason.MALFORMED),  # no '='
        (b"9:(7)t=stat,", DropReason.UNSUPPORTED),
        (b"11:(0)t=status,9:(3)l=1:a,,", None),  # a list: the long way
    ],
)
def test_a_signed_netstring_frame_is_read_field_by_field_or_dropped_with_a_reason(
    fields: bytes, reason: DropReason | None
) -> None:
    """The parser, not the signature, finds these: each frame is signed with the key."""
    keys = keys_for("sha1")
    sha1 = keys.active
    signed = b"###\n" + fields + b"%%%\n"
    token = f"{sha1.index} {digest_hex(sha1, signed)}".encode()
    got = decode_frame(signed + f"{len(token)}:".encode() + token + b",", keys)
    if reason is None:
        assert not isinstance(got, Dropped), got
        assert got.get("t") == "status"
    else:
        assert isinstance(got, Dropped) and got.reason is reason, got


# --------------------------------------------------------------------- serial stream


@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_captured_serial_stream_gives_the_same_frames_whole_or_byte_by_byte(run: str) -> None:
    keys = keys_for(run)
    for node in ("hb1", "hb2"):
        raw = (VECTORS / run / f"serial-{node}.raw").read_bytes()
        whole = ClassicStream(keys).feed(raw)
        stream = ClassicStream(keys)
        one_by_one = [r for i in range(len(raw)) for r in stream.feed(raw[i : i + 1])]
        assert whole == one_by_one
        assert all(isinstance(r, HaMessage) for r in whole)
        sent = [d for m, f, d in frames(run) if m == "serial" and f == node]
        assert [encode_classic(m, keys.active) for m in whole if isinstance(m, HaMessage)] == sent


def test_the_stream_resynchronises_after_line_noise_and_a_cut_frame() -> None:
    keys = keys_for("sha1")
    a, b, c = (d for d, _ in decoded("sha1", "serial", "status")[:3])
    cut_at_line = a[: a.index(b"\nseq=") + 1]  # e.g. the cable pulled between two lines
    cut_mid_line = a[: a.index(b"\nseq=") + 3]  # its tail merges with b's ">>>" line
    stream = ClassicStream(keys)
    out = stream.feed(b"\x00\xffnoise\n" + a + cut_at_line + b + cut_mid_line + b + c)
    assert [type(r) for r in out] == [Dropped, HaMessage, Dropped, HaMessage, Dropped, HaMessage]
    assert isinstance(out[0], Dropped) and out[0].reason is DropReason.MALFORMED
    assert isinstance(out[2], Dropped) and out[2].reason is DropReason.TRUNCATED
    assert isinstance(out[4], Dropped)  # the merged frame: caught, b's copy lost
    assert [out[1], out[3], out[5]] == [decode_frame(x, keys) for x in (a, b, c)]


def test_the_stream_buffer_is_bounded() -> None:
    keys = keys_for("sha1")
    stream = ClassicStream(keys, max_frame=1000)
    out = stream.feed(b">>>\n" + b"x=" + b"y" * 5000 + b"\n")
    good = a_status("sha1", "serial")
    out += stream.feed(good)
    assert [type(r) for r in out] == [Dropped, HaMessage]
    assert isinstance(out[0], Dropped) and out[0].reason is DropReason.TOO_LONG


# --------------------------------------------------------------------- misuse


@pytest.mark.parametrize(
    "bad",
    [
        HaMessage(),
        HaMessage.of(("a=b", "1")),
        HaMessage.of(("a", "nul\0")),
        HaMessage.of(("(1)x", "1")),
        HaMessage((HaField("l", (), FieldType.LIST),)),
        HaMessage((HaField("b", "not bytes", FieldType.BINARY),)),
    ],
)
def test_encoding_a_message_heartbeat_cannot_carry_raises(bad: HaMessage) -> None:
    key = _entries()[1]
    with pytest.raises(LocalProtocolError):
        encode_classic(bad, key)
    with pytest.raises(LocalProtocolError):
        encode_netstring(bad, key)


# --------------------------------------------------------------------- properties

_CHARS = "".join(chr(c) for c in range(0x20, 0x100) if chr(c) not in "=")
names = st.text(_CHARS, min_size=1, max_size=8).filter(
    lambda n: not n.startswith(("(", ">>>", "<<<")) and n != "auth"
)
strings = st.text(_CHARS + "=\n", max_size=20)
items = st.text(_CHARS + "=", min_size=1, max_size=8)


def _fields(children: st.SearchStrategy[HaMessage]) -> st.SearchStrategy[HaField]:
    return st.one_of(
        st.builds(HaField, names, strings),
        st.builds(HaField, names, st.binary(max_size=20), st.sampled_from(
            [FieldType.BINARY, FieldType.COMPRESS])),
        st.builds(HaField, names, st.lists(items, min_size=1, max_size=3).map(tuple),
                  st.just(FieldType.LIST)),
        st.builds(HaField, names, children, st.just(FieldType.STRUCT)),
    )  # fmt: skip


def _unique_lists(m: HaMessage) -> bool:
    """Heartbeat needs list fields unique by name, in nested structs too."""
    lists = [f.name for f in m.fields if f.type is FieldType.LIST]
    nested = [f.value for f in m.fields if f.type is FieldType.STRUCT]
    return len(lists) == len(set(lists)) and all(
        _unique_lists(n) for n in nested if isinstance(n, HaMessage)
    )


messages = st.recursive(
    st.lists(st.builds(HaField, names, strings), min_size=1, max_size=4).map(
        lambda fs: HaMessage(tuple(fs))
    ),
    lambda kids: st.lists(_fields(kids), min_size=1, max_size=5).map(
        lambda fs: HaMessage(tuple(fs))
    ),
    max_leaves=8,
).filter(_unique_lists)
key_entries = st.sampled_from(sorted(_entries().values(), key=lambda e: e.index))
# hbd's own messages are plain fields only, which the one-pass encoder takes (`flat_frames`)
_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
flat_names = st.one_of(
    st.sampled_from(["t", "st", "src", "seq", "hg", "ts", "ld", "ttl", "hbdack"]),
    st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1,
            max_size=8).filter(lambda n: n != "auth"),
)  # fmt: skip
flat_messages = st.lists(
    st.one_of(
        st.builds(HaField, flat_names, st.text(_ASCII, max_size=20)),
        st.builds(HaField, flat_names, st.binary(max_size=20), st.just(FieldType.BINARY)),
    ),
    min_size=1,
    max_size=14,
).map(lambda fs: HaMessage(tuple(fs)))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(messages, key_entries)
def test_any_message_round_trips_through_both_formats(msg: HaMessage, key: AuthEntry) -> None:
    keys = AuthKeys(key, {key.index: key})
    classic = decode_frame(encode_classic(msg, key), keys)
    assert isinstance(classic, HaMessage)
    assert classic.without("auth") == msg and classic.names()[-1] == "auth"
    net = decode_frame(encode_netstring(msg, key, classic_auth=False), keys)
    assert net == msg
    both = decode_frame(encode_netstring(msg, key), keys)
    assert both == classic


@settings(max_examples=200, deadline=None)
@given(st.one_of(messages, flat_messages), key_entries)
def test_a_message_read_in_one_format_gives_its_frame_in_the_other(
    msg: HaMessage, key: AuthEntry
) -> None:
    keys = AuthKeys(key, {key.index: key})
    classic, netstring = encode_classic(msg, key), encode_netstring(msg, key)
    from_netstring = decode_frame(netstring, keys)
    from_classic = decode_frame(classic, keys)
    assert isinstance(from_netstring, HaMessage) and isinstance(from_classic, HaMessage)
    assert other_format_copy(from_netstring, keys, netstring=True) == classic
    assert other_format_copy(from_classic, keys, netstring=False) == netstring
    # what it gives is a frame decode_frame takes, and reads as the same message
    assert decode_frame(classic, keys) == from_netstring


@settings(max_examples=200, deadline=None)
@given(st.one_of(flat_messages, messages), key_entries)
def test_the_one_pass_encoder_gives_the_general_ways_frames_or_leaves_it_to_it(
    msg: HaMessage, key: AuthEntry
) -> None:
    flat = flat_frames(msg, key)
    try:
        general = (encode_classic(msg, key), encode_netstring(msg, key))
    except LocalProtocolError:
        assert flat is None  # what the general way refuses never goes the short one
        return
    assert flat is None or flat == general
    if all(
        f.name.isascii()
        and f.name.isalnum()
        and (
            f.type is FieldType.BINARY
            or (f.type is FieldType.STRING and str(f.value).isascii() and "\n" not in f.value)
        )
        for f in msg.fields
    ):
        assert flat == general  # plain fields only: the one pass takes it


def test_hbds_own_status_heartbeat_takes_the_one_pass_encoder() -> None:
    key = _entries()[1]
    msg = status_message(
        "alpha", bytes(range(16)), 0x1A, 3, "active", 1000, 0x6553F100, watchdog_ms=0, acks="0:3:19"
    )
    assert flat_frames(msg, key) == (encode_classic(msg, key), encode_netstring(msg, key))
    assert flat_frames(msg.with_field("auth", "1 00"), key) is None  # already signed: general


def _status(seq: int, ts: int, acks: str | None = "0:5:1a", load: str = "n/a") -> HaMessage:
    return status_message(
        "alpha", bytes(range(16)), seq, 3, "active", 1000, ts, watchdog_ms=0, acks=acks, load=load
    )


def _sha1_keys() -> tuple[AuthEntry, AuthKeys]:
    key = _entries()[1]
    return key, AuthKeys(key, {key.index: key})


def _decoded(frame: bytes, keys: AuthKeys) -> HaMessage:
    decoded = decode_frame(frame, keys)
    assert isinstance(decoded, HaMessage), decoded
    return decoded


def _template(msg: HaMessage, keys: AuthKeys) -> NetstringTemplate:
    frame = encode_netstring(msg, keys.active)
    template = NetstringTemplate.of(frame, _decoded(frame, keys))
    assert template is not None
    return template


def test_the_next_heartbeat_is_read_by_the_last_ones_template_as_the_whole_way_reads_it() -> None:
    key, keys = _sha1_keys()
    template = _template(_status(0x10, 0x6553F100), keys)
    for msg in (
        _status(0x11, 0x6553F101),
        _status(0xFFFFFFFF, 0x6553F100, acks="0:5:1a 1:2:3", load="0.15 0.10 0.05"),
    ):
        frame = encode_netstring(msg, key)
        read = template.read(frame, keys)
        assert read == decode_frame(frame, keys) == msg.with_field("auth", msg_auth(frame, keys))
        assert read is not None and template.classic_copy(read, keys) == encode_classic(msg, key)
    # a second `auth` field (binary, so not a signature): no serial copy, as the whole way
    two = _status(0x12, 0x6553F102).with_field("auth", b"\x01", FieldType.BINARY)
    frame = encode_netstring(two, key)
    decoded = _decoded(frame, keys)
    assert len(decoded.fields) == len(two.fields) + 1
    other_template = NetstringTemplate.of(frame, decoded)
    assert other_template is not None and other_template.read(frame, keys) == decoded
    assert other_template.classic_copy(decoded, keys) is None
    assert other_format_copy(decoded, keys, netstring=True) is None
    # a netstring frame signed right whose classic signature is not: no serial copy
    forged = _status(0x12, 0x6553F102).with_field("auth", "1 " + "0" * 40)
    read = template.read(encode_netstring(forged, key, classic_auth=False), keys)
    assert read is not None and template.classic_copy(read, keys) is None
    # not like it: another state, another sender, fields missing or added -- the whole way
    for other in (
        status_message("alpha", bytes(range(16)), 0x11, 3, "up", 1000, 5, watchdog_ms=0),
        status_message("beta", bytes(range(16)), 0x11, 3, "active", 1000, 5, watchdog_ms=0),
        _status(0x11, 5, acks=None),
        _status(0x11, 5).with_field("extra", "1"),
    ):
        assert template.read(encode_netstring(other, key), keys) is None


def msg_auth(frame: bytes, keys: AuthKeys) -> str:
    token = _decoded(frame, keys).get("auth")
    assert token is not None
    return token


def test_a_template_never_reads_a_frame_the_whole_way_refuses() -> None:
    key, keys = _sha1_keys()
    template = _template(_status(0x10, 0x6553F100), keys)
    frame = encode_netstring(_status(0x11, 0x6553F101), key)
    for i in range(len(frame)):  # every byte changed in turn: a forgery or line noise
        bad = frame[:i] + bytes([frame[i] ^ 0x01]) + frame[i + 1 :]
        whole = decode_frame(bad, keys)
        read = template.read(bad, keys)
        assert read is None or read == whole, i
    wrong = AuthKeys(_entries()[2], {2: _entries()[2]})  # the right layout, no key for it
    assert template.read(frame, wrong) is None
    assert template.read(frame[:-1], keys) is None and template.read(frame + b"x", keys) is None


@settings(max_examples=200, deadline=None)
@given(flat_messages, flat_messages, st.data(), key_entries)
def test_any_frame_read_by_a_template_is_what_the_whole_way_reads(
    first: HaMessage, second: HaMessage, data: st.DataObject, key: AuthEntry
) -> None:
    if key.method is AuthMethod.SHA256:
        return  # not a key Heartbeat's frames are signed with
    keys = AuthKeys(key, {key.index: key})
    frame = encode_netstring(first, key)
    decoded = decode_frame(frame, keys)
    assert isinstance(decoded, HaMessage)
    template = NetstringTemplate.of(frame, decoded)
    assert template is not None  # plain fields only: it makes a template
    # the next one like it: the varying fields changed, the others kept
    values = st.text(_ASCII, max_size=12)
    like = HaMessage(
        tuple(
            HaField(f.name, data.draw(values))
            if f.name in ("seq", "ts", "ld", "hbdack") and f.type is FieldType.STRING
            else f
            for f in first.fields
        )
    )
    for msg in (like, second, like.with_field("auth", "1 " + "0" * 40)):
        for frame in (encode_netstring(msg, key), encode_netstring(msg, key, classic_auth=False)):
            read = template.read(frame, keys)
            assert read is None or read == decode_frame(frame, keys)
            if read is not None:  # and its serial copy is the one the whole way makes
                copy = template.classic_copy(read, keys)
                assert copy == other_format_copy(read, keys, netstring=True)
    frame = encode_netstring(like, key)
    if all(f.type is not FieldType.STRING or "\x13" not in str(f.value) for f in like.fields):
        assert template.read(frame, keys) == decode_frame(frame, keys)


@pytest.mark.parametrize("run", sorted(RUNS))
def test_heartbeats_serial_copy_of_a_udp_message_is_the_frame_that_message_gives(
    run: str,
) -> None:
    keys = keys_for(run)
    serial = {data for medium, _, data in frames(run) if medium == "serial"}
    udp = [data for medium, _, data in frames(run) if medium == "udp"]
    matched = 0
    for data in udp:
        msg = decode_frame(data, keys)
        assert isinstance(msg, HaMessage)
        copy = other_format_copy(msg, keys, netstring=True)
        assert copy is not None
        matched += copy in serial
    assert matched == len(udp)  # Heartbeat 3.0.6 wrote each one on serial, byte for byte


def test_a_message_whose_classic_signature_fails_or_whose_key_is_gone_gives_no_copy() -> None:
    keys = keys_for("sha1")
    [(_data, msg)] = decoded("sha1", "udp", "status")[:1]
    assert other_format_copy(msg, keys, netstring=True) is not None
    forged = msg.with_field("auth", "1 " + "0" * 40)  # the trailer signed, the field not
    assert other_format_copy(forged, keys, netstring=True) is None
    assert other_format_copy(msg.without("auth"), keys, netstring=True) is None
    unknown = msg.with_field("auth", "9 " + "0" * 40)  # classic, read: a key we lost since
    assert other_format_copy(unknown, keys, netstring=False) is None
    two = HaMessage((*msg.fields, HaField("auth", "1 " + "0" * 40)))
    assert other_format_copy(two, keys, netstring=True) is None


def _stream_results(keys: AuthKeys, data: bytes) -> tuple[list[HaMessage | Dropped], ...]:
    whole = ClassicStream(keys).feed(data)
    s = ClassicStream(keys)
    return whole, [r for i in range(len(data)) for r in s.feed(data[i : i + 1])]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_give_a_message_or_a_drop_never_an_exception(data: bytes) -> None:
    keys = keys_for("sha1")
    assert isinstance(decode_frame(data, keys), HaMessage | Dropped)
    whole, bytewise = _stream_results(keys, data)
    assert whole == bytewise


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["udp", "serial"]), st.data())
def test_fuzz_mutated_real_frames_never_raise(medium: str, data: st.DataObject) -> None:
    keys = keys_for("sha1")
    frame = bytearray(a_status("sha1", medium))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    mutated = bytes(frame[:cut])
    assert isinstance(decode_frame(mutated, keys), HaMessage | Dropped)
    good = a_status("sha1", "serial")
    whole, bytewise = _stream_results(keys, b"zz\n" + mutated + b"\n" + good)
    assert whole == bytewise
    assert whole[-1] == decode_frame(good, keys)  # resynchronised on the next frame
