"""The qdevice-net wire format (corosync-qdevice 3.0.x `msg.c` / `tlv.c`), as values.

A message is a 6-byte header -- type u16, length u32 of what follows, both network order
-- and then options, each a TLV: type u16, length u16, value. Integers are big-endian;
the ring id is node id u32 + seq u64; the tie-breaker is mode u8 + node id u32; a node
info is itself a list of TLVs (node id, data center id, node state).

`encode(Message)` gives bytes; `Decoder.feed(bytes)` gives whole messages or raises
`QnetdFrameError` naming the message and the option that is wrong. Options this client
does not know are skipped, as qdevice does.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import TypeVar

HEADER = struct.Struct("!HI")
TLV = struct.Struct("!HH")
E = TypeVar("E", bound=enum.IntEnum)
MAX_MESSAGE = 1 << 15  # qnetd's default maximum reply size; larger is refused


class MsgType(enum.IntEnum):
    PREINIT = 0
    PREINIT_REPLY = 1
    STARTTLS = 2
    INIT = 3
    INIT_REPLY = 4
    SERVER_ERROR = 5
    SET_OPTION = 6
    SET_OPTION_REPLY = 7
    ECHO_REQUEST = 8
    ECHO_REPLY = 9
    NODE_LIST = 10
    NODE_LIST_REPLY = 11
    ASK_FOR_VOTE = 12
    ASK_FOR_VOTE_REPLY = 13
    VOTE_INFO = 14
    VOTE_INFO_REPLY = 15
    HEURISTICS_CHANGE = 16
    HEURISTICS_CHANGE_REPLY = 17


class Opt(enum.IntEnum):
    MSG_SEQ_NUMBER = 0
    CLUSTER_NAME = 1
    TLS_SUPPORTED = 2
    TLS_CLIENT_CERT_REQUIRED = 3
    SUPPORTED_MESSAGES = 4
    SUPPORTED_OPTIONS = 5
    REPLY_ERROR_CODE = 6
    SERVER_MAXIMUM_REQUEST_SIZE = 7
    SERVER_MAXIMUM_REPLY_SIZE = 8
    NODE_ID = 9
    SUPPORTED_DECISION_ALGORITHMS = 10
    DECISION_ALGORITHM = 11
    HEARTBEAT_INTERVAL = 12
    RING_ID = 13
    CONFIG_VERSION = 14
    DATA_CENTER_ID = 15
    NODE_STATE = 16
    NODE_INFO = 17
    NODE_LIST_TYPE = 18
    VOTE = 19
    QUORATE = 20
    TIE_BREAKER = 21
    HEURISTICS = 22
    KEEP_ACTIVE_PARTITION_TIE_BREAKER = 23


class Tls(enum.IntEnum):
    UNSUPPORTED = 0
    SUPPORTED = 1
    REQUIRED = 2


class Algorithm(enum.IntEnum):
    TEST = 0
    FFSPLIT = 1
    TWO_NODE_LMS = 2
    LMS = 3


class NodeListType(enum.IntEnum):
    INITIAL_CONFIG = 0
    CHANGED_CONFIG = 1
    MEMBERSHIP = 2
    QUORUM = 3


class NodeState(enum.IntEnum):
    NOT_SET = 0
    MEMBER = 1
    DEAD = 2
    LEAVING = 3


class Vote(enum.IntEnum):
    UNDEFINED = 0
    ACK = 1
    NACK = 2
    ASK_LATER = 3
    WAIT_FOR_REPLY = 4
    NO_CHANGE = 5


class Heuristics(enum.IntEnum):
    UNDEFINED = 0
    PASS = 1
    FAIL = 2


class TieBreakerMode(enum.IntEnum):
    LOWEST = 1
    HIGHEST = 2
    NODE_ID = 3


ERROR_CODES = {
    0: "no error",
    1: "unsupported needed message",
    2: "unsupported needed option",
    3: "TLS required",
    4: "unsupported message",
    5: "message too long",
    6: "preinit required",
    7: "a required option is missing",
    8: "unexpected message",
    9: "error decoding the message",
    10: "internal error",
    11: "init required",
    12: "unsupported decision algorithm",
    13: "invalid heartbeat interval",
    14: "message not supported by the decision algorithm",
    15: "tie-breaker differs from other nodes",
    16: "algorithm differs from other nodes",
    17: "duplicate node id",
    18: "invalid config node list",
    19: "invalid membership node list",
}


def error_text(code: int) -> str:
    return f"{code} ({ERROR_CODES.get(code, 'unknown error code')})"


class QnetdFrameError(Exception):
    """Bytes from qnetd that are no valid message: what, and where in the stream."""


@dataclass(frozen=True, slots=True)
class RingId:
    node_id: int
    seq: int


@dataclass(frozen=True, slots=True)
class TieBreaker:
    mode: TieBreakerMode
    node_id: int = 0


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: int
    data_center_id: int = 0
    state: NodeState = NodeState.NOT_SET


@dataclass(frozen=True, slots=True)
class Message:
    """One message; None (or empty) fields are absent from the frame."""

    type: MsgType
    seq: int | None = None
    cluster_name: str | None = None
    tls_supported: Tls | None = None
    tls_client_cert_required: bool | None = None
    supported_messages: tuple[int, ...] | None = None
    supported_options: tuple[int, ...] | None = None
    reply_error_code: int | None = None
    server_maximum_request_size: int | None = None
    server_maximum_reply_size: int | None = None
    node_id: int | None = None
    supported_decision_algorithms: tuple[int, ...] | None = None
    decision_algorithm: int | None = None
    heartbeat_interval: int | None = None  # milliseconds
    ring_id: RingId | None = None
    config_version: int | None = None
    node_list_type: NodeListType | None = None
    nodes: tuple[NodeInfo, ...] = field(default=())
    vote: Vote | None = None
    quorate: bool | None = None
    tie_breaker: TieBreaker | None = None
    heuristics: Heuristics | None = None
    keep_active_partition_tie_breaker: bool | None = None


# -- encoding -------------------------------------------------------------------------------


def _tlv(opt: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"option {opt} is {len(value)} bytes, more than a TLV holds")
    return TLV.pack(opt, len(value)) + value


def _u8(v: int) -> bytes:
    return struct.pack("!B", v)


def _u16(v: int) -> bytes:
    return struct.pack("!H", v)


def _u32(v: int) -> bytes:
    return struct.pack("!I", v)


def _u16s(values: tuple[int, ...]) -> bytes:
    return b"".join(_u16(v) for v in values)


def encode(m: Message) -> bytes:
    """The bytes of `m`, options in the order qdevice writes them."""
    out: list[bytes] = []
    if m.seq is not None:
        out.append(_tlv(Opt.MSG_SEQ_NUMBER, _u32(m.seq)))
    if m.cluster_name is not None:
        out.append(_tlv(Opt.CLUSTER_NAME, m.cluster_name.encode()))
    if m.tls_supported is not None:
        out.append(_tlv(Opt.TLS_SUPPORTED, _u8(m.tls_supported)))
    if m.tls_client_cert_required is not None:
        out.append(_tlv(Opt.TLS_CLIENT_CERT_REQUIRED, _u8(int(m.tls_client_cert_required))))
    if m.supported_messages is not None:
        out.append(_tlv(Opt.SUPPORTED_MESSAGES, _u16s(m.supported_messages)))
    if m.supported_options is not None:
        out.append(_tlv(Opt.SUPPORTED_OPTIONS, _u16s(m.supported_options)))
    if m.reply_error_code is not None:
        out.append(_tlv(Opt.REPLY_ERROR_CODE, _u16(m.reply_error_code)))
    if m.server_maximum_request_size is not None:
        out.append(_tlv(Opt.SERVER_MAXIMUM_REQUEST_SIZE, _u32(m.server_maximum_request_size)))
    if m.server_maximum_reply_size is not None:
        out.append(_tlv(Opt.SERVER_MAXIMUM_REPLY_SIZE, _u32(m.server_maximum_reply_size)))
    if m.node_id is not None:
        out.append(_tlv(Opt.NODE_ID, _u32(m.node_id)))
    if m.supported_decision_algorithms is not None:
        out.append(_tlv(Opt.SUPPORTED_DECISION_ALGORITHMS, _u16s(m.supported_decision_algorithms)))
    if m.decision_algorithm is not None:
        out.append(_tlv(Opt.DECISION_ALGORITHM, _u16(m.decision_algorithm)))
    if m.heartbeat_interval is not None:
        out.append(_tlv(Opt.HEARTBEAT_INTERVAL, _u32(m.heartbeat_interval)))
    if m.tie_breaker is not None:
        tb = m.tie_breaker
        node = tb.node_id if tb.mode is TieBreakerMode.NODE_ID else 0
        out.append(_tlv(Opt.TIE_BREAKER, _u8(tb.mode) + _u32(node)))
    if m.node_list_type is not None:
        out.append(_tlv(Opt.NODE_LIST_TYPE, _u8(m.node_list_type)))
    if m.ring_id is not None:
        out.append(_tlv(Opt.RING_ID, struct.pack("!IQ", m.ring_id.node_id, m.ring_id.seq)))
    if m.config_version is not None:
        out.append(_tlv(Opt.CONFIG_VERSION, struct.pack("!Q", m.config_version)))
    if m.quorate is not None:
        out.append(_tlv(Opt.QUORATE, _u8(int(m.quorate))))
    for n in m.nodes:
        inner = _tlv(Opt.NODE_ID, _u32(n.node_id))
        if n.data_center_id:
            inner += _tlv(Opt.DATA_CENTER_ID, _u32(n.data_center_id))
        if n.state is not NodeState.NOT_SET:
            inner += _tlv(Opt.NODE_STATE, _u8(n.state))
        out.append(_tlv(Opt.NODE_INFO, inner))
    if m.heuristics is not None and m.heuristics is not Heuristics.UNDEFINED:
        out.append(_tlv(Opt.HEURISTICS, _u8(m.heuristics)))
    if m.vote is not None:
        out.append(_tlv(Opt.VOTE, _u8(m.vote)))
    if m.keep_active_partition_tie_breaker is not None:
        out.append(
            _tlv(
                Opt.KEEP_ACTIVE_PARTITION_TIE_BREAKER,
                _u8(int(m.keep_active_partition_tie_breaker)),
            )
        )
    body = b"".join(out)
    return HEADER.pack(m.type, len(body)) + body


# -- decoding -------------------------------------------------------------------------------


def _iter_tlvs(data: bytes, what: str) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < TLV.size:
            raise QnetdFrameError(f"{what}: {len(data) - pos} stray bytes at offset {pos}")
        opt, length = TLV.unpack_from(data, pos)
        pos += TLV.size
        if pos + length > len(data):
            raise QnetdFrameError(
                f"{what}: option {_opt_name(opt)} says {length} bytes, {len(data) - pos} remain"
            )
        out.append((opt, data[pos : pos + length]))
        pos += length
    return out


def _opt_name(opt: int) -> str:
    try:
        return Opt(opt).name.lower()
    except ValueError:
        return str(opt)


def _int(value: bytes, size: int, what: str, opt: int) -> int:
    if len(value) != size:
        raise QnetdFrameError(f"{what}: option {_opt_name(opt)} is {len(value)} bytes, not {size}")
    return int.from_bytes(value, "big")


def _enum(cls: type[E], v: int, what: str, opt: int) -> E:
    try:
        return cls(v)
    except ValueError:
        raise QnetdFrameError(f"{what}: option {_opt_name(opt)} has unknown value {v}") from None


def _u16_array(value: bytes, what: str, opt: int) -> tuple[int, ...]:
    if len(value) % 2:
        raise QnetdFrameError(f"{what}: option {_opt_name(opt)} has an odd length {len(value)}")
    return tuple(struct.unpack(f"!{len(value) // 2}H", value))


def decode(frame: bytes) -> Message:
    """One whole message (header included) -> Message, or QnetdFrameError."""
    if len(frame) < HEADER.size:
        raise QnetdFrameError(f"a message of {len(frame)} bytes is shorter than its header")
    type_, length = HEADER.unpack_from(frame)
    try:
        mtype = MsgType(type_)
    except ValueError:
        raise QnetdFrameError(f"unknown message type {type_}") from None
    what = f"{mtype.name.lower()} message"
    if length != len(frame) - HEADER.size:
        raise QnetdFrameError(f"{what}: header says {length} bytes, {len(frame) - 6} follow")
    f: dict[str, object] = {}
    nodes: list[NodeInfo] = []
    for opt, v in _iter_tlvs(frame[HEADER.size :], what):
        if opt == Opt.MSG_SEQ_NUMBER:
            f["seq"] = _int(v, 4, what, opt)
        elif opt == Opt.CLUSTER_NAME:
            f["cluster_name"] = v.decode("utf-8", "replace")
        elif opt == Opt.TLS_SUPPORTED:
            f["tls_supported"] = _enum(Tls, _int(v, 1, what, opt), what, opt)
        elif opt == Opt.TLS_CLIENT_CERT_REQUIRED:
            f["tls_client_cert_required"] = bool(_int(v, 1, what, opt))
        elif opt == Opt.SUPPORTED_MESSAGES:
            f["supported_messages"] = _u16_array(v, what, opt)
        elif opt == Opt.SUPPORTED_OPTIONS:
            f["supported_options"] = _u16_array(v, what, opt)
        elif opt == Opt.REPLY_ERROR_CODE:
            f["reply_error_code"] = _int(v, 2, what, opt)
        elif opt == Opt.SERVER_MAXIMUM_REQUEST_SIZE:
            f["server_maximum_request_size"] = _int(v, 4, what, opt)
        elif opt == Opt.SERVER_MAXIMUM_REPLY_SIZE:
            f["server_maximum_reply_size"] = _int(v, 4, what, opt)
        elif opt == Opt.NODE_ID:
            f["node_id"] = _int(v, 4, what, opt)
        elif opt == Opt.SUPPORTED_DECISION_ALGORITHMS:
            f["supported_decision_algorithms"] = _u16_array(v, what, opt)
        elif opt == Opt.DECISION_ALGORITHM:
            f["decision_algorithm"] = _int(v, 2, what, opt)
        elif opt == Opt.HEARTBEAT_INTERVAL:
            f["heartbeat_interval"] = _int(v, 4, what, opt)
        elif opt == Opt.RING_ID:
            if len(v) != 12:
                raise QnetdFrameError(f"{what}: option ring_id is {len(v)} bytes, not 12")
            node, seq = struct.unpack("!IQ", v)
            f["ring_id"] = RingId(node, seq)
        elif opt == Opt.CONFIG_VERSION:
            f["config_version"] = _int(v, 8, what, opt)
        elif opt == Opt.NODE_LIST_TYPE:
            f["node_list_type"] = _enum(NodeListType, _int(v, 1, what, opt), what, opt)
        elif opt == Opt.NODE_INFO:
            nodes.append(_node_info(v, what))
        elif opt == Opt.VOTE:
            f["vote"] = _enum(Vote, _int(v, 1, what, opt), what, opt)
        elif opt == Opt.QUORATE:
            f["quorate"] = bool(_int(v, 1, what, opt))
        elif opt == Opt.TIE_BREAKER:
            if len(v) != 5:
                raise QnetdFrameError(f"{what}: option tie_breaker is {len(v)} bytes, not 5")
            mode = _enum(TieBreakerMode, v[0], what, opt)
            f["tie_breaker"] = TieBreaker(mode, int.from_bytes(v[1:], "big"))
        elif opt == Opt.HEURISTICS:
            f["heuristics"] = _enum(Heuristics, _int(v, 1, what, opt), what, opt)
        elif opt == Opt.KEEP_ACTIVE_PARTITION_TIE_BREAKER:
            f["keep_active_partition_tie_breaker"] = bool(_int(v, 1, what, opt))
        # an option this client does not know: skipped, as qdevice does
    return Message(mtype, nodes=tuple(nodes), **f)  # type: ignore[arg-type]


def _node_info(value: bytes, what: str) -> NodeInfo:
    node_id: int | None = None
    dc = 0
    state = NodeState.NOT_SET
    inner = f"{what}, node_info"
    for opt, v in _iter_tlvs(value, inner):
        if opt == Opt.NODE_ID:
            node_id = _int(v, 4, inner, opt)
        elif opt == Opt.DATA_CENTER_ID:
            dc = _int(v, 4, inner, opt)
        elif opt == Opt.NODE_STATE:
            state = _enum(NodeState, _int(v, 1, inner, opt), inner, opt)
    if node_id is None:
        raise QnetdFrameError(f"{inner}: no node_id")
    return NodeInfo(node_id, dc, state)


class Decoder:
    """A byte stream from qnetd -> whole messages. `feed` returns those completed."""

    def __init__(self, max_size: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self.max_size = max_size
        self.offset = 0  # stream offset of the buffer's start, for error messages

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= HEADER.size:
            type_, length = HEADER.unpack_from(self._buf)
            total = HEADER.size + length
            if total > self.max_size:
                raise QnetdFrameError(
                    f"message of type {type_} at stream offset {self.offset} is {total} "
                    f"bytes, more than the {self.max_size} accepted"
                )
            if len(self._buf) < total:
                break
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            try:
                out.append(decode(frame))
            except QnetdFrameError as e:
                raise QnetdFrameError(f"{e} (at stream offset {self.offset})") from None
            self.offset += total
        return out
