"""Heartbeat 3.0.6 / cluster-glue 1.0.12 wire formats, byte for byte (sans-I/O).

Two encodings of one `HaMessage` (see `ha_message`):

Classic text -- what Heartbeat writes on a serial line::

    >>>\\n
    t=status\\n                         string field: name=value, '\\n' in a value -> 0x13
    (1)srcuuid=EBESExQVFhcYGRobHB0eHw==\\n   typed field: (N)name=, binary in base64
    ...
    auth=1 7d8a05a1...\\n               "<authkeys index> <hex digest>"
    <<<\\n

  The digest covers every field line except `auth` lines, without the `>>>`/`<<<` lines,
  re-serialised from the parsed message (Heartbeat's `isauthentic`). The receiver uses
  the last `auth` field.

Netstring -- what Heartbeat sends on UDP (always: `msg2wirefmt` signs with netstrings even
with `msgfmt classic`)::

    ###\\n 11:(0)t=status, 27:(1)srcuuid=<16 raw bytes>, ... %%%\\n 42:1 <hex>,

  Every field is a netstring `<len>:(<type>)<name>=<raw value>,` and the trailer is a
  netstring holding the token over the exact bytes from `###\\n` to `%%%\\n` inclusive.
  With `msgfmt classic` (the default) Heartbeat has *also* put a classic `auth` field into
  the message before packing it, so UDP frames carry two signatures; the receiver checks
  only the trailer. `encode_netstring(..., classic_auth=True)` reproduces that.

Decoding never raises: it returns the message or a `Dropped` with the reason. We accept
what Heartbeat produces and reject (rather than misread) what Heartbeat would mangle, so a
decoded message always re-encodes; real frames re-encode byte for byte.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.errors import DropReason, LocalProtocolError
from hbd.core.wire import Dropped
from hbd.core.wire.ha_auth import auth_token, digest_hex, heartbeat_crc, parse_token
from hbd.core.wire.ha_control import (
    HaAck,
    HaNakRexmit,
    HaRepNodes,
    HaReqNodes,
    HaRexmit,
    HaStatus,
    ack_message,
    nak_rexmit_message,
    parse_ack,
    parse_nak_rexmit,
    parse_repnodes,
    parse_reqnodes,
    parse_rexmit,
    parse_status,
    repnodes_message,
    reqnodes_message,
    rexmit_message,
    status_message,
)
from hbd.core.wire.ha_message import (
    DEPTH_ESCAPES,
    NL_ESCAPE,
    FieldType,
    HaField,
    HaMessage,
    parse_hex,
    plain_top_level,
)

__all__ = [
    "CLASSIC_END",
    "CLASSIC_START",
    "MAX_FRAME",
    "NETSTRING_END",
    "NETSTRING_START",
    "ClassicStream",
    "FieldType",
    "HaAck",
    "HaField",
    "HaMessage",
    "HaNakRexmit",
    "HaRepNodes",
    "HaReqNodes",
    "HaRexmit",
    "HaStatus",
    "NetstringTemplate",
    "ack_message",
    "auth_token",
    "classic_signed_text",
    "decode_frame",
    "digest_hex",
    "encode_classic",
    "encode_netstring",
    "flat_frames",
    "heartbeat_crc",
    "nak_rexmit_message",
    "parse_ack",
    "parse_hex",
    "parse_nak_rexmit",
    "parse_repnodes",
    "parse_reqnodes",
    "parse_rexmit",
    "parse_status",
    "repnodes_message",
    "reqnodes_message",
    "rexmit_message",
    "status_message",
]

CLASSIC_START = b">>>\n"
CLASSIC_END = b"<<<\n"
NETSTRING_START = b"###\n"
NETSTRING_END = b"%%%\n"
AUTH = "auth"
# Heartbeat's MAXMSG is 256 KiB, but anything that large is compressed first; a sane bound
# for what we buffer from one peer frame (Heartbeat's status frames are ~200-300 bytes).
MAX_FRAME = 64 * 1024
_MAX_INDEX = 15  # Heartbeat's MAXAUTH is 16
# Fields (nested ones and list items included) one frame may carry: Heartbeat's messages
# have a dozen or two; the bound caps what an authenticated frame can cost to read, and
# (as lines of a classic frame) what an unauthenticated one costs before its signature.
MAX_FIELDS = 512


def _b(s: str) -> bytes:
    return s.encode("latin-1")


def _s(b: bytes) -> str:
    return b.decode("latin-1")


# --------------------------------------------------------------------------- encoding


def _classic_value(f: HaField, depth: int) -> str:
    v = f.value
    if f.type is FieldType.STRING:
        assert isinstance(v, str)
        return v.replace("\n", NL_ESCAPE)
    if f.type in (FieldType.BINARY, FieldType.COMPRESS):
        assert isinstance(v, bytes)
        return base64.b64encode(v).decode("ascii")
    if f.type is FieldType.LIST:
        assert isinstance(v, tuple)
        return "".join(f"{len(item)}:{item}," for item in v)
    assert isinstance(v, HaMessage)
    child = ">>>\n" + _classic_lines(v, depth + 1, skip_auth=False) + "<<<\n"
    return child.replace("\n", DEPTH_ESCAPES[depth])


def _classic_lines(msg: HaMessage, depth: int, *, skip_auth: bool) -> str:
    out = []
    for f in msg.fields:
        if skip_auth and f.name == AUTH:
            continue
        prefix = "" if f.type is FieldType.STRING else f"({int(f.type)})"
        out.append(f"{prefix}{f.name}={_classic_value(f, depth)}\n")
    return "".join(out)


def classic_signed_text(msg: HaMessage) -> bytes:
    """The bytes a classic `auth` field signs: every field line but `auth`, no markers."""
    return _b(_classic_lines(msg, 0, skip_auth=True))


@dataclass(frozen=True, slots=True)
class ClassicSigned:
    """A message checked once and given its classic `auth` field: what both formats then
    carry (`classic_frame`, `netstring_frame`), so a message sent on serial and UDP paths
    is checked, serialised and signed once rather than once a format."""

    msg: HaMessage  # with the `auth` field set
    lines: bytes  # its classic field lines, the `auth` line included


def sign_classic(msg: HaMessage, auth: AuthEntry) -> ClassicSigned:
    """Check `msg` and set its classic `auth` field (in place if it has one, else last)."""
    msg.check()
    count = sum(1 for f in msg.fields if f.name == AUTH)
    if count > 1:
        raise LocalProtocolError("a message to sign may carry at most one auth field")
    text = classic_signed_text(msg)
    token = auth_token(auth, text)
    signed = msg.with_field(AUTH, token, FieldType.STRING)
    if count == 0:  # appended: the lines are the signed text and the auth line after it
        return ClassicSigned(signed, text + _b(f"{AUTH}={token}\n"))
    return ClassicSigned(signed, _b(_classic_lines(signed, 0, skip_auth=False)))


def classic_frame(signed: ClassicSigned) -> bytes:
    """The classic text frame of a signed message: `>>>`..`<<<`, no trailing NUL."""
    return CLASSIC_START + signed.lines + CLASSIC_END


def encode_classic(msg: HaMessage, auth: AuthEntry) -> bytes:
    """The classic text frame Heartbeat writes on serial: `auth` set (in place if the
    message already has one, else appended), `>>>`..`<<<`, no trailing NUL."""
    return classic_frame(sign_classic(msg, auth))


def _netstring_fields(msg: HaMessage) -> bytes:
    out = bytearray(NETSTRING_START)
    for f in msg.fields:
        v = f.value
        if isinstance(v, str):
            raw = _b(v)
        elif isinstance(v, bytes):
            raw = v
        elif isinstance(v, tuple):
            raw = _b("".join(f"{len(item)}:{item}," for item in v))
        else:
            raw = _netstring_fields(v)
        item = _b(f"({int(f.type)}){f.name}=") + raw
        out += _b(f"{len(item)}:") + item + b","
    out += NETSTRING_END
    return bytes(out)


def encode_netstring(msg: HaMessage, auth: AuthEntry, *, classic_auth: bool = True) -> bytes:
    """The netstring frame Heartbeat sends on UDP, signed with `auth` in the trailer.

    `classic_auth=True` first sets the classic `auth` field, as Heartbeat does with
    `msgfmt classic` (its default, and what every captured UDP frame shows)."""
    if classic_auth:
        return netstring_frame(sign_classic(msg, auth), auth)
    msg.check()
    return _netstring_signed(msg, auth)


def _flat_line(f: HaField) -> bytes | None:
    """The classic line of a plain top-level field (`plain_top_level`), no newline; None
    for any other field. Its netstring item is `_flat_item` of it."""
    if not plain_top_level(f):
        return None
    value = f.value
    if type(value) is str:
        return f"{f.name}={value}".encode("ascii")
    assert isinstance(value, bytes)
    return f"(1){f.name}=".encode("ascii") + base64.b64encode(value)


def _flat_item(f: HaField, line: bytes) -> bytes:
    """The netstring item of plain field `f`, whose classic line is `line`."""
    value = f.value
    if type(value) is str:
        return b"%d:(0)%s," % (len(line) + 3, line)
    assert isinstance(value, bytes)
    head = f"(1){f.name}=".encode("ascii")
    return b"%d:%s%s," % (len(head) + len(value), head, value)


def flat_frames(msg: HaMessage, auth: AuthEntry) -> tuple[bytes, bytes] | None:
    """`classic_frame(sign_classic(msg, auth))` and `netstring_frame` of it, in one pass,
    for a message of plain top-level fields only (`plain_top_level`: hbd's heartbeats and
    adverts) and no `auth` field yet; None for any other message (then the general way,
    which checks it field by field). The same bytes as the general way, each line and
    netstring item written once."""
    lines: list[bytes] = []
    items: list[bytes] = []
    for f in msg.fields:
        line = _flat_line(f)
        if line is None or f.name == AUTH:
            return None
        lines.append(line)
        items.append(_flat_item(f, line))
    if not lines:
        return None  # check() refuses an empty message: let the general way say so
    text = b"\n".join(lines) + b"\n"
    auth_line = f"{AUTH}={auth_token(auth, text)}".encode("ascii")
    classic = CLASSIC_START + text + auth_line + b"\n" + CLASSIC_END
    items.append(b"%d:(0)%s," % (len(auth_line) + 3, auth_line))
    return classic, _with_trailer(NETSTRING_START + b"".join(items) + NETSTRING_END, auth)


def netstring_frame(signed: ClassicSigned, auth: AuthEntry) -> bytes:
    """The netstring frame of a message already given its classic `auth` field."""
    return _netstring_signed(signed.msg, auth)


def _netstring_signed(msg: HaMessage, auth: AuthEntry) -> bytes:
    return _with_trailer(_netstring_fields(msg), auth)


def _with_trailer(payload: bytes, auth: AuthEntry) -> bytes:
    """Netstring fields `payload` (`###`..`%%%`) with the auth netstring that signs them."""
    token = _b(auth_token(auth, payload))
    return payload + b"%d:%s," % (len(token), token)


# --------------------------------------------------------------------------- decoding


class _Bad(Exception):
    """Internal: a received frame is unusable; becomes a Dropped at the API boundary."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Budget:
    """Fields (and list items) still allowed in the frame being parsed."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_FIELDS

    def take(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise _Bad(DropReason.TOO_LONG, f"more than {MAX_FIELDS} fields")


_TYPE_PREFIXES = {f"({int(t)})": t for t in FieldType}  # the usual case, one lookup


def _typed_name(raw: str) -> tuple[FieldType, str]:
    known = _TYPE_PREFIXES.get(raw[:3])
    if known is not None and len(raw) >= 4:
        return known, raw[3:]
    if len(raw) < 4 or raw[2] != ")" or raw[1] not in "0123456789":
        raise _Bad(DropReason.MALFORMED, f"bad type prefix in field name {raw[:12]!r}")
    code = int(raw[1])
    if code not in FieldType._value2member_map_:
        raise _Bad(DropReason.UNSUPPORTED, f"field type ({code}) in {raw[:20]!r}")
    return FieldType(code), raw[3:]


def _unpack_list(text: str, where: str, budget: _Budget) -> tuple[str, ...]:
    items = []
    pos = 0
    while pos < len(text):
        budget.take()
        colon = text.find(":", pos, pos + 8)
        if colon <= pos or not (text[pos:colon].isascii() and text[pos:colon].isdigit()):
            raise _Bad(DropReason.MALFORMED, f"{where}: bad list length")
        n = int(text[pos:colon])
        end = colon + 1 + n
        if n == 0 or end >= len(text) or text[end] != ",":
            raise _Bad(DropReason.MALFORMED, f"{where}: bad list item")
        items.append(text[colon + 1 : end])
        pos = end + 1
    return tuple(items)


def _b64(text: str, where: str) -> bytes:
    if len(text) % 4:
        raise _Bad(DropReason.MALFORMED, f"{where}: base64 length not a multiple of 4")
    try:
        return base64.b64decode(text.encode("latin-1"), validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(DropReason.MALFORMED, f"{where}: bad base64") from None


def _parse_classic(text: str, depth: int, *, whole: bool, budget: _Budget) -> tuple[HaMessage, int]:
    """Parse `>>>\\n ... <<<\\n` at the start of `text`; returns the message and the end."""
    if not text.startswith(">>>\n"):
        raise _Bad(DropReason.MALFORMED, "no >>> start line")
    pos = 4
    fields = []
    while True:
        nl = text.find("\n", pos)
        if nl < 0:
            raise _Bad(DropReason.TRUNCATED, "no <<< end line")
        line = text[pos:nl]
        pos = nl + 1
        if not line:
            continue  # Heartbeat skips blank lines
        if line == "<<<":
            break
        budget.take()
        name, eq, value = line.partition("=")
        if not eq or not name:
            raise _Bad(DropReason.MALFORMED, f"line without name=value: {line[:40]!r}")
        ftype = FieldType.STRING
        if name.startswith("("):
            ftype, name = _typed_name(name)
            if ftype is FieldType.STRING:
                raise _Bad(DropReason.MALFORMED, f"explicit (0) on classic field {name!r}")
        where = f"field {name[:40]!r}"
        if ftype is FieldType.STRING:
            fields.append(HaField(name, value.replace(NL_ESCAPE, "\n")))
        elif ftype in (FieldType.BINARY, FieldType.COMPRESS):
            fields.append(HaField(name, _b64(value, where), ftype))
        elif ftype is FieldType.LIST:
            fields.append(HaField(name, _unpack_list(value, where, budget), ftype))
        else:
            if depth + 1 >= len(DEPTH_ESCAPES):
                raise _Bad(DropReason.MALFORMED, "structs nested too deep")
            child_text = value.replace(DEPTH_ESCAPES[depth], "\n")
            child, _ = _parse_classic(child_text, depth + 1, whole=True, budget=budget)
            fields.append(HaField(name, child, ftype))
    if whole and pos != len(text):
        raise _Bad(DropReason.MALFORMED, "bytes after <<<")
    return HaMessage(tuple(fields)), pos


_COMMA = ord(",")


def _peel(data: bytes, pos: int) -> tuple[bytes, int]:
    """One netstring `<len>:<data>,` at pos; returns the data and the position after it."""
    colon = data.find(b":", pos, pos + 8)
    digits = data[pos:colon] if colon > pos else data[pos : pos + 8]
    if colon <= pos or not digits.isdigit():
        if pos + len(digits) >= len(data) and digits.isdigit():
            raise _Bad(DropReason.TRUNCATED, "frame ends inside a netstring length")
        raise _Bad(DropReason.MALFORMED, f"bad netstring length at byte {pos}")
    n = int(digits)
    if n > MAX_FRAME:
        raise _Bad(DropReason.TOO_LONG, f"netstring of {n} bytes")
    end = colon + 1 + n
    if end >= len(data):
        raise _Bad(DropReason.TRUNCATED, f"netstring at byte {pos} runs past the frame")
    if data[end] != ord(","):
        raise _Bad(DropReason.MALFORMED, f"netstring at byte {pos} not closed by ','")
    return data[colon + 1 : end], end + 1


def _parse_netstring(data: bytes, pos: int, depth: int, budget: _Budget) -> tuple[HaMessage, int]:
    if not data.startswith(NETSTRING_START, pos):
        raise _Bad(DropReason.MALFORMED, "no ### start")
    pos += len(NETSTRING_START)
    size = len(data)
    fields: list[HaField] = []
    while not data.startswith(NETSTRING_END, pos):
        if pos >= size:
            raise _Bad(DropReason.TRUNCATED, "no %%% end")
        budget.take()
        # The usual field, inline: a well-formed netstring holding `(0)name=text`. Anything
        # else goes the long way, which says what is wrong with it.
        colon = data.find(b":", pos, pos + 8)
        digits = data[pos:colon]
        end = colon + 1 + int(digits) if colon > pos and digits.isdigit() else size
        if end < size and data[end] == _COMMA and end - colon <= MAX_FRAME:
            item, pos = data[colon + 1 : end], end + 1
            eq = item.find(b"=")
            if eq > 3 and item.startswith(b"(0)"):
                value = item[eq + 1 :].decode("latin-1")
                if NL_ESCAPE in value:
                    value = value.replace(NL_ESCAPE, "\n")
                fields.append(HaField(item[3:eq].decode("latin-1"), value))
                continue
        else:
            item, pos = _peel(data, pos)
        if not item.startswith(b"("):
            raise _Bad(DropReason.MALFORMED, f"netstring field without type: {item[:20]!r}")
        eq = item.find(b"=")
        if eq < 0:
            raise _Bad(DropReason.MALFORMED, f"netstring field without '=': {item[:20]!r}")
        ftype, name = _typed_name(_s(item[:eq]))
        raw = item[eq + 1 :]
        if ftype is FieldType.STRING:
            value = raw.decode("latin-1")
            fields.append(
                HaField(name, value.replace(NL_ESCAPE, "\n") if NL_ESCAPE in value else value)
            )
        elif ftype in (FieldType.BINARY, FieldType.COMPRESS):
            fields.append(HaField(name, raw, ftype))
        elif ftype is FieldType.LIST:
            where = f"field {name[:40]!r}"
            fields.append(HaField(name, _unpack_list(_s(raw), where, budget), ftype))
        else:
            where = f"field {name[:40]!r}"
            if depth + 1 >= len(DEPTH_ESCAPES):
                raise _Bad(DropReason.MALFORMED, "structs nested too deep")
            child, end = _parse_netstring(raw, 0, depth + 1, budget)
            if end != len(raw):
                raise _Bad(DropReason.MALFORMED, f"{where}: bytes after nested %%%")
            fields.append(HaField(name, child, ftype))
    return HaMessage(tuple(fields)), pos + len(NETSTRING_END)


def _verify(token: str | None, signed: bytes, keys: AuthKeys) -> None:
    if token is None:
        raise _Bad(DropReason.NO_AUTH, "no auth token")
    parsed = parse_token(token)
    if parsed is None:
        raise _Bad(DropReason.NO_AUTH, f"unparseable auth token {token[:30]!r}")
    index, digest = parsed
    entry = keys.get(index) if 0 <= index <= _MAX_INDEX else None
    if entry is None:
        raise _Bad(DropReason.UNKNOWN_KEY, keys.refusal(index))
    if entry.method is AuthMethod.SHA256:
        raise _Bad(DropReason.UNKNOWN_KEY, f"authkeys entry {index} is sha256, not Heartbeat's")
    if digest_hex(entry, signed) != digest:
        raise _Bad(DropReason.BAD_SIGNATURE, f"{entry.method.value} signature (key {index})")


def _classic_signed_raw(body: bytes) -> tuple[bytes, str | None]:
    """What a classic frame's signature covers, and its token, from the raw lines, before
    any field is parsed: the field lines but `auth` ones (typed or not) and blank ones,
    each with its newline; the token is the last `auth` line's value when that line is an
    untyped one (the parser's `auth` field then holds it). For a frame Heartbeat wrote this
    is exactly `classic_signed_text` of the parsed message, which is checked afterwards."""
    if body.count(b"\n", 0, MAX_FRAME) > MAX_FIELDS + 2:
        raise _Bad(DropReason.TOO_LONG, f"more than {MAX_FIELDS} fields")
    lines = body.split(b"\n")
    if lines[0] != b">>>":
        raise _Bad(DropReason.MALFORMED, "no >>> start line")
    try:
        end = lines.index(b"<<<", 1)
    except ValueError:
        raise _Bad(DropReason.TRUNCATED, "no <<< end line") from None
    if lines[end + 1 :] != [b""]:
        raise _Bad(DropReason.MALFORMED, "bytes after <<<")
    signed = bytearray()
    token: str | None = None
    for line in lines[1:end]:
        if not line:
            continue
        name = line.split(b"=", 1)[0]
        if name == b"auth":
            token = _s(line[5:]) if b"=" in line else None
        elif name.startswith(b"(") and name[3:] == b"auth" and name[2:3] == b")":
            token = None  # a typed auth field: the parser's last auth holds no token
        else:
            signed += line + b"\n"
    return bytes(signed), token


def _decode(data: bytes, keys: AuthKeys) -> HaMessage:
    if len(data) > MAX_FRAME:
        raise _Bad(DropReason.TOO_LONG, f"{len(data)} bytes")
    if data.startswith(CLASSIC_START):
        body = data.rstrip(b"\0")
        if b"\0" in body:
            raise _Bad(DropReason.MALFORMED, "NUL inside a classic frame")
        # the signature first, over the raw lines: a forged frame costs a hash, no parse
        signed, token = _classic_signed_raw(body)
        _verify(token, signed, keys)
        msg, _ = _parse_classic(_s(body), 0, whole=True, budget=_Budget())
        _check_decoded(msg)
        if classic_signed_text(msg) != signed:
            raise _Bad(DropReason.MALFORMED, "fields not written as Heartbeat writes them")
        return msg
    if data.startswith(NETSTRING_START):
        # the signed part ends at the last %%% (the trailer, a token, holds none)
        end = data.rfind(NETSTRING_END) + len(NETSTRING_END)
        if end < len(NETSTRING_START) + len(NETSTRING_END):
            raise _Bad(DropReason.TRUNCATED, "no %%% end")
        if end == len(data):
            raise _Bad(DropReason.NO_AUTH, "no auth netstring after %%%")
        token_raw, after = _peel(data, end)
        if after != len(data):
            raise _Bad(DropReason.MALFORMED, "bytes after the auth netstring")
        _verify(_s(token_raw), data[:end], keys)
        msg, parsed_to = _parse_netstring(data, 0, 0, _Budget())
        if parsed_to != end:
            raise _Bad(DropReason.MALFORMED, "the fields end before the last %%%")
        _check_decoded(msg)
        return msg
    if len(data) < 4 and (CLASSIC_START.startswith(data) or NETSTRING_START.startswith(data)):
        raise _Bad(DropReason.TRUNCATED, "frame shorter than its start marker")
    raise _Bad(DropReason.MALFORMED, "neither >>> (classic) nor ### (netstring) start")


def other_format_copy(msg: HaMessage, keys: AuthKeys, netstring: bool) -> bytes | None:
    """`msg`, which `decode_frame` gave from a frame in one format (`netstring` says
    which), as the frame of the other format that would pass `decode_frame` too, with
    these keys, and give `msg` back; None when there is none (no single plain classic
    `auth` field, a classic signature that does not verify, a key Heartbeat has not, too
    long). Heartbeat sends a message in classic text on its serial paths and as netstring
    on its UDP ones: a copy byte for byte this frame is the message already verified, and
    costs no parse.

    `msg` passed `check()` (every decoded message does), so it reads back equal from
    either format; each of its fields is one line of the classic text, so the lines a
    classic signature covers are `classic_signed_text(msg)`, verified here as
    `decode_frame` would; a netstring frame is signed here with the key of that classic
    signature."""
    auths = [f for f in msg.fields if f.name == AUTH]
    if len(auths) != 1 or auths[0].type is not FieldType.STRING:
        return None
    token = auths[0].value
    assert isinstance(token, str)
    lines = [_flat_line(f) for f in msg.fields]  # plain fields (hbd's, Heartbeat's): one pass
    flat = [line for line in lines if line is not None]
    if len(flat) != len(lines):
        flat = []
    try:
        if netstring and flat:  # it came as netstring: the classic frame, if it verifies
            signed = b"".join(
                line + b"\n" for f, line in zip(msg.fields, flat, strict=True) if f.name != AUTH
            )
            _verify(token, signed, keys)
            frame = CLASSIC_START + b"\n".join(flat) + b"\n" + CLASSIC_END
        elif netstring:
            _verify(token, classic_signed_text(msg), keys)
            frame = CLASSIC_START + _b(_classic_lines(msg, 0, skip_auth=False)) + CLASSIC_END
        else:  # it came in classic text, verified: the netstring frame with that key
            parsed = parse_token(token)
            entry = keys.get(parsed[0]) if parsed is not None else None
            if entry is None or entry.method is AuthMethod.SHA256:
                return None
            if flat:
                items = [_flat_item(f, ln) for f, ln in zip(msg.fields, flat, strict=True)]
                frame = _with_trailer(NETSTRING_START + b"".join(items) + NETSTRING_END, entry)
            else:
                frame = _netstring_signed(msg, entry)
    except _Bad:
        return None
    return frame if len(frame) <= MAX_FRAME else None


def _check_decoded(msg: HaMessage) -> None:
    try:
        msg.check()
    except LocalProtocolError as e:
        raise _Bad(DropReason.MALFORMED, str(e)) from None


def decode_frame(data: bytes, keys: AuthKeys) -> HaMessage | Dropped:
    """One whole Heartbeat frame, classic or netstring, with its signature verified.

    Never raises for any input: garbage gives Dropped(MALFORMED/TRUNCATED/TOO_LONG/
    UNSUPPORTED), a missing or unparseable token NO_AUTH, an index not in authkeys
    UNKNOWN_KEY, a wrong digest BAD_SIGNATURE."""
    try:
        return _decode(bytes(data), keys)
    except _Bad as bad:
        return Dropped(bad.reason, bad.detail)


# the fields of a heartbeat that differ from one to the next (`NetstringTemplate`): its
# sequence, timestamp, load, hbd's acknowledgements, and the classic signature over them
VARYING = frozenset({"seq", "ts", "ld", "hbdack", AUTH})


@dataclass(frozen=True, slots=True)
class NetstringTemplate:
    """A netstring frame verified and parsed the whole way (`decode_frame`), kept to read
    the next frame like it without parsing it: the same fields in the same order, every
    one but the VARYING ones byte for byte the same. A peer's heartbeats are such frames.
    `read` verifies the trailer's signature as `decode_frame` does, compares the fixed
    fields' bytes in runs, and takes only the varying values out; it gives the message
    `decode_frame` would give, or None for any frame not like it (which then goes the
    whole way, and is dropped there with its reason if it is bad). Only messages of
    plain fields (`plain_top_level`) make a template, so each field is one netstring."""

    fixed: tuple[bytes, ...]  # the bytes before each varying field, and after the last
    prefixes: tuple[bytes, ...]  # each varying field's `(0)name=`
    names: tuple[str, ...]  # ... its name
    slots: tuple[int, ...]  # ... its index among the message's fields
    fields: tuple[HaField, ...]  # the template message's fields
    lines: tuple[bytes, ...]  # classic text: the lines before each varying field, and after
    fixed_auths: int  # `auth` fields among the fixed ones (a classic copy needs none)

    @property
    def src(self) -> str | None:
        """The sender its messages name (their first `src` field)."""
        return next(
            (f.value for f in self.fields if f.name == "src" and type(f.value) is str), None
        )

    @classmethod
    def of(cls, data: bytes, msg: HaMessage) -> NetstringTemplate | None:
        """The template of netstring frame `data`, which `decode_frame` read as `msg`;
        None when `msg` is not all plain fields or `data` is not one netstring a field."""
        if not data.startswith(NETSTRING_START) or not msg.fields:
            return None
        end = data.rfind(NETSTRING_END)
        pos = len(NETSTRING_START)
        fixed: list[bytes] = []
        prefixes: list[bytes] = []
        names: list[str] = []
        slots: list[int] = []
        lines: list[bytes] = []
        run_start = 0  # the current fixed run starts here (the frame's start: `###`)
        run: list[bytes] = []  # the classic lines of the current fixed run
        try:
            for i, f in enumerate(msg.fields):
                line = _flat_line(f)
                if line is None:
                    return None
                item_start = pos
                _item, pos = _peel(data, pos)
                if f.name in VARYING and type(f.value) is str:
                    fixed.append(data[run_start:item_start])
                    lines.append(b"".join(run))
                    prefixes.append(f"(0){f.name}=".encode("ascii"))
                    names.append(f.name)
                    slots.append(i)
                    run_start, run = pos, []
                else:
                    run.append(line + b"\n")
        except _Bad:
            return None
        if pos != end:
            return None
        fixed.append(data[run_start : end + len(NETSTRING_END)])
        lines.append(b"".join(run))
        fixed_auths = sum(1 for i, f in enumerate(msg.fields) if f.name == AUTH and i not in slots)
        return cls(
            tuple(fixed),
            tuple(prefixes),
            tuple(names),
            tuple(slots),
            msg.fields,
            tuple(lines),
            fixed_auths,
        )

    def classic_copy(self, msg: HaMessage, keys: AuthKeys) -> bytes | None:
        """`other_format_copy(msg, keys, netstring=True)` of a message `read` gave: the
        classic frame of it, its signature verified, the fixed lines written once."""
        lines = self.lines
        out = [CLASSIC_START, lines[0]]
        signed = [lines[0]]
        tokens = 0
        token = ""
        for k, slot in enumerate(self.slots):
            f = msg.fields[slot]
            value = f.value
            if type(value) is not str:
                return None  # not a message `read` gave
            line = f"{f.name}={value}\n".encode("ascii")
            out.append(line)
            if f.name == AUTH:
                tokens += 1
                token = value
            else:
                signed.append(line)
            out.append(lines[k + 1])
            signed.append(lines[k + 1])
        if tokens != 1 or self.fixed_auths:
            return None  # one plain `auth` field, or no classic copy (other_format_copy)
        try:
            _verify(token, b"".join(signed), keys)
        except _Bad:
            return None
        out.append(CLASSIC_END)
        frame = b"".join(out)
        return frame if len(frame) <= MAX_FRAME else None

    def read(self, data: bytes, keys: AuthKeys) -> HaMessage | None:
        """The message of netstring frame `data` if it is like the template's, its trailer
        verified; None otherwise (then `decode_frame` reads it, or says why not)."""
        fixed = self.fixed
        if len(data) > MAX_FRAME or not data.startswith(fixed[0]):
            return None
        end = data.rfind(NETSTRING_END) + len(NETSTRING_END)
        try:
            token, after = _peel(data, end)
            if after != len(data):
                return None
            _verify(_s(token), data[:end], keys)
        except _Bad:
            return None
        fields = list(self.fields)
        pos = len(fixed[0])
        for k, prefix in enumerate(self.prefixes):
            colon = data.find(b":", pos, pos + 8)
            digits = data[pos:colon]
            if colon <= pos or not digits.isdigit():
                return None
            stop = colon + 1 + int(digits)
            if stop >= end or data[stop] != _COMMA or not data.startswith(prefix, colon + 1):
                return None
            field = HaField(self.names[k], _s(data[colon + 1 + len(prefix) : stop]))
            if not plain_top_level(field):
                return None  # an escape, a NUL, a newline: the whole way reads it
            fields[self.slots[k]] = field
            pos = stop + 1
            if not data.startswith(fixed[k + 1], pos):
                return None
            pos += len(fixed[k + 1])
        return HaMessage(tuple(fields)) if pos == end else None


# --------------------------------------------------------------------------- serial


@dataclass(slots=True)
class _StreamState:
    frame: bytearray
    in_frame: bool = False
    skip: str | None = None  # rest of this line: "noise" (counted) or "discard" (not)
    noise: int = 0  # bytes skipped outside frames, reported at the next frame start


class ClassicStream:
    """Classic frames out of a serial byte stream (Heartbeat's `serial_read`, hardened).

    Lines are `\\n`-terminated. Outside a frame every line but exactly `>>>` is line noise;
    its byte count is reported as one Dropped(MALFORMED) when the next frame starts. Inside
    a frame, a `<<<` line ends it (then `decode_frame` verifies it), and a fresh `>>>` line
    abandons the partial frame (Dropped TRUNCATED) and starts over -- resynchronising within
    one frame after noise or a replug. A frame beyond `max_frame` bytes is Dropped TOO_LONG
    and skipped. Results do not depend on how the bytes are split across `feed` calls.
    """

    def __init__(self, keys: AuthKeys, max_frame: int = MAX_FRAME) -> None:
        self._keys = keys
        self._max = max_frame
        self._st = _StreamState(bytearray())
        self._line = bytearray()

    def feed(self, data: bytes) -> list[HaMessage | Dropped]:
        out: list[HaMessage | Dropped] = []
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            chunk = data[pos:] if nl < 0 else data[pos : nl + 1]
            pos += len(chunk)
            self._take(chunk, complete=nl >= 0, out=out)
        return out

    def _take(self, chunk: bytes, *, complete: bool, out: list[HaMessage | Dropped]) -> None:
        st = self._st
        if st.skip is not None:
            if st.skip == "noise":
                st.noise += len(chunk)
            if complete:
                st.skip = None
            return
        self._line += chunk
        if st.in_frame and len(st.frame) + len(self._line) > self._max:
            out.append(Dropped(DropReason.TOO_LONG, f"serial frame over {self._max} bytes"))
            st.in_frame, st.frame = False, bytearray()
            st.skip = None if complete else "discard"
            self._line.clear()
            return
        if not st.in_frame and not CLASSIC_START.startswith(bytes(self._line[:4])):
            # cannot become an exact ">>>" line any more: count it as noise, keep nothing
            st.noise += len(self._line)
            self._line.clear()
            st.skip = None if complete else "noise"
            return
        if not complete:
            return
        line = bytes(self._line)
        self._line.clear()
        if line == CLASSIC_START:
            if st.in_frame:
                out.append(Dropped(DropReason.TRUNCATED, "serial frame cut by a new >>>"))
            if st.noise:
                out.append(Dropped(DropReason.MALFORMED, f"{st.noise} bytes of line noise"))
                st.noise = 0
            st.in_frame, st.frame = True, bytearray(line)
            return
        if not st.in_frame:
            st.noise += len(line)
            return
        st.frame += line
        if line.startswith(b"<<<"):
            frame = bytes(st.frame)
            st.in_frame, st.frame = False, bytearray()
            out.append(decode_frame(frame, self._keys))
