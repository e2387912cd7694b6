"""Failover time, hbd beside Heartbeat 3.0.6 and keepalived, in the same run.

    sudo python bench/failover.py [--runs 5] [--side-runs 5] [--quick] [--merge]
                                  [--only hbd,heartbeat,keepalived] [--systems LABEL,...]
                                  [--scenarios crash,cut,hung]
                                  [--json bench/results/failover.json]

Topology per run (fresh every run): namespaces alpha and beta joined by a veth pair `eth0`
(10.93.0.0/24; hbd and Heartbeat: `bcast eth0`; keepalived: VRRP on eth0) and a socat pty
pair (`serial`, hbd and Heartbeat only: keepalived has no serial link); both also sit on a
service LAN `lan0` (10.94.0.0/24, a bridge in a third namespace, `client`, which holds the
ping node 10.94.0.3). The VIP 10.94.0.100/24 starts on alpha (`alpha IPaddr::VIP/24`;
keepalived: alpha MASTER priority 150, beta BACKUP 100, `virtual_ipaddress { VIP/24 dev lan0 }`).

What is measured: tests/sampler.py reads both namespaces' addresses every 10 ms (the VIP
*configured* on a node, not a ping reply: it is when the survivor's IPaddr or keepalived has
put the address up, which is when it answers ARP and ping). `failover` is the time from the
fault (the sampler's mark, just before the fault is injected) until the VIP first shows on
beta; `split ms` is how long both nodes held it during the observation window.

Faults:
- crash: power loss of alpha: every process in alpha's namespace SIGKILLed, its addresses
  on lan0 and eth0 flushed (a dead kernel answers no ARP), nft dropping everything in and
  out of its eth0 and lan0 (not link down: a veth peer would lose its carrier too, and
  keepalived then faults its own instance, as it would not behind a switch), the serial
  cable unplugged (socat
  SIGSTOPped: bytes stop, the ptys stay open).
- cut: every link between the nodes cut (nft drops everything arriving on eth0 on both
  nodes, serial unplugged as above); the service LAN stays, so both still see the client.
- hung: every process in alpha's namespace SIGSTOPped (Heartbeat's and keepalived's too).

hbd waits deadtime + keepalive + W + 0.25 s (W = watchdog_timeout, default
ceil(deadtime + 10 ms); deadtime without a watchdog) after the peer's last sign
of life (a heartbeat, or an answer to a probe of its addresses) before it takes a group
over (docs/policy.md), so it
never takes over while alpha's addresses still answer (a partitioned or hung holder keeps
answering): after a cut it does not move (by design), and after a hang it moves only once
the hung node's watchdog has reset it. Those are rows to read as
"safe, not split", not as failures. Needs root, socat, nft, /dev/fuse (watchdog rows),
Heartbeat 3.0.6 (Debian `heartbeat`) and keepalived (Debian `keepalived`).

Writes every run to --json, the tables beside it (failover.md) and one line per run
(failover-runs.txt); bench/plot.py draws the PNG from the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import common

from hbd.core.policy import TAKEOVER_MARGIN
from hbd.testing.fusewatchdog import MountedWatchdog, mounted_watchdog

sys.path.append(str(common.REPO / "tests"))

from sampler import VipSampler

HB_NET = "10.93.0"
LAN_NET = "10.94.0"
VIP = f"{LAN_NET}.100"
CLIENT = f"{LAN_NET}.3"
NODES = ("alpha", "beta")
ADDR = {"alpha": 1, "beta": 2}
SCENARIOS = ("crash", "cut", "hung")
KEYS = {
    "sha256": "auth 3\n3 sha256 failover-bench-key\n",
    "sha1": "auth 1\n1 sha1 failover-bench-key\n",
}
HEADERS = ["system", "runs", "min s", "median s", "max s", "no move", "split runs",
           "split at end", "max split ms", "budget s", "ratio hbd/anchor"]  # fmt: skip
RESULTS = common.REPO / "bench" / "results"


@dataclass(frozen=True)
class System:
    """One column of the comparison: a daemon and its settings."""

    label: str
    kind: str  # "hbd", "heartbeat" or "keepalived"
    keepalive_ms: int
    deadtime_ms: int
    native: bool = True  # hbd: `wire hbd` (else Heartbeat's format)
    watchdog: bool = False  # hbd: a FUSE watchdog per node
    watchdog_timeout: int | None = None  # hbd: `watchdog_timeout`, whole seconds
    setting: str = ""  # which anchor setting it belongs to ("1/3", "0.2/1", "fastest")

    @property
    def watchdog_s(self) -> int:
        if self.watchdog_timeout is not None:
            return self.watchdog_timeout
        return math.ceil(self.deadtime_ms / 1000 + 0.01)

    @property
    def budget_s(self) -> float:
        """hbd's takeover budget after the peer's last sign of life (docs/policy.md):
        deadtime + keepalive + W + 0.25 s (W = 0 without a watchdog); 0 for the others."""
        if self.kind != "hbd":
            return 0.0
        dead = self.deadtime_ms / 1000
        if not self.watchdog:
            return dead
        return dead + self.keepalive_ms / 1000 + self.watchdog_s + TAKEOVER_MARGIN


def systems(quick: bool) -> list[System]:
    out: list[System] = []
    for ka, dt, setting in ((1000, 3000, "1/3"), (200, 1000, "0.2/1")):
        for native in (True, False):
            for wd in (False, True):
                frames = "native" if native else "hb-wire"
                label = f"hbd {frames}{' +wd' if wd else ''} {setting}"
                out.append(System(label, "hbd", ka, dt, native, wd, setting=setting))
        out.append(System(f"Heartbeat 3.0.6 {setting}", "heartbeat", ka, dt, setting=setting))
        advert = "1" if ka == 1000 else "0.2"
        # VRRP: master down after 3 x advert (+ skew): its own 'deadtime'
        out.append(System(f"keepalived advert {advert}", "keepalived", ka, 3 * ka, setting=setting))
    out.append(System("hbd native +wd 0.2/1 W=1", "hbd", 200, 1000, True, True, 1, "0.2/1"))
    out.append(System("hbd native +wd 0.1/0.5 W=1", "hbd", 100, 500, True, True, 1, "fastest"))
    out.append(System("hbd native 0.1/0.5", "hbd", 100, 500, True, False, setting="fastest"))
    if quick:
        keep = {"hbd native 0.2/1", "hbd native +wd 0.2/1", "Heartbeat 3.0.6 0.2/1"}
        keep.add("keepalived advert 0.2")
        out = [s for s in out if s.label in keep]
    return out


# -- one node of any kind -------------------------------------------------------------------


def hbd_hacf(s: System, node: str, watchdog: Path | None) -> str:
    extra = [f"ping {CLIENT}"]
    if s.native:
        extra.append("wire hbd")
    if watchdog is not None:
        extra.append(f"watchdog {watchdog}")
        if s.watchdog_timeout is not None:
            extra.append(f"watchdog_timeout {s.watchdog_timeout}")
    media = [common.Medium("bcast", "eth0"), common.Medium("serial", f"/SERIAL-{node}")]
    return common.hacf_text(NODES, media, s.keepalive_ms, s.deadtime_ms, extra=extra)


def keepalived_conf(s: System, node: str, root: Path) -> str:
    advert = s.keepalive_ms / 1000
    me, peer = ADDR[node], ADDR[NODES[1] if node == NODES[0] else NODES[0]]
    return (
        "global_defs {\n"
        f"  router_id {node}\n  vrrp_version 3\n  script_user root\n"
        "  enable_script_security\n"
        "  vrrp_garp_master_delay 0\n"
        "}\n"
        "vrrp_instance VI_1 {\n"
        f"  state {'MASTER' if node == 'alpha' else 'BACKUP'}\n"
        "  interface eth0\n  virtual_router_id 51\n"
        f"  priority {150 if node == 'alpha' else 100}\n"
        f"  advert_int {advert:g}\n"
        f"  unicast_src_ip {HB_NET}.{me}\n  unicast_peer {{\n    {HB_NET}.{peer}\n  }}\n"
        f"  virtual_ipaddress {{\n    {VIP}/24 dev lan0\n  }}\n"
        "}\n"
    )


# -- the lab ----------------------------------------------------------------------------------


@dataclass
class Lab:
    system: System
    work: Path
    ns: dict[str, common.Namespace]
    client: common.Namespace
    nodes: dict[str, common.Node]
    socat: subprocess.Popen[bytes] | None = None
    dogs: dict[str, MountedWatchdog] = field(default_factory=dict)

    def unplug(self) -> None:
        """Pull the null-modem cable: socat stopped, so bytes stop crossing but both ptys
        stay open (a killed socat would hang the ptys up, which a pulled cable does not)."""
        if self.socat is not None and self.socat.poll() is None:
            self.socat.send_signal(signal.SIGSTOP)

    def close_serial(self) -> None:
        if self.socat is not None and self.socat.poll() is None:
            self.socat.kill()
            self.socat.send_signal(signal.SIGCONT)
            self.socat.wait()

    def nft_drop(self, node: str, devs: Sequence[str], outbound: bool = False) -> None:
        """Drop everything arriving on `devs` at `node` (and leaving, if `outbound`): a
        cut cable whose far end keeps its carrier, as behind a switch."""
        rules = "".join(f'    iifname "{d}" drop\n' for d in devs)
        out = "".join(f'    oifname "{d}" drop\n' for d in devs) if outbound else ""
        text = (
            "table inet fobench {\n"
            f"  chain in {{\n    type filter hook input priority 0; policy accept;\n{rules}  }}\n"
            f"  chain out {{\n    type filter hook output priority 0; policy accept;\n{out}  }}\n"
            "}\n"
        )
        path = self.work / f"nft-{node}.nft"
        path.write_text(text)
        self.ns[node].exec("nft", "-f", str(path))


def _socat(work: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    links = {n: work / f"tty-{n}" for n in NODES}
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={links['alpha']}", f"pty,raw,echo=0,link={links['beta']}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    common.wait_until(lambda: all(p.exists() for p in links.values()), 5.0, "socat ptys")
    return proc, {n: os.path.realpath(p) for n, p in links.items()}


@contextlib.contextmanager
def lab(s: System, work: Path) -> Iterator[Lab]:
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(common.namespace("cl"))
        ns = {n: stack.enter_context(common.namespace(n[:2])) for n in NODES}
        common.veth(ns["alpha"], ns["beta"], "eth0", f"{HB_NET}.1/24", f"{HB_NET}.2/24")
        client.ip("link", "add", "br0", "type", "bridge")
        client.ip("addr", "add", f"{CLIENT}/24", "dev", "br0")
        client.ip("link", "set", "br0", "up")
        for n in NODES:
            port = f"p{n[:2]}"
            common.sh("ip", "link", "add", "lan0", "netns", ns[n].name, "type", "veth", "peer",
                      "name", port, "netns", client.name)  # fmt: skip
            client.ip("link", "set", port, "master", "br0")
            client.ip("link", "set", port, "up")
            ns[n].ip("addr", "add", f"{LAN_NET}.{ADDR[n]}/24", "brd", "+", "dev", "lan0")
            ns[n].ip("link", "set", "lan0", "up")
        the_lab = Lab(s, work, ns, client, {})
        ttys: dict[str, str] = {}
        if s.kind != "keepalived":
            the_lab.socat, ttys = _socat(work)
            stack.callback(the_lab.close_serial)
        for n in NODES:
            root = work / n
            root.mkdir()
            if s.kind == "hbd":
                dog_path: Path | None = None
                if s.watchdog:
                    dog = stack.enter_context(
                        mounted_watchdog(netns=ns[n].name, identity=f"{n} failover bench")
                    )
                    the_lab.dogs[n] = dog
                    dog_path = dog.path
                node: common.Node = common.HbdNode(n, ns[n], root)
                hacf = hbd_hacf(s, n, dog_path).replace(f"/SERIAL-{n}", ttys[n])
                node.write_config(hacf, KEYS["sha256" if s.native else "sha1"])
                (root / "ha.d" / "haresources").write_text(f"alpha IPaddr::{VIP}/24\n")
            elif s.kind == "heartbeat":
                node = common.HeartbeatNode(n, ns[n], root)
                media = [common.Medium("bcast", "eth0"), common.Medium("serial", ttys[n])]
                hacf = common.hacf_text(NODES, media, s.keepalive_ms, s.deadtime_ms)
                node.write_config(hacf, KEYS["sha1"])
                # the nic spelled out: IPaddr's findif otherwise disagrees with itself here
                # ("Invalid parameter value: nic [eth0] Calculated nic: [lan0]")
                (root / "etc" / "haresources").write_text(f"alpha IPaddr2::{VIP}/24/lan0\n")
            else:
                node = common.KeepalivedNode(n, ns[n], root)
                node.write_config(keepalived_conf(s, n, root), "")
            the_lab.nodes[n] = node
        try:
            yield the_lab
        finally:
            for node in the_lab.nodes.values():
                for pid in node.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        os.kill(pid, signal.SIGCONT)


def has_vip(ns: common.Namespace) -> bool:
    out = ns.exec("ip", "-4", "-o", "addr", "show", "dev", "lan0", check=False).stdout
    return f" {VIP}/" in out


def bring_up(lb: Lab) -> float:
    t0 = time.monotonic()
    lb.nodes["alpha"].start()
    lb.nodes["beta"].start()
    need = 2 if lb.system.kind != "keepalived" else 1
    for n in NODES:
        common.wait_until(lambda n=n: lb.nodes[n].paths_up() >= need, 40, f"{n}'s paths up")  # type: ignore[misc]
    common.wait_until(lambda: has_vip(lb.ns["alpha"]), 40, "the VIP on alpha")
    time.sleep(1.5)  # both settled: beta has seen alpha's holding (adverts, standby)
    if has_vip(lb.ns["beta"]):
        raise RuntimeError("the VIP is on beta before any fault")
    return time.monotonic() - t0


# -- one run ----------------------------------------------------------------------------------


@dataclass
class Run:
    system: str
    scenario: str
    failover_s: float | None  # fault -> VIP first on beta; None: never within the window
    split_ms: float  # both nodes held the VIP
    window_s: float
    resets: int  # alpha's watchdog resets (hbd +wd)
    split_at_end: bool  # both still held it when the run stopped watching


def window(s: System, scenario: str) -> float:
    """How long to watch after the fault: past every deadline the system could have."""
    dead = s.deadtime_ms / 1000
    if s.kind == "keepalived":
        return 3 * s.keepalive_ms / 1000 + 4.0
    if s.kind == "heartbeat":
        return dead + 6.0
    w = dead + s.budget_s + 4.0
    if scenario == "crash":
        return w
    return w + (2.0 if scenario == "cut" else s.watchdog_s)


def inject(lb: Lab, scenario: str) -> None:
    alpha = lb.ns["alpha"]
    if scenario == "crash":
        for pid in alpha.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        alpha.ip("addr", "flush", "dev", "lan0")
        alpha.ip("addr", "flush", "dev", "eth0")  # a dead kernel answers no ARP either
        lb.nft_drop("alpha", ("eth0", "lan0"), outbound=True)
        lb.unplug()
    elif scenario == "cut":
        for n in NODES:
            lb.nft_drop(n, ("eth0",))
        lb.unplug()
    elif scenario == "hung":
        for pid in alpha.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")


def one_run(s: System, scenario: str) -> Run:
    with tempfile.TemporaryDirectory(prefix="fo-") as tmp, lab(s, Path(tmp)) as lb:
        bring_up(lb)
        vip = VipSampler(VIP, {n: lb.ns[n].name for n in NODES})
        vip.start()
        try:
            at = vip.mark(f"{scenario} alpha")
            inject(lb, scenario)
            limit = window(s, scenario)
            end = time.monotonic() + limit
            moved: float | None = None
            while time.monotonic() < end:
                moved = vip.first_on("beta", after=at)
                if moved is not None:
                    break
                time.sleep(0.05)
            if moved is not None and scenario != "crash":
                time.sleep(1.0)  # long enough to see whether alpha still holds it
            end_holders = vip.holders()
        finally:
            vip.stop()
        dog = lb.dogs.get("alpha")
        resets = len(dog.resets()) if dog is not None else 0
        failover = None if moved is None else moved - at
        split_end = len(end_holders) > 1
        return Run(s.label, scenario, failover, vip.dual_ms, limit, resets, split_end)


# -- the report -------------------------------------------------------------------------------


def stats(values: Sequence[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def anchor_of(s: System, by_label: dict[str, System]) -> System | None:
    if s.kind != "hbd":
        return None
    if s.setting == "fastest":
        return by_label.get("keepalived advert 0.2")
    return by_label.get(f"Heartbeat 3.0.6 {s.setting}")


def report(all_systems: list[System], runs: list[Run]) -> str:
    by_label = {s.label: s for s in all_systems}
    out: list[str] = []
    for scenario in SCENARIOS:
        rows: list[list[object]] = []
        medians: dict[str, float] = {}
        for s in all_systems:
            got = [r.failover_s for r in runs if r.system == s.label and r.scenario == scenario]
            done = [x for x in got if x is not None]
            if done:
                medians[s.label] = statistics.median(done)
        for s in all_systems:
            mine = [r for r in runs if r.system == s.label and r.scenario == scenario]
            if not mine:
                continue
            times = [r.failover_s for r in mine if r.failover_s is not None]
            if times:
                lo, med, hi = stats(times)
                cells: list[object] = [f"{lo:.2f}", f"{med:.2f}", f"{hi:.2f}"]
            else:
                cells = ["-", "-", "-"]
            anchor = anchor_of(s, by_label)
            ratio = "-"
            if anchor is not None and s.label in medians and anchor.label in medians:
                ratio = f"{medians[s.label] / medians[anchor.label]:.2f} ({anchor.label})"
            split = sum(1 for r in mine if r.split_ms > 0)
            lasting = sum(1 for r in mine if r.split_at_end)
            never = len(mine) - len(times)
            k = len(mine)
            worst = max(r.split_ms for r in mine)
            rows.append(
                [s.label, k, *cells, never, f"{split}/{k}", f"{lasting}/{k}", f"{worst:.0f}",
                 f"{s.budget_s:g}", ratio]
            )  # fmt: skip
        if rows:
            out.append(f"### {scenario}\n")
            headers = HEADERS
            out.append(common.table(headers, rows) + "\n")
    return "\n".join(out)


def run_line(r: Run) -> str:
    moved = "never" if r.failover_s is None else f"{r.failover_s:.2f} s"
    return f"{r.system:<30} {r.scenario:<5} {moved:>8}  split {r.split_ms:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per system for the crash")
    parser.add_argument("--side-runs", type=int, default=5, help="runs for cut and hung")
    parser.add_argument("--quick", action="store_true", help="1 run, four systems")
    parser.add_argument("--only", default="", help="kinds: hbd,heartbeat,keepalived")
    parser.add_argument("--systems", default="", help="exact labels, comma-separated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", type=Path, default=RESULTS / "failover.json")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the runs already in --json of the systems and scenarios not rerun",
    )
    args = parser.parse_args(argv)
    missing = common.missing_for_cluster(heartbeat=True)
    for tool in ("nft", "keepalived"):
        if missing is None and shutil.which(tool) is None:
            missing = f"needs {tool}"
    if missing:
        print(f"failover: {missing}", file=sys.stderr)
        return 2
    if args.quick:
        args.runs = args.side_runs = 1
    chosen = systems(args.quick)
    if args.only:
        kinds = set(args.only.split(","))
        chosen = [s for s in chosen if s.kind in kinds]
    if args.systems:
        labels = args.systems.split(",")
        known = {s.label for s in systems(False)}
        if unknown := [x for x in labels if x not in known]:
            parser.error(f"unknown system(s) {unknown}; known: {sorted(known)}")
        chosen = [s for s in systems(False) if s.label in labels]
    if unknown := [x for x in args.scenarios.split(",") if x and x not in SCENARIOS]:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    scenarios = [x for x in args.scenarios.split(",") if x]
    runs: list[Run] = []
    failed = 0
    started = time.monotonic()
    for scenario in scenarios:
        n = args.runs if scenario == "crash" else args.side_runs
        for s in chosen:
            for i in range(n):
                try:
                    r = one_run(s, scenario)
                except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                    failed += 1
                    common.note(f"{s.label} {scenario} run {i + 1}: FAILED: {e}")
                    continue
                runs.append(r)
                common.note(run_line(r))
    if args.merge and args.json.exists():
        old = json.loads(args.json.read_text())
        mine = {s.label for s in chosen}
        order = [s.label for s in systems(False)]
        kept = [System(**s) for s in old["systems"] if s["label"] not in mine]
        chosen = sorted(kept + chosen, key=lambda s: order.index(s.label))
        rerun = set(scenarios)
        runs = [
            Run(**r) for r in old["runs"] if r["system"] not in mine or r["scenario"] not in rerun
        ] + runs
    text = report(chosen, runs)
    print(text)
    print(f"{len(runs)} runs ({failed} failed) in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"systems": [asdict(s) for s in chosen], "runs": [asdict(r) for r in runs]}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        args.json.with_suffix(".md").write_text(text)
        per_run = args.json.with_name(args.json.stem + "-runs.txt")
        per_run.write_text("".join(run_line(r) + "\n" for r in runs))
    bad = [r for r in runs if r.split_ms > 0 and r.system.startswith("hbd")]
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main())
