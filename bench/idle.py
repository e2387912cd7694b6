"""CPU and memory of an idle two-node cluster: hbd beside Heartbeat 3.0.6.

    sudo python bench/idle.py [--window 60] [--rates 1,10] [--systems hbd,hbd-hbwire,heartbeat]

Each run builds a fresh cluster: two network namespaces joined by two veth pairs (`bcast
eth0` on one, `ucast eth1 PEER` on the other) and a socat pty pair (`serial`, baud
19200) -- three paths -- with no resources. Both daemons start; once each reports all three
paths up (hbd: its status; Heartbeat: its "Link ... up." log lines) and `--settle` more
seconds have passed, the CPU time (user + system, from /proc/PID/stat) of every process in
each node's namespace is sampled at the start and the end of `--window` seconds, and the
memory at the end (RSS and PSS from /proc/PID/smaps_rollup). For Heartbeat that is all its
processes -- the master control process and a reader and a writer per path -- summed.

Systems:
- hbd: `wire hbd` (native frames), sha256 key;
- hbd-hbwire: hbd speaking Heartbeat's wire format (classic/netstring), sha1 key;
- heartbeat: Heartbeat 3.0.6 (Debian package, /usr/libexec/heartbeat/heartbeat), sha1 key,
  `crm no`, logging to a file (no logd), as in tests/tools/capture_heartbeat.py.

Rates: keepalive 1 s (deadtime 10 s) and 100 ms (deadtime 1 s); `--rates` lists them in Hz.
Note the serial path runs over a pty, which has no baud clock: at 10 Hz Heartbeat's frames
would not fit a real 19200-baud line (see bench/serial.py), here they cross anyway.
Needs root. Prints one row per (system, rate): per-node figures, the mean of the two nodes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import common

SYSTEMS = {
    "hbd": ("hbd (native frames)", "wire hbd", "auth 1\n1 sha256 bench-idle-key-sha256\n"),
    "hbd-hbwire": ("hbd (Heartbeat wire)", "", "auth 1\n1 sha1 bench-idle-key-sha1\n"),
    "heartbeat": ("Heartbeat 3.0.6", "", "auth 1\n1 sha1 bench-idle-key-sha1\n"),
}
NODES = ("hb1", "hb2")
DEADTIME_MS = {1000: 10_000, 100: 1_000}  # keepalive -> deadtime


@dataclass(frozen=True)
class Row:
    system: str
    keepalive_ms: int
    usage: tuple[common.Usage, common.Usage]  # one per node

    def cells(self) -> list[object]:
        a, b = self.usage
        return [
            self.system,
            f"{1000 / self.keepalive_ms:g} Hz",
            f"{(a.cpu_per_minute + b.cpu_per_minute) / 2:.2f}",
            f"{(a.rss_kib + b.rss_kib) / 2 / 1024:.1f}",
            f"{(a.pss_kib + b.pss_kib) / 2 / 1024:.1f}",
            f"{(a.processes + b.processes) / 2:g}",
            f"{a.seconds:.0f}",
        ]


def keepalive_for(hz: float) -> int:
    ms = round(1000 / hz)
    if ms not in DEADTIME_MS:
        raise SystemExit(
            f"--rates: {hz:g} Hz is not one of {sorted(1000 / k for k in DEADTIME_MS)}"
        )
    return ms


def run_one(system: str, keepalive_ms: int, window: float, settle: float, tmp: Path) -> Row:
    """One fresh cluster of `system` at `keepalive_ms`, measured over `window` seconds."""
    label, wire, authkeys = SYSTEMS[system]
    with ExitStack() as stack:
        spaces = [stack.enter_context(common.namespace(n)) for n in NODES]
        common.veth(spaces[0], spaces[1], "eth0", "10.91.0.1/24", "10.91.0.2/24")
        common.veth(spaces[0], spaces[1], "eth1", "10.92.0.1/24", "10.92.0.2/24")
        ttys = stack.enter_context(common.serial_line(tmp / "tty-hb1", tmp / "tty-hb2"))
        nodes: list[common.Node] = []
        for i, name in enumerate(NODES):
            peer_addr = f"10.92.0.{2 - i}"
            media = [
                common.Medium("bcast", "eth0"),
                common.Medium("ucast", "eth1", peer_addr),
                common.Medium("serial", ttys[i]),
            ]
            extra = [wire] if wire else []
            hacf = common.hacf_text(
                NODES, media, keepalive_ms, DEADTIME_MS[keepalive_ms], extra=extra
            )
            cls = common.HeartbeatNode if system == "heartbeat" else common.HbdNode
            node: common.Node = cls(name, spaces[i], tmp / f"{system}-{keepalive_ms}-{name}")
            node.root.mkdir(parents=True)
            node.write_config(hacf, authkeys)
            nodes.append(node)
        for node in nodes:
            node.start()
        common.note(f"idle: {label} at keepalive {keepalive_ms} ms: waiting for 3 paths up")
        common.wait_until(
            lambda: all(n.paths_up() >= 3 for n in nodes),
            30 + 3 * DEADTIME_MS[keepalive_ms] / 1000,
            f"{label}: both nodes to see all three paths up (logs under {tmp})",
        )
        time.sleep(settle)
        common.note(f"idle: {label} at keepalive {keepalive_ms} ms: measuring {window:g} s")
        usages = _measure_both(nodes, window)
        for node in nodes:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(
                    f"{label} on {node.name} exited during the window; see {node.log}"
                )
        common.wait_until(  # still all up (a status poll may time out on a busy machine)
            lambda: all(n.paths_up() >= 3 for n in nodes),
            3.0,
            f"{label}: all three paths still up after the window (logs under {tmp})",
        )
        for node in nodes:
            node.stop()
    return Row(label, keepalive_ms, usages)


def _measure_both(nodes: list[common.Node], window: float) -> tuple[common.Usage, common.Usage]:
    """Both nodes over the same window (two threads sampling at the same moments)."""
    results: dict[int, common.Usage] = {}

    def measure(i: int) -> None:
        results[i] = common.measure_usage(nodes[i].pids, window)

    threads = [threading.Thread(target=measure, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results[0], results[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after all paths up")
    parser.add_argument("--rates", default="1,10", help="heartbeats per second (1 and/or 10)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and configs")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=",".join(SYSTEMS))
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            parser.error(f"unknown system {s!r}; known: {', '.join(SYSTEMS)}")
    rates = [keepalive_for(float(r)) for r in args.rates.split(",") if r]
    missing = common.missing_for_cluster(heartbeat="heartbeat" in systems)
    if missing is not None:
        print(f"idle: {missing}", file=sys.stderr)
        return 2

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="hbd-bench-idle-"))
    try:
        for keepalive_ms in rates:
            for system in systems:
                rows.append(run_one(system, keepalive_ms, args.window, args.settle, tmp))
    finally:
        if args.keep:
            common.note(f"idle: configurations and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    headers = ["system", "rate", "CPU s/min", "RSS MiB", "PSS MiB", "processes", "window s"]
    print("idle two-node cluster, three paths (bcast eth0, ucast eth1, serial); per node\n")
    print(common.table(headers, [r.cells() for r in rows]))
    print(
        "\nCPU s/min: user + system CPU seconds per minute of wall clock, all the node's"
        " processes summed (mean of the two nodes).\nRSS: resident memory summed over the"
        " node's processes (pages shared between Heartbeat's forked processes count once"
        " per process);\nPSS: the same with shared pages divided among their sharers."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
