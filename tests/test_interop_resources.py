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

import contextlib
import itertools
import signal
import time
import uuid
from pathlib import Path

import pytest
from test_interop_heartbeat import DEADTIME, HB, HBD, STARTUP, Mixed, mixed

from cluster import HbdNode, wait_for
from heartbeat_peer import AUTH, HbTiming, HeartbeatPeer, requires_heartbeat
from netns import namespace, requires_root, requires_socat, veth_pair
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
    """Power loss on hb: every process gone at once, every address with it (its own as
    well as the VIP: a box without power answers no ARP, and alpha asks before it takes
    the group over)."""
    m.hb.kill()
    m.veth.a.ip("-4", "addr", "flush", "dev", m.veth.if_a, check=False)


def power_on_hb(m: Mixed) -> None:
    """hb boots again: its own address back on eth0, then Heartbeat."""
    v = m.veth
    m.veth.a.ip("addr", "add", f"{v.addr_a}/{v.prefixlen}", "brd", "+", "dev", v.if_a)
    m.hb.start()


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
        power_on_hb(m)
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


def hbd_in_place_of(peer: HeartbeatPeer, root: Path, hacf: str) -> HbdNode:
    """An hbd node for `peer`'s machine, with its uuid and generation carried over."""
    node = HbdNode(peer.name, peer.ns, root)
    node.write_config(hacf, AUTH["sha1"])
    node.write_haresources((peer.etc / "haresources").read_text())
    node.state_dir.mkdir(parents=True, exist_ok=True)
    (node.state_dir / "uuid").write_text(f"{uuid.UUID(bytes=peer.uuid)}\n")
    generation = peer.generation
    assert generation is not None, f"{peer.name} wrote no hb_generation"
    (node.state_dir / "generation").write_text(f"{generation}\n")
    return node


def test_a_heartbeat_pair_is_migrated_to_hbd_one_node_at_a_time(tmp_path: Path) -> None:
    """docs/interop.md's walk-through, end to end: the VIP is on at most one node at every
    sample and is down at most once per hand-off."""
    alpha_name, beta_name = "alpha", "beta"
    with contextlib.ExitStack() as stack:
        ns_a = stack.enter_context(namespace("alpha"))
        ns_b = stack.enter_context(namespace("beta"))
        stack.enter_context(veth_pair(ns_a, ns_b, "10.93.0.0/24"))
        haresources = f"{alpha_name} IPaddr2::{VIP}/24/eth0\n"
        timing = HbTiming(deadtime=f"{DEADTIME:g}")
        peers = {}
        for name, ns, uid in ((alpha_name, ns_a, 0x50), (beta_name, ns_b, 0x70)):
            peer = HeartbeatPeer(
                name, ns, tmp_path / f"hb-{name}", uuid=bytes(range(uid, uid + 16))
            )
            peer.configure(
                ["bcast eth0"],
                (alpha_name, beta_name),
                AUTH["sha1"],
                timing,
                haresources=haresources,
                auto_failback="on",
            )
            stack.callback(peer.kill)
            peers[name] = peer
        hacf = "\n".join(
            [
                "keepalive 500ms",
                "warntime 2",
                f"deadtime {DEADTIME:g}",
                "initdead 6",
                "auto_failback on",
                "bcast eth0",
                f"node {alpha_name} {beta_name}",
                "",
            ]
        )
        vip = stack.enter_context(
            VipSampler(VIP, {alpha_name: ns_a.name, beta_name: ns_b.name}, interval=0.02)
        )
        for peer in peers.values():
            peer.start()
        vip.mark("two Heartbeat nodes started")
        vip.wait_on(alpha_name, STARTUP + 15.0)

        # 1. replace the standby (beta): stop Heartbeat there, start hbd in its place
        peers[beta_name].stop()
        beta = hbd_in_place_of(peers[beta_name], tmp_path / "beta", hacf)
        stack.callback(lambda: beta.kill() if beta.running else None)
        vip.mark("beta: Heartbeat replaced by hbd")
        beta.start()
        wait_for(
            lambda: True if peers[alpha_name].node_status(beta_name) == "active" else None,
            STARTUP,
            "Heartbeat on alpha to see hbd on beta active",
        )
        time.sleep(3.0)
        assert vip.holders() == (alpha_name,), "the group moved when the standby was replaced"

        # 2. move the group to beta (hb_standby on alpha), then replace alpha
        hb_alpha = peers[alpha_name]
        done = hb_alpha.in_namespaces(STANDBY, "all", timeout=20.0)
        assert done.returncode == 0, done.stdout + done.stderr
        vip.mark("hb_standby all on alpha")
        vip.wait_on(beta_name, HANDOFF)
        wait_for(lambda: True if _stable(beta) else None, HANDOFF, "both stable after the hand-off")
        hb_alpha.stop()
        alpha = hbd_in_place_of(hb_alpha, tmp_path / "alpha", hacf)
        stack.callback(lambda: alpha.kill() if alpha.running else None)
        vip.mark("alpha: Heartbeat replaced by hbd")
        alpha.start()
        # auto_failback on: the group goes home to alpha, now between two hbd nodes
        vip.wait_on(alpha_name, STARTUP + HANDOFF)
        time.sleep(2.0)
        assert vip.holders() == (alpha_name,)
    print(vip.report())
    vip.assert_never_dual()
    outages = down_after_first_up(vip)
    print(
        f"migration: the VIP went down {len(outages)} time(s) after it first came up: "
        + ", ".join(f"{ms:.0f} ms" for ms in outages)
    )
    # two moves, one hand-off each: to beta (hb_standby), home to alpha (auto failback)
    assert len(outages) <= 2, vip.report()
    assert all(ms < HANDOFF * 1000 for ms in outages), vip.report()


def down_after_first_up(vip: VipSampler) -> list[float]:
    """The spans (ms) the address was on no node, after it was first on one."""
    out: list[float] = []
    seen = False
    timeline = vip.timeline
    for change, following in itertools.pairwise(timeline):
        if change.holders:
            seen = True
        elif seen:
            out.append((following.at - change.at) * 1000)
    return out


def _stable(node: HbdNode) -> bool:
    hb = (node.status() or {}).get("heartbeat_peer")
    return bool(hb) and hb["hand_off"] == "none" and hb["peer_stable"] and hb["state"] == "stable"


def test_two_groups_one_per_node(tmp_path: Path) -> None:
    vip2 = "10.93.0.101"
    haresources = f"{HB} IPaddr2::{VIP}/24/eth0\n{HBD} IPaddr2::{vip2}/24/eth0\n"
    with contextlib.ExitStack() as stack:
        m = stack.enter_context(mixed(tmp_path, "bcast", "sha1", True, haresources, "on"))
        nss = {HB: m.veth.a.name, HBD: m.veth.b.name}
        hb_group = stack.enter_context(VipSampler(VIP, nss, interval=0.02))
        hbd_group = stack.enter_context(VipSampler(vip2, nss, interval=0.02))
        m.hbd.start()
        m.hb.start()
        # both start: each acquires its own group
        hb_group.wait_on(HB, STARTUP + 15.0)
        hbd_group.wait_on(HBD, STARTUP + 15.0)
        m.wait(lambda: both_stable(m), "both nodes stable", HANDOFF)
        m.hb.stop()  # alpha takes hb's group too; its own stays where it is
        hb_group.wait_on(HBD, HANDOFF)
        assert hbd_group.holders() == (HBD,)
        m.hb.start()  # auto_failback: hb's group goes home, alpha's stays
        hb_group.wait_on(HB, STARTUP + HANDOFF)
        m.wait(lambda: both_stable(m), "both nodes stable", HANDOFF)
        assert hbd_group.holders() == (HBD,)
        m.hbd.stop(timeout=20.0)  # alpha stops cleanly: hb takes alpha's group
        hbd_group.wait_on(HB, HANDOFF)
        assert hb_group.holders() == (HB,)
    for vip in (hb_group, hbd_group):
        print(vip.report())
        vip.assert_never_dual()
