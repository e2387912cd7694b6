"""Heartbeat's message authentication: the HBauth plugins crc, md5 and sha1.

A token is `"<index> <hex>"`: the authkeys index, a space, then the digest in lowercase
hex. md5 and sha1 are standard HMACs (RFC 2104) keyed with the authkeys key up to its
first NUL (Heartbeat uses `strlen`), printed with two digits per byte. crc is not keyed:
it is the POSIX `cksum` CRC-32 (polynomial 0x04C11DB7, MSB first, initial value 0, no
length suffix, final complement) printed with `%lx`, i.e. *without* leading zeros.
"""

from __future__ import annotations

import re
import zlib

from hbd.core.auth import AuthEntry, AuthMethod
from hbd.core.errors import LocalProtocolError
from hbd.core.wire.mac import keyed_digest


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def heartbeat_crc_reference(data: bytes) -> int:
    """Heartbeat's crc.so checksum of `data`, byte by byte as crc.so computes it (slow:
    for tests; `heartbeat_crc` gives the same at C speed)."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ b) & 0xFF]
    return ~crc & 0xFFFFFFFF


_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def heartbeat_crc(data: bytes) -> int:
    """Heartbeat's crc.so checksum of `data`, in C: the MSB-first CRC of the data is the
    bit-reversal of the reflected (zlib) CRC of the bit-reversed data; zlib's start value
    0xFFFFFFFF makes its register start at 0, as crc.so's does. 64 KiB in ~0.1 ms instead
    of ~6 ms, so a flood of forged crc frames costs no more than a keyed one."""
    reflected = zlib.crc32(data.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return ~int(f"{reflected:032b}"[::-1], 2) & 0xFFFFFFFF


def digest_hex(entry: AuthEntry, data: bytes) -> str:
    """The hex part of the token Heartbeat computes over `data` with this authkeys entry."""
    key = entry.key.split(b"\0", 1)[0]
    if entry.method is AuthMethod.CRC:
        return f"{heartbeat_crc(data):x}"
    if entry.method is AuthMethod.MD5:
        return keyed_digest(key, data, "md5").hex()
    if entry.method is AuthMethod.SHA1:
        return keyed_digest(key, data, "sha1").hex()
    raise LocalProtocolError(f"authkeys method {entry.method.value} is not one Heartbeat speaks")


def auth_token(entry: AuthEntry, data: bytes) -> str:
    """`"<index> <hex>"`, the `auth=` field value / netstring trailer Heartbeat writes."""
    return f"{entry.index} {digest_hex(entry, data)}"


_TOKEN = re.compile(r"[ \t]*([+-]?[0-9]+)[ \t\n]+([^ \t\n]+)")


def parse_token(token: str) -> tuple[int, str] | None:
    """Split a received token as Heartbeat's `sscanf("%d %s")` does; None if it is not one."""
    m = _TOKEN.match(token)
    if m is None or len(m.group(1)) > 9:
        return None
    return int(m.group(1)), m.group(2)
