"""An hbd node beside a real Linux-HA Heartbeat 3.0.6 node (Debian's package), in CI.

Two network namespaces: `alpha` runs hbd (tests/cluster.py's HbdNode), `hb` runs
`heartbeat` (tests/heartbeat_peer.py: its own mount and UTS namespaces, hostname `hb`).
They are joined by a veth pair (bcast or ucast on eth0) and, in the first test, by a socat
pty pair standing in for a null-modem cable. Both read the same authkeys.

Timings on both sides: keepalive 500 ms, warntime 2 s, deadtime 3 s, initdead 6 s (the
smallest Heartbeat accepts with some room: deadtime must exceed twice the keepalive,
initdead must be at least deadtime; under 10 s it only warns).

Each test checks, from both sides (hbd's `hbctl status --json`, Heartbeat's `cl_status`):
every link up and the peer active, Heartbeat itself `active`; a cut path reported dead on
both sides and up again when restored; a stopped node declared dead within deadtime (plus
MARGIN) by the other; a restarted node back as a new generation. Measured times are
printed (`pytest -s`). docs/interop.md says what works and what does not.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cluster import HbdNode, wait_for
from heartbeat_peer import AUTH, HbTiming, HeartbeatPeer, requires_heartbeat
from netns import SocatPair, Veth, namespace, requires_root, requires_socat, veth_pair

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root, requires_socat, requires_heartbeat]

T = TypeVar("T")

HB, HBD = "hb", "alpha"
DEADTIME = 3.0
MARGIN = 2.0  # past deadtime: Heartbeat reports a dead link ~1 s after deadtime; polls; busy CI
HB_LINK_LAG = 1.0  # more for Heartbeat's own dead-link report: its check runs on its own clock
STARTUP = 20.0  # both started, every link up and both active


@dataclass
class Mixed:
    """The two nodes and what joins them."""

    hb: HeartbeatPeer
    hbd: HbdNode
    veth: Veth  # side "a" is hb, side "b" is alpha
    serial: SocatPair | None
    medium: str  # bcast or ucast

    @property
    def tty_hb(self) -> str:
        assert self.serial is not None
        return self.serial.link_a

    @property
    def tty_hbd(self) -> str:
        assert self.serial is not None
        return self.serial.link_b

    def hbd_paths(self) -> list[str]:
        """The path ids hbd shows for hb."""
        net = f"ucast:eth0:{self.veth.addr_a}" if self.medium == "ucast" else "bcast:eth0"
        return [net] + ([f"serial:{self.tty_hbd}"] if self.serial else [])

    def hb_links(self) -> list[str]:
        """The link names Heartbeat shows for alpha."""
        return ["eth0"] + ([self.tty_hb] if self.serial else [])

    # -- hbd's view ------------------------------------------------------------------

    def hbd_view(self) -> dict[str, Any] | None:
        status = self.hbd.status()
        if status is None:
            return None
        view: dict[str, Any] | None = status["nodes"].get(HB)
        return view

    def hbd_sees(self, node_states: tuple[str, ...], paths: dict[str, str]) -> bool:
        view = self.hbd_view()
        if view is None or view["status"] not in node_states:
            return False
        return all(view["paths"].get(p, {}).get("status") == s for p, s in paths.items())

    # -- Heartbeat's view ------------------------------------------------------------

    def hb_sees(self, node_state: str, links: dict[str, str]) -> bool:
        if self.hb.node_status(HBD) != node_state:
            return False
        return all(self.hb.link_status(HBD, link) == s for link, s in links.items())

    def fully_up(self) -> bool:
        return (
            self.hbd_sees(("active",), {p: "up" for p in self.hbd_paths()})
            and self.hb.node_status(HB) == "active"
            and self.hb_sees("active", {link: "up" for link in self.hb_links()})
        )

    def dump(self) -> str:
        return (
            f"\n---- hbd status ----\n{self.hbd.status()}"
            f"\n---- hbd log ----\n{self.hbd.log()[-2500:]}"
            f"\n---- heartbeat log ----\n{self.hb.logfile()[-3500:]}"
        )

    def wait(self, probe: Callable[[], bool], what: str, timeout: float) -> float:
        return wait_for(lambda: True if probe() else None, timeout, what, self.dump)[1]


def hbd_hacf(m: Mixed, auto_failback: str = "off") -> str:
    media = (
        f"ucast eth0 {m.veth.addr_a}" if m.medium == "ucast" else "bcast eth0",
        *([f"serial {m.tty_hbd}"] if m.serial else []),
    )
    return "\n".join(
        [
            "# hbd beside a Heartbeat node (tests/test_interop_heartbeat.py)",
            "keepalive 500ms",
            "warntime 2",
            f"deadtime {DEADTIME:g}",
            "initdead 6",
            f"auto_failback {auto_failback}",
            *media,
            f"node {HB} {HBD}",
            "",
        ]
    )


@contextlib.contextmanager
def mixed(
    tmp_path: Path,
    medium: str,
    auth: str,
    serial: bool,
    haresources: str = "",
    auto_failback: str = "off",
) -> Iterator[Mixed]:
    """hb and alpha configured (nothing started); everything removed on exit. Both get
    the same `haresources` and `auto_failback`."""
    with contextlib.ExitStack() as stack:
        ns_hb = stack.enter_context(namespace("hb"))
        ns_hbd = stack.enter_context(namespace("alpha"))
        veth = stack.enter_context(veth_pair(ns_hb, ns_hbd, "10.93.0.0/24"))
        pair: SocatPair | None = None
        if serial:
            pair = SocatPair(tmp_path / "tty-hb", tmp_path / "tty-alpha")
            pair.start()
            stack.callback(pair.stop)
        hb = HeartbeatPeer(HB, ns_hb, tmp_path / "hb")
        stack.callback(hb.kill)  # after a failure; a clean stop() leaves nothing to kill
        hbd = HbdNode(HBD, ns_hbd, tmp_path / "alpha")
        m = Mixed(hb, hbd, veth, pair, medium)
        hb_media = [f"ucast eth0 {veth.addr_b}" if medium == "ucast" else "bcast eth0"]
        if pair is not None:
            hb_media.append(f"serial {m.tty_hb}")
        hb.configure(
            hb_media,
            (HB, HBD),
            AUTH[auth],
            HbTiming(deadtime=f"{DEADTIME:g}"),
            haresources=haresources,
            auto_failback=auto_failback,
        )
        hbd.write_config(hbd_hacf(m, auto_failback), AUTH[auth])
        if haresources:
            hbd.write_haresources(haresources)
        try:
            yield m
            # Nothing hbd sent made Heartbeat complain (an unsequenced message of a type
            # it does not know, such as hbd's round-trip probe, is logged as an error).
            complaints = [line for line in hb.logfile().splitlines() if "missing seqno" in line]
            assert not complaints, f"Heartbeat complained about hbd's messages: {complaints}"
        except BaseException:
            print(m.dump())
            raise
        finally:
            if hbd.proc is not None and hbd.running:
                hbd.kill()


def hb_generation_sent(peer: HeartbeatPeer, start: int) -> int:
    """The generation Heartbeat announced in its log for its `start`-th start."""
    found = re.findall(r"Heartbeat generation: (\d+)", peer.logfile())
    assert len(found) >= start, f"heartbeat logged {len(found)} generations, wanted #{start}"
    return int(found[start - 1])


def both_up(m: Mixed) -> float:
    """Start both, wait until each sees the other active on every link; seconds taken."""
    m.hbd.start()
    m.hb.start()
    took = m.wait(m.fully_up, "hbd and Heartbeat to see each other active on every link", STARTUP)
    view = m.hbd_view()
    assert view is not None
    assert view["uuid"] == str(uuid.UUID(bytes=m.hb.uuid))
    assert view["generation"] == hb_generation_sent(m.hb, m.hb.starts)
    assert sorted(m.hb.links(HBD)) == sorted(m.hb_links())
    return took


def settled(m: Mixed) -> None:
    """Wait until Heartbeat's start-up grace is over: for its first 5 s it advertises
    deadtime + 2 s (`dt`), and hbd, like a Heartbeat peer, honours the advertised value.
    Detection times measured before that would be 2 s longer."""
    m.wait(
        lambda: (m.hbd_view() or {}).get("deadtime_ms") == DEADTIME * 1000,
        f"hbd: {HB} advertising deadtime {DEADTIME:g} s",
        10.0,
    )


def cut_and_restore(
    m: Mixed,
    label: str,
    hbd_path: str,
    hb_link: str,
    cut: Callable[[], None],
    restore: Callable[[], None],
) -> None:
    """Cut one path: both sides report exactly it dead, the node stays up; restore it."""
    others_hbd = {p: "up" for p in m.hbd_paths() if p != hbd_path}
    others_hb = {link: "up" for link in m.hb_links() if link != hb_link}
    settled(m)
    cut()
    t_hbd = m.wait(
        lambda: m.hbd_sees(("active",), {hbd_path: "dead", **others_hbd}),
        f"hbd: {hbd_path} dead, {HB} still active",
        DEADTIME + MARGIN,
    )
    t_hb = m.wait(
        lambda: m.hb_sees("active", {hb_link: "dead", **others_hb}),
        f"Heartbeat: link {hb_link} of {HBD} dead, {HBD} still active",
        max(0.5, DEADTIME + MARGIN + HB_LINK_LAG - t_hbd),  # measured from the cut
    )
    print(
        f"TIMING {label}: hbd saw the path dead after {t_hbd:.2f} s, Heartbeat after "
        f"{t_hbd + t_hb:.2f} s"
    )
    restore()
    took = m.wait(m.fully_up, f"{label} restored on both sides", DEADTIME + 5)
    print(f"TIMING {label}: both sides see it up again {took:.2f} s after restoring")


def heartbeat_stops_and_returns(m: Mixed, clean: bool) -> None:
    """Stop (or crash) Heartbeat: hbd declares it dead within deadtime; it comes back as
    a new generation."""
    before = hb_generation_sent(m.hb, m.hb.starts)
    settled(m)
    if clean:
        took_stop = m.hb.stop()
    else:
        m.hb.kill()
        took_stop = 0.0
    stopped = time.monotonic()
    m.wait(
        lambda: m.hbd_sees(("dead",), {p: "dead" for p in m.hbd_paths()}),
        f"hbd: {HB} dead",
        DEADTIME + MARGIN + 1,
    )
    silent = time.monotonic() - stopped
    print(
        f"TIMING heartbeat {'SIGTERM' if clean else 'SIGKILL'}: stopped in {took_stop:.2f} s, "
        f"hbd declared it dead {silent:.2f} s after its last process exited"
    )
    assert silent <= DEADTIME + MARGIN
    assert re.search(rf"node {HB}: is dead", m.hbd.log())
    # a clean stop said goodbye: degraded (exit 1, and why), not partitioned (exit 2)
    status = m.hbd.hbctl("status", "--json")
    assert status.returncode == (1 if clean else 2), status.stdout
    if clean:
        assert f'"degraded_by": "{HB} stopped cleanly"' in status.stdout
    m.hb.start()
    took = m.wait(m.fully_up, "Heartbeat back, both active on every link", STARTUP)
    after = hb_generation_sent(m.hb, m.hb.starts)
    view = m.hbd_view()
    assert view is not None and view["generation"] == after > before
    print(
        f"TIMING heartbeat restart: both active on every link {took:.2f} s after its start "
        f"(generation {before} -> {after})"
    )


def hbd_stops_and_returns(m: Mixed) -> None:
    """SIGTERM hbd: it says goodbye (t=shutdone) and Heartbeat declares it dead at once;
    hbd restarted comes back as a new generation and Heartbeat sees it active again."""
    status = m.hbd.status()
    assert status is not None
    mark = m.hb.log_mark()  # before the stop: its goodbye may be logged before stop() returns
    assert m.hbd.stop() == 0
    stopped = time.monotonic()
    m.wait(lambda: m.hb.node_status(HBD) == "dead", f"Heartbeat: {HBD} dead", DEADTIME + MARGIN + 1)
    silent = time.monotonic() - stopped
    # hbd says goodbye (t=shutdone) and Heartbeat logs it as from a Heartbeat peer (its
    # node status still follows its own deadtime)
    m.hb.wait_log(f"Received shutdown notice from '{HBD}'", 2.0, since=mark)
    for link in m.hb_links():  # its links still time out on their own
        m.wait(
            lambda link=link: m.hb.link_status(HBD, link) == "dead",
            f"Heartbeat: link {link} to {HBD} dead",
            DEADTIME + MARGIN + 1,
        )
    assert m.hb.node_status(HB) == "active"
    print(f"TIMING hbd SIGTERM: Heartbeat declared it dead {silent:.2f} s after it stopped")
    assert silent <= DEADTIME + MARGIN
    mark = m.hb.log_mark()
    m.hbd.start()
    took = m.wait(m.fully_up, "hbd back, both active on every link", STARTUP)
    m.hb.wait_log(f"Status update for node {HBD}: status active", 2.0, since=mark)
    again = m.hbd.status()
    assert again is not None and again["generation"] == status["generation"] + 1
    print(f"TIMING hbd restart: both active on every link {took:.2f} s after its start")


def test_bcast_and_serial_with_sha1(tmp_path: Path) -> None:
    with mixed(tmp_path, "bcast", "sha1", serial=True) as m:
        took = both_up(m)
        print(f"TIMING bcast+serial/sha1: every link up, both active {took:.2f} s after start")
        assert m.hbd.hbctl("status", "--json").returncode == 0  # redundant: two paths
        cut_and_restore(
            m,
            "bcast eth0 down on hbd's side",
            "bcast:eth0",
            "eth0",
            lambda: m.veth.set_down("b"),
            lambda: m.veth.set_up("b"),
        )
        # A pulled cable: socat stopped, so no byte moves but both ptys stay open. (Killing
        # socat would hang up Heartbeat's pty: it then logs "EOF in ttygets" in a busy
        # loop -- about 3 MB/s of log -- and never reopens the line; a real tty does not
        # hang up when its cable is pulled, so that is no fair test.)
        assert m.serial is not None and m.serial.proc is not None
        socat = m.serial.proc
        cut_and_restore(
            m,
            "serial line stalled",
            f"serial:{m.tty_hbd}",
            m.tty_hb,
            lambda: socat.send_signal(signal.SIGSTOP),
            lambda: socat.send_signal(signal.SIGCONT),
        )
        heartbeat_stops_and_returns(m, clean=True)
        hbd_stops_and_returns(m)
        m.hb.stop()


def test_ucast_with_md5(tmp_path: Path) -> None:
    with mixed(tmp_path, "ucast", "md5", serial=False) as m:
        took = both_up(m)
        print(f"TIMING ucast/md5: link up, both active {took:.2f} s after start")
        assert m.hbd.hbctl("status", "--json").returncode == 1  # degraded: one path
        heartbeat_stops_and_returns(m, clean=False)
        hbd_stops_and_returns(m)
        m.hb.stop()


def test_ucast6_and_mcast6_with_sha1(tmp_path: Path) -> None:
    """The same frames over IPv6: Heartbeat's ucast6 on eth0 and mcast6 on eth1 (its own
    plugins, ucast6.so and mcast6.so), hbd with the same lines. Both sides see every link
    up and the other node active; a cut IPv6 path is reported dead on both sides."""
    v6 = {HB: "fd93::1", HBD: "fd93::2"}
    group, port = "ff12::1:694", 695
    with contextlib.ExitStack() as stack:
        ns_hb = stack.enter_context(namespace("hb"))
        ns_hbd = stack.enter_context(namespace("alpha"))
        eth0 = stack.enter_context(veth_pair(ns_hb, ns_hbd, "10.93.0.0/24"))
        stack.enter_context(veth_pair(ns_hb, ns_hbd, "10.94.0.0/24", "eth1", "eth1"))
        for ns, name in ((ns_hb, HB), (ns_hbd, HBD)):
            ns.ip("-6", "addr", "add", f"{v6[name]}/64", "dev", "eth0", "nodad")
        hb = HeartbeatPeer(HB, ns_hb, tmp_path / "hb")
        stack.callback(hb.kill)
        hbd = HbdNode(HBD, ns_hbd, tmp_path / "alpha")
        stack.callback(hbd.kill)
        media = [f"ucast6 eth0 {v6[HBD]}", f"mcast6 eth1 {group} {port} 1 0"]
        hb.configure(media, (HB, HBD), AUTH["sha1"], HbTiming(deadtime=f"{DEADTIME:g}"))
        lines = ["keepalive 500ms", "warntime 2", f"deadtime {DEADTIME:g}", "initdead 6"]
        lines += ["auto_failback off", f"ucast6 eth0 {v6[HB]}", f"mcast6 eth1 {group} {port} 1 0"]
        hbd.write_config("\n".join([*lines, f"node {HB} {HBD}", ""]), AUTH["sha1"])
        paths = {f"ucast6:eth0:{v6[HB]}": "eth0", f"mcast6:eth1:{group}": "eth1"}

        def sees(hbd_paths: dict[str, str], hb_links: dict[str, str]) -> bool:
            status = hbd.status()
            view = None if status is None else status["nodes"].get(HB)
            if view is None or view["status"] != "active":
                return False
            if any(view["paths"].get(p, {}).get("status") != s for p, s in hbd_paths.items()):
                return False
            if hb.node_status(HBD) != "active" or hb.node_status(HB) != "active":
                return False
            return all(hb.link_status(HBD, link) == s for link, s in hb_links.items())

        def dump() -> str:
            return f"\n{hbd.status()}\n{hbd.log()[-2500:]}\n{hb.logfile()[-3500:]}"

        try:
            hbd.start()
            hb.start()
            _, took = wait_for(
                lambda: (
                    True if sees(dict.fromkeys(paths, "up"), {"eth0": "up", "eth1": "up"}) else None
                ),
                STARTUP,
                "hbd and Heartbeat active on both IPv6 links",
                dump,
            )
            print(f"TIMING ucast6+mcast6/sha1: both links up, both active {took:.2f} s")
            assert sorted(hb.links(HBD)) == ["eth0", "eth1"]
            eth0.set_down("b")  # cut ucast6: both sides see exactly that link dead
            _, took = wait_for(
                lambda: (
                    True
                    if sees(
                        {f"ucast6:eth0:{v6[HB]}": "dead", f"mcast6:eth1:{group}": "up"},
                        {"eth0": "dead", "eth1": "up"},
                    )
                    else None
                ),
                DEADTIME + MARGIN + HB_LINK_LAG + 1,
                "the ucast6 link dead on both sides, mcast6 still up",
                dump,
            )
            print(f"TIMING ucast6 cut: dead on both sides after {took:.2f} s")
            assert "missing seqno" not in hb.logfile()  # nothing hbd sent upset Heartbeat
            assert hbd.stop() == 0
            hb.stop()
        except BaseException:
            print(dump())
            raise
