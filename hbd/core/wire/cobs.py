"""Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999), for framing on a byte stream.

COBS rewrites a packet so that it contains no zero byte, at a cost of one byte per 254
bytes (at least one). A zero then marks the end of a frame: a receiver that starts in the
middle of a frame, or whose line took noise, throws away the bytes up to the next zero and
is back in step with the frame after it.

Encoding: the packet is cut at each zero; each piece becomes a block `code, data...` where
`code` is `len(data) + 1` and stands for the data followed by a zero. A piece longer than
254 bytes is split into blocks of code 0xFF (254 bytes, no zero implied). The zero implied
by the last block is not part of the packet.
"""

from __future__ import annotations

_MAX_RUN = 254  # data bytes in a full (0xFF) block


def cobs_encode(data: bytes) -> bytes:
    """`data` stuffed so it holds no zero byte. The caller appends the zero delimiter."""
    out = bytearray()
    pieces = data.split(b"\x00")
    last = len(pieces) - 1
    for i, piece in enumerate(pieces):
        full_blocks = 0
        while len(piece) >= _MAX_RUN:
            out.append(0xFF)
            out += piece[:_MAX_RUN]
            piece = piece[_MAX_RUN:]
            full_blocks += 1
        # A last piece that ended exactly on a full block needs no block for its
        # (non-existent) trailing zero; every other piece does.
        if i != last or piece or not full_blocks:
            out.append(len(piece) + 1)
            out += piece
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """The packet `data` was stuffed from, or None when `data` is not valid COBS.

    `data` is one frame without its delimiter. Invalid means: it holds a zero byte, or a
    block's code runs past the end. Never raises.
    """
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            return None
        end = i + code
        if end > n:
            return None
        block = data[i + 1 : end]
        if 0 in block:
            return None
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def cobs_max_encoded_len(length: int) -> int:
    """The longest COBS encoding of a packet of `length` bytes (without the delimiter)."""
    return length + length // _MAX_RUN + 1
