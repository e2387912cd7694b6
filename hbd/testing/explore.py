"""The explorer: random fault schedules against whole simulated nodes, invariants checked.

In the spirit of FoundationDB's simulation testing and TigerBeetle's VOPR: one seed is one
replayable run. Each schedule draws a cluster (paths, groups with and without service
addresses, failback, watchdog, ping node, probing, timings, agent durations) and a list of
faults (power loss, resets, killed, stalled, stopped and reloaded daemons, cuts of one
path or all, one way or both, devices unplugged and replugged, LAN cables and switch
splits, ping node deaths, ICMP filters, loss, operator standby, takeover and release,
failing and hanging agents), runs them on
`hbd.testing.sim.SimCluster` and checks, at every simulated instant (docs/policy.md has
the table these come from):

- S (safety): no two nodes hold a group at once (a start issued, its stops not all done).
- A (availability): the death of a node that runs nothing never interrupts a node that
  runs a group, unless that node is itself isolated.
- L (liveness): when the holder dies and the survivor is not isolated, the group runs
  again within the takeover budget plus the start time.
- F (no needless fencing): a fault that leaves at least one working path never fences
  and never moves a group; nor does unplugging a path's device (serial adapter, NIC) for
  less than the takeover budget minus the reopen interval and two keepalives, even the
  last path. An unplugged device is back only at the driver's next reopen attempt
  (`hbd.links.base.reopen_backoff`), so the explorer sees the shell's reopen delay too.
- O (operator actions end): once every fault is healed and every node is up, the groups
  settle where the configuration (auto_failback) and the standbys in force put them.

Two outcomes are counted apart, never inside S: `residual` -- every path cut, each node
reaches a ping node or has no working one (none is configured, or none answered it or a
peer it heard since its daemon started), nothing of the peer answers: what two nodes
without an arbiter cannot tell from a death (docs/policy.md) -- and `unfenced`:
with no watchdog configured, a node that had to go could not be reset in time. A stalled
daemon is no excuse while its address answers the taker's probes (those must hold the
takeover back): two holders then are an S violation.

A cluster with `arbiter` runs a simulated corosync-qnetd (ffsplit) beside the nodes, with
its own faults: the process crashes, its machine loses power, it starts again, a node's
direction to or from it is cut. There the residual case is no excuse -- two holders are an
S violation, whatever the paths -- unless the partition began with qnetd out of reach of
both nodes: policy rule 8 then handles it as without an arbiter (the taker's own record of
the rules it followed says so). A is not asked of a holder that lost qnetd while its peer
kept it (it cannot tell a dead standby from a partition the peer won), but is when both
lost it; L waits the decision time and the vote's hold time too (with qnetd gone for
both, the decision time), and qnetd's faults are network faults for F: while the nodes
hear each other nothing moves.

    python -m hbd.testing.explore --seconds 60 --seed 7
    python -m hbd.testing.explore --schedules 1000 --seed 7
    python -m hbd.testing.explore --replay schedule.json

A violation prints the seed and a shrunk, replayable schedule (JSON). Exit status 1 on
any violation of S, A, L, F or O.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hbd.core.engine import PathKind
from hbd.core.model import AutoFailback, WireFormat
from hbd.core.node import probe_window
from hbd.core.policy import TAKEOVER_MARGIN, Rules
from hbd.core.qnetd.client import decision_time, heartbeat_interval, loss_detection
from hbd.core.resources import Timeouts
from hbd.links.base import reopen_backoff
from hbd.testing.sim import AgentTimes, SimCluster

NODES = ("alpha", "beta")
PATH_SETS: dict[str, tuple[tuple[str, PathKind], ...]] = {
    "serial+eth0": (("serial:/dev/ttyS0", PathKind.SERIAL), ("bcast:eth0", PathKind.DATAGRAM)),
    "eth0+eth1": (("bcast:eth0", PathKind.DATAGRAM), ("bcast:eth1", PathKind.DATAGRAM)),
    "serial+eth0+eth1": (
        ("serial:/dev/ttyS0", PathKind.SERIAL),
        ("bcast:eth0", PathKind.DATAGRAM),
        ("bcast:eth1", PathKind.DATAGRAM),
    ),
    "eth0": (("bcast:eth0", PathKind.DATAGRAM),),
    "serial": (("serial:/dev/ttyS0", PathKind.SERIAL),),
    # heartbeats over a crossover (eth1) and the cable, the service LAN (eth0) apart
    "serial+eth1": (("serial:/dev/ttyS0", PathKind.SERIAL), ("bcast:eth1", PathKind.DATAGRAM)),
}
WARMUP = 5.0  # the cluster forms and the groups start
FAULT_WINDOW = 15.0
TAIL = 6.0  # after the last fault, before everything is healed
SETTLE = 12.0  # after healing, before the final placement is checked
INVARIANTS = ("S", "A", "L", "F", "O")
NETWORK_FAULTS = frozenset(
    (
        "cut",
        "heal",
        "unplug",
        "replug",
        "loss",
        "lan_down",
        "lan_up",
        "lan_split",
        "lan_join",
        "isolate",
        "heal_paths",
        "ping_down",
        "ping_up",
        "filter_icmp",
        "qnetd_crash",
        "qnetd_power_off",
        "qnetd_start",
        "qnetd_cut",
        "qnetd_heal",
    )
)
QNETD_FAULTS = ("qnetd_crash", "qnetd_power_off", "qnetd_start", "qnetd_cut", "qnetd_heal")


@dataclass(frozen=True)
class ClusterSpec:
    """The cluster of one schedule, as plain values (JSON round-trips it)."""

    paths: str = "serial+eth0"
    groups: tuple[tuple[str, tuple[str, ...]], ...] = (("alpha", ("IPaddr::10.1.0.100/24",)),)
    auto_failback: str = "on"
    watchdog: float | None = 1.0
    ping: bool = True
    arp: bool = True
    keepalive: float = 0.2
    deadtime: float = 1.0
    wire: str = "hbd"
    start_time: float = 0.1
    stop_time: float = 0.1
    boot_delay: float = 5.0
    arbiter: bool = False


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the warm-up
    op: str
    args: tuple[Any, ...] = ()


@dataclass
class Schedule:
    seed: int
    cluster: ClusterSpec
    faults: list[Fault]

    def to_json(self) -> str:
        return json.dumps(
            {
                "seed": self.seed,
                "cluster": asdict(self.cluster),
                "faults": [[f.at, f.op, list(f.args)] for f in self.faults],
            }
        )

    @staticmethod
    def from_json(text: str) -> Schedule:
        data = json.loads(text)
        c = data["cluster"]
        c["groups"] = tuple((p, tuple(rs)) for p, rs in c["groups"])
        return Schedule(
            data["seed"],
            ClusterSpec(**c),
            [Fault(at, op, tuple(args)) for at, op, args in data["faults"]],
        )


@dataclass
class Violation:
    invariant: str
    at: float
    detail: str


@dataclass
class Result:
    violations: list[Violation] = field(default_factory=list)
    residual: int = 0
    unfenced: int = 0
    simulated: float = 0.0
    checks: Counter[str] = field(default_factory=Counter)  # how often each was checked

    def failed(self) -> bool:
        return bool(self.violations)


# -- drawing schedules ---------------------------------------------------------------------


def draw(seed: int, arbiter: bool | None = None) -> Schedule:
    """The schedule of `seed`; `arbiter` True or False forces the cluster's arbiter."""
    rng = random.Random(seed)
    paths = rng.choices(list(PATH_SETS), weights=(5, 3, 3, 1, 1, 3))[0]
    groups: list[tuple[str, tuple[str, ...]]] = []
    for i in range(rng.choice((1, 1, 2))):
        resources: list[str] = []
        if rng.random() < 0.6:
            resources.append(f"IPaddr::10.1.0.{100 + i}/24")
        resources.append(f"svc{i}")
        groups.append((rng.choice(NODES), tuple(resources)))
    # timings: the fast default, a slower one, and deadtime only 3 keepalives (where a
    # silence has to be noticed on a deadline of its own to be probed in time)
    timing = rng.random()
    slow, tight = timing < 0.2, 0.2 <= timing < 0.35
    keepalive, deadtime = (0.5, 2.0) if slow else (0.5, 1.5) if tight else (0.2, 1.0)
    slow = slow or tight
    cluster = ClusterSpec(
        paths=paths,
        groups=tuple(groups),
        auto_failback=rng.choice(("on", "on", "off")),
        watchdog=None if rng.random() < 0.15 else float(rng.choice((1, 1, 2))) + (slow and 1),
        ping=rng.random() < 0.85,
        arp=rng.random() < 0.8,
        keepalive=keepalive,
        deadtime=deadtime,
        wire="heartbeat" if rng.random() < 0.1 else "hbd",
        start_time=round(rng.uniform(0.02, 0.6), 3),
        stop_time=round(rng.uniform(0.02, 0.6), 3),
        boot_delay=round(rng.uniform(4.0, 10.0), 2),
        arbiter=(rng.random() < 0.35) if arbiter is None else arbiter,
    )
    faults = [_draw_fault(rng, cluster) for _ in range(rng.randint(1, 6))]
    faults.sort(key=lambda f: f.at)
    return Schedule(seed, cluster, faults)


def _draw_fault(rng: random.Random, c: ClusterSpec) -> Fault:
    at = round(rng.uniform(0.0, FAULT_WINDOW), 3)
    node = rng.choice(NODES)
    if c.arbiter and rng.random() < 0.25:
        kind = rng.choices(QNETD_FAULTS, weights=(3, 2, 3, 4, 2))[0]
        if kind == "qnetd_cut":
            way = rng.choice(("both", "both", "up", "down"))
            return Fault(at, kind, (node, way))
        if kind == "qnetd_heal":
            return Fault(at, kind, (node,))
        return Fault(at, kind)
    paths = [p for p, _ in PATH_SETS[c.paths]]
    lans = ["eth0"] + (["eth1"] if "eth1" in c.paths else [])
    kind = rng.choices(
        (
            "power_off",
            "power_on",
            "kill_daemon",
            "start_daemon",
            "stop_daemon",
            "stall",
            "cut",
            "heal",
            "isolate",
            "heal_paths",
            "lan_down",
            "lan_up",
            "lan_split",
            "lan_join",
            "ping_down",
            "ping_up",
            "filter_icmp",
            "loss",
            "reload",
            "standby",
            "takeover",
            "fail_next",
        ),
        weights=(6, 4, 3, 2, 2, 3, 5, 3, 5, 3, 3, 2, 2, 1, 2, 1, 2, 2, 2, 3, 3, 3),
    )[0]
    if kind in ("power_off", "power_on", "kill_daemon", "start_daemon", "stop_daemon", "reload"):
        return Fault(at, kind, (node,))
    if kind == "stall":
        return Fault(at, kind, (node, round(rng.choice((0.3, 0.7, 1.5, 3.0, 6.0)), 2)))
    if kind == "cut" and rng.random() < 0.3:
        seconds = rng.choice((0.3, 0.8, 1.5, 2.0, 4.0, 9.0))
        return Fault(at, "unplug", (rng.choice(paths), node, seconds))
    if kind in ("cut", "heal"):
        return Fault(at, kind, (rng.choice(paths), node, rng.random() < 0.6))
    if kind == "isolate":
        return Fault(at, kind, (node, rng.random() < 0.7))
    if kind == "heal_paths":
        return Fault(at, kind)
    if kind in ("lan_down", "lan_up"):
        return Fault(at, kind, (node, rng.choice(lans)))
    if kind in ("lan_split", "lan_join"):
        return Fault(at, kind, (rng.choice(lans),))
    if kind in ("ping_down", "ping_up"):
        return Fault(at, kind)
    if kind == "filter_icmp":
        return Fault(at, kind, (node, rng.random() < 0.7))
    if kind == "loss":
        return Fault(at, kind, (rng.choice(paths), round(rng.uniform(0.05, 0.3), 2)))
    if kind == "standby":
        return Fault(at, kind, (node, rng.choice(("all", "all", "local", "foreign", "off"))))
    if kind == "takeover":
        # a third of them the other way: `hbctl release` (hb_standby), the peer takes once
        kind = "release" if rng.random() < 0.35 else kind
        return Fault(at, kind, (node, rng.choice(("all", "local", "foreign", "failback"))))
    group = rng.randrange(len(c.groups))
    index = rng.randrange(len(c.groups[group][1]))
    return Fault(
        at,
        "fail_next",
        (node, group, index, rng.choice(("start", "stop")), rng.choice(("fail", "hang"))),
    )


def replug_delay(deadtime: float, seconds: float) -> float:
    """When a path whose device is unplugged for `seconds` carries frames again: at the
    driver's first reopen attempt after the device is back (the loss is noticed at once)."""
    backoff = reopen_backoff(deadtime)
    after = 0.0
    while after < seconds:
        after += backoff.next_delay()
    return round(after, 3)


def with_replugs(faults: Sequence[Fault], deadtime: float) -> list[Fault]:
    """`faults` and, for each unplug, the replug its driver's reopen makes (derived, so a
    shrunk schedule never holds an unplug without its replug)."""
    out = list(faults)
    for f in faults:
        if f.op == "unplug":
            path, node, seconds = f.args
            out.append(
                Fault(round(f.at + replug_delay(deadtime, seconds), 3), "replug", (path, node))
            )
    return sorted(out, key=lambda f: f.at)


# -- running one schedule ------------------------------------------------------------------


class Run:
    """One schedule on a simulator, with the invariants' bookkeeping."""

    def __init__(self, schedule: Schedule) -> None:
        c = schedule.cluster
        self.schedule = schedule
        self.spec = c
        self.sim = SimCluster(
            NODES,
            PATH_SETS[c.paths],
            keepalive=c.keepalive,
            deadtime=c.deadtime,
            initdead=2 * c.deadtime,
            wire=WireFormat(c.wire),
            watchdog_timeout=c.watchdog,
            seed=schedule.seed,
            groups=c.groups,
            auto_failback=AutoFailback(c.auto_failback),
            ping_lans=("eth0",) if c.ping else (),
            agent_times=AgentTimes(start=c.start_time, stop=c.stop_time, status=0.02),
            boot_delay=c.boot_delay,
            arp_probes=c.arp,
            record_events=False,
            resource_timeouts=Timeouts(start=3.0, stop=3.0, status=2.0),
            arbiter=c.arbiter,
        )
        self.result = Result()
        self.groups = self.sim.groups
        self.budget = (
            c.deadtime + c.keepalive + c.watchdog + TAKEOVER_MARGIN if c.watchdog else c.deadtime
        )
        self.window = probe_window(c.keepalive, c.deadtime)
        hb = heartbeat_interval(c.keepalive, c.deadtime)
        self.heartbeat = hb
        self.decision = decision_time(hb) if c.arbiter else 0.0
        self.vote_hold = loss_detection(hb) + (c.watchdog or 0.0) + TAKEOVER_MARGIN
        self._q_ok_since: float | None = self.sim.clock.now if c.arbiter else None
        self._q_none_since: float | None = None  # since when no node reaches qnetd
        self._residual_at: dict[str, float] = {}  # taker -> latest instant of the residual
        self._was_residual: dict[str, bool] = {}
        # per node, since its daemon started: did a ping node answer it, or a peer it heard
        # (without either, it has no working witness: as if none were configured)
        self._witness_proven: dict[str, tuple[int, bool]] = {}  # node -> (generation, proven)
        self._dual: dict[str, float] = {}  # group -> start of the current dual episode
        self._no_path_at = -1e9  # the latest instant no path worked both ways
        self._watches_l: list[tuple[str, str, str, float]] = []
        self._watch_a: list[tuple[str, str, str, float, float]] = []
        self._watch_f: tuple[float, float, str] | None = None  # begin, end, what
        self.settled_before = False
        self.sim.on_hold = self._on_hold
        self.sim.on_net = self._note_cut

    # the main loop

    def run(self) -> Result:
        sim = self.sim
        t0 = sim.clock.now + WARMUP
        self._advance(t0)
        faults = with_replugs(self.schedule.faults, self.spec.deadtime)
        for i, fault in enumerate(faults):
            at = t0 + fault.at
            self._advance(at)
            self._end_windows(at)
            self._apply(fault)
            following = faults[i + 1] if i + 1 < len(faults) else None
            self._open_windows(fault, following.at + t0 if following else None)
            if fault.op == "unplug" and following is not None:
                self._watch_brief_unplug(fault, following)
        end = t0 + (faults[-1].at if faults else 0.0) + TAIL
        self._advance(end)
        self._end_windows(end)
        self._heal_everything()
        booted = max((m.boot_at or 0.0) for m in sim.machines.values())
        self._advance(max(booted, sim.clock.now) + SETTLE)
        for _ in range(3):  # a node reset just after the healing boots later: wait for it
            for m in sim.machines.values():
                if m.powered and m.node is None and m.boot_at is None:
                    sim.start_daemon(m.name)  # its clean stop was still under way at the heal
            started = max((e[1] for e in sim.log if e[0] == "daemon"), default=0.0)
            booting = [m.boot_at for m in sim.machines.values() if m.boot_at is not None]
            until = max([started + SETTLE, *(b + SETTLE for b in booting)])
            if until <= sim.clock.now:
                break
            self._advance(until)
        self._check_placement()
        self.result.simulated = sim.clock.now - 100.0
        return self.result

    def _advance(self, until: float) -> None:
        """Run to `until`, stopping at each L deadline on the way."""
        sim = self.sim
        while True:
            due = [w for w in self._watches_l if w[3] <= until]
            stop = min((w[3] for w in due), default=until)
            sim.run_until(max(stop, sim.clock.now))
            for w in [w for w in self._watches_l if w[3] <= sim.clock.now]:
                self._watches_l.remove(w)
                self._check_liveness(w)
            if stop >= until:
                return

    # S, and the residual and unfenced counts, at every change of holders

    def _on_hold(self, node: str, group: str, holding: bool) -> None:
        # the holders only change here, so checking here is checking every instant
        self.result.checks["S"] += 1
        holders = self.sim.holders(group)
        if len(holders) >= 2 and group not in self._dual:
            self._dual[group] = self.sim.clock.now
            self._classify(group, node, self.sim.clock.now)
        elif len(holders) < 2:
            self._dual.pop(group, None)

    def _all_cut(self) -> bool:
        sim = self.sim
        paths = [p for p, _ in PATH_SETS[self.spec.paths]]
        a, b = NODES
        return not any(sim.delivers(p, a, b) or sim.delivers(p, b, a) for p in paths)

    def _knowable(self, node: str) -> set[str]:
        """What a peer can know of `node`: its addresses on the LANs heartbeats run over
        (learned, and remembered across restarts), and the groups' service addresses."""
        sim = self.sim
        paths = [p for p, _ in PATH_SETS[self.spec.paths]]
        out = {
            sim.node_address(node, lan)
            for lan in sim.lans
            if any(sim._lan_of.get(p) == lan for p in paths)
        }
        return out | {a for g in self.groups for a in sim.service_addresses(g)}

    def _residual_state(self, taker: str, holder: str) -> bool:
        """The case two nodes cannot tell from a death, seen from `taker`: both up, every
        path cut both ways, each reaches a ping node or has no working one (none configured,
        or none answered it or a peer it heard since its daemon started), nothing of
        `holder` answers `taker`'s probes."""
        sim = self.sim
        if not (sim.machines[taker].booted and sim.machines[holder].booted):
            return False
        if not self._all_cut() or not (
            self._blind_or_reaches(taker) and self._blind_or_reaches(holder)
        ):
            return False
        return not any(sim.probe_answers(taker, x) for x in self._knowable(holder))

    def _blind_or_reaches(self, node: str) -> bool:
        return self.sim.reaches_ping(node) or not self._witness_proven.get(node, (0, False))[1]

    def _note_witnesses(self) -> None:
        """Ground truth of what each daemon can know of the ping nodes: one answered it, or
        one answered a peer whose frames reached it."""
        sim = self.sim
        for n in NODES:
            m = sim.machines[n]
            if m.node is None:
                continue
            gen, proven = self._witness_proven.get(n, (-1, False))
            if gen != m.generation:
                proven = False
            other = next(x for x in NODES if x != n)
            told = (
                sim.machines[other].node is not None
                and sim.reaches_ping(other)
                and any(sim.delivers(p, other, n) for p, _ in PATH_SETS[self.spec.paths])
            )
            self._witness_proven[n] = (m.generation, proven or sim.reaches_ping(n) or told)

    def _note_cut(self) -> None:
        """The network changed: remember the last instant the residual case held, each way."""
        now = self.sim.clock.now
        self._note_witnesses()
        if not self._one_path_works():
            self._no_path_at = now
        if self.spec.arbiter:
            ok = all(self.sim.qnetd_reaches(n) for n in NODES)
            if not ok:
                self._q_ok_since = None
            elif self._q_ok_since is None:
                self._q_ok_since = now
            if any(self.sim.qnetd_reaches(n) for n in NODES):
                self._q_none_since = None
            elif self._q_none_since is None:
                self._q_none_since = now
        for taker in NODES:
            holder = next(n for n in NODES if n != taker)
            if self._was_residual.get(taker):
                self._residual_at[taker] = now  # it held until this change
            self._was_residual[taker] = self._residual_state(taker, holder)
            if self._was_residual[taker]:
                self._residual_at[taker] = now

    def _classify(self, group: str, taker: str, t: float) -> None:
        sim = self.sim
        holder = next(n for n in NODES if n != taker)
        paths = [p for p, _ in PATH_SETS[self.spec.paths]]
        self._note_cut()
        heard = any(sim.delivers(p, holder, taker) for p in paths)
        knowable = self._knowable(holder)
        node = sim.machines[taker].node
        known = set(node.probe_targets()) if node is not None else set()
        running_here = [g for g in self.groups if node is not None and node.rm.may_be_running(g)]
        held = {a for g in running_here for a in sim.service_addresses(g)}
        if knowable - known - held:
            self._violate(
                "S",
                t,
                f"{group} held by {holder} and {taker}, who forgot to probe "
                f"{sorted(knowable - known)}",
            )
            return
        since = self._residual_at.get(taker)
        residual = since is not None and t - since <= self.budget
        # the taker decided on what it knew: a path healed after the residual case but before
        # the holder's next heartbeat or probe answer reached the taker leaves it in that case
        last = node.engine.membership.last_heard(holder) if node is not None else None
        heard_after = since is not None and last is not None and last > since
        answer = node.last_answer() if node is not None else None
        answered_after = since is not None and answer is not None and answer > since
        # with an arbiter, a partition that began with qnetd out of reach of both nodes
        # is handled as without one (policy rule 8): the residual case is back
        rules = node.policy.partition_rules(holder) if node is not None else None
        without = not self.spec.arbiter or (rules is not None and rules is not Rules.VOTE)
        if not heard_after and not answered_after and residual and without:
            self.result.residual += 1
            return
        m = sim.machines[holder]
        # a stalled daemon's kernel still answers the taker's probes, which hold the
        # takeover back (policy rule 5): a stall excuses nothing while one is answered
        answered = any(sim.probe_answers(taker, a) for a in known)
        if self.spec.watchdog is None and (
            m.node is None
            or (m.stalled_until is not None and not answered)
            or not sim.reaches_ping(holder)
            or not heard  # the taker cannot hear it: only a reset would stop it in time
        ):
            self.result.unfenced += 1
            return
        self._violate("S", t, f"{group} held by {holder} and {taker}")

    # A, F and L windows

    def _open_windows(self, fault: Fault, next_at: float | None) -> None:
        sim = self.sim
        now = sim.clock.now
        end = next_at if next_at is not None else now + TAIL
        if fault.op in ("power_off", "kill_daemon"):
            (dead,) = fault.args
            if fault.op == "kill_daemon" and self.spec.watchdog is None:
                return  # its resources run on unmanaged: not a death
            if not self.settled_before:
                return
            if not any(sim.machines[dead].resources):
                for other in NODES:
                    if other == dead:
                        continue
                    for g in sim.started_groups(other):
                        self._watch_a.append((other, g, dead, now, end))
                        self.result.checks["A"] += 1
            for g in self.groups:
                if sim.started_on(g) == [dead]:
                    self._maybe_watch_liveness(dead, g, end)
        if fault.op in NETWORK_FAULTS and self._one_path_works() and self.settled_before:
            self._watch_f = (now, end, "with a path working")
            self.result.checks["F"] += 1

    def _watch_brief_unplug(self, fault: Fault, following: Fault) -> None:
        """F for an unplug too brief to move anything, even of the last path: its replug is
        the next fault, and the device was out for less than the budget minus the reopen
        interval and two keepalives (the holder's last frame before, its first after),
        while both nodes ran and reached the ping node, and no arbiter was asked."""
        sim, c = self.sim, self.spec
        path, node, seconds = fault.args
        # the promise (links/base.py): a path is retried at least every deadtime / 2
        brief = seconds + c.deadtime / 2 + 2 * c.keepalive + 0.05
        if not (
            self.settled_before
            and following.op == "replug"
            and following.args == (path, node)
            and brief < self.budget
            and all(sim.running(n) and sim.reaches_ping(n) for n in NODES)
            and all(sim.machines[n].stalled_until is None for n in NODES)
            and not c.arbiter  # with one, a total cut beyond deadtime is the vote's to settle
        ):
            return
        now = sim.clock.now
        self._watch_f = (now, now + (following.at - fault.at), f"after a {seconds} s unplug")
        self.result.checks["F"] += 1

    def _end_windows(self, at: float) -> None:
        sim = self.sim
        for node, group, dead, begin, end in self._watch_a:
            back = [
                e[1] for e in self._log_between(begin, end) if e[0] == "daemon" and e[2] == dead
            ]
            if back:
                end = back[0]  # the dead node came back: failback is no interruption
            hurt = [
                e
                for e in self._log_between(begin, end)
                if (e[0] == "op" and e[2] == node and e[3] == group and e[5] == "stop")
                or (e[0] == "go" and e[2] == node)
            ]
            if hurt and sim.reaches_ping(node) and self._qnetd_fine(node, begin):
                self._violate("A", at, f"{node} interrupted {group} when its peer died: {hurt[0]}")
        self._watch_a = []
        if self._watch_f is not None:
            begin, end, what = self._watch_f
            moved = [
                e
                for e in self._log_between(begin, end)
                if e[0] == "go" or (e[0] == "op" and e[5] in ("start", "stop"))
            ]
            if moved:
                self._violate("F", at, f"a group moved or a node went {what}: {moved[0]}")
            self._watch_f = None

    def _qnetd_fine(self, node: str, since: float) -> bool:
        """No arbiter; or `node` has reached a running qnetd since well before `since`; or
        no node has, and both know it (a partition is then handled as without one). A node
        that lost qnetd while its peer kept it cannot tell a dead peer from a partition
        the peer won, so it goes (or never takes)."""
        if not self.spec.arbiter:
            return True
        settle = 3 * self.heartbeat + 1.0  # reconnected and voted again, or told the peer
        none = self._q_none_since
        if none is not None and none <= since - settle:
            return True
        ok = self._q_ok_since
        return ok is not None and ok <= since - settle and self.sim.qnetd_reaches(node)

    def _qnetd_gone(self, since: float) -> bool:
        """No node has reached qnetd since well before `since` (rule 8: as without one)."""
        none = self._q_none_since
        return none is not None and none <= since - (3 * self.heartbeat + 1.0)

    def _log_between(self, begin: float, end: float) -> list[tuple[Any, ...]]:
        return [e for e in self.sim.log if begin < e[1] <= end]

    def _maybe_watch_liveness(self, dead: str, group: str, next_at: float) -> None:
        sim = self.sim
        survivor = next(n for n in NODES if n != dead)
        m = sim.machines[survivor]
        if m.node is None or m.stalled_until is not None or not sim.reaches_ping(survivor):
            return
        if not self._qnetd_fine(survivor, sim.clock.now):
            return
        node = m.node
        g = sim.group_def(group)
        refusal = node.policy._state.standby.covers(g.preferred == survivor)
        if (
            refusal
            or node.policy._local[group].failed
            or any(how for (grp, _, _), how in m.faults.items() if grp == group and how)
        ):
            return  # the operator or a failing agent keeps it away
        status = node.engine.membership.node_status(dead, sim.clock.now)
        if status.last_heard is None:
            return
        base = status.last_heard
        dead_m = sim.machines[dead]
        if dead_m.powered and dead_m.armed and self.spec.watchdog is not None:
            # its daemon is gone but its machine answers probes until the watchdog resets it
            base = max(base, dead_m.last_pet + self.spec.watchdog)
        start = len(g.resources) * (self.spec.start_time + 0.02)
        ready = base + self.budget
        if self.spec.arbiter and self._qnetd_gone(sim.clock.now):
            ready += self.decision  # as without one, D more
        elif self.spec.arbiter:
            # the vote comes once qnetd dropped the dead node (1.5 heartbeats after its last
            # message) or the survivor declared it dead, and is held before it is used
            vote = base + max(self.spec.deadtime, 1.5 * self.heartbeat) + 0.1
            ready = max(ready + self.decision, vote + self.vote_hold)
        deadline = ready + start + 2 * self.spec.keepalive + 0.3
        boot = self.spec.boot_delay + sim.clock.now
        if deadline >= next_at or deadline >= boot:
            return
        self._watches_l.append((dead, survivor, group, deadline))
        self.result.checks["L"] += 1

    def _check_liveness(self, w: tuple[str, str, str, float]) -> None:
        dead, survivor, group, deadline = w
        if self.sim.started_on(group) != [survivor]:
            self._violate("L", deadline, f"{group} not running on {survivor} after {dead} died")

    def _settled_node(self, node: str) -> bool:
        m = self.sim.machines[node]
        return m.node is not None and m.stalled_until is None

    def _settled(self) -> bool:
        """The steady state in which A, L and F apply: both daemons up well past their
        start, hearing each other, every group running on exactly one node, nothing in
        flight for a while (no resource operation, no operator command), and a path
        working both ways for at least a deadtime (what each node knows of the other is
        then the present, not a total cut a moment ago), and every group where it belongs
        (a hand-off may outlast the quiet second: a failed stop is retried later)."""
        sim = self.sim
        now = sim.clock.now
        if now - self._no_path_at < self.spec.deadtime:
            return False
        for n in NODES:
            m = sim.machines[n]
            if m.node is None or m.stalled_until is not None or m.node.fenced is not None:
                return False
            if now - m.node.started < 3 * self.spec.deadtime + 2.0:
                return False
            peer = next(x for x in NODES if x != n)
            if peer not in m.node.engine.membership.live_nodes():
                return False
        for g in self.groups:
            if len(sim.started_on(g)) != 1 or len(sim.holders(g)) != 1:
                return False
            expected = self._expected(g)
            if expected is not None and sim.started_on(g) != expected:
                return False  # a move is due (a hand-off whose failed stop is retried)
        quiet = now - 1.0
        if any(t > quiet for t, *_ in sim.commands):
            return False  # an operator's standby or takeover may still move groups
        return not any(
            e[0] in ("op", "go", "stall", "reset") for e in self._log_between(quiet, now)
        )

    def _one_path_works(self) -> bool:
        sim = self.sim
        a, b = NODES
        return any(
            sim.delivers(p, a, b)
            and sim.delivers(p, b, a)
            and sim._links[(p, a, b)].loss == 0
            and sim._links[(p, b, a)].loss == 0
            for p, _ in PATH_SETS[self.spec.paths]
        )

    # faults

    def _apply(self, fault: Fault) -> None:
        sim, op, args = self.sim, fault.op, fault.args
        paths = [p for p, _ in PATH_SETS[self.spec.paths]]
        self.settled_before = self._settled()
        if op == "power_off":
            sim.power_off(args[0])
        elif op == "power_on":
            sim.power_on(args[0])
        elif op == "kill_daemon":
            sim.kill_daemon(args[0])
        elif op == "start_daemon":
            sim.start_daemon(args[0])
        elif op == "stop_daemon":
            sim.stop_daemon(args[0])
        elif op == "stall":
            sim.stall(args[0], args[1])
        elif op == "reload":
            sim.reload(args[0])
        elif op == "cut":
            path, node, both = args
            other = next(n for n in NODES if n != node)
            sim.cut(path, node, other, both=both)
        elif op == "heal":
            path, node, both = args
            other = next(n for n in NODES if n != node)
            sim.heal(path, node, other, both=both)
        elif op == "unplug":
            path, node, _seconds = args
            other = next(n for n in NODES if n != node)
            sim.cut(path, node, other, both=True)
        elif op == "replug":
            path, node = args
            other = next(n for n in NODES if n != node)
            sim.heal(path, node, other, both=True)
        elif op == "isolate":
            node, both = args
            other = next(n for n in NODES if n != node)
            for p in paths:
                sim.cut(p, node, other, both=both)
        elif op == "heal_paths":
            for p in paths:
                sim.heal(p, *NODES)
        elif op == "lan_down":
            sim.lan_down(args[0], args[1])
        elif op == "lan_up":
            sim.lan_down(args[0], args[1], down=False)
        elif op == "lan_split":
            sim.lan_split(args[0], *NODES)
        elif op == "lan_join":
            sim.lan_split(args[0], *NODES, split=False)
        elif op == "ping_down":
            if sim.pings:
                sim.ping_node("eth0", False)
        elif op == "ping_up":
            if sim.pings:
                sim.ping_node("eth0", True)
        elif op == "filter_icmp":
            sim.filter_icmp(args[0], args[1])
        elif op == "loss":
            path, loss = args
            sim.link(path, *NODES, loss=loss)
        elif op == "standby":
            sim.standby(args[0], args[1])
        elif op == "takeover":
            sim.takeover(args[0], args[1])
        elif op == "release":
            sim.release(args[0], args[1])
        elif op == "fail_next":
            node, group, index, what, how = args
            sim.fail_next(node, self.groups[group], index, what, how)
        elif op == "qnetd_crash":
            sim.qnetd_crash()
        elif op == "qnetd_power_off":
            sim.qnetd_power_off()
        elif op == "qnetd_start":
            sim.qnetd_start()
        elif op == "qnetd_cut":
            node, way = args
            sim.qnetd_cut(node, up=way in ("both", "up"), down=way in ("both", "down"))
        elif op == "qnetd_heal":
            sim.qnetd_cut(args[0], cut=False)
        else:
            raise ValueError(f"unknown fault {op!r}")

    def _heal_everything(self) -> None:
        sim = self.sim
        sim.heal_all()
        for n in NODES:
            m = sim.machines[n]
            if not m.powered:
                sim.power_on(n, boot_delay=0.5)
            elif m.node is None and m.boot_at is None:
                sim.start_daemon(n)

    # O: the final placement

    def _check_placement(self) -> None:
        sim = self.sim
        self.result.checks["O"] += 1
        for n in NODES:
            if sim.machines[n].node is None:
                self._violate("O", sim.clock.now, f"{n}'s daemon is not running after healing")
                return
        for g in self.groups:
            where = sim.started_on(g)
            expected = self._expected(g)
            if expected is None:
                continue
            if where != expected:
                self._violate(
                    "O", sim.clock.now, f"{g} runs on {where or 'no node'}, expected {expected}"
                )

    def _expected(self, group: str) -> list[str] | None:
        """Where `group` belongs after healing: None when it cannot be told from outside
        (a failed start refused somewhere, a takeover still in force)."""
        sim = self.sim
        refusing: set[str] = set()
        preferred = sim.group_def(group).preferred
        for n in NODES:
            node = sim.node(n)
            summary = node.policy.summary()
            if summary["takeover"]:
                return None
            local = node.policy._local[group]
            if local.failed or node.fenced is not None:
                return None
            mode = node.policy._state.standby
            if mode.covers(preferred == n):
                refusing.add(n)
        candidates = [
            n for n in (preferred, *(x for x in NODES if x != preferred)) if n not in refusing
        ]
        if not candidates:
            return []
        if self.spec.auto_failback == "off":
            where = sim.started_on(group)
            return where if len(where) == 1 and where[0] in candidates else candidates[:1]
        return candidates[:1]

    def _violate(self, invariant: str, at: float, detail: str) -> None:
        self.result.violations.append(Violation(invariant, at, detail))


def run_schedule(schedule: Schedule) -> Result:
    return Run(schedule).run()


def shrink(schedule: Schedule, invariant: str, budget_s: float = 60.0) -> Schedule:
    """The shortest schedule (faults removed one at a time) that still violates `invariant`."""
    deadline = time.monotonic() + budget_s
    current = schedule
    progress = True
    while progress and time.monotonic() < deadline:
        progress = False
        for i in range(len(current.faults)):
            trial = Schedule(
                current.seed, current.cluster, current.faults[:i] + current.faults[i + 1 :]
            )
            result = run_schedule(trial)
            if any(v.invariant == invariant for v in result.violations):
                current, progress = trial, True
                break
    return current


# -- the command -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hbd.testing.explore",
        description="Run random fault schedules against simulated hbd nodes and check the "
        "safety, availability, liveness, fencing and operator invariants.",
    )
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--schedules", type=int, help="how many schedules to run")
    amount.add_argument("--seconds", type=float, help="run schedules for this long (wall clock)")
    amount.add_argument("--replay", metavar="FILE", help="run the one schedule in FILE (JSON)")
    parser.add_argument("--seed", type=int, default=None, help="the first seed (default: random)")
    parser.add_argument("--no-shrink", action="store_true", help="print violations unshrunk")
    parser.add_argument(
        "--arbiter",
        choices=("mixed", "on", "off"),
        default="mixed",
        help="clusters with a simulated qnetd: about a third (mixed), all, or none",
    )
    args = parser.parse_args(argv)
    if args.replay:
        try:
            with open(args.replay) as f:
                schedule = Schedule.from_json(f.read())
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"{args.replay}: not a schedule: {e}", file=sys.stderr)
            return 2
        result = run_schedule(schedule)
        for v in result.violations:
            print(f"{v.invariant} at {v.at:.3f}: {v.detail}")
        print(f"residual {result.residual}, unfenced {result.unfenced}")
        return 1 if result.failed() else 0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    limit = args.schedules if args.schedules is not None else None
    seconds = args.seconds if args.seconds is not None else (None if limit else 60.0)
    print(f"explore: first seed {seed}", flush=True)
    started = time.monotonic()
    counts: Counter[str] = Counter()
    checks: Counter[str] = Counter()
    residual = unfenced = arbitered = 0
    simulated = 0.0
    ran = 0
    failures: list[tuple[Schedule, Violation]] = []
    while True:
        if limit is not None and ran >= limit:
            break
        if seconds is not None and time.monotonic() - started >= seconds:
            break
        schedule = draw(seed + ran, {"mixed": None, "on": True, "off": False}[args.arbiter])
        result = run_schedule(schedule)
        ran += 1
        arbitered += schedule.cluster.arbiter
        simulated += result.simulated
        residual += result.residual
        unfenced += result.unfenced
        checks.update(result.checks)
        for v in result.violations:
            counts[v.invariant] += 1
        if result.violations and len(failures) < 5:
            failures.append((schedule, result.violations[0]))
    wall = time.monotonic() - started
    for schedule, v in failures:
        small = schedule if args.no_shrink else shrink(schedule, v.invariant)
        print(f"VIOLATION {v.invariant} (seed {schedule.seed}): {v.detail}")
        print(f"  replay: {small.to_json()}")
    print(
        f"schedules {ran}, simulated {simulated / 3600:.2f} h, "
        f"{ran / wall if wall else 0:.1f} schedules/s, wall {wall:.1f} s; "
        f"{arbitered} with an arbiter (qnetd)"
    )
    print("checked: " + ", ".join(f"{k} {checks[k]}" for k in INVARIANTS))
    print(
        "violations: "
        + ", ".join(f"{k} {counts[k]}" for k in INVARIANTS)
        + f"; residual (no arbiter) {residual}; unfenced (no watchdog) {unfenced}"
    )
    return 1 if sum(counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
