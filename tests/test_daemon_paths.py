"""The real `hbd` daemon, two and three nodes in network namespaces: paths and node deaths.

Each test builds its cluster with tests/cluster.py: alpha and beta joined by two veth
pairs (broadcast on eth0, unicast on eth1) and a socat pty pair standing in for a
null-modem cable. Timings are keepalive 200 ms, deadtime 1 s. Every wait is a bounded
poll of the daemon's status; the measured detection times are printed (`pytest -s`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hbd import __version__

from cluster import Cluster, Cut, Net, Timing, build
from netns import netem_available, requires_root, requires_socat

pytestmark = [pytest.mark.root, requires_root, requires_socat]

TIMING = Timing()
DEADTIME = TIMING.deadtime / 1000
MARGIN = 1.0  # seconds allowed past deadtime: poll period, loop scheduling, a busy CI box
STARTUP = 15.0  # seconds for two fresh daemons to find each other on every path


def redundancy_exit(c: Cluster, node: str) -> int:
    """`hbctl status --json` exit status, checked against the JSON it printed."""
    proc = c[node].hbctl("status", "--json")
    assert proc.stdout, proc.stderr
    assert '"redundancy"' in proc.stdout
    return proc.returncode


def paths_of(c: Cluster, local: str, peer: str) -> dict[str, Any]:
    view = c.peer_view(local, peer)
    assert view is not None, f"{local} does not answer"
    paths: dict[str, Any] = view["paths"]
    return paths


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Cluster]:
    """alpha and beta over bcast eth0, ucast eth1 and a serial line, all paths up."""
    with build(tmp_path) as c:
        c.start()
        c.wait_all_up(STARTUP)
        yield c


@pytest.mark.parametrize(
    ("wire", "auth"),
    [(None, "sha1"), ("hbd", "sha256")],
    ids=["default-heartbeat-sha1", "hbd-sha256"],
)
def test_two_nodes_see_each_other_on_every_path(
    tmp_path: Path, wire: str | None, auth: str
) -> None:
    with build(tmp_path, wire=wire, auth=auth) as c:
        assert bool(re.search(r"^wire ", c.hacf("alpha"), re.M)) == (wire is not None)
        c.start()
        took = c.wait_all_up(STARTUP)
        wire = wire or "heartbeat"  # what hbd must say it uses
        print(f"TIMING {wire}/{auth}: all paths up on both nodes {took:.2f} s after start")
        for local, peer in (("alpha", "beta"), ("beta", "alpha")):
            status = c[local].status()
            assert status is not None
            assert status["node"] == local
            assert status["redundancy"] == "redundant"
            view = status["nodes"][peer]
            assert view["generation"] == 1
            peer_status = c[peer].status()
            assert peer_status is not None
            # Heartbeat frames carry the sender's uuid; native frames only a 32-bit node id
            expected_uuid = peer_status["uuid"] if wire == "heartbeat" else None
            assert view["uuid"] == expected_uuid
            assert sorted(view["paths"]) == sorted(c.paths(local, peer))
            assert status["dropped_frames"].get("bad-auth", 0) == 0
            log = c[local].log()
            for net in c.networks:
                assert f"Link {peer}:{net.dev} up." in log
            assert f"Link {peer}:{c.serial('alpha', 'beta').device(local)} up." in log
            started = f"hbd {__version__} started: node {local}, generation 1, 3 path(s)"
            assert f"{started}, 0 group(s), wire {wire}" in log
            assert redundancy_exit(c, local) == 0
        lines = c["alpha"].hbctl("links").stdout.splitlines()
        assert sorted(line.split()[1] for line in lines) == sorted(c.paths("alpha", "beta"))
        assert all(line.split()[2] == "up" for line in lines)


CUTS = [
    pytest.param("eth0", "down", id="bcast-link-down"),
    pytest.param("eth1", "down", id="ucast-link-down"),
    pytest.param("eth0", "loss", id="bcast-loss-100"),
    pytest.param("eth1", "loss", id="ucast-loss-100"),
    pytest.param("serial", "down", id="serial-socat-killed"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("medium", "how"), CUTS)
def test_cutting_one_path_reports_exactly_that_path_dead(
    pair: Cluster, medium: str, how: Cut
) -> None:
    c = pair
    alpha = c["alpha"]
    if medium == "serial":
        line = c.serial("alpha", "beta")
        cut_path, dev = line.path_id("alpha", "beta"), line.device("alpha")
    else:
        net = c.network(medium)
        cut_path, dev = net.path_id("alpha", "beta"), net.dev
    others = [p for p in c.paths("alpha", "beta") if p != cut_path]
    mark = alpha.log_mark()

    if medium == "serial":
        line.unplug()
    else:
        net.cut("beta", how)  # at beta's end: alpha must notice on its own
    took = c.wait_path("alpha", "beta", cut_path, "dead", timeout=DEADTIME + MARGIN)
    how_text: str = how if how == "down" or netem_available() else "loss (zero-length queue)"
    how_text = "socat killed" if medium == "serial" else how_text
    print(f"TIMING {medium} {how_text}: path dead after {took:.2f} s (deadtime {DEADTIME:g} s)")

    paths = paths_of(c, "alpha", "beta")
    assert {p: paths[p]["status"] for p in others} == dict.fromkeys(others, "up")
    assert c.peer_view("alpha", "beta")["status"] == "active"  # type: ignore[index]
    alpha.wait_log(f"Link beta:{dev} dead.", timeout=1.0, since=mark)
    assert "node beta: is dead" not in alpha.log()[mark:]
    # two of three paths remain: still redundant by the policy (>= 2 paths per live peer)
    assert redundancy_exit(c, "alpha") == 0

    if medium == "serial":
        line.replug()
    else:
        net.restore("beta")
    back = c.wait_path("alpha", "beta", cut_path, "up", timeout=5.0)
    print(f"TIMING {medium} {how_text}: path up again {back:.2f} s after restore")
    alpha.wait_log(f"Link beta:{dev} up.", timeout=1.0, since=mark)
    c.wait_all_up(5.0)
    assert "node beta: is dead" not in alpha.log()[mark:]


@pytest.mark.slow
def test_losing_paths_one_by_one_degrades_then_partitions_then_recovers(pair: Cluster) -> None:
    c = pair
    alpha, beta = c["alpha"], c["beta"]
    line = c.serial("alpha", "beta")
    eth0, eth1 = c.network("eth0"), c.network("eth1")
    gen_before = c.peer_view("alpha", "beta")["generation"]  # type: ignore[index]
    mark = alpha.log_mark()

    line.unplug()
    c.wait_path("alpha", "beta", line.path_id("alpha", "beta"), "dead", DEADTIME + MARGIN)
    assert redundancy_exit(c, "alpha") == 0  # bcast and ucast remain

    eth1.cut("beta", "loss")
    c.wait_path("alpha", "beta", eth1.path_id("alpha", "beta"), "dead", DEADTIME + MARGIN)
    assert redundancy_exit(c, "alpha") == 1  # one path left: degraded
    assert c.peer_view("alpha", "beta")["status"] == "active"  # type: ignore[index]

    cut_at = time.monotonic()
    eth0.cut("beta", "down")
    view = c.wait_node("alpha", "beta", ["dead"], timeout=DEADTIME + MARGIN)
    took = time.monotonic() - cut_at
    print(f"TIMING last path cut -> node dead after {took:.2f} s (deadtime {DEADTIME:g} s)")
    # Death is fixed at last-heard + deadtime: not before deadtime minus one keepalive.
    assert took >= DEADTIME - TIMING.keepalive / 1000 - 0.05
    assert all(p["status"] == "dead" for p in view["paths"].values())
    alpha.wait_log("node beta: is dead", timeout=1.0, since=mark)
    assert redundancy_exit(c, "alpha") == 2
    assert alpha.running and beta.running

    line.replug()
    eth1.restore("beta")
    eth0.restore("beta")
    took = c.wait_all_up(5.0 + DEADTIME)
    print(f"TIMING all paths restored -> everything up again after {took:.2f} s")
    back = c.peer_view("alpha", "beta")
    assert back is not None
    assert back["generation"] == gen_before  # the same run of beta, not a restart
    assert re.search(r"Status update for node beta: status (up|active)", alpha.log()[mark:])
    assert redundancy_exit(c, "alpha") == 0


@pytest.mark.slow
def test_serial_unplug_and_replug_recovers_on_its_own(pair: Cluster) -> None:
    c = pair
    line = c.serial("alpha", "beta")
    for cycle in range(2):
        marks = {n: c[n].log_mark() for n in ("alpha", "beta")}
        line.unplug()
        for local, peer in (("alpha", "beta"), ("beta", "alpha")):
            c.wait_path(local, peer, line.path_id(local, peer), "dead", DEADTIME + MARGIN)
            c[local].wait_log(f"Link {line.path_id(local, peer)} lost", 1.0, since=marks[local])
        line.replug()  # same link names, new ptys: the daemons must reopen them unaided
        took = c.wait_all_up(10.0)
        print(f"TIMING serial replug #{cycle + 1}: both ends up again after {took:.2f} s")
        for local, peer in (("alpha", "beta"), ("beta", "alpha")):
            log = c[local].log()[marks[local] :]
            assert f"Link {line.path_id(local, peer)} opened" in log
            assert f"Link {peer}:{line.device(local)} up." in log
            assert f"node {peer}: is dead" not in log


THREE = ("alpha", "beta", "gamma")


@pytest.mark.slow
def test_three_nodes_see_each_other_and_a_crashed_one_is_declared_dead(tmp_path: Path) -> None:
    nets = (Net("bcast", "eth0"), Net("bcast", "eth1"))  # two bridges, one per NIC
    with build(tmp_path, THREE, networks=nets, serial=(("alpha", "beta"),)) as c:
        c.start()
        took = c.wait_all_up(STARTUP)
        print(f"TIMING three nodes: every pair up on every path after {took:.2f} s")
        assert len(c.paths("alpha", "beta")) == 3
        assert sorted(c.paths("alpha", "gamma")) == ["bcast:eth0", "bcast:eth1"]
        for local in THREE:
            status = c[local].status()
            assert status is not None
            assert sorted(status["nodes"]) == sorted(n for n in THREE if n != local)
            assert status["redundancy"] == "redundant"
            assert c[local].hbctl("status").returncode == 0

        gamma_gen = c.peer_view("alpha", "gamma")["generation"]  # type: ignore[index]
        marks = {n: c[n].log_mark() for n in THREE}
        crashed_at = time.monotonic()
        c["gamma"].kill()  # a crash: no goodbye
        for local in ("alpha", "beta"):
            c.wait_node(local, "gamma", ["dead"], timeout=DEADTIME + MARGIN)
            took = time.monotonic() - crashed_at
            print(f"TIMING {local}: crashed gamma declared dead {took:.2f} s after the kill")
            assert took <= DEADTIME + MARGIN
            c[local].wait_log("node gamma: is dead", 1.0, since=marks[local])
            assert c[local].hbctl("status").returncode == 2  # a configured peer is unreachable
            assert "node beta: is dead" not in c["alpha"].log()[marks["alpha"] :]
        view = c.peer_view("alpha", "beta")
        assert view is not None and view["status"] == "active"
        assert all(p["status"] == "up" for p in view["paths"].values())

        c["gamma"].start()
        c.wait_all_up(STARTUP)
        for local in ("alpha", "beta"):
            view = c.peer_view(local, "gamma")
            assert view is not None and view["generation"] == gamma_gen + 1


@pytest.mark.slow
def test_three_nodes_over_ucast_hear_each_peer_on_the_path_to_its_address(
    tmp_path: Path,
) -> None:
    nets = (Net("bcast", "eth0"), Net("ucast", "eth1"))
    with build(tmp_path, THREE, networks=nets, serial=()) as c:
        c.start()
        for local in THREE:  # everyone alive over bcast first
            for peer in THREE:
                if peer != local:
                    c.wait_path(local, peer, "bcast:eth0", "up", timeout=STARTUP)
        eth1 = c.network("eth1")

        def ucast_paths_right() -> bool | None:
            for local in THREE:
                for peer in THREE:
                    if peer == local:
                        continue
                    view = c.peer_view(local, peer)
                    own = eth1.path_id(local, peer)  # ucast:eth1:<peer's address>
                    if view is None or view["paths"].get(own, {}).get("status") != "up":
                        return None
            return True

        # ten keepalives after everyone is up is plenty for a path that works
        c.wait(ucast_paths_right, "each peer up on the ucast path to its own address", 2.0)
