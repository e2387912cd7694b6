"""``hbctl cable-test``: prove a serial heartbeat line before trusting it.

Three roles, one command::

    hbctl cable-test /dev/hbd/serial0 --loopback     # loopback plug: TX wired to RX
    hbctl cable-test /dev/ttyS0 --peer               # on the other box: echo frames back
    hbctl cable-test /dev/ttyS0 --count 500          # here: send, wait for each echo

The sender sends ``--count`` framed test patterns one at a time and waits for each to come
back (its own bytes through a loopback plug, or the peer's echo). Each frame carries a
sequence number, a pattern chosen to stress the line (alternating bits 0x55/0xAA, all zeros,
all ones, a byte ramp, pseudo-random bytes) and a CRC-32, so every exchange ends as one of:

* ok       - the frame came back intact; its round trip is timed;
* corrupt  - something with the frame header came back but its CRC or content is wrong
             (noise, a wrong baud rate, a bad ground);
* lost     - nothing recognisable came back within ``--timeout`` (no cable, TX/RX not
             crossed, a peer not running, flow control holding the line).

It reports those counts, the throughput achieved (frame bytes per second in each direction,
beside the nominal line rate of baud/10) and round-trip latency min/median/max, as text or
``--json``. Exit status: 0 clean, 1 errors seen, 2 the port could not be used.

Run it with hbd stopped: the port is opened exclusively.

Frame layout (little-endian)::

    magic b"\\xa5\\x5a" | kind u8 | seq u32 | length u16 | payload | crc32 u32 (kind..payload)

kinds: ``P`` probe, ``E`` echo of a probe, ``F`` end of test (the peer then exits).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import serial

__all__ = [
    "Corrupt",
    "Frame",
    "FrameReader",
    "Report",
    "add_parser",
    "encode_frame",
    "main",
    "pattern",
    "run",
]

MAGIC: Final = b"\xa5\x5a"
HEADER: Final = struct.Struct("<2sBIH")
CRC: Final = struct.Struct("<I")
MAX_PAYLOAD: Final = 4096
PROBE, ECHO, FIN = b"P"[0], b"E"[0], b"F"[0]
KINDS: Final = {PROBE, ECHO, FIN}
PATTERNS: Final = ("alternating-55", "alternating-aa", "zeros", "ones", "ramp", "random")


def pattern(seq: int, size: int) -> bytes:
    """The test payload for frame ``seq``: both ends can regenerate it to check content."""
    name = PATTERNS[seq % len(PATTERNS)]
    if name == "alternating-55":
        return b"\x55" * size
    if name == "alternating-aa":
        return b"\xaa" * size
    if name == "zeros":
        return b"\x00" * size
    if name == "ones":
        return b"\xff" * size
    if name == "ramp":
        return bytes((seq + i) & 0xFF for i in range(size))
    return random.Random(seq).randbytes(size)


def encode_frame(kind: int, seq: int, payload: bytes = b"") -> bytes:
    if kind not in KINDS:
        raise ValueError(f"cable-test frame kind {kind!r} is not one of P, E, F")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"cable-test payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = HEADER.pack(MAGIC, kind, seq, len(payload)) + payload
    return body + CRC.pack(zlib.crc32(body[len(MAGIC) :]))


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Corrupt:
    """Bytes that started like a frame but failed their check, with why."""

    reason: str
    seq: int | None = None


class FrameReader:
    """Finds frames in a byte stream; resynchronises on the magic after garbage."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.noise_bytes = 0  # bytes outside any frame

    def feed(self, data: bytes) -> list[Frame | Corrupt]:
        self._buf += data
        out: list[Frame | Corrupt] = []
        while True:
            start = self._buf.find(MAGIC)
            if start < 0:
                keep = 1 if self._buf.endswith(MAGIC[:1]) else 0
                self.noise_bytes += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
                return out
            self.noise_bytes += start
            del self._buf[:start]
            if len(self._buf) < HEADER.size:
                return out
            _, kind, seq, length = HEADER.unpack_from(self._buf)
            if kind not in KINDS or length > MAX_PAYLOAD:
                out.append(Corrupt(f"bad header (kind {kind:#04x}, length {length})"))
                del self._buf[: len(MAGIC)]
                continue
            end = HEADER.size + length + CRC.size
            if len(self._buf) < end:
                return out
            (crc,) = CRC.unpack_from(self._buf, end - CRC.size)
            if zlib.crc32(self._buf[len(MAGIC) : end - CRC.size]) != crc:
                out.append(Corrupt("CRC mismatch", seq))
                del self._buf[: len(MAGIC)]
                continue
            out.append(Frame(kind, seq, bytes(self._buf[HEADER.size : end - CRC.size])))
            del self._buf[:end]


@dataclass
class Report:
    """What a cable test found; the JSON output is this, as a dict."""

    port: str
    mode: str
    baud: int
    sent: int = 0
    ok: int = 0
    corrupt: int = 0
    lost: int = 0
    late: int = 0
    noise_bytes: int = 0
    bytes_each_way: int = 0
    elapsed_s: float = 0.0
    throughput_Bps: float = 0.0
    line_rate_Bps: float = 0.0
    rtt_ms: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.sent > 0 and self.ok == self.sent

    def text(self) -> str:
        lines = [
            f"cable test on {self.port} ({self.mode}, {self.baud} baud)",
            f"  frames:     {self.sent} sent, {self.ok} ok, {self.corrupt} corrupt, "
            f"{self.lost} lost" + (f", {self.late} late" if self.late else ""),
        ]
        if self.elapsed_s > 0:
            lines.append(
                f"  throughput: {self.throughput_Bps:.0f} B/s each way "
                f"(line rate {self.line_rate_Bps:.0f} B/s), {self.elapsed_s:.2f} s"
            )
        if self.rtt_ms:
            lines.append(
                "  round trip: min {min:.2f} ms, median {median:.2f} ms, max {max:.2f} ms".format(
                    **self.rtt_ms
                )
            )
        if self.noise_bytes:
            lines.append(f"  noise:      {self.noise_bytes} bytes outside frames")
        lines += [f"  - {error}" for error in self.errors[:10]]
        if len(self.errors) > 10:
            lines.append(f"  ... and {len(self.errors) - 10} more")
        lines.append("  result:     " + ("PASS" if self.clean else "FAIL"))
        return "\n".join(lines)


@dataclass
class PeerReport:
    port: str
    baud: int
    mode: str = "peer"
    echoed: int = 0
    corrupt: int = 0
    noise_bytes: int = 0
    finished: bool = False

    def text(self) -> str:
        how = "sender finished" if self.finished else "stopped waiting"
        return (
            f"cable test peer on {self.port} ({self.baud} baud): echoed {self.echoed} frames, "
            f"{self.corrupt} corrupt, {self.noise_bytes} noise bytes ({how})"
        )


# --------------------------------------------------------------------------- roles


def send_probes(
    port: serial.Serial,
    report: Report,
    *,
    count: int,
    size: int,
    timeout: float,
    expect_kind: int,
) -> None:
    """Send ``count`` probes one at a time; classify each exchange into ``report``."""
    reader = FrameReader()
    rtts: list[float] = []
    started = time.monotonic()
    for seq in range(count):
        payload = pattern(seq, size)
        probe = encode_frame(PROBE, seq, payload)
        sent_at = time.monotonic()
        port.write(probe)
        port.flush()
        report.sent += 1
        report.bytes_each_way += len(probe)
        outcome = _await_reply(port, reader, seq, payload, expect_kind, sent_at + timeout, report)
        if outcome is None:
            report.lost += 1
            report.errors.append(f"frame {seq}: nothing came back within {timeout:g} s")
        elif outcome == "ok":
            report.ok += 1
            rtts.append(time.monotonic() - sent_at)
        else:
            report.corrupt += 1
            report.errors.append(f"frame {seq}: {outcome}")
    report.elapsed_s = time.monotonic() - started
    report.noise_bytes = reader.noise_bytes
    if report.elapsed_s > 0:
        report.throughput_Bps = report.bytes_each_way / report.elapsed_s
    if rtts:
        report.rtt_ms = {
            "min": min(rtts) * 1000,
            "median": statistics.median(rtts) * 1000,
            "max": max(rtts) * 1000,
        }


def _await_reply(
    port: serial.Serial,
    reader: FrameReader,
    seq: int,
    payload: bytes,
    expect_kind: int,
    deadline: float,
    report: Report,
) -> str | None:
    """ "ok", a corruption description, or None when nothing came back in time."""
    while (remaining := deadline - time.monotonic()) > 0:
        port.timeout = min(remaining, 0.05)
        data = port.read(max(1, port.in_waiting))
        for item in reader.feed(data):
            if isinstance(item, Corrupt):
                if item.seq is None or item.seq == seq:
                    return item.reason
                continue  # a damaged copy of an earlier frame
            if item.seq < seq:
                report.late += 1  # an echo we had already given up on
                continue
            if item.kind != expect_kind or item.seq != seq:
                return f"unexpected frame kind {chr(item.kind)!r} seq {item.seq}"
            if item.payload != payload:
                return "payload differs from the pattern sent (CRC matched: a bad echo?)"
            return "ok"
    return None


def echo_frames(port: serial.Serial, report: PeerReport, *, idle_timeout: float) -> None:
    """The --peer role: echo every intact probe until the sender says FIN or goes quiet."""
    reader = FrameReader()
    last_heard = time.monotonic()
    while time.monotonic() - last_heard < idle_timeout:
        port.timeout = 0.05
        data = port.read(max(1, port.in_waiting))
        if data:
            last_heard = time.monotonic()
        for item in reader.feed(data):
            if isinstance(item, Corrupt):
                report.corrupt += 1
            elif item.kind == PROBE:
                port.write(encode_frame(ECHO, item.seq, item.payload))
                port.flush()
                report.echoed += 1
            elif item.kind == FIN:
                report.finished = True
                report.noise_bytes = reader.noise_bytes
                return
    report.noise_bytes = reader.noise_bytes


# --------------------------------------------------------------------------- CLI


DEFAULT_BAUD = 19200  # Heartbeat's, and ha.cf's without a `baud` line


def configured_baud(config_dir: str, port: str) -> int:
    """The baud ha.cf in `config_dir` gives the serial line on `port` (the `baud` in force
    at its `serial` line, as Heartbeat reads it), else that of its first serial line, else
    19200. An ha.cf that cannot be read or parsed gives 19200 too: the daemon and
    `hbctl check-config`, not the cable test, report a bad ha.cf."""
    from hbd.config.hacf import parse_hacf
    from hbd.config.model import MediumKind
    from hbd.core.errors import ConfigError

    try:
        hacf = parse_hacf(Path(config_dir, "ha.cf").read_text(errors="replace"))
    except (OSError, ConfigError):
        return DEFAULT_BAUD
    lines = [m for m in hacf.media if m.kind is MediumKind.SERIAL]
    here = os.path.realpath(port)
    for m in lines:
        if m.device == port or os.path.realpath(m.device) == here:
            return m.baud
    return lines[0].baud if lines else DEFAULT_BAUD


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("port", metavar="PORT", help="serial device, e.g. /dev/hbd/serial0")
    parser.add_argument(
        "--baud",
        type=int,
        default=None,
        help="baud rate (default: ha.cf's `baud` in --config-dir, else 19200, Heartbeat's)",
    )
    parser.add_argument(
        "--config-dir",
        default="/etc/ha.d",
        help="where ha.cf is, for its `baud` (default /etc/ha.d)",
    )
    role = parser.add_mutually_exclusive_group()
    role.add_argument(
        "--peer", action="store_true", help="echo frames back for a sender on the other end"
    )
    role.add_argument(
        "--loopback", action="store_true", help="the port has a loopback plug (TX wired to RX)"
    )
    parser.add_argument(
        "--count", type=_positive_int, default=100, help="frames to send (default 100)"
    )
    parser.add_argument(
        "--size", type=_payload_size, default=64, help="payload bytes per frame (default 64)"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        help="seconds to wait for each echo; with --peer, idle seconds before giving up "
        "(default 1, and 60 with --peer)",
    )
    parser.add_argument(
        "--rtscts", action="store_true", help="hardware flow control (full-handshake cable)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _payload_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_PAYLOAD:
        raise argparse.ArgumentTypeError(f"{text!r} exceeds the {MAX_PAYLOAD}-byte maximum")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


DESCRIPTION: Final = (
    "Send framed test patterns through a serial heartbeat line and report corrupt and lost "
    "frames, throughput and round-trip latency. Run with --peer on the other box first, or "
    "use --loopback with a loopback plug. Stop hbd first: the port is opened exclusively."
)


def add_parser(subparsers: Any) -> None:
    """Register ``cable-test`` on an argparse subparsers object; it sets ``func=run``."""
    parser = subparsers.add_parser(
        "cable-test", help="test a serial heartbeat line", description=DESCRIPTION
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the test described by parsed arguments; returns the exit status."""
    peer = bool(args.peer)
    mode = "peer" if peer else ("loopback" if args.loopback else "sender")
    if args.baud is None:
        args.baud = configured_baud(args.config_dir, args.port)
    try:
        port = serial.Serial(
            args.port,
            baudrate=args.baud,
            timeout=0.05,
            write_timeout=5.0,
            rtscts=args.rtscts,
            exclusive=True,
        )
    except (serial.SerialException, ValueError, OSError) as exc:
        print(f"cable-test: cannot open {args.port} at {args.baud} baud: {exc}", file=sys.stderr)
        return 2
    try:
        port.reset_input_buffer()
        if peer:
            timeout = 60.0 if args.timeout is None else args.timeout
            peer_report = PeerReport(port=args.port, baud=args.baud)
            print(f"cable-test: echoing on {args.port}; waiting for a sender", file=sys.stderr)
            sys.stderr.flush()
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the peer: report
                echo_frames(port, peer_report, idle_timeout=timeout)
            _emit(args.json, asdict(peer_report), peer_report.text())
            return 0 if peer_report.finished and peer_report.corrupt == 0 else 1
        report = Report(port=args.port, mode=mode, baud=args.baud, line_rate_Bps=args.baud / 10)
        send_probes(
            port,
            report,
            count=args.count,
            size=args.size,
            timeout=1.0 if args.timeout is None else args.timeout,
            expect_kind=PROBE if args.loopback else ECHO,
        )
        if not args.loopback:
            port.write(encode_frame(FIN, args.count))
            port.flush()
        result = asdict(report)
        result["clean"] = report.clean
        _emit(args.json, result, report.text())
        return 0 if report.clean else 1
    except serial.SerialException as exc:
        print(f"cable-test: {args.port}: {exc}", file=sys.stderr)
        return 2
    finally:
        port.close()


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2) if as_json else text, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hbd.commands.cabletest PORT ...``: the same command without the hbctl CLI."""
    parser = argparse.ArgumentParser(prog="hbctl cable-test", description=DESCRIPTION)
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
