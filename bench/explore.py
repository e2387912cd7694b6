"""The explorer at scale: 100,000 random fault schedules against simulated hbd nodes.

    python bench/explore.py [--schedules 100000] [--seed S] [--jobs 2]
                            [--stop-after SECONDS] [--out bench/results/explore.md]

Each schedule is `hbd.testing.explore.draw(seed)`: a random two-node cluster (paths,
groups with and without service addresses, failback, watchdog or not, ping node or not,
ARP probing or ICMP only, timings, agent durations) and up to six faults (power loss,
resets, killed, stalled, stopped and reloaded daemons, cuts one way or both, LAN cables
and switch splits, ping node deaths, ICMP filters, loss, standby and takeover, failing and
hanging agents), checked at every simulated instant for S, A, L, F and O (docs/policy.md,
"How it is checked"). Seeds run in a process pool, one contiguous range a worker; a
violation prints the seed and its shrunk, replayable schedule
(`python -m hbd.testing.explore --replay FILE`).

`--stop-after` ends the run after that much wall time: the summary then covers the chunks
that finished (it says how many schedules that was, out of how many asked), so a run that
does not fit still reports honestly what it checked.

Prints schedules run, simulated hours, schedules per second, how often each invariant was
checked, the violations per invariant (all 0 is the claim), and the residual (no
arbiter) and unfenced (no watchdog) counts, kept apart from safety.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from collections import Counter
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)

from hbd.testing.explore import INVARIANTS, draw, run_schedule, shrink

CHUNK = 250
Tally = tuple[int, Counter[str], Counter[str], int, int, float, list[str]]


def run_range(first: int, count: int) -> Tally:
    violations: Counter[str] = Counter()
    checks: Counter[str] = Counter()
    residual = unfenced = 0
    simulated = 0.0
    failing: list[str] = []
    for seed in range(first, first + count):
        schedule = draw(seed)
        result = run_schedule(schedule)
        simulated += result.simulated
        residual += result.residual
        unfenced += result.unfenced
        checks.update(result.checks)
        for v in result.violations:
            violations[v.invariant] += 1
        if result.violations and len(failing) < 3:
            v = result.violations[0]
            small = shrink(schedule, v.invariant, budget_s=30)
            failing.append(f"{v.invariant} seed {seed}: {v.detail}\n  replay: {small.to_json()}")
    return count, violations, checks, residual, unfenced, simulated, failing


def _worker(args: tuple[int, int]) -> Tally:
    return run_range(*args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--jobs", type=int, default=max(1, multiprocessing.cpu_count()))
    parser.add_argument("--out", type=Path, default=None, help="also write the summary here")
    parser.add_argument(
        "--stop-after", type=float, default=None, metavar="SECONDS", help="wall-time limit"
    )
    args = parser.parse_args()
    if args.schedules < 1 or args.jobs < 1:
        parser.error("--schedules and --jobs must be positive")
    if args.stop_after is not None and args.stop_after <= 0:
        parser.error("--stop-after must be positive")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(
        f"explore bench: {args.schedules} schedules from seed {seed}, {args.jobs} jobs", flush=True
    )
    chunks = [
        (first, min(CHUNK, seed + args.schedules - first))
        for first in range(seed, seed + args.schedules, CHUNK)
    ]
    violations: Counter[str] = Counter()
    checks: Counter[str] = Counter()
    residual = unfenced = 0
    simulated = 0.0
    failing: list[str] = []
    started = time.monotonic()
    done = 0
    stopped = False
    with multiprocessing.Pool(args.jobs) as pool:
        for n, v, c, r, u, sim, f in pool.imap_unordered(_worker, chunks):
            violations.update(v)
            checks.update(c)
            residual += r
            unfenced += u
            simulated += sim
            failing.extend(f)
            done += n
            if done % (CHUNK * 40) == 0:
                print(f"  {done} schedules, {time.monotonic() - started:.0f} s", flush=True)
            if args.stop_after is not None and time.monotonic() - started > args.stop_after:
                stopped = done < args.schedules
                pool.terminate()
                break
    wall = time.monotonic() - started
    asked = "" if not stopped else f" of {args.schedules} asked (stopped after {wall:.0f} s)"
    lines = [
        f"schedules {done}{asked} (seeds in {seed}..{seed + args.schedules - 1}, "
        f"chunks of {CHUNK}), "
        f"simulated {simulated / 3600:.1f} h, {done / wall:.1f} schedules/s "
        f"on {args.jobs} jobs, wall {wall:.0f} s",
        "checked: " + ", ".join(f"{k} {checks[k]}" for k in INVARIANTS),
        "violations: "
        + ", ".join(f"{k} {violations[k]}" for k in INVARIANTS)
        + f"; residual (no arbiter) {residual}; unfenced (no watchdog) {unfenced}",
        *failing,
    ]
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text("```\n" + "\n".join(lines) + "\n```\n")
    return 1 if sum(violations.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
