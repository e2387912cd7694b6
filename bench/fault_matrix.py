"""The fault matrix as a report: every scenario of tests/faultlab.py, for both group kinds.

    sudo python bench/fault_matrix.py [--group vip|script|both] [--soak 120]
                                      [--only sigkill_active,peer_returns]

Each scenario builds a fresh lab (tests/faultlab.py): alpha and beta in network namespaces
joined by bcast (eth0), ucast (eth1) and a socat serial line, both on a service LAN with a
ping node, a FUSE watchdog per node (2 s, so a 3.45 s takeover budget), keepalive 200 ms,
deadtime 1 s, native frames, and one group preferring alpha, of either kind (`--group`,
default both):

- vip: `alpha IPaddr::10.91.0.100/24`; tests/sampler.py reads both namespaces' addresses
  every 10 ms;
- script: `alpha fmsvc`, an address-less resource.d service (a process whose pid file is
  its state, like Heartbeat's tutorial `test1`); the sampler reads both pid files every
  10 ms and counts a node as running it while its pid file names a live process.

Once alpha runs the group, the scenario breaks something: a path, all of them, the uplink,
the daemon (SIGKILL, SIGSTOP), a node's power (every process killed, addresses gone, links
silent; back on with the same state directory), ICMP to every address, or reloads a
changed ha.cf (SIGHUP) while degraded. The table shows, per scenario and group kind:

- dual-active: milliseconds the group was seen on both nodes (must be 0, except in the
  residual case of docs/policy.md, which the address-less group meets when every wire is
  cut and nothing of the peer can be probed: shown as "residual", not counted as failed);
- stable after: seconds from the first fault until the single holder the scenario ended
  with (0: the group never left alpha, not for one sample);
- on beta after: seconds from the fault until the group first ran on beta ("-": never);
- holder at the end, and the watchdog resets that fired on each node;
- samples taken and the largest gap between two (how honest the 10 ms cadence was).

`--wire heartbeat` runs the same scenarios with Heartbeat's wire format, which carries no
watchdog timeout: the peer then takes over after deadtime instead of the budget.

The loss-and-jitter soak lasts `--soak` seconds (default 120, as issue 6 asks; the test
suite uses 20): 30 % loss by an nft `numgen random` rule and 50 ms +- 50 ms jitter by a
userspace UDP relay on the ucast path, because this kernel has no sch_netem. Needs root,
/dev/fuse, socat, nft. Exits 1 if any scenario failed or saw a dual-active instant outside
the residual case.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import common

sys.path.append(str(common.REPO / "tests"))

HEADERS = [
    "scenario",
    "group",
    "dual-active ms",
    "stable after s",
    "on beta after s",
    "holder",
    "resets alpha",
    "resets beta",
    "samples",
    "max gap ms",
    "result",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak", type=float, default=120.0, help="loss+jitter seconds")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument(
        "--wire",
        choices=("hbd", "heartbeat"),
        default="hbd",
        help="frames the daemons speak (heartbeat: no watchdog advert, so no budget)",
    )
    parser.add_argument(
        "--group",
        choices=("vip", "script", "both"),
        default="both",
        help="the group kind: a VIP, an address-less resource.d service, or each in turn",
    )
    parser.add_argument("--timelines", action="store_true", help="print each timeline")
    args = parser.parse_args(argv)
    missing = common.missing_for_cluster()
    if missing is None and shutil.which("nft") is None:
        missing = "needs nft (loss and the jitter relay's DNAT)"
    if missing:
        print(f"fault_matrix: {missing}", file=sys.stderr)
        return 2
    os.environ["HBD_SOAK_SECONDS"] = f"{args.soak:g}"

    import faultlab  # needs tests/ on sys.path, and root to be useful

    names = [n for n in args.only.split(",") if n] or list(faultlab.SCENARIOS)
    unknown = [n for n in names if n not in faultlab.SCENARIOS]
    if unknown:
        known = ", ".join(faultlab.SCENARIOS)
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {known}")
    kinds = list(faultlab.GROUP_KINDS) if args.group == "both" else [args.group]
    rows: list[list[object]] = []
    bad = 0
    started = time.monotonic()
    for name in names:
        for kind in kinds:
            t0 = time.monotonic()
            try:
                if args.wire == "hbd":
                    o = faultlab.run_scenario(name, group=kind)
                else:
                    o = faultlab.run_scenario(name, wire=None, auth="sha1", group=kind)
            except (AssertionError, TimeoutError, RuntimeError) as e:
                bad += 1
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                print(f"{name} ({kind}): FAILED: {first}", file=sys.stderr)
                rows.append([name, kind, "-", "-", "-", "-", "-", "-", "-", "-", "FAILED"])
                continue
            if o.dual_active_ms and not o.residual:
                bad += 1
            common.note(f"{name} ({kind}): {time.monotonic() - t0:.0f} s")
            if args.timelines:
                print(o.timeline, *(f"note: {n}" for n in o.notes), sep="\n", file=sys.stderr)
            dual = "residual" if o.residual else "DUAL-ACTIVE"
            result = dual if o.dual_active_ms else "ok"
            rows.append(
                [
                    name,
                    kind,
                    f"{o.dual_active_ms:.0f}",
                    "never" if o.stable_after is None else f"{o.stable_after:.2f}",
                    "-" if o.moved_after is None else f"{o.moved_after:.2f}",
                    "+".join(o.holder) or "none",
                    o.resets["alpha"],
                    o.resets["beta"],
                    o.samples,
                    f"{o.max_gap_ms:.0f}",
                    result,
                ]
            )
    print(common.table(HEADERS, rows))
    print(
        f"\n{len(names)} scenario(s) x {'+'.join(kinds)} in {time.monotonic() - started:.0f} s; "
        f"{args.wire} wire; takeover budget {faultlab.BUDGET:g} s; soak {args.soak:g} s"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
