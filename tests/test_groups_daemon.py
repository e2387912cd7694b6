"""Resource groups on the real daemon: two hbd nodes in namespaces running haresources.

Each test builds alpha and beta (tests/cluster.py: bcast eth0, ucast eth1, a socat serial
line; keepalive 200 ms, deadtime 1 s), writes one haresources line preferring alpha, and
watches the group from outside: `hbctl status` (groups, decisions), the calls the test
agents record (tests/agents/recorder: `NAME OP` per call, per node), and, whenever the
group has a service address, a VIP sampler (tests/sampler.py) that looks for the address
in both namespaces every 10 ms and fails the test if it is ever on both.

What the policy promises (hbd/core/policy.py): a hand-off between live nodes starts on one
node only after the other advertised the group stopped; a dead peer's group with an
address is taken after the takeover budget (deadtime here: no watchdog) and only once the
address stops answering pings; a clean SIGTERM hands the groups over before exiting.

Timings are printed as `TIMING ...` lines (run with -s).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

from cluster import Cluster, Timing, build
from netns import requires_root, requires_socat
from sampler import VipSampler

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root, requires_socat]

TIMING = Timing()
DEADTIME = TIMING.deadtime / 1000
KEEPALIVE = TIMING.keepalive / 1000
STARTUP = 15.0
VIP = "10.80.0.100"  # on eth0's subnet (cluster.py gives the first network 10.80.0.0/24)
IPADDR = f"IPaddr::{VIP}/24/eth0"
STATUS_TIMEOUT = 20.0  # hbd.core.resources.Timeouts.status: the keeper uses the defaults


# -- helpers ------------------------------------------------------------------------------


def calls(c: Cluster, node: str, *, status: bool = False) -> list[str]:
    """The `NAME OP` lines node's agents recorded, without status calls unless asked."""
    path = c[node].root / "calls.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if status or not line.endswith(" status")]


@contextlib.contextmanager
def running(
    tmp_path: Path,
    haresources: str,
    *,
    agents: tuple[str, ...] = ("recorder",),
    directives: dict[str, str] | None = None,
    env: dict[str, dict[str, str]] | None = None,
    timing: Timing = TIMING,
    vip: str | None = VIP,
) -> Iterator[tuple[Cluster, VipSampler | None]]:
    """alpha and beta running `haresources`, up and talking; with a VIP sampler that runs
    from before the daemons start to after the test body, and must see no dual-active."""
    with build(
        tmp_path, haresources=haresources, agents=agents, directives=directives, timing=timing
    ) as c:
        for name, node in c.nodes.items():
            (node.root / "rsc").mkdir(parents=True, exist_ok=True)
            node.env.update(
                HBD_TEST_LOG=str(node.root / "calls.log"), HBD_TEST_STATE=str(node.root / "rsc")
            )
            node.env.update((env or {}).get(name, {}))
        if vip is None:
            c.start()
            c.wait_all_up(STARTUP)
            yield c, None
            return
        vs = c.vip_sampler(vip)
        with vs:
            c.start()
            c.wait_all_up(STARTUP)
            yield c, vs
        print(vs.report())
        vs.assert_never_dual()
        print(f"TIMING dual-active {vs.dual_ms:.0f} ms over {vs.samples} samples")


def power_loss(c: Cluster, node: str) -> None:
    """The node loses power: hbd dies without a word, every address and service with it."""
    n = c[node]
    n.kill()
    addresses_gone(c, node)
    for f in (n.root / "rsc").iterdir():
        f.unlink()


def addresses_gone(c: Cluster, node: str) -> None:
    """Every address of the node stops answering (its kernel is gone, or reset)."""
    for net in c.networks:
        c[node].ns.ip("addr", "flush", "dev", net.dev, check=False)


def power_on(c: Cluster, node: str) -> None:
    """The node boots again: its addresses are back (hbd is started by the test)."""
    for net in c.networks:
        c[node].ns.ip("addr", "add", f"{net.addresses[node]}/24", "brd", "+", "dev", net.dev)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: PID 1 here may never reap an orphan)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def decisions_text(c: Cluster, node: str) -> str:
    return "\n".join(f"{d['decision']}: {d['reason']}" for d in c[node].decisions())


# -- scripts: order, one node, failure, hang --------------------------------------------------


def test_scripts_start_left_to_right_stop_right_to_left_on_one_node_and_standby_takeover(
    tmp_path: Path,
) -> None:
    group = IPADDR
    with running(tmp_path, f"alpha {IPADDR} recorder::web recorder::db\n") as (c, vip):
        assert vip is not None
        took = c.wait_holder(group, "alpha", timeout=10)
        print(f"TIMING both up -> alpha holds {took:.2f} s")
        assert vip.holders() == ("alpha",)
        assert calls(c, "alpha") == ["web start", "db start"]
        assert calls(c, "beta") == []  # beta only probed
        assert calls(c, "beta", status=True) == ["web status", "db status"]
        g = c["alpha"].group(group)
        assert g is not None
        assert (g["preferred"], g["holder"], g["state"]) == ("alpha", "alpha", "started")
        for r in g["resources"]:
            assert (r["state"], r["last_op"], r["rc"]) == ("started", "start", 0), r
            assert isinstance(r["duration_ms"], int) and r["duration_ms"] >= 0
        assert [r["name"] for r in g["resources"]] == [IPADDR, "recorder::web", "recorder::db"]
        seen_by_beta = c["beta"].group(group)
        assert seen_by_beta is not None
        assert (seen_by_beta["holder"], seen_by_beta["state"]) == ("alpha", "stopped")

        # standby on the holder: alpha stops right to left, then beta starts left to right
        before = {n: len(calls(c, n)) for n in c.nodes}
        mark = vip.mark("hbctl standby all on alpha")
        assert c["alpha"].hbctl("standby", "all").returncode == 0
        took = c.wait_holder(group, "beta", timeout=10)
        print(f"TIMING standby all -> beta holds {took:.2f} s")
        assert calls(c, "alpha")[before["alpha"] :] == ["db stop", "web stop"]
        assert calls(c, "beta")[before["beta"] :] == ["web start", "db start"]
        assert vip.holders() == ("beta",)
        moved = vip.first_on("beta", mark)
        assert moved is not None
        print(f"TIMING standby all -> VIP on beta {moved - mark:.2f} s")
        assert any(d["decision"] == "standby all" for d in c["alpha"].decisions())

        # takeover on alpha: beta gives it back the same way
        before = {n: len(calls(c, n)) for n in c.nodes}
        mark = vip.mark("hbctl takeover all on alpha")
        assert c["alpha"].hbctl("takeover", "all").returncode == 0
        took = c.wait_holder(group, "alpha", timeout=10)
        print(f"TIMING takeover all -> alpha holds {took:.2f} s")
        assert calls(c, "beta")[before["beta"] :] == ["db stop", "web stop"]
        assert calls(c, "alpha")[before["alpha"] :] == ["web start", "db start"]
        arrived = vip.first_on("alpha", mark)
        assert arrived is not None
        print(f"TIMING takeover all -> VIP on alpha {arrived - mark:.2f} s")
        assert any("asked to take over" in d["reason"] for d in c["beta"].decisions())


def test_a_failing_start_stops_the_group_in_reverse_reports_failed_and_the_peer_takes_it(
    tmp_path: Path,
) -> None:
    group = IPADDR
    haresources = f"alpha {IPADDR} recorder::web recorder::db recorder::app\n"
    with running(tmp_path, haresources, env={"alpha": {"HBD_TEST_FAIL": "db"}}) as (c, vip):
        assert vip is not None
        c.wait(
            lambda: True if (c["alpha"].group(group) or {}).get("state") == "failed" else None,
            "alpha to report the group failed",
            10,
        )
        # app was never started, so only what may run is stopped: db (failed), then web,
        # then the address
        assert calls(c, "alpha") == ["web start", "db start", "db stop", "web stop"]
        g = c["alpha"].group(group)
        assert g is not None
        assert g["state"] == "failed", g
        states = {r["name"]: (r["state"], r["last_op"]) for r in g["resources"]}
        assert states == {
            IPADDR: ("stopped", "stop"),
            "recorder::web": ("stopped", "stop"),
            "recorder::db": ("stopped", "stop"),
            "recorder::app": ("stopped", "status"),
        }, states
        assert vip.ever_on("alpha")
        log = c["alpha"].log()
        assert "resource group IPaddr::10.80.0.100/24/eth0 failed: recorder::db" in log
        assert c["alpha"].status()["targets"][group] == "beta"  # type: ignore[index]
        # alpha refuses the group now: beta must take it (it has no reason to fail)
        failed_at = time.monotonic()
        c.wait_holder(group, "beta", timeout=3 * DEADTIME + 3)  # a hand-off takes ~1 s
        print(f"TIMING failed on alpha -> beta holds {time.monotonic() - failed_at:.2f} s")
        assert calls(c, "beta") == ["web start", "db start", "app start"]
        on_alpha, on_beta = vip.first_on("alpha"), vip.first_on("beta")
        assert on_alpha is not None and on_beta is not None and on_alpha < on_beta


def test_a_hanging_status_is_killed_at_its_timeout_and_the_node_then_hands_the_group_over(
    tmp_path: Path,
) -> None:
    """The keeper builds its ResourceManager with the default Timeouts (start 60 s, stop
    60 s, status 20 s) and haresources has no timeout syntax, so the shortest honest hang
    is a status probe: beta's first status of `stall` hangs and must be killed at 20 s."""
    group = "hang_first_status::stall"
    haresources = f"alpha {group} recorder::web\n"
    with running(
        tmp_path,
        haresources,
        agents=("recorder", "hang_first_status"),
        env={"beta": {"HBD_TEST_HANG": "1"}},
        vip=None,
    ) as (c, _):
        pids_file = c["beta"].root / "rsc" / "stall.pids"
        c.wait(lambda: True if pids_file.exists() else None, "beta's status to hang", 10)
        hung_at = time.monotonic()
        shell, child = (int(p) for p in pids_file.read_text().split())
        assert alive(shell) and alive(child)  # the hanging status and its child run
        # until beta's status is known, alpha must not start anything
        g = c["beta"].group(group)
        assert g is not None and g["state"] == "unknown", g
        assert calls(c, "alpha") == []
        c.wait_holder(group, "alpha", timeout=STATUS_TIMEOUT + 10)
        held = time.monotonic() - hung_at  # hung_at is a poll (<= 50 ms) after the hang
        print(f"TIMING status hang -> alpha holds {held:.2f} s")
        assert held >= STATUS_TIMEOUT - 1.0
        assert not alive(shell) and not alive(child)  # its whole process group was killed
        g = c["beta"].group(group)
        assert g is not None
        stall = g["resources"][0]
        # beta then stopped what might be running (stall: its status is unknown; web was
        # probed stopped, so it is left alone) and alpha started the group
        assert calls(c, "beta", status=True) == ["stall status", "web status", "stall stop"]
        assert calls(c, "alpha") == ["stall start", "web start"]
        assert (stall["last_op"], stall["rc"]) == ("stop", 0)
        log = c["beta"].log()
        assert "timed out" in log, log[-3000:]


def test_a_status_hang_on_the_preferred_node_still_lets_it_start_the_group(
    tmp_path: Path,
) -> None:
    group = "hang_first_status::stall"
    with running(
        tmp_path,
        f"alpha {group} recorder::web\n",
        agents=("recorder", "hang_first_status"),
        env={"alpha": {"HBD_TEST_HANG": "1"}},
        vip=None,
    ) as (c, _):
        pids_file = c["alpha"].root / "rsc" / "stall.pids"
        c.wait(lambda: True if pids_file.exists() else None, "alpha's status to hang", 10)
        hung_at = time.monotonic()
        c.wait(
            lambda: True if "timed out" in c["alpha"].log() else None,
            "alpha's status to be killed",
            STATUS_TIMEOUT + 5,
        )
        # the status is unknown, the next status answers at once: alpha (the target, whom
        # beta waits for) must bring the group up, asking status before each start
        c.wait_holder(group, "alpha", timeout=3 * DEADTIME + 3)
        print(f"TIMING status hang on alpha -> alpha holds {time.monotonic() - hung_at:.2f} s")
        assert calls(c, "alpha") == ["stall start", "web start"]
        assert calls(c, "beta") == []


# -- addresses: IPaddr in namespaces, gratuitous ARPs -----------------------------------------


def mac_of(c: Cluster, node: str) -> str:
    return c[node].ns.ip("-o", "link", "show", "eth0").stdout.split("link/ether ")[1].split()[0]


def addresses(c: Cluster, node: str) -> str:
    return c[node].ns.ip("-4", "-o", "addr", "show", "dev", "eth0").stdout


def test_ipaddr_moves_to_the_holder_leaves_the_loser_and_the_peer_sees_its_arps(
    tmp_path: Path,
) -> None:
    group = IPADDR
    with running(tmp_path, f"alpha {IPADDR} recorder::web\n") as (c, vip):
        assert vip is not None
        c.wait_holder(group, "alpha", timeout=10)
        assert f"inet {VIP}/24 " in addresses(c, "alpha")
        assert VIP not in addresses(c, "beta")

        # a capture in alpha's namespace, then the group moves to beta
        pcap = tmp_path / "arps.pcap"
        tcpdump = c["alpha"].ns.popen(
            "tcpdump", "-i", "eth0", "-n", "-U", "-c", "5", "-w", str(pcap),
            f"arp and src host {VIP} and dst host {VIP}",  # gratuitous: sender = target
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert tcpdump.stderr is not None
        line = tcpdump.stderr.readline().decode()
        assert "listening on" in line, line
        mark = vip.mark("hbctl standby all on alpha")
        assert c["alpha"].hbctl("standby", "all").returncode == 0
        c.wait_holder(group, "beta", timeout=10)
        arrived = vip.first_on("beta", mark)
        assert arrived is not None
        print(f"TIMING standby -> VIP on beta {arrived - mark:.2f} s")
        assert f"inet {VIP}/24 " in addresses(c, "beta")
        assert VIP not in addresses(c, "alpha")
        tcpdump.wait(timeout=10)
        tcpdump.stderr.close()
        packets = rdpcap(str(pcap))
        assert len(packets) == 5
        beta_mac = mac_of(c, "beta")
        for pkt in packets:
            arp = pkt[ARP]
            assert (arp.op, arp.psrc, arp.pdst, arp.hwsrc, pkt.src) == (
                1, VIP, VIP, beta_mac, beta_mac
            )  # fmt: skip
        first = float(packets[0].time) - (time.time() - time.monotonic() + vip.t0)
        print(f"TIMING standby -> first gratuitous ARP seen by alpha {first - mark:.2f} s")
        # alpha, which has let the address go, now reaches it on beta
        assert c["alpha"].ns.exec("ping", "-c", "1", "-W", "2", VIP, check=False).returncode == 0


# -- failover on crash ------------------------------------------------------------------------


def test_power_loss_of_the_holder_the_peer_takes_over_after_deadtime_once_the_address_is_silent(
    tmp_path: Path,
) -> None:
    group = IPADDR
    with running(tmp_path, f"alpha {IPADDR} recorder::web\n") as (c, vip):
        assert vip is not None
        c.wait_holder(group, "alpha", timeout=10)
        killed = vip.mark("power loss on alpha (hbd SIGKILL, VIP removed)")
        power_loss(c, "alpha")
        vip.wait_on("beta", timeout=DEADTIME + 10)
        arrived = vip.first_on("beta", killed)
        assert arrived is not None
        print(f"TIMING power loss -> VIP on beta {arrived - killed:.2f} s")
        # not before the takeover budget: deadtime after alpha was last heard
        assert arrived - killed >= DEADTIME - KEEPALIVE
        c.wait_holder(group, "beta", timeout=5, nodes=["beta"])
        assert calls(c, "beta") == ["web start"]
        text = decisions_text(c, "beta")
        assert "peer alpha lost: is silent on every path" in text, text
        assert "taking over from alpha" in text, text


def test_a_hung_holder_whose_address_still_answers_is_not_taken_over(tmp_path: Path) -> None:
    """hbd on alpha dies but the box keeps its address (hung, never reset): the address
    still answers, so beta must leave the group alone; once the address goes, it takes it."""
    group = IPADDR
    with running(tmp_path, f"alpha {IPADDR} recorder::web\n") as (c, vip):
        assert vip is not None
        c.wait_holder(group, "alpha", timeout=10)
        killed = vip.mark("SIGKILL hbd on alpha, VIP left up")
        c["alpha"].kill()
        c.wait_node("beta", "alpha", ["dead"], timeout=DEADTIME + 2)
        watch = 5 * DEADTIME
        time.sleep(watch)  # the claim is that nothing happens: watched by the sampler
        assert not vip.ever_on("beta", killed), vip.report()
        assert vip.holders() == ("alpha",)
        assert calls(c, "beta") == []
        g = c["beta"].group(group)
        assert g is not None and g["state"] == "stopped", g
        text = decisions_text(c, "beta")
        assert "peer alpha lost: is silent on every path" in text, text
        assert "alpha is silent on every path but its address answers" in text, text
        print(f"TIMING hung alpha: beta kept off for {watch:.1f} s (deadtime {DEADTIME:g} s)")

        # the box is finally reset: its address goes, and beta takes over
        gone = vip.mark("alpha's addresses gone (reset)")
        addresses_gone(c, "alpha")
        vip.wait_on("beta", timeout=DEADTIME + 10)
        arrived = vip.first_on("beta", gone)
        assert arrived is not None
        print(f"TIMING address silent -> VIP on beta {arrived - gone:.2f} s")
        c.wait_holder(group, "beta", timeout=5, nodes=["beta"])
        assert calls(c, "beta") == ["web start"]


# -- failback ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auto_failback",
    [
        "on",
        "off",
    ],
)
def test_failback_when_the_preferred_node_returns(tmp_path: Path, auto_failback: str) -> None:
    group = IPADDR
    with running(
        tmp_path,
        f"alpha {IPADDR} recorder::web recorder::db\n",
        directives={"auto_failback": auto_failback},
    ) as (c, vip):
        assert vip is not None
        c.wait_holder(group, "alpha", timeout=10)
        power_loss(c, "alpha")
        vip.wait_on("beta", timeout=DEADTIME + 10)
        c.wait_holder(group, "beta", timeout=5, nodes=["beta"])
        before = {n: len(calls(c, n)) for n in c.nodes}

        back = vip.mark("alpha restarted")
        power_on(c, "alpha")
        c["alpha"].start()
        c.wait_all_up(STARTUP)
        if auto_failback == "on":
            took = c.wait_holder(group, "alpha", timeout=15)
            arrived = vip.first_on("alpha", back)
            assert arrived is not None
            print(f"TIMING alpha restarted -> VIP home on alpha {arrived - back:.2f} s")
            assert calls(c, "beta")[before["beta"] :] == ["db stop", "web stop"]
            assert calls(c, "alpha")[before["alpha"] :] == ["web start", "db start"]
            assert "its target is alpha" in decisions_text(c, "beta")
        else:
            time.sleep(3 * DEADTIME)  # nothing may move: watched by the sampler
            assert not vip.ever_on("alpha", back), (
                "auto_failback off, yet the group went back to alpha\n" + vip.report()
            )
            took = c.wait_holder(group, "beta", timeout=5)
            assert vip.holders() == ("beta",)
            assert calls(c, "beta")[before["beta"] :] == []
            assert calls(c, "alpha")[before["alpha"] :] == []
        print(f"TIMING auto_failback {auto_failback}: settled {took:.2f} s after all up")


# -- clean stop -------------------------------------------------------------------------------

SLOW_DEATH = Timing(keepalive=200, deadtime=3000, warntime=1500, initdead=6000)


def test_sigterm_on_the_holder_hands_the_group_over_within_a_few_keepalives(
    tmp_path: Path,
) -> None:
    """A deadtime of 3 s here, so a hand-off is told apart from a takeover by time."""
    group = IPADDR
    deadtime = SLOW_DEATH.deadtime / 1000
    keepalive = SLOW_DEATH.keepalive / 1000
    with running(tmp_path, f"alpha {IPADDR} recorder::web\n", timing=SLOW_DEATH) as (c, vip):
        assert vip is not None
        c.wait_holder(group, "alpha", timeout=10)
        before = len(calls(c, "beta"))
        exit_code: list[int] = []
        stopper = threading.Thread(target=lambda: exit_code.append(c["alpha"].stop(10)))
        sent = vip.mark("SIGTERM alpha")
        stopper.start()
        took = vip.wait_on("beta", timeout=deadtime + 5)
        arrived = vip.first_on("beta", sent)
        assert arrived is not None
        stopper.join(15)
        assert exit_code == [0]
        print(f"TIMING SIGTERM -> VIP on beta {arrived - sent:.2f} s (waited {took:.2f} s)")
        assert arrived - sent < 5 * keepalive, vip.report()
        c.wait_holder(group, "beta", timeout=5, nodes=["beta"])
        assert calls(c, "alpha")[-1] == "web stop"
        assert calls(c, "beta")[before:] == ["web start"]
        text = decisions_text(c, "beta")
        assert "every peer agreed" in text, text
        assert "taking over" not in text, text
