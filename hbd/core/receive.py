"""The per-path receive demultiplexer: bytes from one path in, frames of any format out.

Both wire formats are told apart here, whatever `wire` says we send (the engine then
refuses Heartbeat's under `wire hbd` unless `wire_accept` lists it, before parsing it):

- a datagram path (UDP) gets one frame per datagram, told apart by its first byte:
  0xB8 an hbd native frame, `###` Heartbeat's netstring format, `>>>` Heartbeat's
  classic text;
- a serial path gets a byte stream in which Heartbeat's classic frames (`>>>\\n` ...
  `<<<\\n`, never a zero byte inside) and hbd's COBS frames (no zero inside, a zero at the
  end) may interleave, chunked any way. `SerialDemux` cuts it into frames: a classic
  frame runs from `>>>\\n` to `<<<\\n`; anything else runs to the next zero. A zero inside
  a classic frame, or a new `>>>\\n` before its end, means it was cut short (line noise, a
  replug) and it is dropped; the next frame is read normally. Bytes before a `>>>\\n` that
  are not a frame are dropped as line noise (whitespace between frames is ignored).
  A COBS frame that by chance contains `>>>\\n` is lost (about 2**-27 of native frames).

Feeding a stream whole or a byte at a time gives the same frames and drops; nothing
here raises on what a peer sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hbd.core.errors import DropReason
from hbd.core.wire import Dropped

CLASSIC_START = b">>>\n"
CLASSIC_END = b"<<<\n"
NETSTRING_START = b"###"
NATIVE_MAGIC = 0xB8
MAX_CLASSIC = 64 * 1024  # Heartbeat's largest message is well below this
MAX_NATIVE_STUFFED = 320  # a COBS-stuffed native frame of the largest payload, with CRC
_WHITESPACE = b" \t\r\n\x00"


class FrameFormat(enum.Enum):
    NATIVE = "native"  # one datagram, hbd native frame
    NATIVE_SERIAL = "native-serial"  # COBS-stuffed native frame without its zero
    CLASSIC = "classic"  # Heartbeat classic text, `>>>` .. `<<<`
    NETSTRING = "netstring"  # Heartbeat netstring, `###` .. `%%%` + auth


@dataclass(frozen=True, slots=True)
class Segment:
    """One frame's bytes cut from a path, and the format they claim to be."""

    format: FrameFormat
    data: bytes


def classify_datagram(data: bytes) -> Segment | Dropped:
    """Which format a UDP datagram is in, by its first bytes. Never raises."""
    if not data:
        return Dropped(DropReason.TRUNCATED, "empty datagram")
    if data[0] == NATIVE_MAGIC:
        return Segment(FrameFormat.NATIVE, data)
    if data.startswith(NETSTRING_START):
        return Segment(FrameFormat.NETSTRING, data)
    if data.startswith(b">>>"):
        return Segment(FrameFormat.CLASSIC, data)
    return Dropped(DropReason.MALFORMED, f"datagram starting {data[:8]!r} is in no known format")


class SerialDemux:
    """Cuts a serial byte stream into classic and native frames. See the module docstring."""

    __slots__ = ("_buf", "_classic", "_scanned", "_skipping")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._classic = False  # inside a classic frame (buf starts with CLASSIC_START)
        self._scanned = 0  # bytes of buf already searched for delimiters
        self._skipping = False  # an over-long run: discard up to the next delimiter

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        """Forget any partial frame (the device was reopened)."""
        self._buf.clear()
        self._classic = False
        self._scanned = 0
        self._skipping = False

    def feed(self, data: bytes) -> list[Segment | Dropped]:
        """Every frame completed by `data`, and every run of bytes dropped, in order."""
        self._buf += data
        out: list[Segment | Dropped] = []
        while self._step(out):
            pass
        return out

    def _find(self, needle: bytes, start: int) -> int:
        i = self._buf.find(needle, max(start, self._scanned - len(needle) + 1))
        return i if i >= 0 else len(self._buf) + 1

    def _cut(self, upto: int, skip: int = 0) -> bytes:
        piece = bytes(self._buf[:upto])
        del self._buf[: upto + skip]
        self._scanned = 0
        return piece

    def _step(self, out: list[Segment | Dropped]) -> bool:
        buf = self._buf
        if not buf:
            return False
        if self._classic:
            end = self._find(CLASSIC_END, len(CLASSIC_START))
            zero = self._find(b"\x00", len(CLASSIC_START))
            again = self._find(CLASSIC_START, len(CLASSIC_START))
            first = min(end, zero, again)
            if first > len(buf):
                self._scanned = len(buf)
                if len(buf) > MAX_CLASSIC:
                    self._cut(len(buf) - len(CLASSIC_START))
                    self._classic = False
                    self._skipping = True
                    out.append(Dropped(DropReason.TOO_LONG, f"classic frame over {MAX_CLASSIC}"))
                    return True
                return False
            if first == end:
                out.append(Segment(FrameFormat.CLASSIC, self._cut(end + len(CLASSIC_END))))
                self._classic = False
            elif first == zero:
                self._cut(zero, 1)
                self._classic = False
                out.append(Dropped(DropReason.TRUNCATED, "classic frame cut by a zero byte"))
            else:
                self._cut(again)
                out.append(Dropped(DropReason.TRUNCATED, "classic frame cut by a new frame"))
            return True
        start = self._find(CLASSIC_START, 0)
        zero = self._find(b"\x00", 0)
        if start < zero:
            noise = self._cut(start)
            skipping, self._skipping = self._skipping, False
            if noise.strip(_WHITESPACE) and not skipping:
                out.append(Dropped(DropReason.MALFORMED, f"{len(noise)} bytes of line noise"))
            self._classic = True
            return True
        if zero <= len(buf):
            piece = self._cut(zero, 1)
            skipping, self._skipping = self._skipping, False
            if piece.strip(_WHITESPACE) and not skipping:
                out.append(Segment(FrameFormat.NATIVE_SERIAL, piece))
            return True
        self._scanned = len(buf)
        if len(buf) > MAX_NATIVE_STUFFED + len(CLASSIC_START) and not self._skipping:
            # keep a possible partial `>>>\n`; skip the rest up to the next delimiter
            self._cut(len(buf) - len(CLASSIC_START))
            self._skipping = True
            out.append(
                Dropped(DropReason.TOO_LONG, f"more than {MAX_NATIVE_STUFFED} bytes without a zero")
            )
            return True
        if self._skipping and len(buf) > len(CLASSIC_START):
            self._cut(len(buf) - len(CLASSIC_START))
        return False
