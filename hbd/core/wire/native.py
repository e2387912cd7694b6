"""hbd's native frame (`wire hbd`): compact, binary, HMAC-SHA256 signed.

Layout (big-endian), one UDP datagram per frame::

    offset size  field
    0      1     magic 0xB8 (never '>' or '#', which start Heartbeat's two formats)
    1      1     version, 1
    2      1     kind (high 4 bits) | sender's node state (low 4 bits)
    3      1     authkeys index of the key that signed the frame
    4      4     cluster id                       see `cluster_id`
    8      4     node id of the sender            see `node_id`
    12     4     generation (goes up at each start of the sender)
    16     4     sequence within the generation
    20     3     sender's deadtime, ms
    23     3     sender's watchdog timeout, ms (0: no watchdog)
    26     2     hash of the sender's path id     see `path_hash`
    28     n     payload, 0..255 bytes (empty for a heartbeat; for later message kinds)
    28+n   16    tag: HMAC-SHA256(key, bytes 0 .. 28+n) truncated to 128 bits

A heartbeat is 44 bytes. On a serial line the frame is followed by a CRC-16 (CCITT,
initial 0xFFFF, over the frame), COBS-stuffed and ended with a zero byte: 48 bytes on the
line, so 10 heartbeats a second take 4800 of 19200 baud's bits (8N1: 10 bits a byte), a
quarter of the line. A receiver that starts mid-frame or takes line noise loses at most the
frame it is in: the next zero puts it back in step. The CRC tells line noise
(`BAD_CHECKSUM`) from a forgery (`BAD_SIGNATURE`).

The key is the authkeys entry's key bytes, whatever its method (md5, sha1 or sha256: a
Heartbeat cluster keeps its key when it moves to `wire hbd`); the MAC is always
HMAC-SHA256. A crc entry has no secret, so it cannot sign a native frame. The index
travels in the frame so keys can be rotated: receivers verify with whichever entry the
frame names.

Checks on receive, in this order: magic and version, length, cluster id (a cheap filter
for a neighbouring cluster on the same wire; it only ever drops), key index, tag, then
kind and state. Replay protection (generation plus sequence window) is the caller's, per
sender, with `hbd.core.wire.replay.ReplayWindow`.

Identifiers are derived from names both nodes' configs share, so nothing extra needs
configuring: each is the first bytes (big-endian) of SHA-256 over a domain label, a zero
byte and the UTF-8 text:

- `node_id(name)`: 32 bits over `"hbd node"`, the node name in lower case (Heartbeat
  compares node names without case);
- `path_hash(path_id)`: 16 bits over `"hbd path"`, the sender's path id as written
  (e.g. `bcast:eth0`); it names the sender's end of the path, for status and logs;
- `cluster_id(nodes, udpport)`: 32 bits over `"hbd cluster"`, the lower-cased node names
  sorted and joined by newlines, a newline and the udpport in decimal.
"""

from __future__ import annotations

import binascii
import enum
import functools
import hashlib
import hmac
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.errors import DropReason, LocalProtocolError
from hbd.core.wire import Dropped
from hbd.core.wire.cobs import cobs_decode, cobs_encode, cobs_max_encoded_len
from hbd.core.wire.mac import keyed_digest, keyed_state

MAGIC = 0xB8
VERSION = 1
TAG_LEN = 16
CRC_LEN = 2
MAX_PAYLOAD = 255
MAX_MS = (1 << 24) - 1  # deadtime and watchdog timeout fields are 24 bits of ms

_HEADER = struct.Struct(">BBBBIIII3s3sH")
HEADER_LEN = _HEADER.size  # 28
HEARTBEAT_LEN = HEADER_LEN + TAG_LEN  # 44: one UDP datagram
MAX_FRAME_LEN = HEADER_LEN + MAX_PAYLOAD + TAG_LEN
HEARTBEAT_SERIAL_LEN = cobs_max_encoded_len(HEARTBEAT_LEN + CRC_LEN) + 1  # 48 on the line
MAX_SERIAL_STUFFED = cobs_max_encoded_len(MAX_FRAME_LEN + CRC_LEN)  # without the delimiter

_U32 = (1 << 32) - 1


class NodeState(enum.IntEnum):
    """The sender's own state, as its frames advertise it (4 bits on the wire)."""

    INIT = 0  # started, has not heard the cluster yet
    UP = 1  # member, holds no resources
    ACTIVE = 2  # member, may hold its resources
    STANDBY = 3  # member, has handed its resources over on request
    LEAVING = 4  # shutting down: releasing resources, will go silent
    DEAD = 5  # has stopped (a last frame before going)


class FrameKind(enum.IntEnum):
    """What a native frame carries (4 bits on the wire). Values 1..15 are for later kinds."""

    HEARTBEAT = 0
    ADVERT = 1  # a node's resource-group advert (hbd.core.advert) in the payload
    ECHO = 2  # a round-trip probe on one path: payload = 4-byte nonce
    ECHO_REPLY = 3  # its answer on the same path: the same nonce


@dataclass(frozen=True, slots=True)
class NativeFrame:
    """One native frame. Times are integer milliseconds; ids as `node_id` etc. derive them."""

    cluster_id: int
    node_id: int
    generation: int
    seq: int
    state: NodeState
    deadtime_ms: int
    watchdog_ms: int  # 0: the sender arms no watchdog
    path_hash: int
    kind: FrameKind = FrameKind.HEARTBEAT
    payload: bytes = b""

    def __post_init__(self) -> None:
        for name, value, top in (
            ("cluster_id", self.cluster_id, _U32),
            ("node_id", self.node_id, _U32),
            ("generation", self.generation, _U32),
            ("seq", self.seq, _U32),
            ("deadtime_ms", self.deadtime_ms, MAX_MS),
            ("watchdog_ms", self.watchdog_ms, MAX_MS),
            ("path_hash", self.path_hash, 0xFFFF),
        ):
            if not 0 <= value <= top:
                raise LocalProtocolError(f"native frame {name}={value} is outside 0..{top}")
        if not isinstance(self.state, NodeState):
            raise LocalProtocolError(f"native frame state {self.state!r} is not a NodeState")
        if not isinstance(self.kind, FrameKind):
            raise LocalProtocolError(f"native frame kind {self.kind!r} is not a FrameKind")
        if len(self.payload) > MAX_PAYLOAD:
            raise LocalProtocolError(
                f"native frame payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}"
            )


_KINDS = frozenset(kind.value for kind in FrameKind)
_STATES = frozenset(state.value for state in NodeState)
_KIND_OF = {kind.value: kind for kind in FrameKind}
_STATE_OF = {state.value: state for state in NodeState}
_new_frame = object.__new__
_set_field = object.__setattr__


def _digest(label: bytes, text: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(label + b"\0" + text.encode()).digest()[:size], "big")


@functools.lru_cache(maxsize=256)
def node_id(name: str) -> int:
    """The 32-bit id of node `name` (case-insensitive, as Heartbeat's node names)."""
    return _digest(b"hbd node", name.lower(), 4)


@functools.lru_cache(maxsize=256)
def path_hash(path_id: str) -> int:
    """The 16-bit hash of a path id such as `bcast:eth0` or `serial:/dev/ttyS0`."""
    return _digest(b"hbd path", path_id, 2)


def cluster_id(nodes: Iterable[str], udpport: int) -> int:
    """The 32-bit id of the cluster of `nodes` (ha.cf's node lines) on `udpport`."""
    names = sorted({name.lower() for name in nodes})
    return _digest(b"hbd cluster", "\n".join(names) + f"\n{udpport}", 4)


def is_native(data: bytes) -> bool:
    """Whether `data` (a datagram) is a native frame rather than one of Heartbeat's."""
    return data[:1] == b"\xb8"


def _key_for_signing(auth: AuthEntry) -> bytes:
    if auth.method is AuthMethod.CRC:
        raise LocalProtocolError(
            f"authkeys entry {auth.index} is crc, which has no key: native frames need "
            "md5, sha1 or sha256"
        )
    if not 0 <= auth.index <= 0xFF:
        raise LocalProtocolError(f"authkeys index {auth.index} does not fit a native frame")
    return auth.key


def _tag(key: bytes, signed: bytes) -> bytes:
    return keyed_digest(key, signed, "sha256")[:TAG_LEN]


def encode_native(frame: NativeFrame, auth: AuthEntry, *, path_hash: int | None = None) -> bytes:
    """`frame` signed with `auth`, as one datagram (44 bytes for a heartbeat); `path_hash`
    (checked as the frame's own) stands in for the frame's, so one frame serves every path."""
    return encode_native_each(frame, auth, (frame.path_hash if path_hash is None else path_hash,))[
        0
    ]


def encode_native_each(
    frame: NativeFrame, auth: AuthEntry, path_hashes: Iterable[int]
) -> list[bytes]:
    """`frame` as `encode_native` gives it for each path hash in turn, in order: the
    header is packed once and only the path hash differs (one frame for every path)."""
    state = keyed_state(_key_for_signing(auth), "sha256")
    head = _HEADER.pack(
        MAGIC,
        VERSION,
        (frame.kind << 4) | frame.state,
        auth.index,
        frame.cluster_id,
        frame.node_id,
        frame.generation,
        frame.seq,
        frame.deadtime_ms.to_bytes(3, "big"),
        frame.watchdog_ms.to_bytes(3, "big"),
        0,
    )[:-2]
    out = []
    for path_hash in path_hashes:
        if not 0 <= path_hash <= 0xFFFF:
            raise LocalProtocolError(f"native frame path_hash={path_hash} is outside 0..65535")
        signed = head + path_hash.to_bytes(2, "big") + frame.payload
        h = state.copy()
        h.update(signed)
        out.append(signed + h.digest()[:TAG_LEN])
    return out


def encode_native_serial(
    frame: NativeFrame, auth: AuthEntry, *, path_hash: int | None = None
) -> bytes:
    """`frame` signed with `auth`, CRC'd, COBS-stuffed and zero-terminated for a stream."""
    return stuff(encode_native(frame, auth, path_hash=path_hash))


def stuff(datagram: bytes) -> bytes:
    """Datagram `datagram` as it goes on a stream: CRC'd, COBS-stuffed, zero-terminated."""
    crc = binascii.crc_hqx(datagram, 0xFFFF).to_bytes(CRC_LEN, "big")
    return cobs_encode(datagram + crc) + b"\x00"


def signed_by(key: bytes, data: bytes) -> bool:
    """Whether datagram `data` ends in the tag `key` gives the bytes before it."""
    return hmac.compare_digest(_tag(key, data[:-TAG_LEN]), data[-TAG_LEN:])


def tag_checker(key: bytes) -> Callable[[bytes], bool]:
    """`signed_by` for one key, its HMAC state set up once: for every frame of a sender."""
    state = keyed_state(key, "sha256")
    compare = hmac.compare_digest

    def signed(data: bytes) -> bool:
        h = state.copy()
        h.update(data[:-TAG_LEN])
        return compare(h.digest()[:TAG_LEN], data[-TAG_LEN:])

    return signed


def decode_native(data: bytes, keys: AuthKeys, cluster_id: int) -> NativeFrame | Dropped:
    """The frame in datagram `data`, verified, or why it was dropped. Never raises."""
    if data[:1] != b"\xb8":
        return Dropped(DropReason.MALFORMED, "not a native frame (bad magic)")
    if len(data) < 2:
        return Dropped(DropReason.TRUNCATED, "native frame of 1 byte")
    if data[1] != VERSION:
        return Dropped(DropReason.UNSUPPORTED, f"native frame version {data[1]}")
    if len(data) < HEADER_LEN + TAG_LEN:
        return Dropped(
            DropReason.TRUNCATED, f"native frame of {len(data)} bytes, at least {HEARTBEAT_LEN}"
        )
    if len(data) > MAX_FRAME_LEN:
        return Dropped(
            DropReason.TOO_LONG, f"native frame of {len(data)} bytes, at most {MAX_FRAME_LEN}"
        )
    (_, _, kind_state, index, cluster, node, generation, seq, dt, wd, path) = _HEADER.unpack_from(
        data
    )
    if cluster != cluster_id:
        return Dropped(
            DropReason.WRONG_CLUSTER, f"cluster id {cluster:08x}, ours is {cluster_id:08x}"
        )
    entry = keys.get(index)
    if entry is None:
        return Dropped(DropReason.UNKNOWN_KEY, keys.refusal(index))
    if entry.method is AuthMethod.CRC:
        return Dropped(DropReason.UNKNOWN_KEY, f"authkeys entry {index} is crc, which cannot sign")
    signed = data[:-TAG_LEN]
    if not signed_by(entry.key, data):
        return Dropped(
            DropReason.BAD_SIGNATURE, f"HMAC-SHA256 with authkeys entry {index} does not match"
        )
    kind, state = kind_state >> 4, kind_state & 0x0F
    if kind not in _KINDS:
        return Dropped(DropReason.UNSUPPORTED, f"native frame kind {kind}")
    if state not in _STATES:
        return Dropped(DropReason.MALFORMED, f"node state {state} in a native frame")
    # every field is in range by its width on the wire, kind and state were checked: the
    # frame is built without `__post_init__`'s checks (they are for frames built in code)
    frame = _new_frame(NativeFrame)
    for name, value in (
        ("cluster_id", cluster),
        ("node_id", node),
        ("generation", generation),
        ("seq", seq),
        ("state", _STATE_OF[state]),
        ("deadtime_ms", int.from_bytes(dt, "big")),
        ("watchdog_ms", int.from_bytes(wd, "big")),
        ("path_hash", path),
        ("kind", _KIND_OF[kind]),
        ("payload", signed[HEADER_LEN:]),
    ):
        _set_field(frame, name, value)
    return frame


def decode_native_serial(stuffed: bytes, keys: AuthKeys, cluster_id: int) -> NativeFrame | Dropped:
    """One frame as read from a stream, without its zero delimiter. Never raises."""
    datagram = unstuff(stuffed)
    if isinstance(datagram, Dropped):
        return datagram
    return decode_native(datagram, keys, cluster_id)


def unstuff(stuffed: bytes) -> bytes | Dropped:
    """The datagram in one frame read from a stream (without its zero delimiter), its CRC
    checked and removed, or why not. Never raises."""
    if len(stuffed) > MAX_SERIAL_STUFFED:
        return Dropped(DropReason.TOO_LONG, f"serial frame of {len(stuffed)} bytes")
    raw = cobs_decode(stuffed)
    if raw is None:
        return Dropped(DropReason.BAD_CHECKSUM, "serial framing (COBS) broken: line noise?")
    if len(raw) <= CRC_LEN:
        return Dropped(DropReason.TRUNCATED, f"serial frame of {len(raw)} bytes")
    datagram, crc = raw[:-CRC_LEN], raw[-CRC_LEN:]
    if binascii.crc_hqx(datagram, 0xFFFF).to_bytes(CRC_LEN, "big") != crc:
        return Dropped(DropReason.BAD_CHECKSUM, "serial frame CRC-16 mismatch: line noise?")
    return datagram


class NativeSerialStream:
    """Native frames out of a byte stream (a serial line), however the bytes are chunked.

    Bytes are buffered up to the next zero delimiter; a run longer than any frame can be
    is dropped once (`TOO_LONG`) and skipped up to the next zero, so the buffer stays
    bounded. Empty frames (zeros back to back, e.g. idle fill) are ignored. Feeding a byte at
    a time gives the same results as feeding everything at once.
    """

    __slots__ = ("_buf", "_cluster_id", "_keys", "_skipping")

    def __init__(self, keys: AuthKeys, cluster_id: int) -> None:
        self._keys = keys
        self._cluster_id = cluster_id
        self._buf = bytearray()
        self._skipping = False

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a delimiter (never more than one frame's worth)."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (e.g. the device was reopened after a replug)."""
        self._buf.clear()
        self._skipping = False

    def feed(self, data: bytes) -> list[NativeFrame | Dropped]:
        """Everything completed by `data`: frames and drops, in the order they ended."""
        out: list[NativeFrame | Dropped] = []
        start = 0
        n = len(data)
        while start < n:
            zero = data.find(b"\x00", start)
            end = n if zero < 0 else zero
            if not self._skipping:
                room = MAX_SERIAL_STUFFED - len(self._buf)
                if end - start > room:
                    self._buf.clear()
                    self._skipping = True
                    out.append(
                        Dropped(
                            DropReason.TOO_LONG,
                            f"more than {MAX_SERIAL_STUFFED} bytes without a frame delimiter",
                        )
                    )
                else:
                    self._buf += data[start:end]
            if zero < 0:
                break
            if self._skipping:
                self._skipping = False
            elif self._buf:
                out.append(decode_native_serial(bytes(self._buf), self._keys, self._cluster_id))
                self._buf.clear()
            start = zero + 1
        return out
