"""Detection time of a crashed peer and the false-death rate under loss and jitter.

    python bench/detection.py [--pairs 1/3,0.5/2,0.2/1,0.1/0.5] [--sim-hours 1] [--crashes 20]
                              [--real-seconds 60] [--no-real] [--seed 1]

Two figures, kept apart in the output:

1. **Simulated** (hbd.testing.SimCluster: the same Engine the daemon runs, driven on a
   simulated clock, so hours pass in seconds): two nodes joined by two UDP paths. For each
   keepalive/deadtime pair, with and without `adaptive_detector on`:
   - detection: beta crashes at a random phase of alpha's keepalive after 10 s of clean
     running; the time until alpha's engine says `NodeDead(beta)`, over `--crashes` crashes,
     on clean paths and on paths impaired as below (a lossy path has often been silent for
     a while when the crash comes, so detection from the crash can be shorter);
   - false deaths: both paths impaired in both directions for `--sim-hours` of simulated
     time with nothing crashed; every `NodeDead` either node reports is false (and, in
     brackets, every `PathDown`: the adaptive detector judges paths only, never nodes, so
     it can only move path deaths, sooner; node death is always deadtime of silence on
     every path). Impairments:
     30 %, 50 % and 70 % loss, each with 50 ms +- 50 ms jitter (uniform 0..100 ms on top of
     1 ms latency, independently per frame) on both paths; and, as the real check below
     has it, a single path at 30 % (the last column).
2. **Real** (root; tests/faultlab.py's lab, keepalive 200 ms / deadtime 1 s, native
   frames, FUSE watchdogs): bcast and serial cut, so every heartbeat crosses the ucast path,
   which gets 30 % loss (an nft `numgen random` rule) and 50 ms +- 50 ms jitter (the lab's
   userspace UDP relay: this kernel has no sch_netem) for `--real-seconds`; false deaths
   are the "is dead" lines in either daemon's log. Then beta's hbd is SIGKILLed and alpha's
   status is polled every 50 ms until beta shows dead: the detection time (the poll adds
   up to 50 ms). The lab's timings are fixed (0.2/1); `adaptive_detector on` is added to
   its ha.cf for the second row.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common

from hbd.core.engine import PathKind
from hbd.core.events import NodeDead, PathDown
from hbd.core.model import WireFormat
from hbd.testing.sim import SimCluster

sys.path.append(str(common.REPO / "tests"))

PATHS = (("bcast:eth0", PathKind.DATAGRAM), ("bcast:eth1", PathKind.DATAGRAM))
NODES = ("alpha", "beta")
LOSSES = (0.3, 0.5, 0.7)
JITTER = 0.05  # uniform 0..2 x JITTER, as netem's `delay 50ms 50ms`
RESULTS = common.REPO / "bench" / "results"


@dataclass(frozen=True)
class Pair:
    keepalive: float
    deadtime: float

    @property
    def label(self) -> str:
        return f"{self.keepalive:g}/{self.deadtime:g}"


def parse_pairs(text: str) -> list[Pair]:
    out = []
    for item in text.split(","):
        ka, _, dt = item.partition("/")
        try:
            pair = Pair(float(ka), float(dt))
        except ValueError:
            raise SystemExit(f"--pairs: {item!r} is not KEEPALIVE/DEADTIME in seconds") from None
        if not 0 < pair.keepalive < pair.deadtime:
            raise SystemExit(f"--pairs: {item!r} needs 0 < keepalive < deadtime")
        out.append(pair)
    return out


# -- simulated ------------------------------------------------------------------------------


def sim(pair: Pair, adaptive: bool, seed: int, paths: int = 2) -> SimCluster:
    return SimCluster(
        NODES,
        PATHS[:paths],
        keepalive=pair.keepalive,
        deadtime=pair.deadtime,
        wire=WireFormat.HBD,
        adaptive_detector=adaptive,
        seed=seed,
    )


def impair(s: SimCluster, loss: float) -> None:
    for path, _ in s.paths:
        s.link(path, "alpha", "beta", loss=loss, jitter=2 * JITTER)  # uniform 0..jitter


def detection(pair: Pair, adaptive: bool, loss: float, seed: int) -> tuple[float, float]:
    """Seconds from beta's crash to alpha's NodeDead(beta), and to its first PathDown."""
    s = sim(pair, adaptive, seed)
    phase = random.Random(seed).uniform(0, pair.keepalive)
    s.run_for(10.0)
    if loss:
        impair(s, loss)
        s.run_for(10.0)
    s.run_for(phase)
    before = len(s.events_of("alpha", NodeDead))
    paths_before = len(s.events_of("alpha", PathDown))
    crashed = s.clock.now
    s.crash("beta")
    step = pair.keepalive / 4
    while s.clock.now - crashed < 10 * pair.deadtime + 10:
        s.run_for(step)
        dead = [t for t, e in s.events_of("alpha", NodeDead)[before:] if e.node == "beta"]
        if dead:
            downs = [t for t, e in s.events_of("alpha", PathDown)[paths_before:]]
            # a path already down before the crash (loss) counts as down at the crash
            first = min(downs, default=dead[0]) - crashed
            return dead[0] - crashed, max(0.0, first)
    raise RuntimeError(f"{pair.label}: alpha never declared the crashed beta dead")


def false_deaths(
    pair: Pair, adaptive: bool, loss: float, hours: float, seed: int, paths: int = 2
) -> tuple[int, int]:
    """NodeDead and PathDown events over the soak (nothing crashed: all false)."""
    s = sim(pair, adaptive, seed, paths)
    s.run_for(10.0)
    impair(s, loss)
    before = sum(len(s.events_of(n, NodeDead)) for n in NODES)
    paths = sum(len(s.events_of(n, PathDown)) for n in NODES)
    s.run_for(hours * 3600)
    deaths = sum(len(s.events_of(n, NodeDead)) for n in NODES) - before
    return deaths, sum(len(s.events_of(n, PathDown)) for n in NODES) - paths


def fmt3(values: Sequence[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def simulated(pairs: list[Pair], crashes: int, hours: float, seed: int) -> str:
    headers = ["ka/dt s", "detector", "node dead clean s", "node dead @30%",
               "1st path down clean s"]  # fmt: skip
    headers += [f"false deaths/h @{int(x * 100)}% (paths)" for x in LOSSES]
    headers.append("1 path @30%")
    rows: list[list[object]] = []
    for pair in pairs:
        for adaptive in (False, True):
            t0 = time.monotonic()
            clean = [detection(pair, adaptive, 0.0, seed + i) for i in range(crashes)]
            lossy = [detection(pair, adaptive, 0.3, seed + i) for i in range(crashes)]
            soaks = [false_deaths(pair, adaptive, x, hours, seed) for x in LOSSES]
            soaks.append(false_deaths(pair, adaptive, 0.3, hours, seed, paths=1))
            rows.append(
                [pair.label, "adaptive" if adaptive else "fixed",
                 fmt3([c[0] for c in clean]), fmt3([c[0] for c in lossy]),
                 fmt3([c[1] for c in clean]),
                 *(f"{d / hours:.1f} ({p / hours:.0f})" for d, p in soaks)]
            )  # fmt: skip
            common.note(f"sim {pair.label} {rows[-1][1]}: {time.monotonic() - t0:.0f} s")
    return common.table(headers, rows)


# -- real namespaces --------------------------------------------------------------------------


@contextlib.contextmanager
def adaptive_lab(adaptive: bool, workdir: Path) -> Iterator[Any]:
    """tests/faultlab.py's lab, with `adaptive_detector on|off` in both ha.cf files."""
    import faultlab

    with faultlab.build(
        workdir, extra_hacf={"adaptive_detector": "on" if adaptive else "off"}
    ) as lab:
        yield lab


def real_row(adaptive: bool, seconds: float) -> list[object]:
    import faultlab

    with (
        tempfile.TemporaryDirectory(prefix="det-") as tmp,
        adaptive_lab(adaptive, Path(tmp)) as obj,
    ):
        lab: faultlab.Lab = obj
        faultlab.bring_up(lab)
        lab.cut("bcast", "down")
        lab.cut("serial", "unplug")
        for n in NODES:
            lab.wait_path_dead(n, "bcast", left=1)
        marks = lab.log_marks()
        with lab.impair("ucast", loss=30, jitter=JITTER) as relays:
            time.sleep(seconds)
            carried = sum(r.stats.received for r in relays)
            dropped = sum(r.stats.dropped for r in relays)
        logs = [lab.c[n].log()[marks[n] :] for n in NODES]
        deaths = sum(len(re.findall(r"node \w+: is dead", text)) for text in logs)
        start = time.monotonic()
        lab.kill("beta", signal.SIGKILL)
        lab.wait(
            lambda: True if lab.peer_state("alpha") == "dead" else None,
            "alpha to declare beta dead",
            10.0,
        )
        took = time.monotonic() - start
    return ["0.2/1", "adaptive" if adaptive else "fixed", f"{seconds:g}",
            f"{carried} ({dropped} dropped)", deaths, f"{deaths * 3600 / seconds:.1f}",
            f"{took:.2f}"]  # fmt: skip


def real(seconds: float) -> str:
    rows = [real_row(adaptive, seconds) for adaptive in (False, True)]
    headers = ["keepalive/deadtime", "detector", "soak s", "ucast frames relayed",
               "false deaths", "per hour", "detect after SIGKILL s"]  # fmt: skip
    return common.table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="1/3,0.5/2,0.2/1,0.1/0.5")
    parser.add_argument("--sim-hours", type=float, default=1.0)
    parser.add_argument("--crashes", type=int, default=20)
    parser.add_argument("--real-seconds", type=float, default=60.0)
    parser.add_argument("--no-real", action="store_true", help="simulated figures only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "detection.md")
    args = parser.parse_args(argv)
    pairs = parse_pairs(args.pairs)
    text = "### simulated (SimCluster, two UDP paths, both impaired)\n\n"
    text += simulated(pairs, args.crashes, args.sim_hours, args.seed) + "\n"
    if not args.no_real:
        missing = common.missing_for_cluster()
        if missing:
            print(f"detection: real check skipped: {missing}", file=sys.stderr)
        else:
            text += "\n### real namespaces (faultlab: ucast only, 30% loss + 50+-50 ms jitter)\n\n"
            text += real(args.real_seconds) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
