"""What an attacker without the key costs a node (issue 15): CPU per unauthenticated frame,
and what replayed frames make it send.

    python bench/hostile.py [--frames 200]

- `cpu`: the median CPU time (process time) hbd's engine spends on one forged frame of
  64 KiB, per format and path kind: a Heartbeat classic frame (many short fields, a wrong
  sha1 signature), a netstring frame, and a native frame; with `wire heartbeat` and with
  `wire hbd` (where Heartbeat-format frames are refused before they are parsed);
  `classic-wide` has 32 fields of 2000 bytes (under the field cap: its signature is
  computed), `classic` thousands of short ones.
- `rexmit`: one captured NS_rexmit (the peer asking for 32 messages) replayed N times in
  one second: the bytes the node sends per byte replayed, and the frames sent per frame
  received.
- `echo`: one captured native ECHO replayed N times: the replies sent.
"""

from __future__ import annotations

import argparse
import statistics
import time

from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.engine import Engine, EngineSettings, PathKind
from hbd.core.model import WireFormat
from hbd.core.wire import ha_control as ctl
from hbd.core.wire import heartbeat as hb
from hbd.core.wire import native as nat

UDP, SERIAL = "bcast:eth0", "serial:/dev/ttyS0"
NODES = ("alpha", "beta")
SHA1 = AuthEntry(1, AuthMethod.SHA1, b"a-long-random-secret")
SHA256 = AuthEntry(1, AuthMethod.SHA256, b"a-long-random-secret")
WRONG = AuthEntry(1, AuthMethod.SHA1, b"not-the-key")


def engine(node: str, wire: WireFormat, now: float = 0.0) -> Engine:
    keys = AuthKeys(SHA1 if wire is WireFormat.HEARTBEAT else SHA256, {1: SHA1})
    if wire is WireFormat.HBD:
        keys = AuthKeys(SHA256, {1: SHA256})
    return Engine(
        EngineSettings(
            node=node,
            uuid=node.encode().ljust(16, b"\0"),
            generation=5,
            nodes=NODES,
            paths=((UDP, PathKind.DATAGRAM), (SERIAL, PathKind.SERIAL)),
            auth=keys,
            keepalive=1.0,
            deadtime=10.0,
            warntime=5.0,
            initdead=20.0,
            wire=wire,
            cluster_id=nat.cluster_id(NODES, 694),
        ),
        now=now,
    )


def big_message(size: int) -> hb.HaMessage:
    fields = [hb.HaField("t", "status"), hb.HaField("st", "up")]
    i = 0
    while sum(len(f.name) + len(str(f.value)) + 2 for f in fields) < size - 200:
        fields.append(hb.HaField(f"f{i}", "x"))
        i += 1
    msg = ctl.status_message("beta", b"b" * 16, 1, 5, "up", 10000, 0x6000_0000)
    return hb.HaMessage((*fields, *msg.fields[2:]))


def cpu_ms(e: Engine, path: str, data: bytes, frames: int) -> float:
    samples = []
    for _ in range(frames):
        t0 = time.process_time()
        e.receive_frame(path, data, 1.0, "10.0.0.66")
        samples.append(time.process_time() - t0)
        while e.next_event() is not None:
            pass
    return statistics.median(samples) * 1000


def bench_cpu(frames: int) -> None:
    msg = big_message(64 * 1024)
    classic = hb.encode_classic(msg, WRONG)[: 64 * 1024]
    if not classic.endswith(b"<<<\n"):
        classic = classic[: 64 * 1024 - 40].rsplit(b"\n", 1)[0] + b"\nauth=1 00\n<<<\n"
    net = hb.encode_netstring(big_message(36 * 1024), WRONG, classic_auth=False)
    base = ctl.status_message("beta", b"b" * 16, 1, 5, "up", 10000, 0x6000_0000)
    wide = tuple(hb.HaField(f"v{i}", "y" * 2000) for i in range(32))
    long_lines = hb.encode_classic(hb.HaMessage((*base.fields, *wide)), WRONG)
    frame = nat.NativeFrame(
        nat.cluster_id(NODES, 694),
        nat.node_id("beta"),
        5,
        1,
        nat.NodeState.UP,
        10000,
        0,
        nat.path_hash(UDP),
    )
    native = nat.encode_native(frame, AuthEntry(1, AuthMethod.SHA256, b"not-the-key"))
    print(
        f"cpu per forged frame (median of {frames}; classic {len(classic)} B, "
        f"netstring {len(net)} B, native {len(native)} B)"
    )
    for wire in WireFormat:
        for name, path, data in (
            ("classic/udp", UDP, classic),
            ("classic/serial", SERIAL, classic),
            ("classic-wide/udp", UDP, long_lines),
            ("netstring/udp", UDP, net),
            ("native/udp", UDP, native),
        ):
            e = engine("alpha", wire)
            print(f"  wire {wire.value:9} {name:15} {cpu_ms(e, path, data, frames):8.3f} ms")


def pump(a: Engine, b: Engine, now: float) -> None:
    for src, dst in ((a, b), (b, a)):
        src.handle_timer(now)
        for path, data in src.frames_to_send(now):
            dst.receive_frame(path, data, now, "10.0.0.1")


def bench_rexmit(replays: int) -> None:
    a, b = engine("alpha", WireFormat.HEARTBEAT), engine("beta", WireFormat.HEARTBEAT)
    now = 0.0
    for _ in range(40):
        now += 0.5
        pump(a, b, now)
    gen = 5
    request = ctl.rexmit_message(
        "beta",
        b"beta".ljust(16, b"\0"),
        "alpha",
        None,
        max(1, a._seq - 40),
        a._seq - 9,
        gen,
        0x6000_0000,
    )
    data = hb.encode_netstring(request, SHA1)
    a.frames_to_send(now)
    sent_bytes = sent_frames = 0
    for i in range(replays):
        t = now + i / replays
        a.receive_frame(UDP, data, t, "10.0.0.66")
        out = a.frames_to_send(t)
        sent_frames += len(out)
        sent_bytes += sum(len(d) for _, d in out)
    print(
        f"rexmit: {replays} replays of one NS_rexmit ({len(data)} B) in 1 s: "
        f"{sent_frames} frames, {sent_bytes} B sent; {sent_bytes / (replays * len(data)):.2f} B "
        f"sent per B received, {sent_frames / replays:.2f} frames per frame"
    )


def bench_echo(replays: int) -> None:
    a, b = engine("alpha", WireFormat.HBD), engine("beta", WireFormat.HBD)
    now = 0.0
    captured: list[bytes] = []
    for _ in range(20):
        now += 0.5
        for src, dst in ((a, b), (b, a)):
            src.handle_timer(now)
            for path, data in src.frames_to_send(now):
                if src is b and path == UDP and data[2] >> 4 == nat.FrameKind.ECHO:
                    captured.append(data)
                dst.receive_frame(path, data, now, "10.0.0.1")
    echo = captured[0]
    a.frames_to_send(now)
    replies = 0
    for i in range(replays):
        a.receive_frame(UDP, echo, now + i / replays, "10.0.0.66")
        out = a.frames_to_send(now + i / replays)
        replies += sum(
            1 for _, d in out if d[:1] == b"\xb8" and d[2] >> 4 == nat.FrameKind.ECHO_REPLY
        )
    print(f"echo: {replays} replays of one native ECHO in 1 s: {replies} frames sent")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--replays", type=int, default=1000)
    args = p.parse_args()
    bench_cpu(args.frames)
    bench_rexmit(args.replays)
    bench_echo(args.replays)


if __name__ == "__main__":
    main()
