"""Idle cost of a two-node cluster holding a VIP: hbd beside Heartbeat 3.0.6 and keepalived.

    sudo python bench/idle.py [--window 60] [--settle 5] [--rates 1,5] [--repeat 1]
                              [--systems hbd,hbd-hbwire,hbd-wd,heartbeat,
                                         heartbeat-wd,keepalived,floor-asyncio,
                                         floor-epoll]
                              [--no-group] [--profile DIR] [--cprofile DIR] [--timing DIR]
                              [--baseline TREE] [--json bench/results/idle.json]

Per rate, one cluster of every system runs at the same time (so they share the machine's
noise: the same window, the same neighbours). Each cluster is two network namespaces, hb1
and hb2, joined by two veth pairs and a socat pty pair -- three paths: `bcast eth0`,
`ucast eth1 PEER` and `serial` (baud 19200) -- and one resource group, the VIP
10.91.0.100/24 on eth0, held by hb1:

- hbd: `hb1 IPaddr::10.91.0.100/24` (its built-in IPaddr), native frames (`wire hbd`,
  sha256) or Heartbeat's wire (sha1); `realtime` left at its default, on (SCHED_FIFO and
  mlockall, as shipped);
- heartbeat: Heartbeat 3.0.6 (Debian package), `crm no`, `hb1 IPaddr2::10.91.0.100/24/eth0`,
  sha1, logging to a file, realtime at its default (on);
- hbd-wd and heartbeat-wd: the same with `watchdog` on a FUSE watchdog device per node
  (hbd.testing.fusewatchdog, its server outside the namespace and not counted), as an
  appliance runs: the pets are the node's own work;
- keepalived: VRRPv3 unicast on eth0 (keepalived has no serial path and one VRRP path),
  hb1 MASTER, `advert_int` = the keepalive, `virtual_ipaddress { 10.91.0.100/24 dev eth0 }`;
- the Python floor (bench/idle_floor.py, asyncio's loop or a bare epoll loop): a process on
  the same three paths that sends a heartbeat-sized frame on each every keepalive and reads
  what arrives, deciding nothing and holding no group -- what the interpreter costs to be
  woken as often as an hbd node is (hbd's figure less this one is hbd's own work).

Rates: 1 Hz (keepalive 1 s, deadtime 3 s) and 5 Hz (200 ms, 1 s); 10 Hz (100 ms, 1 s) on
request. Once every node reports all its paths up and hb1 holds the VIP, and `--settle`
seconds more have passed, every process in each node's namespace is sampled at the start
and the end of `--window` seconds:

- CPU ms/min: on-CPU time of every thread (/proc/PID/task/TID/schedstat, nanoseconds);
- wake/s: context switches (voluntary + involuntary, every thread) per second: how often
  the node's processes went to sleep and were woken;
- loop/s (hbd only): turns of hbd's event loop per second, from its own counters
  (`hbctl status --json`, "loop"); with the split timer / descriptor; each node's line
  says whose deadlines woke its timer turns ("engine": heartbeats; "fencing" alone would
  be a turn for a watchdog pet);
- RSS, PSS and Locked (/proc/PID/smaps_rollup: resident memory held locked by mlock) at the
  end.

`--profile DIR` records hb1's hbd during the window with py-spy (`pip install py-spy`;
folded stacks in DIR, and the top functions printed); the profiled rows' CPU includes
py-spy's reads of the process, so take figures from a run without it. `--repeat N` runs
every rate N times and prints, per system and rate, the range over runs of the mean of the
two nodes. `--cprofile DIR` runs hb1's hbd under cProfile for the window alone
(bench/cprofile_hbd.py: switched on and off by signal, the start-up left out), writes
DIR/RATE-SYSTEM-runN.prof and prints the functions with the most own and cumulative time
and the calls per loop turn; its rows' CPU is cProfile's too. `--timing DIR` counts
instead the thread CPU time inside the loop's main functions of hb1's hbd over the window
(bench/timing_hbd.py: a clock read around each, no profiler), writes
DIR/RATE-SYSTEM-runN.json and prints, per function, calls a second, µs a call and ms a
minute -- where a live turn's time goes. `--baseline TREE` adds a cluster of hbd (native
frames) run from another checkout (bench/hbd_from.py puts TREE's packages first), so a
change is measured against the build before it in one run: `git worktree add /tmp/base
HEAD~1`, then `--systems hbd,hbd-base --baseline /tmp/base` and `--systems hbd-base,hbd
--baseline /tmp/base` (the first cluster listed runs dearer); `hbd-hbwire-base` is the
Heartbeat-wire one. Needs root. Writes every
measurement to --json and the table beside it (.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common

from hbd.testing.fusewatchdog import mounted_watchdog

NODES = ("hb1", "hb2")
VIP = "10.91.0.100"
RATES = {1.0: (1000, 3000), 5.0: (200, 1000), 10.0: (100, 1000)}  # Hz -> keepalive, deadtime
RESULTS = common.REPO / "bench" / "results"


@dataclass(frozen=True)
class System:
    key: str
    label: str
    kind: str  # "hbd", "heartbeat" or "keepalived"
    native: bool = False
    watchdog: bool = False  # `watchdog` on a FUSE watchdog per node (hbd.testing.fusewatchdog)
    tree: Path | None = None  # hbd from this checkout (`--baseline`), not the installed one

    @property
    def authkeys(self) -> str:
        if self.native:
            return "auth 1\n1 sha256 bench-idle-key-sha256\n"
        return "auth 1\n1 sha1 bench-idle-key-sha1\n"

    @property
    def paths(self) -> int:
        return 1 if self.kind == "keepalived" else 3


SYSTEMS = {
    s.key: s
    for s in (
        System("hbd", "hbd (native frames)", "hbd", native=True),
        System("hbd-hbwire", "hbd (Heartbeat wire)", "hbd"),
        System("hbd-wd", "hbd (native, watchdog)", "hbd", native=True, watchdog=True),
        System("heartbeat", "Heartbeat 3.0.6", "heartbeat"),
        System("heartbeat-wd", "Heartbeat 3.0.6 (watchdog)", "heartbeat", watchdog=True),
        System("keepalived", "keepalived", "keepalived"),
        System("floor-asyncio", "Python floor (asyncio)", "floor"),
        System("floor-epoll", "Python floor (epoll)", "floor"),
    )
}


@dataclass
class FloorNode(common.Node):
    """bench/idle_floor.py on the node's three paths: sends and reads, decides nothing."""

    loop: str = "asyncio"
    keepalive: float = 1.0
    peer: str = ""
    tty: str = ""

    def write_config(self, hacf: str, authkeys: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        argv = [sys.executable, str(Path(__file__).with_name("idle_floor.py")), "--loop"]
        argv += [self.loop, "--keepalive", f"{self.keepalive:g}", "--bcast", "eth0"]
        argv += ["--ucast", "eth1", self.peer, "--serial", self.tty]
        self.proc = self.ns.popen(argv, self.log)

    def paths_up(self) -> int:
        return 3 if self.proc is not None and self.proc.poll() is None else 0


@dataclass(frozen=True)
class Sample:
    """One node over one window."""

    system: str
    node: str
    hz: float
    seconds: float
    cpu_ms: float  # on-CPU time of every thread of every process, over the window
    switches: int  # context switches, over the window
    rss_kib: int
    pss_kib: int
    locked_kib: int
    processes: int
    loop_turns: int | None = None  # hbd: its loop's turns over the window
    loop_timer: int | None = None
    loop_io: int | None = None
    # hbd: its timer turns over the window by whose deadlines had come ("engine",
    # "engine+fencing"; "fencing" alone would be a turn woken for a watchdog pet)
    woken_by: dict[str, int] | None = None

    @property
    def cpu_per_minute(self) -> float:
        return self.cpu_ms * 60.0 / self.seconds


# -- /proc ----------------------------------------------------------------------------------


def _tasks(pid: int) -> list[Path]:
    try:
        return list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return []


def cpu_and_switches(pid: int) -> tuple[int, int]:
    """(on-CPU nanoseconds, context switches) summed over the threads of `pid`."""
    ns = switches = 0
    for task in _tasks(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            ns += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    switches += int(line.split()[1])
    return ns, switches


def locked_kib(pid: int) -> int:
    """Resident memory held locked (smaps_rollup `Locked:`). Not /proc/PID/status VmLck:
    that counts whole locked mappings, resident or not (with mlockall's MCL_ONFAULT an
    untouched 8 MiB thread stack counts there, yet costs nothing)."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Locked:"):
                return int(line.split()[1])
    return 0


def loop_counters(node: common.Node) -> dict[str, int] | None:
    if not isinstance(node, common.HbdNode):
        return None
    status = node.status() or {}
    loop = status.get("loop")
    return loop if isinstance(loop, dict) else None


def measure(system: System, node: common.Node, hz: float, window: float) -> Sample:
    loop_before = loop_counters(node)
    pids = node.pids()
    before = {pid: cpu_and_switches(pid) for pid in pids}
    start = time.monotonic()
    time.sleep(window)
    pids = node.pids()
    after = {pid: cpu_and_switches(pid) for pid in pids}
    elapsed = time.monotonic() - start
    loop_after = loop_counters(node)
    cpu = sum(a[0] - before.get(pid, (0, 0))[0] for pid, a in after.items())
    switches = sum(a[1] - before.get(pid, (0, 0))[1] for pid, a in after.items())
    rss = pss = lck = 0
    for pid in after:
        r, p = common.memory_kib(pid)
        rss, pss, lck = rss + r, pss + p, lck + locked_kib(pid)
    turns: dict[str, int | None] = {"turns": None, "timer": None, "io": None}
    woken_by: dict[str, int] | None = None
    if loop_before is not None and loop_after is not None:
        for k in turns:
            turns[k] = int(loop_after.get(k, 0)) - int(loop_before.get(k, 0))
        by_before, by_after = loop_before.get("woken_by", {}), loop_after.get("woken_by", {})
        woken_by = {k: n - int(by_before.get(k, 0)) for k, n in by_after.items()}
        woken_by = {k: n for k, n in sorted(woken_by.items()) if n}
    return Sample(
        system.label, node.name, hz, elapsed, cpu / 1e6, switches, rss, pss, lck, len(after),
        turns["turns"], turns["timer"], turns["io"], woken_by,
    )  # fmt: skip


# -- the clusters -----------------------------------------------------------------------------


def keepalived_conf(node: str, keepalive_ms: int) -> str:
    me = NODES.index(node) + 1
    peer = 2 if me == 1 else 1
    return (
        "global_defs {\n"
        f"  router_id {node}\n  vrrp_version 3\n  script_user root\n"
        "  enable_script_security\n  vrrp_garp_master_delay 0\n"
        "}\n"
        "vrrp_instance VI_1 {\n"
        f"  state {'MASTER' if me == 1 else 'BACKUP'}\n"
        "  interface eth0\n  virtual_router_id 51\n"
        f"  priority {150 if me == 1 else 100}\n"
        f"  advert_int {keepalive_ms / 1000:g}\n"
        f"  unicast_src_ip 10.91.0.{me}\n  unicast_peer {{\n    10.91.0.{peer}\n  }}\n"
        f"  virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n"
        "}\n"
    )


def has_vip(ns: common.Namespace) -> bool:
    out = ns.exec("ip", "-4", "-o", "addr", "show", "dev", "eth0", check=False).stdout
    return f" {VIP}/" in out


@dataclass
class Cluster:
    system: System
    spaces: list[common.Namespace]
    nodes: list[common.Node]

    def ready(self, group: bool) -> bool:
        if not all(n.paths_up() >= self.system.paths for n in self.nodes):
            return False
        return not group or self.system.kind == "floor" or has_vip(self.spaces[0])


def cluster(
    stack: ExitStack,
    system: System,
    hz: float,
    group: bool,
    tmp: Path,
    tag: str,
    cprofile_out: Path | None = None,
) -> Cluster:
    keepalive_ms, deadtime_ms = RATES[hz]
    spaces = [stack.enter_context(common.namespace(n)) for n in NODES]
    common.veth(spaces[0], spaces[1], "eth0", "10.91.0.1/24", "10.91.0.2/24")
    common.veth(spaces[0], spaces[1], "eth1", "10.92.0.1/24", "10.92.0.2/24")
    ttys = ("", "")
    if system.kind != "keepalived":
        ttys = stack.enter_context(
            common.serial_line(tmp / f"tty-{tag}-hb1", tmp / f"tty-{tag}-hb2")
        )
    nodes: list[common.Node] = []
    for i, name in enumerate(NODES):
        root = tmp / f"{tag}-{name}"
        node: common.Node
        if system.kind == "keepalived":
            node = common.KeepalivedNode(name, spaces[i], root)
            node.write_config(keepalived_conf(name, keepalive_ms), "")
            nodes.append(node)
            continue
        if system.kind == "floor":
            loop = system.key.removeprefix("floor-")
            node = FloorNode(name, spaces[i], root, None, loop, keepalive_ms / 1000)
            node.peer, node.tty = f"10.92.0.{2 - i}", ttys[i]
            node.write_config("", "")
            nodes.append(node)
            continue
        media = [
            common.Medium("bcast", "eth0"),
            common.Medium("ucast", "eth1", f"10.92.0.{2 - i}"),
            common.Medium("serial", ttys[i]),
        ]
        extra = ["wire hbd"] if system.native else []
        if system.watchdog:
            dog = stack.enter_context(
                mounted_watchdog(netns=spaces[i].name, identity=f"{name} idle bench")
            )
            extra.append(f"watchdog {dog.path}")
        hacf = common.hacf_text(NODES, media, keepalive_ms, deadtime_ms, extra=extra)
        if system.kind == "heartbeat":
            node = common.HeartbeatNode(name, spaces[i], root)
            node.root.mkdir(parents=True)
            node.write_config(hacf, system.authkeys)
            if group:  # the nic spelled out, as bench/failover.py does
                (root / "etc" / "haresources").write_text(f"hb1 IPaddr2::{VIP}/24/eth0\n")
        else:
            node = common.HbdNode(name, spaces[i], root)
            if system.tree is not None:
                node.launcher = (sys.executable, str(HBD_FROM), str(system.tree))
            elif cprofile_out is not None and i == 0:
                shim = TIMING_HBD if cprofile_out.suffix == ".json" else CPROFILE_HBD
                node.launcher = (sys.executable, str(shim), str(cprofile_out))
            node.root.mkdir(parents=True)
            node.write_config(hacf, system.authkeys)
            if group:
                (root / "ha.d" / "haresources").write_text(f"hb1 IPaddr::{VIP}/24\n")
        nodes.append(node)
    return Cluster(system, spaces, nodes)


def profile_start(c: Cluster, window: float, out: Path, tag: str) -> subprocess.Popen[bytes] | None:
    node = c.nodes[0]
    if c.system.kind != "hbd" or node.proc is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [py_spy, "record", "--nonblocking", "--rate", "1000", "--format", "raw",
            "--duration", f"{max(1, int(window))}", "--pid", str(node.proc.pid),
            "--output", str(out / f"{tag}.folded")]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


CPROFILE_HBD = Path(__file__).with_name("cprofile_hbd.py")
TIMING_HBD = Path(__file__).with_name("timing_hbd.py")
HBD_FROM = Path(__file__).with_name("hbd_from.py")


def timing_report(path: Path) -> str:
    """bench/timing_hbd.py's counts: per function, calls a second, µs a call (its callees
    included) and ms of CPU a minute, the most first."""
    report = json.loads(path.read_text())
    wall = report["wall_ns"] / 1e9
    rows = [
        [
            name,
            f"{f['calls'] / wall:.2f}",
            f"{f['ns'] / f['calls'] / 1000:.1f}",
            f"{f['ns'] / 1e6 / wall * 60:.1f}",
        ]
        for name, f in sorted(report["functions"].items(), key=lambda kv: -kv[1]["ns"])
    ]
    head = f"main thread {report['thread_ns'] / 1e6 / wall * 60:.1f} ms/min over {wall:.0f} s"
    return head + "\n" + common.table(["function", "calls/s", "µs/call", "ms/min"], rows)


def cprofile_report(prof: Path, turns: int | None, n: int = 15) -> str:
    """Where a node's Python time went over the window: the functions with the most own
    time (the wait in epoll left out), their cumulative time, and calls per loop turn."""
    stats = pstats.Stats(str(prof))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    waiting = sum(v[2] for k, v in raw.items() if "poll" in k[2] and "epoll" in k[2])
    python = max(1e-9, float(stats.total_tt) - waiting)  # type: ignore[attr-defined]
    for (path, line, func), (_cc, calls, own, cum, _callers) in sorted(
        raw.items(), key=lambda kv: -kv[1][2]
    ):
        if "poll" in func and "epoll" in func:
            continue
        where = f"{func} ({Path(path).name}:{line})" if line else func
        cum = cum - waiting if cum >= waiting else cum  # the loop's own: the wait is inside
        rows.append([f"{own / python:.1%}", f"{cum / python:.0%}", f"{calls}", where])
        if len(rows) == n:
            break
    calls = int(stats.total_calls)  # type: ignore[attr-defined]
    per_turn = f", {calls / turns:.0f} calls a loop turn" if turns else ""
    head = (
        f"{python * 1000:.0f} ms of Python (cProfile's own cost included), {calls} calls{per_turn}"
    )
    return head + "\n" + common.table(["own", "cumulative", "calls", "function"], rows)


def top_functions(folded: Path, n: int = 12) -> str:
    """The functions with the most samples, self and total, from py-spy's folded stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        samples += count
        if frames:
            own[frames[-1]] += count
        for frame in dict.fromkeys(frames):
            total[frame] += count
    rows = [[f"{c / samples:.0%}", f"{total[f] / samples:.0%}", f] for f, c in own.most_common(n)]
    return f"{samples} samples\n" + common.table(["self", "total", "function"], rows)


def run_rate(
    systems: Sequence[System],
    hz: float,
    window: float,
    settle: float,
    group: bool,
    tmp: Path,
    profile: Path | None,
    run: int,
    cprofile: Path | None = None,
    timing: Path | None = None,
) -> list[Sample]:
    """Every system's cluster at `hz`, up at the same time, measured over one window."""
    deadtime_ms = RATES[hz][1]
    with ExitStack() as stack:
        clusters = []
        profiles: list[Path | None] = []
        for s in systems:
            tag = f"r{run}-{hz:g}hz-{s.key}"
            out = None
            into = cprofile if cprofile is not None else timing
            if into is not None and s.kind == "hbd":
                into.mkdir(parents=True, exist_ok=True)
                suffix = ".prof" if cprofile is not None else ".json"
                out = (into / f"{hz:g}hz-{s.key}-run{run}{suffix}").resolve()
                out.unlink(missing_ok=True)
            profiles.append(out)
            clusters.append(cluster(stack, s, hz, group, tmp, tag, out))
        for c in clusters:
            for node in c.nodes:
                node.start()
        what = " and the VIP on hb1" if group else ""
        common.note(f"idle: {hz:g} Hz: waiting for every path up{what}")
        for c in clusters:
            common.wait_until(
                lambda c=c: c.ready(group),  # type: ignore[misc]
                30 + 3 * deadtime_ms / 1000,
                f"{c.system.label}: every path up{what} (logs under {tmp})",
            )
        time.sleep(settle)
        common.note(f"idle: {hz:g} Hz: measuring {window:g} s")
        spies = []
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            for c in clusters:
                tag = f"{hz:g}hz-{c.system.key}-run{run}"
                spies.append((tag, profile_start(c, window, profile, tag)))
        for c, out in zip(clusters, profiles, strict=True):
            if out is not None and c.nodes[0].proc is not None:
                os.kill(
                    c.nodes[0].proc.pid, signal.SIGUSR1
                )  # cprofile_hbd.py / timing_hbd.py: start
        results: dict[tuple[int, int], Sample] = {}

        def one(ci: int, ni: int) -> None:
            c = clusters[ci]
            results[ci, ni] = measure(c.system, c.nodes[ni], hz, window)

        threads = [
            threading.Thread(target=one, args=(ci, ni))
            for ci in range(len(clusters))
            for ni in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for ci, (c, out) in enumerate(zip(clusters, profiles, strict=True)):
            if out is None or c.nodes[0].proc is None:
                continue
            os.kill(c.nodes[0].proc.pid, signal.SIGUSR2)  # stop, and write the profile
            common.wait_until(out.exists, 30.0, f"{c.system.label}: hb1's profile in {out}")
            time.sleep(0.5)  # written whole
            if out.suffix == ".json":
                print(f"\nTiming of hb1, {c.system.label}, {hz:g} Hz ({out}):")
                print(timing_report(out))
            else:
                print(f"\ncProfile of hb1, {c.system.label}, {hz:g} Hz ({out}):")
                print(cprofile_report(out, results[ci, 0].loop_turns))
        for tag, spy in spies:
            if spy is None or profile is None:
                continue
            spy.wait(window + 30)
            folded = profile / f"{tag}.folded"
            if folded.exists():
                print(f"\nprofile of hb1, {tag} (py-spy, folded stacks in {folded}):")
                print(top_functions(folded))
        for c in clusters:
            for node in c.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"{c.system.label} on {node.name} exited; see {node.log}")
            common.wait_until(
                lambda c=c: c.ready(group),  # type: ignore[misc]
                5.0,
                f"{c.system.label}: still every path up after the window (logs under {tmp})",
            )
        for c in clusters:
            for node in c.nodes:
                node.stop()
    return [results[ci, ni] for ci in range(len(clusters)) for ni in range(2)]


# -- the report -------------------------------------------------------------------------------


def _span(values: Sequence[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    if f"{lo:{fmt}}" == f"{hi:{fmt}}":
        return f"{lo:{fmt}}"
    return f"{lo:{fmt}}-{hi:{fmt}}"


HEADERS = ["system", "rate", "CPU ms/min", "wake/s", "loop/s (timer+io)", "RSS MiB",
           "PSS MiB", "locked MiB", "procs", "runs"]  # fmt: skip


def report(systems: Sequence[System], rates: Sequence[float], samples: Sequence[Sample]) -> str:
    """One row per system and rate: the range over runs of each run's two-node mean."""
    rows: list[list[object]] = []
    for hz in rates:
        for s in systems:
            mine = [x for x in samples if x.system == s.label and x.hz == hz]
            if not mine:
                continue
            per_run = [mine[i : i + 2] for i in range(0, len(mine), 2)]  # hb1, hb2 per run

            def col(f: Any, fmt: str, per_run: list[list[Sample]] = per_run) -> str:
                return _span([sum(f(x) for x in pair) / len(pair) for pair in per_run], fmt)

            loop = "-"
            if all(x.loop_turns is not None for x in mine):
                loop = (
                    col(lambda x: x.loop_turns / x.seconds, ".1f")
                    + f" ({col(lambda x: (x.loop_timer or 0) / x.seconds, '.1f')}"
                    + f"+{col(lambda x: (x.loop_io or 0) / x.seconds, '.1f')})"
                )
            rows.append([
                s.label, f"{hz:g} Hz",
                col(lambda x: x.cpu_per_minute, ".0f"),
                col(lambda x: x.switches / x.seconds, ".1f"),
                loop,
                col(lambda x: x.rss_kib / 1024, ".1f"),
                col(lambda x: x.pss_kib / 1024, ".1f"),
                col(lambda x: x.locked_kib / 1024, ".1f"),
                col(lambda x: x.processes, "g"),
                len(per_run),
            ])  # fmt: skip
    return common.table(HEADERS, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after all is up")
    parser.add_argument("--rates", default="1,5", help="heartbeats per second: 1, 5 and/or 10")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every rate")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=",".join(SYSTEMS))
    parser.add_argument("--no-group", action="store_true", help="no VIP group (paths only)")
    parser.add_argument("--profile", type=Path, help="py-spy hb1's hbd; folded stacks here")
    parser.add_argument("--cprofile", type=Path, help="cProfile hb1's hbd; .prof files here")
    parser.add_argument(
        "--timing", type=Path, help="time hb1's loop functions (no profiler); .json files here"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run hbd (native frames) from this checkout, e.g. a git worktree of an"
        " older commit, beside the current one in the same run (system hbd-base: last,"
        " unless --systems names it, or hbd-hbwire-base, elsewhere; run an A/B both ways"
        " round)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and configs")
    parser.add_argument("--json", type=Path, help="write the samples here (and the table .md)")
    args = parser.parse_args(argv)
    if args.cprofile is not None and args.timing is not None:
        parser.error("--cprofile and --timing both wrap hb1's hbd: give one of them")
    known = dict(SYSTEMS)
    if args.baseline is not None:
        tree = args.baseline.resolve()
        if not (tree / "hbd" / "__init__.py").is_file():
            parser.error(f"--baseline: {tree} holds no hbd package (hbd/__init__.py)")
        known["hbd-base"] = System("hbd-base", f"hbd (native, {tree})", "hbd", True, tree=tree)
        known["hbd-hbwire-base"] = System(
            "hbd-hbwire-base", f"hbd (Heartbeat wire, {tree})", "hbd", tree=tree
        )
    keys = [s for s in args.systems.split(",") if s]
    if args.baseline is not None and not {"hbd-base", "hbd-hbwire-base"} & set(keys):
        keys.append("hbd-base")  # last, unless --systems names it (or the hbwire one)
    systems = []
    for key in keys:
        if key not in known:
            parser.error(f"unknown system {key!r}; known: {', '.join(known)}")
        systems.append(known[key])
    rates = []
    for r in (r for r in args.rates.split(",") if r):
        if float(r) not in RATES:
            parser.error(f"--rates: {r} Hz is not one of {', '.join(f'{h:g}' for h in RATES)}")
        rates.append(float(r))
    missing = common.missing_for_cluster(heartbeat=any(s.kind == "heartbeat" for s in systems))
    keepalived = any(s.kind == "keepalived" for s in systems)
    if missing is None and keepalived and shutil.which("keepalived") is None:
        missing = "needs keepalived (Debian package keepalived)"
    watchdog = [s.key for s in systems if s.watchdog]
    if missing is None and watchdog and not os.path.exists("/dev/fuse"):
        missing = f"{', '.join(watchdog)}: needs /dev/fuse for the FUSE watchdog (package fuse3)"
    if missing is not None:
        print(f"idle: {missing}", file=sys.stderr)
        return 2

    samples: list[Sample] = []
    tmp = Path(tempfile.mkdtemp(prefix="hbd-bench-idle-"))
    try:
        for run in range(args.repeat):
            for hz in rates:
                got = run_rate(
                    systems, hz, args.window, args.settle, not args.no_group, tmp,
                    args.profile, run, args.cprofile, args.timing,
                )  # fmt: skip
                samples.extend(got)
                for x in got:
                    loop = "" if x.loop_turns is None else f" loop {x.loop_turns / x.seconds:.1f}/s"
                    if x.woken_by is not None:
                        by = ", ".join(f"{k} {n}" for k, n in x.woken_by.items())
                        loop += f" (timer turns woken by: {by or 'none'})"
                    common.note(
                        f"  {x.system} {x.node} {hz:g} Hz: {x.cpu_per_minute:.0f} ms/min, "
                        f"{x.switches / x.seconds:.1f} wake/s{loop}, PSS {x.pss_kib / 1024:.1f}"
                        f" MiB, locked {x.locked_kib / 1024:.1f} MiB"
                    )
    finally:
        if args.keep:
            common.note(f"idle: configurations and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    what = "no resources" if args.no_group else f"one VIP group ({VIP}/24 on hb1)"
    text = (
        f"idle two-node cluster, three paths (bcast eth0, ucast eth1, serial), {what}; per node,"
        f" {args.window:g} s windows\n\n" + report(systems, rates, samples) + "\n"
    )
    print("\n" + text)
    print(
        "CPU ms/min: on-CPU time of all the node's threads per minute of wall clock; wake/s:"
        " their context switches per second; loop/s: turns of hbd's event loop (woken by"
        " a timer + by a descriptor);\nRSS counts pages Heartbeat's forked processes share"
        " once per process, PSS divides them among their sharers; locked: resident memory"
        " locked by mlock."
        "\nEach cell: the range over runs of the mean of the two nodes."
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "window_s": args.window,
            "group": not args.no_group,
            "samples": [asdict(x) for x in samples],
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        args.json.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
