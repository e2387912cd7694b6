"""hbd's native frame: round trips, sizes, every tamper dropped with its reason, serial resync.

Fuzz invariant (issue 3, part 6): any bytes, as a datagram or on a serial stream fed
whole, a byte at a time or in any chunks, give native frames or `Dropped`, never an
exception, and chunking never changes the result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.errors import DropReason, LocalProtocolError
from hbd.core.wire import Dropped
from hbd.core.wire.cobs import cobs_decode, cobs_encode, cobs_max_encoded_len
from hbd.core.wire.native import (
    HEARTBEAT_LEN,
    HEARTBEAT_SERIAL_LEN,
    MAX_FRAME_LEN,
    MAX_MS,
    MAX_PAYLOAD,
    MAX_SERIAL_STUFFED,
    FrameKind,
    NativeFrame,
    NativeSerialStream,
    NodeState,
    cluster_id,
    decode_native,
    decode_native_serial,
    encode_native,
    encode_native_each,
    encode_native_serial,
    is_native,
    node_id,
    path_hash,
)

OLD = AuthEntry(1, AuthMethod.SHA1, b"the key we are rotating away from")
NEW = AuthEntry(2, AuthMethod.SHA256, b"the key we rotate to")
CRC = AuthEntry(3, AuthMethod.CRC, b"")
KEYS = AuthKeys(active=NEW, entries={1: OLD, 2: NEW, 3: CRC}, rotation=frozenset({1}))
CLUSTER = cluster_id(["alpha", "beta"], 694)
OTHER_CLUSTER = cluster_id(["alpha", "beta"], 695)

U32 = st.integers(0, 2**32 - 1)
frames = st.builds(
    NativeFrame,
    cluster_id=st.just(CLUSTER),
    node_id=U32,
    generation=U32,
    seq=U32,
    state=st.sampled_from(NodeState),
    deadtime_ms=st.integers(0, MAX_MS),
    watchdog_ms=st.integers(0, MAX_MS),
    path_hash=st.integers(0, 0xFFFF),
    kind=st.sampled_from(FrameKind),
    payload=st.binary(max_size=MAX_PAYLOAD),
)
heartbeats = frames.map(lambda f: dataclasses.replace(f, payload=b""))


def heartbeat(seq: int = 1, **changes: object) -> NativeFrame:
    fields: dict[str, object] = {
        "cluster_id": CLUSTER,
        "node_id": node_id("alpha"),
        "generation": 3,
        "seq": seq,
        "state": NodeState.ACTIVE,
        "deadtime_ms": 30_000,
        "watchdog_ms": 31_000,
        "path_hash": path_hash("serial:/dev/ttyS0"),
    }
    fields.update(changes)
    return NativeFrame(**fields)  # type: ignore[arg-type]


def resign(signed_part: bytes, entry: AuthEntry) -> bytes:
    """What a peer holding the key would send with this header: a validly signed frame."""
    return signed_part + hmac.digest(entry.key, signed_part, "sha256")[:16]


def reason(result: object) -> DropReason | None:
    return result.reason if isinstance(result, Dropped) else None


# --- round trips and sizes ---------------------------------------------------------


@given(frames, st.sampled_from([OLD, NEW]))
def test_every_field_survives_a_datagram_round_trip(frame: NativeFrame, auth: AuthEntry) -> None:
    assert decode_native(encode_native(frame, auth), KEYS, CLUSTER) == frame


@given(frames, st.sampled_from([OLD, NEW]), st.lists(st.integers(0, 0xFFFF), max_size=4))
def test_one_frame_for_every_path_is_each_paths_own_frame_byte_for_byte(
    frame: NativeFrame, auth: AuthEntry, hashes: list[int]
) -> None:
    each = encode_native_each(frame, auth, hashes)
    for h, datagram in zip(hashes, each, strict=True):
        header = struct.pack(
            ">BBBBIIII3s3sH",
            0xB8,
            1,
            frame.kind << 4 | frame.state,
            auth.index,
            frame.cluster_id,
            frame.node_id,
            frame.generation,
            frame.seq,
            frame.deadtime_ms.to_bytes(3, "big"),
            frame.watchdog_ms.to_bytes(3, "big"),
            h,
        )
        assert datagram == resign(header + frame.payload, auth)  # the layout, by hand
        assert decode_native(datagram, KEYS, CLUSTER) == dataclasses.replace(frame, path_hash=h)


def test_one_frame_for_every_path_refuses_a_path_hash_out_of_range() -> None:
    with pytest.raises(LocalProtocolError, match="path_hash=65536"):
        encode_native_each(heartbeat(), NEW, [1, 0x10000])
    with pytest.raises(LocalProtocolError, match="crc"):
        encode_native_each(heartbeat(), CRC, [1])


@given(frames, st.sampled_from([OLD, NEW]))
def test_every_field_survives_the_serial_stream(frame: NativeFrame, auth: AuthEntry) -> None:
    line = encode_native_serial(frame, auth)
    assert line.endswith(b"\x00") and b"\x00" not in line[:-1]
    assert NativeSerialStream(KEYS, CLUSTER).feed(line) == [frame]


@given(heartbeats)
def test_a_heartbeat_is_44_bytes_on_udp_and_48_on_serial(frame: NativeFrame) -> None:
    assert len(encode_native(frame, NEW)) == HEARTBEAT_LEN == 44 <= 64
    assert len(encode_native_serial(frame, NEW)) == HEARTBEAT_SERIAL_LEN == 48


def test_19200_baud_carries_ten_heartbeats_a_second_in_a_quarter_of_the_line() -> None:
    bytes_per_second_8n1 = 19200 // 10  # start bit, 8 data bits, stop bit
    second_of_heartbeats = b"".join(
        encode_native_serial(heartbeat(seq), NEW) for seq in range(1, 11)
    )
    assert len(second_of_heartbeats) <= bytes_per_second_8n1 / 4
    assert len(NativeSerialStream(KEYS, CLUSTER).feed(second_of_heartbeats)) == 10


@given(frames)
def test_the_largest_frames_fit_the_stated_bounds(frame: NativeFrame) -> None:
    assert len(encode_native(frame, NEW)) <= MAX_FRAME_LEN
    assert len(encode_native_serial(frame, NEW)) <= MAX_SERIAL_STUFFED + 1


def test_a_rotated_out_key_still_verifies_while_accept_keys_lists_it() -> None:
    frame = heartbeat()
    assert decode_native(encode_native(frame, OLD), KEYS, CLUSTER) == frame
    only_new = AuthKeys(active=NEW, entries={2: NEW})
    assert reason(decode_native(encode_native(frame, OLD), only_new, CLUSTER)) is (
        DropReason.UNKNOWN_KEY
    )
    # still in authkeys but no longer listed: a leftover entry is no way in
    leftover = AuthKeys(active=NEW, entries={1: OLD, 2: NEW})
    dropped = decode_native(encode_native(frame, OLD), leftover, CLUSTER)
    assert reason(dropped) is DropReason.UNKNOWN_KEY
    assert isinstance(dropped, Dropped) and "accept_keys" in dropped.detail


# --- the caller's mistakes raise -----------------------------------------------------


def test_signing_with_a_crc_entry_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="authkeys entry 3 is crc"):
        encode_native(heartbeat(), CRC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 2**32),
        ("seq", -1),
        ("generation", 2**32),
        ("node_id", -1),
        ("cluster_id", 2**32),
        ("deadtime_ms", MAX_MS + 1),
        ("watchdog_ms", -1),
        ("path_hash", 0x10000),
        ("payload", bytes(MAX_PAYLOAD + 1)),
        ("state", 2),
    ],
)
def test_a_frame_with_a_field_out_of_range_cannot_be_built(field: str, value: Any) -> None:
    with pytest.raises(LocalProtocolError, match=field):
        dataclasses.replace(heartbeat(), **{field: value})


def test_an_authkeys_index_beyond_one_byte_cannot_sign() -> None:
    with pytest.raises(LocalProtocolError, match="index 256"):
        encode_native(heartbeat(), AuthEntry(256, AuthMethod.SHA256, b"k"))


# --- identifiers ---------------------------------------------------------------------


def test_ids_are_the_documented_sha256_prefixes() -> None:
    # Both ends compute these independently: the derivation is part of the wire format.
    def prefix(label: bytes, text: str, size: int) -> int:
        return int.from_bytes(hashlib.sha256(label + b"\0" + text.encode()).digest()[:size])

    assert node_id("Alpha") == prefix(b"hbd node", "alpha", 4)
    assert path_hash("bcast:eth0") == prefix(b"hbd path", "bcast:eth0", 2)
    assert cluster_id(["beta", "Alpha"], 694) == prefix(b"hbd cluster", "alpha\nbeta\n694", 4)


def test_both_nodes_derive_the_same_cluster_id_and_neighbours_a_different_one() -> None:
    # ha.cf lists nodes in any order and case; node names compare without case
    assert cluster_id(["alpha", "beta"], 694) == cluster_id(["BETA", "alpha"], 694)
    assert node_id("alpha") == node_id("ALPHA") != node_id("beta")
    assert cluster_id(["alpha", "beta"], 694) != cluster_id(["alpha", "beta"], 695)
    assert cluster_id(["alpha", "beta"], 694) != cluster_id(["alpha", "gamma"], 694)
    assert path_hash("bcast:eth0") != path_hash("bcast:eth1")


def test_the_demultiplexer_tells_native_frames_from_heartbeats() -> None:
    assert is_native(encode_native(heartbeat(), NEW))
    assert not is_native(b">>>\nt=status\n<<<\n")
    assert not is_native(b"###\n(1)t=status\n%%%\n")
    assert not is_native(b"")


# --- tampering: every change is dropped, with the reason that names it ---------------


def expected_reason(position: int, tampered: bytes) -> DropReason:
    """Which check a one-byte change trips first, by the field it lands in."""
    if position == 0:
        return DropReason.MALFORMED  # magic
    if position == 1:
        return DropReason.UNSUPPORTED  # version
    if 4 <= position < 8:
        return DropReason.WRONG_CLUSTER
    if position == 3:  # key index
        entry = KEYS.get(tampered[3])
        if entry is None or entry.method is AuthMethod.CRC:
            return DropReason.UNKNOWN_KEY
    return DropReason.BAD_SIGNATURE


@given(frames, st.data())
def test_any_bit_flipped_anywhere_is_dropped(frame: NativeFrame, data: st.DataObject) -> None:
    original = encode_native(frame, NEW)
    position = data.draw(st.integers(0, len(original) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = bytearray(original)
    tampered[position] ^= 1 << bit
    result = decode_native(bytes(tampered), KEYS, CLUSTER)
    assert reason(result) is expected_reason(position, bytes(tampered))


@given(frames, st.data())
def test_a_truncated_frame_is_dropped(frame: NativeFrame, data: st.DataObject) -> None:
    original = encode_native(frame, NEW)
    cut = data.draw(st.integers(0, len(original) - 1))
    result = decode_native(original[:cut], KEYS, CLUSTER)
    if cut == 0:
        assert reason(result) is DropReason.MALFORMED
    elif cut < HEARTBEAT_LEN:
        assert reason(result) is DropReason.TRUNCATED
    else:  # a frame with a payload cut inside it: the tag no longer matches
        assert reason(result) is DropReason.BAD_SIGNATURE


@given(frames, st.binary(min_size=1, max_size=300))
def test_an_extended_frame_is_dropped(frame: NativeFrame, extra: bytes) -> None:
    extended = encode_native(frame, NEW) + extra
    expected = DropReason.TOO_LONG if len(extended) > MAX_FRAME_LEN else DropReason.BAD_SIGNATURE
    assert reason(decode_native(extended, KEYS, CLUSTER)) is expected


def test_the_longest_frame_is_accepted_and_one_byte_more_is_too_long() -> None:
    longest = heartbeat(payload=bytes(range(MAX_PAYLOAD)))
    datagram = encode_native(longest, NEW)
    assert len(datagram) == MAX_FRAME_LEN
    assert decode_native(datagram, KEYS, CLUSTER) == longest
    signed_one_longer = resign(datagram[:-16] + b"!", NEW)
    result = decode_native(signed_one_longer, KEYS, CLUSTER)
    assert reason(result) is DropReason.TOO_LONG
    assert f"at most {MAX_FRAME_LEN}" in str(result)


def test_a_frame_signed_with_another_key_under_our_index_is_a_forgery() -> None:
    forger = AuthEntry(2, AuthMethod.SHA256, b"a guess at the key")
    result = decode_native(encode_native(heartbeat(), forger), KEYS, CLUSTER)
    assert reason(result) is DropReason.BAD_SIGNATURE
    assert "authkeys entry 2" in str(result)


def test_a_frame_naming_a_key_we_do_not_have_is_dropped() -> None:
    result = decode_native(
        encode_native(heartbeat(), AuthEntry(9, AuthMethod.SHA256, b"k")), KEYS, CLUSTER
    )
    assert reason(result) is DropReason.UNKNOWN_KEY
    assert "index 9" in str(result)


def test_a_frame_claiming_our_crc_entry_is_dropped_as_unsigned() -> None:
    signed_with_crc_index = bytearray(encode_native(heartbeat(), NEW))
    signed_with_crc_index[3] = CRC.index
    result = decode_native(bytes(signed_with_crc_index), KEYS, CLUSTER)
    assert reason(result) is DropReason.UNKNOWN_KEY
    assert "crc" in str(result)


def test_a_neighbouring_clusters_frame_is_dropped_as_wrong_cluster() -> None:
    theirs = encode_native(heartbeat(cluster_id=OTHER_CLUSTER), NEW)
    result = decode_native(theirs, KEYS, CLUSTER)
    assert reason(result) is DropReason.WRONG_CLUSTER
    assert f"{OTHER_CLUSTER:08x}" in str(result)


def test_a_newer_peers_message_kind_is_unsupported_not_forged() -> None:
    datagram = encode_native(heartbeat(), NEW)
    newer = bytearray(datagram[:-16])
    newer[2] = (7 << 4) | NodeState.UP  # kind 7: not one this version knows
    result = decode_native(resign(bytes(newer), NEW), KEYS, CLUSTER)
    assert reason(result) is DropReason.UNSUPPORTED
    assert "kind 7" in str(result)


def test_a_signed_frame_with_an_undefined_state_is_malformed() -> None:
    datagram = bytearray(encode_native(heartbeat(), NEW)[:-16])
    datagram[2] = 0x0E
    result = decode_native(resign(bytes(datagram), NEW), KEYS, CLUSTER)
    assert reason(result) is DropReason.MALFORMED
    assert "state 14" in str(result)


def test_another_version_is_unsupported() -> None:
    datagram = bytearray(encode_native(heartbeat(), NEW))
    datagram[1] = 2
    assert reason(decode_native(bytes(datagram), KEYS, CLUSTER)) is DropReason.UNSUPPORTED


# --- serial: framing, line noise, replug ---------------------------------------------


def test_line_noise_inside_a_frame_is_a_bad_checksum_not_a_forgery() -> None:
    line = bytearray(encode_native_serial(heartbeat(), NEW))
    line[20] ^= 0x10  # one bit of noise, the delimiter untouched
    assert line[20] != 0
    [result] = NativeSerialStream(KEYS, CLUSTER).feed(bytes(line))
    assert reason(result) is DropReason.BAD_CHECKSUM


def test_a_frame_too_short_for_its_crc_is_truncated() -> None:
    assert reason(decode_native_serial(cobs_encode(b"\xb8"), KEYS, CLUSTER)) is (
        DropReason.TRUNCATED
    )


def test_a_run_without_delimiter_is_dropped_once_and_the_buffer_stays_bounded() -> None:
    stream = NativeSerialStream(KEYS, CLUSTER)
    babble = b"\x55" * (MAX_SERIAL_STUFFED * 4)
    results = [r for chunk in (babble[:100], babble[100:]) for r in stream.feed(chunk)]
    assert [reason(r) for r in results] == [DropReason.TOO_LONG]
    assert stream.buffered <= MAX_SERIAL_STUFFED
    after = stream.feed(b"\x00" + encode_native_serial(heartbeat(), NEW))
    assert after == [heartbeat()]


def test_the_buffer_holds_the_longest_possible_frame_and_not_a_byte_more() -> None:
    stream = NativeSerialStream(KEYS, CLUSTER)
    assert stream.feed(b"\x01" * MAX_SERIAL_STUFFED) == []
    assert stream.buffered == MAX_SERIAL_STUFFED
    [result] = stream.feed(b"\x01")
    assert reason(result) is DropReason.TOO_LONG
    assert stream.buffered == 0


def test_zeros_between_frames_are_idle_fill() -> None:
    frame = heartbeat()
    line = b"\x00\x00" + encode_native_serial(frame, NEW) + b"\x00\x00\x00"
    assert NativeSerialStream(KEYS, CLUSTER).feed(line) == [frame]


def test_a_replug_mid_frame_loses_only_that_frame() -> None:
    sent = [heartbeat(seq) for seq in range(1, 6)]
    line = b"".join(encode_native_serial(f, NEW) for f in sent)
    for start in range(len(line)):
        results = NativeSerialStream(KEYS, CLUSTER).feed(line[start:])
        got = [r for r in results if isinstance(r, NativeFrame)]
        whole_frames_left = sum(1 for i, b in enumerate(line) if b == 0 and i >= start) - (
            0 if start == 0 or line[start - 1] == 0 else 1
        )
        assert got == sent[len(sent) - whole_frames_left :]
        assert len(results) - len(got) <= 1


@given(
    st.integers(0, 7),  # frames before the noise
    st.integers(1, 8),  # frames after it
    st.data(),
)
def test_after_a_burst_of_line_noise_the_receiver_is_back_in_step_within_one_frame(
    before: int, after: int, data: st.DataObject
) -> None:
    sent = [heartbeat(seq) for seq in range(1, before + after + 1)]
    encoded = [encode_native_serial(f, NEW) for f in sent]
    clean_prefix = b"".join(encoded[:before])
    rest = b"".join(encoded[before:])
    # the burst overwrites bytes from the start of frame `before` onwards, possibly
    # including delimiters, possibly with zeros of its own, possibly into later frames
    noise = data.draw(st.binary(min_size=1, max_size=2 * HEARTBEAT_SERIAL_LEN))
    noise_end = min(len(noise), len(rest))
    line = clean_prefix + noise[:noise_end] + rest[noise_end:]
    assume(line != clean_prefix + rest)

    results = NativeSerialStream(KEYS, CLUSTER).feed(line)
    got = [r for r in results if isinstance(r, NativeFrame)]

    # untouched frames before the burst all arrive, nothing is invented from noise
    assert got[:before] == sent[:before]
    assert all(f in sent[before:] for f in got[before:])
    # every frame starting after the burst arrives, except at most the first of them
    ends = [len(clean_prefix)]
    for e in encoded[before:]:
        ends.append(ends[-1] + len(e))
    starting_after = [
        sent[before + i] for i in range(after) if ends[i] >= len(clean_prefix) + noise_end
    ]
    assert all(f in got for f in starting_after[1:])


# --- fuzz invariant ------------------------------------------------------------------


@given(st.binary(max_size=400))
def test_any_datagram_decodes_to_a_frame_or_a_drop(data: bytes) -> None:
    assert isinstance(decode_native(data, KEYS, CLUSTER), NativeFrame | Dropped)
    assert isinstance(decode_native(b"\xb8\x01" + data, KEYS, CLUSTER), NativeFrame | Dropped)


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=80),
            frames.map(lambda f: encode_native_serial(f, NEW)),
            st.integers(1, 3 * MAX_SERIAL_STUFFED).map(lambda n: b"\x01" * n),
        ),
        max_size=8,
    ).map(b"".join),
    st.lists(st.integers(1, 64), min_size=1),
)
def test_any_bytes_on_a_stream_give_the_same_results_however_they_are_chunked(
    line: bytes, chunk_sizes: list[int]
) -> None:
    whole = NativeSerialStream(KEYS, CLUSTER).feed(line)
    assert all(isinstance(r, NativeFrame | Dropped) for r in whole)

    one_by_one = NativeSerialStream(KEYS, CLUSTER)
    assert [r for b in line for r in one_by_one.feed(bytes([b]))] == whole
    assert one_by_one.buffered <= MAX_SERIAL_STUFFED

    chunked = NativeSerialStream(KEYS, CLUSTER)
    results: list[NativeFrame | Dropped] = []
    pos, i = 0, 0
    while pos < len(line):
        size = chunk_sizes[i % len(chunk_sizes)]
        results += chunked.feed(line[pos : pos + size])
        pos, i = pos + size, i + 1
    assert results == whole


# --- COBS ----------------------------------------------------------------------------

# Examples from Cheshire and Baker's paper as Wikipedia tabulates them (delimiter omitted).
COBS_VECTORS = [
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    (bytes(range(255)), b"\x01\xff" + bytes(range(1, 255))),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]


@pytest.mark.parametrize(("packet", "stuffed"), COBS_VECTORS)
def test_cobs_matches_the_published_examples(packet: bytes, stuffed: bytes) -> None:
    assert cobs_encode(packet) == stuffed
    assert cobs_decode(stuffed) == packet


@given(
    st.lists(st.one_of(st.binary(max_size=20), st.just(b"\xaa" * 254), st.just(b"\x00"))).map(
        b"".join
    )
)
def test_cobs_round_trips_any_packet_without_zeros_in_between(packet: bytes) -> None:
    stuffed = cobs_encode(packet)
    assert b"\x00" not in stuffed
    assert len(stuffed) <= cobs_max_encoded_len(len(packet))
    assert cobs_decode(stuffed) == packet


@pytest.mark.parametrize(
    "broken",
    [b"\x05\x11\x22", b"\x03\x11\x00", b"\x00", b"\x02\x11\x04"],
    ids=["code-past-the-end", "zero-inside-a-block", "zero-code", "last-code-past-the-end"],
)
def test_broken_cobs_is_refused(broken: bytes) -> None:
    assert cobs_decode(broken) is None


@given(st.binary(max_size=300))
def test_cobs_decoding_any_bytes_never_raises(data: bytes) -> None:
    decoded = cobs_decode(data)
    assert decoded is None or cobs_decode(cobs_encode(decoded)) == decoded


@given(key=st.binary(max_size=200), data=st.binary(max_size=300))
def test_the_keyed_digest_kept_per_key_is_the_hmac_of_each_message(key: bytes, data: bytes) -> None:
    from hbd.core.wire.mac import keyed_digest

    for algorithm in ("md5", "sha1", "sha256"):  # keys longer than a block are hashed first
        assert keyed_digest(key, data, algorithm) == hmac.digest(key, data, algorithm)
        assert keyed_digest(key, data + b"!", algorithm) == hmac.digest(key, data + b"!", algorithm)
