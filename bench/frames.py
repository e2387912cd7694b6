"""Per-frame cost and size of each wire format hbd speaks.

    python bench/frames.py [--batches 200] [--per-batch 100]

For each format: the median cost (µs) of encoding and signing one heartbeat, of verifying
and decoding it, on UDP and on serial, and the frame's size on each. Each figure is the
median over `--batches` batches of the per-frame mean within a batch of `--per-batch`
frames (the timer's own cost is then negligible).

A format is one entry of `FORMATS`: a name and four callables, `encode_udp(seq)`,
`decode_udp(data)`, `encode_serial(seq)` and `decode_serial(data)`. Heartbeat's formats
are added when `hbd.core.wire.heartbeat` is importable.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hbd.core.acks import Ack, encode_acks
from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.wire import Dropped
from hbd.core.wire.native import (
    NativeFrame,
    NativeSerialStream,
    NodeState,
    cluster_id,
    decode_native,
    encode_native,
    encode_native_serial,
    node_id,
    path_hash,
)

NODES = ("alpha", "beta")
UDPPORT = 694
KEY = b"a shared secret of ordinary length"


@dataclass(frozen=True)
class Format:
    name: str
    encode_udp: Callable[[int], bytes]
    decode_udp: Callable[[bytes], object]
    encode_serial: Callable[[int], bytes]
    decode_serial: Callable[[bytes], object]


# a two-node cluster's heartbeat: alpha lists beta (index 1) with the newest seq it has
HEARS_BETA = encode_acks((Ack(1, 7, 4242),))


def native_format() -> Format:
    auth = AuthEntry(1, AuthMethod.SHA256, KEY)
    keys = AuthKeys(active=auth, entries={1: auth})
    cid = cluster_id(NODES, UDPPORT)

    def frame(seq: int) -> NativeFrame:
        return NativeFrame(
            cluster_id=cid,
            node_id=node_id("alpha"),
            generation=12,
            seq=seq,
            state=NodeState.ACTIVE,
            deadtime_ms=30_000,
            watchdog_ms=31_000,
            path_hash=path_hash("bcast:eth0"),
            payload=HEARS_BETA,  # what alpha hears: one entry a peer (hbd.core.acks)
        )

    def decode_serial(data: bytes) -> object:
        [result] = NativeSerialStream(keys, cid).feed(data)
        return result

    return Format(
        name="hbd native (HMAC-SHA256/128)",
        encode_udp=lambda seq: encode_native(frame(seq), auth),
        decode_udp=lambda data: decode_native(data, keys, cid),
        encode_serial=lambda seq: encode_native_serial(frame(seq), auth),
        decode_serial=decode_serial,
    )


def heartbeat_formats() -> list[Format]:
    """Heartbeat 3.0.6's status message: netstring on UDP, classic text on serial.

    Field values mirror the frames captured from Heartbeat 3.0.6 in tests/vectors/heartbeat
    (node `hb1`, a real /proc/loadavg line), so the sizes are what Heartbeat sends.
    """
    try:
        from hbd.core.wire import heartbeat as hb
    except ImportError as error:
        print(f"note: Heartbeat's formats skipped: hbd.core.wire.heartbeat: {error}\n")
        return []
    formats = []
    for index, method in ((1, AuthMethod.SHA1), (2, AuthMethod.MD5), (3, AuthMethod.CRC)):
        auth = AuthEntry(index, method, b"" if method is AuthMethod.CRC else KEY)
        keys = AuthKeys(active=auth, entries={index: auth})

        def status(seq: int) -> Any:
            return hb.status_message(
                src="hb1",
                srcuuid=bytes(range(16, 32)),
                seq=seq,
                generation=0x2A,
                status="active",
                deadtime_ms=10_000,
                ts=0x6B05FFD4,
                load="0.44 0.26 0.13 3/104 15706",
            )

        def encode_udp(seq: int, auth: AuthEntry = auth) -> bytes:
            return hb.encode_netstring(status(seq), auth)

        def encode_serial(seq: int, auth: AuthEntry = auth) -> bytes:
            return hb.encode_classic(status(seq), auth)

        def decode(data: bytes, keys: AuthKeys = keys) -> object:
            return hb.decode_frame(data, keys)

        formats.append(
            Format(
                name=f"Heartbeat 3.0.6 ({method.value})",
                encode_udp=encode_udp,
                decode_udp=decode,
                encode_serial=encode_serial,
                decode_serial=decode,
            )
        )
    return formats


def captured_heartbeat_sizes() -> None:
    """Sizes of the status frames Heartbeat 3.0.6 itself sent (tests/vectors/heartbeat)."""
    root = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "heartbeat"
    rows = []
    for method in ("sha1", "md5", "crc"):
        folder = root / method
        if not folder.is_dir():
            continue
        udp = [
            len(raw)
            for line in (folder / "frames.jsonl").read_text().splitlines()
            if json.loads(line)["medium"] == "udp"
            and b"(0)t=status," in (raw := bytes.fromhex(json.loads(line)["hex"]))
        ]
        serial = [
            len(frame) + len(b"<<<\n")
            for path in sorted(folder.glob("serial-*.raw"))
            for frame in path.read_bytes().split(b"<<<\n")
            if b"\nt=status\n" in frame
        ]
        if udp and serial:
            rows.append(
                f"  {method:<5} UDP {min(udp)}..{max(udp)} B (median {statistics.median(udp):.0f}),"
                f" serial {min(serial)}..{max(serial)} B (median {statistics.median(serial):.0f})"
            )
    if rows:
        print("\nstatus frames captured from Heartbeat 3.0.6 itself:")
        print("\n".join(rows))


def median_us(op: Callable[[int], object], batches: int, per_batch: int) -> float:
    means = []
    seq = 1
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(per_batch):
            op(seq)
            seq += 1
        means.append((time.perf_counter_ns() - start) / per_batch / 1000)
    return statistics.median(means)


def measure(fmt: Format, batches: int, per_batch: int) -> dict[str, float | int]:
    udp, serial = fmt.encode_udp(1), fmt.encode_serial(1)
    for decode, data in ((fmt.decode_udp, udp), (fmt.decode_serial, serial)):
        result = decode(data)
        if isinstance(result, Dropped):
            raise SystemExit(f"{fmt.name}: its own frame was dropped: {result}")
    udp_frames = [fmt.encode_udp(seq) for seq in range(1, per_batch + 1)]
    serial_frames = [fmt.encode_serial(seq) for seq in range(1, per_batch + 1)]
    return {
        "udp_bytes": len(udp),
        "serial_bytes": len(serial),
        "udp_encode": median_us(fmt.encode_udp, batches, per_batch),
        "udp_decode": median_us(
            lambda seq: fmt.decode_udp(udp_frames[seq % per_batch]), batches, per_batch
        ),
        "serial_encode": median_us(fmt.encode_serial, batches, per_batch),
        "serial_decode": median_us(
            lambda seq: fmt.decode_serial(serial_frames[seq % per_batch]), batches, per_batch
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--per-batch", type=int, default=100)
    args = parser.parse_args(argv)

    formats = [native_format(), *heartbeat_formats()]
    print(f"Python {sys.version.split()[0]}; median of {args.batches} x {args.per_batch} frames")
    print("cost per heartbeat in µs: encode = build + sign; decode = verify + parse\n")
    header = (
        f"{'format':<30} {'UDP B':>6} {'serial B':>9} {'UDP enc':>8} {'UDP dec':>8} "
        f"{'ser enc':>8} {'ser dec':>8} {'total':>7} {'line%':>6}"
    )
    print(header)
    print("-" * len(header))
    for fmt in formats:
        m = measure(fmt, args.batches, args.per_batch)
        total = m["udp_encode"] + m["udp_decode"]
        print(
            f"{fmt.name:<30} {m['udp_bytes']:>6} {m['serial_bytes']:>9} "
            f"{m['udp_encode']:>8.2f} {m['udp_decode']:>8.2f} "
            f"{m['serial_encode']:>8.2f} {m['serial_decode']:>8.2f} {total:>7.2f} "
            f"{m['serial_bytes'] * 10 * 10 / 19200:>6.0%}"
        )
    print("\ntotal = UDP encode + UDP decode (one heartbeat, sender plus receiver)")
    print("line% = share of a 19200 baud 8N1 line taken by 10 heartbeats a second")
    captured_heartbeat_sizes()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
