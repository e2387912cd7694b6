"""Bytes per heartbeat on serial and UDP for each frame format, and the heartbeat rate a
19200-baud line carries.

    python bench/serial.py [--names hb1,node-01,ha-db-primary-01] [--pty-seconds 1]

For each format -- hbd's native frame (HMAC-SHA256/128; its size does not depend on the node
name) and Heartbeat 3.0.6's status message with sha1, md5 and crc, once per node name --
three figures of size:

- frame B: one status heartbeat as the codec writes it (serial: classic text or COBS; UDP:
  netstring or one native datagram);
- engine B/hb: what `hbd.core.engine.Engine` actually writes per keepalive on each path in
  a steady two-node exchange over 60 simulated seconds, acknowledgements and all;
- for Heartbeat 3.0.6 itself, the same from the frames it sent in tests/vectors/heartbeat
  (all bytes node hb1 wrote / the heartbeats among them).

Capacity at 19200 baud, 8N1: 10 bits on the line per byte, so 1920 bytes/s each way (a
null-modem cable is full duplex: each node's heartbeats have their own wire). The highest
rate is (1920 - the probes' bytes per second) / engine B per heartbeat, the shortest
keepalive its inverse. The round-trip probes (an echo and its answer every 5 s on UDP, every
20 s on serial) run on their own clock, so they are counted apart, in bytes per second.

Measured through a real pty pair (socat, opened with pyserial at 19200 baud as the daemon
does): a writer encodes and writes heartbeats back to back for `--pty-seconds`, a reader
decodes them with the format's own stream decoder. A pty has no baud clock -- the kernel
copies bytes as fast as it can whatever speed termios says -- so this cannot show the line's
limit. What it does show: the bytes that really cross per heartbeat (which must equal the
frame size), and the software ceiling (encode + pty + verify and decode, one process), which
must lie far above the line's rate for the computed figure to be the real limit.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import select
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import common

from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.engine import Engine, EngineSettings, PathKind
from hbd.core.model import WireFormat
from hbd.core.wire import Dropped
from hbd.core.wire import heartbeat as hb
from hbd.core.wire import native as nat

BAUD = 19200
BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit
LINE_BYTES_PER_S = BAUD / BITS_PER_BYTE
KEY = b"a shared secret of ordinary length"
UDP_PATH, SERIAL_PATH = "bcast:eth0", "serial:/dev/ttyS0"
VECTORS = common.REPO / "tests" / "vectors" / "heartbeat"
PEER = "peer"
# pyserial, by name: this file is bench/serial.py, so a plain `import serial` would be
# this very script to a type checker (common.py keeps it from being so at run time)
pyserial = importlib.import_module("serial")


class Stream(Protocol):
    def feed(self, data: bytes) -> list[object]: ...


@dataclass(frozen=True)
class Format:
    """One frame format for one node name."""

    name: str
    auth: str
    node: str  # "" for formats whose size does not depend on it
    key: AuthEntry
    wire: WireFormat
    encode_udp: Callable[[int], bytes]
    encode_serial: Callable[[int], bytes]
    stream: Callable[[], Stream]  # a fresh serial decoder


def keys_of(entry: AuthEntry) -> AuthKeys:
    return AuthKeys(active=entry, entries={entry.index: entry})


def native_format() -> Format:
    auth = AuthEntry(1, AuthMethod.SHA256, KEY)
    cid = nat.cluster_id(("alpha", PEER), 694)

    def frame(seq: int) -> nat.NativeFrame:
        return nat.NativeFrame(
            cluster_id=cid,
            node_id=nat.node_id("alpha"),
            generation=12,
            seq=seq,
            state=nat.NodeState.ACTIVE,
            deadtime_ms=30_000,
            watchdog_ms=31_000,
            path_hash=nat.path_hash(SERIAL_PATH),
        )

    def stream() -> Stream:
        decoder = nat.NativeSerialStream(keys_of(auth), cid)
        return decoder  # type: ignore[return-value]

    return Format(
        "hbd native",
        "HMAC-SHA256/128",
        "",
        auth,
        WireFormat.HBD,
        lambda seq: nat.encode_native(frame(seq), auth),
        lambda seq: nat.encode_native_serial(frame(seq), auth),
        stream,
    )


def heartbeat_format(method: AuthMethod, node: str) -> Format:
    """Heartbeat's status message as Heartbeat 3.0.6 sends it: netstring on UDP (with the
    extra classic auth field its default `msgfmt classic` adds), classic text on serial.
    The load field is a real /proc/loadavg line, as in the captured frames."""
    auth = AuthEntry(1, method, b"" if method is AuthMethod.CRC else KEY)

    def status(seq: int) -> hb.HaMessage:
        return hb.status_message(
            src=node,
            srcuuid=bytes(range(16)),
            seq=seq,
            generation=0x2A,
            status="active",
            deadtime_ms=10_000,
            ts=0x6B05FFD4 + seq // 10,
            load="0.44 0.26 0.13 3/104 15706",
        )

    def stream() -> Stream:
        decoder = hb.ClassicStream(keys_of(auth))
        return decoder  # type: ignore[return-value]

    return Format(
        "Heartbeat wire, sent by hbd",
        method.value,
        node,
        auth,
        WireFormat.HEARTBEAT,
        lambda seq: hb.encode_netstring(status(seq), auth),
        lambda seq: hb.encode_classic(status(seq), auth),
        stream,
    )


# -- what the engine writes per keepalive ---------------------------------------------------


@dataclass(frozen=True)
class EngineBytes:
    """What one engine writes in a steady two-node exchange at keepalive 1 s."""

    udp_per_beat: float  # bytes per keepalive on the UDP path, acks included, probes not
    serial_per_beat: float  # the same on the serial path
    udp_probe_per_s: float  # the round-trip probes (echo and reply), bytes per second
    serial_probe_per_s: float


def is_probe(data: bytes, keys: AuthKeys, cluster_id: int, serial: bool) -> bool:
    """Whether `data` is a round-trip probe or its answer (sent on its own schedule, every
    5 s on UDP and 20 s on serial, whatever the keepalive)."""
    if data[:3] in (b">>>", b"###"):
        msg = hb.decode_frame(data, keys)
        return not isinstance(msg, Dropped) and msg.get("t") in ("hbd-echo", "hbd-echo-reply")
    if serial:  # one COBS frame between zero delimiters
        frame = nat.decode_native_serial(data.strip(b"\x00"), keys, cluster_id)
    else:
        frame = nat.decode_native(data, keys, cluster_id)
    probes = (nat.FrameKind.ECHO, nat.FrameKind.ECHO_REPLY)
    return not isinstance(frame, Dropped) and frame.kind in probes


def engine_bytes_per_heartbeat(fmt: Format, seconds: int = 60) -> EngineBytes:
    """What one engine writes over `seconds` simulated seconds at keepalive 1 s, every frame
    delivered to the peer: per keepalive, and the probes apart."""
    node = fmt.node or "alpha"
    nodes = (node, PEER)
    keys = keys_of(fmt.key)
    paths = ((SERIAL_PATH, PathKind.SERIAL), (UDP_PATH, PathKind.DATAGRAM))

    def engine(name: str, uuid: bytes) -> Engine:
        settings = EngineSettings(
            node=name,
            uuid=uuid,
            generation=0x2A,
            nodes=nodes,
            paths=paths,
            auth=keys,
            keepalive=1.0,
            deadtime=10.0,
            warntime=5.0,
            initdead=20.0,
            wire=fmt.wire,
            cluster_id=nat.cluster_id(nodes, 694),
        )
        return Engine(settings, now=0.0)

    a, b = engine(node, bytes(range(16))), engine(PEER, bytes(range(16, 32)))
    sent = {UDP_PATH: 0, SERIAL_PATH: 0}
    probed = {UDP_PATH: 0, SERIAL_PATH: 0}
    cid = nat.cluster_id(nodes, 694)
    warmup = 5  # the start-up exchange (node lists, first acks) is not steady state
    for tick in range(seconds + warmup):
        now = float(tick)
        for sender, receiver in ((a, b), (b, a)):
            sender.handle_timer(now)
            for path, data in sender.frames_to_send(now):
                if sender is a and tick >= warmup:
                    serial = path == SERIAL_PATH
                    tally = probed if is_probe(data, keys, cid, serial) else sent
                    tally[path] += len(data)
                receiver.receive_frame(path, data, now + 0.001)
        for e in (a, b):
            while e.next_event() is not None:
                pass
    return EngineBytes(
        sent[UDP_PATH] / seconds,
        sent[SERIAL_PATH] / seconds,
        probed[UDP_PATH] / seconds,
        probed[SERIAL_PATH] / seconds,
    )


def captured_heartbeat(method: str) -> tuple[float, float, float, float] | None:
    """What Heartbeat 3.0.6 node hb1 itself sent in tests/vectors/heartbeat/METHOD
    (keepalive 1 s): (UDP, serial) median heartbeat frame, and (UDP, serial) bytes per
    heartbeat in steady state -- its heartbeats plus its acks (`NS_ackmsg`), over the number
    of heartbeats (the start-up messages are left out). None without the vectors."""
    try:
        lines = (VECTORS / method / "frames.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return None
    out: list[float] = []
    for medium, marker in (("udp", b"(0)t="), ("serial", b"\nt=")):
        frames = [
            bytes.fromhex(r["hex"])
            for r in map(json.loads, lines)
            if r["medium"] == medium and r["from"] == "hb1"
        ]
        beats = [len(f) for f in frames if marker + b"status" in f]
        acks = [len(f) for f in frames if marker + b"NS_ackmsg" in f]
        if not beats:
            return None
        out += [statistics.median(beats), (sum(beats) + sum(acks)) / len(beats)]
    return out[0], out[2], out[1], out[3]


# -- through a pty pair ---------------------------------------------------------------------


@dataclass(frozen=True)
class PtyResult:
    written: int  # frames
    bytes_written: int
    verified: int  # frames decoded with a valid signature
    bytes_read: int
    rejected: int  # drops reported by the decoder
    seconds: float

    @property
    def rate(self) -> float:
        return self.verified / self.seconds

    @property
    def bytes_per_frame(self) -> float:
        return self.bytes_read / self.verified if self.verified else float("nan")

    @property
    def intact(self) -> bool:
        """Every frame written arrived, byte for byte, and verified."""
        return (
            self.verified == self.written
            and self.bytes_read == self.bytes_written
            and not self.rejected
        )


def through_pty(fmt: Format, tty_a: str, tty_b: str, seconds: float) -> PtyResult:
    """Heartbeats written back to back into `tty_a` for `seconds`, decoded from `tty_b`."""
    writer_port = pyserial.Serial(tty_a, BAUD, timeout=1, write_timeout=5)
    reader_port = pyserial.Serial(tty_b, BAUD, timeout=0)
    decoder = fmt.stream()
    stop = threading.Event()
    counts = {"verified": 0, "bytes": 0, "rejected": 0}

    def read() -> None:
        fd = reader_port.fileno()
        idle_since: float | None = None
        while True:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                data = os.read(fd, 65536)
                counts["bytes"] += len(data)
                for item in decoder.feed(data):
                    counts["rejected" if isinstance(item, Dropped) else "verified"] += 1
                idle_since = None
            elif stop.is_set():
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 0.3:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    start = time.monotonic()
    written = bytes_written = 0
    try:
        while time.monotonic() - start < seconds:
            frame = fmt.encode_serial(written + 1)
            writer_port.write(frame)
            written += 1
            bytes_written += len(frame)
        writer_port.flush()
    finally:
        stop.set()
        reader.join(10)
        elapsed = time.monotonic() - start - 0.3  # the reader's closing idle wait
        writer_port.close()
        reader_port.close()
    return PtyResult(
        written, bytes_written, counts["verified"], counts["bytes"], counts["rejected"], elapsed
    )


# -- main -----------------------------------------------------------------------------------


def size_rows(formats: list[Format], sim_seconds: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for fmt in formats:
        e = engine_bytes_per_heartbeat(fmt, sim_seconds)
        hz = (LINE_BYTES_PER_S - e.serial_probe_per_s) / e.serial_per_beat
        rows.append(
            [
                f"{fmt.name} ({fmt.auth})",
                len(fmt.node) if fmt.node else "any",
                len(fmt.encode_udp(1)),
                len(fmt.encode_serial(1)),
                f"{e.udp_per_beat:.0f}",
                f"{e.serial_per_beat:.0f}",
                f"{e.udp_probe_per_s:.1f} / {e.serial_probe_per_s:.1f}",
                f"{hz:.1f}",
                f"{1000 / hz:.0f}",
            ]
        )
    for method in ("sha1", "md5", "crc"):
        captured = captured_heartbeat(method)
        if captured is not None:
            f_udp, f_ser, c_udp, c_ser = captured
            hz = LINE_BYTES_PER_S / c_ser
            rows.append(
                [
                    f"Heartbeat 3.0.6 itself ({method})",
                    3,
                    f"{f_udp:.0f}",
                    f"{f_ser:.0f}",
                    f"{c_udp:.0f}",
                    f"{c_ser:.0f}",
                    "-",
                    f"{hz:.1f}",
                    f"{1000 / hz:.0f}",
                ]
            )
    return rows


def pty_rows(formats: list[Format], seconds: float) -> tuple[list[list[object]], bool]:
    """One row per format through a socat pty pair; and whether every frame arrived."""
    rows: list[list[object]] = []
    intact = True
    with (
        tempfile.TemporaryDirectory(prefix="hbd-bench-serial-") as tmp,
        common.serial_line(Path(tmp) / "a", Path(tmp) / "b") as (tty_a, tty_b),
    ):
        for fmt in formats:
            common.note(f"serial: {fmt.name} ({fmt.auth}) {fmt.node} through the pty")
            got = through_pty(fmt, tty_a, tty_b, seconds)
            intact = intact and got.intact
            rows.append(
                [
                    f"{fmt.name} ({fmt.auth})",
                    len(fmt.node) if fmt.node else "any",
                    f"{got.written:,}",
                    f"{got.verified:,}",
                    got.rejected,
                    f"{got.bytes_per_frame:.1f}",
                    f"{got.rate:,.0f}",
                    f"{got.rate / (LINE_BYTES_PER_S / got.bytes_per_frame):.0f}x",
                ]
            )
    return rows, intact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--names",
        default="hb1,node-01,ha-db-primary-01",
        help="node names to size Heartbeat's frames with (comma-separated)",
    )
    parser.add_argument("--pty-seconds", type=float, default=1.0, help="0: skip the pty part")
    parser.add_argument("--sim-seconds", type=int, default=60)
    args = parser.parse_args(argv)
    names = [n for n in args.names.split(",") if n]
    formats = [native_format()]
    for method in (AuthMethod.SHA1, AuthMethod.MD5, AuthMethod.CRC):
        formats += [heartbeat_format(method, name) for name in names]

    print(
        f"{BAUD} baud 8N1: {BITS_PER_BYTE} bits per byte, {LINE_BYTES_PER_S:.0f} bytes/s each way\n"
    )
    headers = ["format", "name len", "UDP frame B", "serial frame B", "UDP B/hb", "serial B/hb"]
    headers += ["probe B/s UDP / serial", "max Hz @19200", "min keepalive ms"]
    print(common.table(headers, size_rows(formats, args.sim_seconds)))
    print(
        "\nframe B: one heartbeat as Heartbeat 3.0.6 writes it (a real /proc/loadavg in `ld`),"
        " or hbd's native frame."
        f"\nB/hb: bytes hbd's engine writes per keepalive on that path in that format, acks"
        f" included ({args.sim_seconds} simulated s, two nodes, after start-up), round-trip"
        " probes not: they go out on their own clock (every 5 s on UDP, 20 s on serial; an"
        " echo and its answer) whatever the keepalive, and 'probe B/s' is what they cost."
        "\n  For 'Heartbeat 3.0.6 itself': its heartbeats plus its acks over its heartbeats,"
        " from the frames it sent in tests/vectors/heartbeat (keepalive 1 s)."
        "\nmax Hz @19200 = (1920 - serial probe B/s) / serial B/hb, computed (10 bits per"
        " byte at 8N1); min keepalive = 1000 / max Hz."
    )
    if args.pty_seconds <= 0:
        return 0
    missing = common.missing_for_cluster() if os.geteuid() == 0 else None
    if missing is not None or not shutil.which("socat"):
        print(f"\npty measurement skipped: {missing or 'needs socat'}")
        return 0
    rows, intact = pty_rows(formats, args.pty_seconds)
    print(
        f"\nmeasured: heartbeats written back to back for {args.pty_seconds:g} s into a socat"
        f" pty pair opened with pyserial at {BAUD} baud, read and verified at the other end\n"
    )
    headers = ["format", "name len", "written", "verified", "rejected", "B/hb on the pty"]
    headers += ["Hz through the pty", "vs 19200 line"]
    print(common.table(headers, rows))
    print(
        "\nA pty has no baud clock: the kernel copies bytes as fast as it can whatever speed"
        " termios is set to, so these rates are NOT what a 19200-baud line carries. They show"
        "\n(1) every frame crossed intact and the bytes per heartbeat on the wire equal the"
        " frame size (give or take the growing hex sequence number),"
        "\nand (2) the software path (encode + pty + verify and decode, one Python"
        "\nprocess, two threads) runs far above the line's rate ('vs 19200 line'), so the line,"
        " not the code, sets the limit computed above."
    )
    if not intact:
        print("FAILED: frames were lost or rejected on the pty", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
