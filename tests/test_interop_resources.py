"""A resource group shared by an hbd node and a real Heartbeat 3.0.6 node, in CI.

The mixed pair of tests/test_interop_heartbeat.py (Heartbeat node `hb`, hbd node
`alpha`, bcast + serial, sha1), now with one VIP group in both nodes' haresources,
`hb IPaddr::10.93.0.100/24/eth0` (preferring hb) or the same preferring alpha, and the
VIP sampled every 20 ms in both namespaces (tests/sampler.py). Each scenario walks the
outcomes of docs/interop.md's "Resource groups beside Heartbeat" table in order and
checks that the address was never on both nodes at any sample. hbd speaks Heartbeat's
own resource protocol (hbd.core.hbresources): `t=starting`, `t=resource`, the
`t=ask_resources` hand-off, `t=hb_takeover`, `t=shutdone`.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from test_interop_heartbeat import DEADTIME, HB, HBD, STARTUP, Mixed, mixed

from heartbeat_peer import requires_heartbeat
from netns import requires_root, requires_socat
from sampler import VipSampler

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root, requires_socat, requires_heartbeat]

VIP = "10.93.0.100"
HANDOFF = 15.0  # seconds a hand-off may take (Heartbeat's scripts fork a lot; busy CI)
STANDBY = "/usr/share/heartbeat/hb_standby"
TAKEOVER = "/usr/share/heartbeat/hb_takeover"


def sampler(m: Mixed) -> VipSampler:
    return VipSampler(VIP, {HB: m.veth.a.name, HBD: m.veth.b.name}, interval=0.02)


def holder_in_hbd(m: Mixed) -> str | None:
    status = m.hbd.status()
    if status is None:
        return None
    for g in status["groups"]:
        holder: str | None = g.get("holder")
        return holder
    return None


def hb_command(m: Mixed, *argv: str) -> None:
    done = m.hb.in_namespaces(*argv, timeout=20.0)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"


def power_off_hb(m: Mixed) -> None:
    """Power loss on hb: every process gone at once, its addresses with it."""
    m.hb.kill()
    m.veth.a.ip("addr", "flush", "dev", m.veth.if_a, "to", f"{VIP}/32", check=False)


def both_stable(m: Mixed) -> bool:
    """hbd says no hand-off is under way and the Heartbeat node is stable too."""
    status = m.hbd.status()
    hb = (status or {}).get("heartbeat_peer")
    return bool(hb) and hb["hand_off"] == "none" and hb["peer_stable"] and hb["state"] == "stable"


def moves(vip: VipSampler, m: Mixed, to: str | None, what: str, timeout: float = HANDOFF) -> float:
    """Wait until the VIP is on `to` alone, and both nodes are done moving; seconds from
    the mark to the address arriving."""
    vip.mark(what)
    try:
        took = vip.wait_on(to, timeout)
        if to is not None and m.hb.running and m.hbd.running:
            m.wait(lambda: both_stable(m), "both nodes stable", HANDOFF)
    except AssertionError:
        print(m.dump())
        print(vip.report())
        raise
    print(f"{what}: VIP on {to or 'no node'} {took:.2f} s later")
    return took


def start_pair(m: Mixed, vip: VipSampler, holder: str) -> None:
    m.hbd.start()
    m.hb.start()
    m.wait(m.fully_up, "hbd and Heartbeat to see each other active on every link", STARTUP)
    moves(vip, m, holder, "both started", timeout=STARTUP + 15.0)
    m.wait(lambda: holder_in_hbd(m) == holder, f"hbd: {holder} holds the group", 10.0)


def test_group_preferring_heartbeat_moves_by_heartbeats_protocol(tmp_path: Path) -> None:
    haresources = f"{HB} IPaddr2::{VIP}/24/eth0\n"
    with mixed(tmp_path, "bcast", "sha1", True, haresources, "on") as m, sampler(m) as vip:
        start_pair(m, vip, HB)  # both start: hb acquires its group, alpha holds nothing

        hb_command(m, STANDBY, "all")
        moves(vip, m, HBD, "hb_standby all on hb")
        hb_command(m, TAKEOVER, "all")
        moves(vip, m, HB, "hb_takeover all on hb")

        assert m.hbd.hbctl("takeover", "all").returncode == 0
        moves(vip, m, HBD, "hbctl takeover all on alpha")
        assert m.hbd.hbctl("standby", "all").returncode == 0
        moves(vip, m, HB, "hbctl standby all on alpha")
        assert m.hbd.hbctl("standby", "off").returncode == 0

        m.hb.stop()  # a clean stop: hb releases, says goodbye, alpha takes over at once
        moves(vip, m, HBD, "hb stopped cleanly")
        m.hb.start()  # auto_failback on: the group goes home by hand-off
        moves(vip, m, HB, "hb started again", timeout=STARTUP + HANDOFF)

        power_off_hb(m)
        took = moves(vip, m, HBD, "hb lost power", timeout=DEADTIME + HANDOFF)
        assert took >= DEADTIME - 0.5, f"taken over {took:.2f} s after the loss: before deadtime"
        assert "no watchdog" in m.hbd.log(), "alpha did not warn that safety rests on the paths"
        m.hb.start()
        moves(vip, m, HB, "hb powered on again", timeout=STARTUP + HANDOFF)

        m.hbd.stop(timeout=20.0)  # the standby stops cleanly: nothing changes on hb
        time.sleep(DEADTIME + 1.0)
        assert vip.holders() == (HB,)
        m.hbd.start()
        time.sleep(DEADTIME + 3.0)
        assert vip.holders() == (HB,)
        m.hbd.signal(signal.SIGKILL)  # the standby crashes: nothing changes either
        m.wait(lambda: not m.hbd.running, "alpha gone", 5.0)
        time.sleep(DEADTIME + 1.0)
        assert vip.holders() == (HB,)
    print(vip.report())
    vip.assert_never_dual()


def test_group_preferring_hbd_fails_back_to_hbd(tmp_path: Path) -> None:
    haresources = f"{HBD} IPaddr2::{VIP}/24/eth0\n"
    with mixed(tmp_path, "bcast", "sha1", True, haresources, "on") as m, sampler(m) as vip:
        start_pair(m, vip, HBD)
        m.hbd.stop(timeout=20.0)  # alpha stops cleanly: hb takes over at once
        moves(vip, m, HB, "alpha stopped cleanly")
        m.hbd.start()  # and gives the group back once alpha is stable
        moves(vip, m, HBD, "alpha started again", timeout=STARTUP + HANDOFF)
        hb_command(m, TAKEOVER, "all")
        moves(vip, m, HB, "hb_takeover all on hb")
        assert m.hbd.hbctl("takeover", "failback").returncode == 0
        moves(vip, m, HBD, "hbctl takeover failback on alpha")
    print(vip.report())
    vip.assert_never_dual()


def test_auto_failback_off_keeps_the_group_where_it_is(tmp_path: Path) -> None:
    haresources = f"{HB} IPaddr2::{VIP}/24/eth0\n"
    with mixed(tmp_path, "bcast", "sha1", True, haresources, "off") as m, sampler(m) as vip:
        start_pair(m, vip, HB)
        m.hb.stop()
        moves(vip, m, HBD, "hb stopped cleanly")
        m.hb.start()
        m.wait(m.fully_up, "both active again", STARTUP)
        time.sleep(5.0)  # nothing moves home with auto_failback off
        assert vip.holders() == (HBD,)
    print(vip.report())
    vip.assert_never_dual()
