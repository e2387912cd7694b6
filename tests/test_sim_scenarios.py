"""Cluster scenarios on simulated time: each runs in well under a second of real time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from hbd.core.engine import PathKind
from hbd.core.events import (
    Event,
    FrameDropped,
    LateHeartbeat,
    LocalActive,
    NodeActive,
    NodeDead,
    NodeRestarted,
    NodeUp,
    PathDown,
    PathUp,
)
from hbd.core.model import WireFormat
from hbd.core.node import Node
from hbd.core.states import NodeState, PathState
from hbd.testing import SimCluster

WIRES = pytest.mark.parametrize(
    "wire", [WireFormat.HBD, WireFormat.HEARTBEAT], ids=lambda w: w.value
)


@pytest.fixture(autouse=True)
def quick() -> Iterator[None]:
    start = time.process_time()
    yield
    # The longest (ten simulated minutes of lossy paths, adaptive detector) takes 1.5-2.1 s
    # of CPU on this machine even idle, and 2.2 s with CI's neighbours; the bound only has
    # to catch a real slowdown (several times), not time the simulator: that is bench/'s job.
    assert time.process_time() - start < 5.0, "a scenario must take a second or two of CPU"


@WIRES
def test_two_nodes_find_each_other_on_every_path(wire: WireFormat) -> None:
    sim = SimCluster(wire=wire)
    sim.run_for(5)
    for me, peer in (("alpha", "beta"), ("beta", "alpha")):
        e = sim.engine(me)
        assert e.membership.node_state(peer) is NodeState.ACTIVE
        assert all(e.membership.path_state(peer, p) is PathState.UP for p in e.path_ids)
        kinds = {type(ev) for _, ev in sim.events(me)}
        assert {PathUp, NodeUp, NodeActive, LocalActive} <= kinds
        assert FrameDropped not in kinds


@WIRES
def test_thirty_second_deadtime_crash_detected_at_last_heard_plus_deadtime(
    wire: WireFormat,
) -> None:
    sim = SimCluster(keepalive=2.0, deadtime=30.0, wire=wire)
    sim.run_for(60)
    sim.crash("beta")
    sim.run_for(60)
    ((t, dead),) = sim.events_of("alpha", NodeDead)
    assert isinstance(dead, NodeDead) and dead.deadtime == 30.0
    assert dead.last_heard is not None and t == pytest.approx(dead.last_heard + 30.0)
    crashed_at = 160.0
    assert crashed_at + 30.0 - 2.0 <= t <= crashed_at + 30.0 + 2.0  # within one keepalive
    downs = sim.events_of("alpha", PathDown)
    assert len(downs) == 3 and all(td <= t for td, _ in downs)


@WIRES
def test_one_path_cut_of_three_never_kills_the_node(wire: WireFormat) -> None:
    sim = SimCluster(keepalive=0.5, deadtime=3.0, wire=wire)
    sim.run_for(10)
    sim.cut("bcast:eth0", "alpha", "beta")
    sim.run_for(120)
    for me, peer in (("alpha", "beta"), ("beta", "alpha")):
        assert sim.events_of(me, NodeDead) == []
        downs = [e for _, e in sim.events_of(me, PathDown)]
        assert downs == [PathDown(peer, "bcast:eth0", 3.0, False)]
        assert sim.engine(me).membership.node_state(peer) is NodeState.ACTIVE
    sim.heal("bcast:eth0", "alpha", "beta")
    sim.run_for(2)
    assert sim.engine("alpha").membership.path_state("beta", "bcast:eth0") is PathState.UP


@pytest.mark.parametrize("adaptive", [False, True], ids=["fixed", "adaptive"])
def test_lossy_paths_for_ten_minutes_give_no_false_death(adaptive: bool) -> None:
    paths = (("bcast:eth0", PathKind.DATAGRAM), ("bcast:eth1", PathKind.DATAGRAM))
    sim = SimCluster(paths=paths, keepalive=0.2, deadtime=1.0, adaptive_detector=adaptive, seed=7)
    sim.link("bcast:eth0", "alpha", "beta", loss=0.30, jitter=0.02)
    sim.link("bcast:eth1", "alpha", "beta", loss=0.10, jitter=0.02)
    sim.run_for(600)
    for me, peer in (("alpha", "beta"), ("beta", "alpha")):
        assert sim.events_of(me, NodeDead) == []
        status = sim.engine(me).node_status(peer, sim.clock.now)
        loss = {p.path: p.loss for p in status.paths}
        assert 0.15 < loss["bcast:eth0"] < 0.45 and 0.02 < loss["bcast:eth1"] < 0.2
        # late heartbeats are reported, with their measured interval
        assert all(e.interval_ms > 333 for _, e in sim.events_of(me, LateHeartbeat))


@WIRES
def test_restart_is_seen_as_a_new_generation(wire: WireFormat) -> None:
    sim = SimCluster(keepalive=1.0, deadtime=5.0, wire=wire)
    sim.run_for(10)
    sim.restart("beta")
    sim.run_for(10)
    assert [e for _, e in sim.events_of("alpha", NodeRestarted)] == [NodeRestarted("beta", 1, 2)]
    assert sim.events_of("alpha", NodeDead) == []  # it came back within deadtime
    assert sim.engine("alpha").node_status("beta", sim.clock.now).generation == 2
    assert sim.engine("alpha").membership.node_state("beta") is NodeState.ACTIVE


@WIRES
def test_crash_then_restart_after_death(wire: WireFormat) -> None:
    sim = SimCluster(keepalive=1.0, deadtime=5.0, wire=wire)
    sim.run_for(10)
    sim.crash("beta")
    sim.run_for(10)
    sim.restart("beta")
    sim.run_for(5)
    kinds = [type(e) for _, e in sim.events("alpha")]
    assert kinds.index(NodeDead) < kinds.index(NodeRestarted)
    assert kinds[kinds.index(NodeRestarted) :].count(NodeUp) == 1


@WIRES
def test_asymmetric_cut_only_the_deaf_side_sees_death(wire: WireFormat) -> None:
    sim = SimCluster(keepalive=1.0, deadtime=5.0, wire=wire)
    sim.run_for(10)
    for path, _ in sim.paths:
        sim.cut(path, "alpha", "beta", both=False)  # alpha -> beta lost; beta -> alpha fine
    sim.run_for(20)
    assert sim.events_of("alpha", NodeDead) == []
    assert [e.node for _, e in sim.events_of("beta", NodeDead)] == ["alpha"]


@WIRES
def test_adaptive_detector_in_a_cluster_calls_a_cut_path_early(wire: WireFormat) -> None:
    sim = SimCluster(keepalive=1.0, deadtime=30.0, adaptive_detector=True, wire=wire)
    sim.run_for(60)
    sim.cut("serial:/dev/ttyS0", "alpha", "beta")
    sim.run_for(40)
    ((_, down),) = sim.events_of("alpha", PathDown)
    assert isinstance(down, PathDown) and down.by_detector and down.silent_for < 5.0
    assert sim.events_of("alpha", NodeDead) == []


def test_three_nodes_one_crash() -> None:
    sim = SimCluster(("alpha", "beta", "gamma"), keepalive=1.0, deadtime=5.0)
    sim.run_for(10)
    sim.crash("gamma")
    sim.run_for(10)
    for me in ("alpha", "beta"):
        assert [e.node for _, e in sim.events_of(me, NodeDead)] == ["gamma"]


def test_same_seed_same_run() -> None:
    def trace(seed: int) -> list[tuple[float, Event]]:
        sim = SimCluster(keepalive=0.2, deadtime=1.0, seed=seed)
        sim.link("bcast:eth0", "alpha", "beta", loss=0.5, jitter=0.3)
        sim.run_for(30)
        return sim.events("alpha")

    assert trace(5) == trace(5)


@pytest.mark.parametrize("wire", [WireFormat.HBD, WireFormat.HEARTBEAT], ids=lambda w: w.value)
def test_an_idle_healthy_cluster_never_wakes_its_policy(
    wire: WireFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing the policy reads changes: the moment a peer may count us dead moves on with
    # every acknowledgement (the node owns that deadline, so it never wakes the policy for a
    # moment that has moved on), and the probes of a heard peer's addresses answer every
    # 5 s (which can hold back only a takeover from a peer that is not heard).
    sim = SimCluster(
        wire=wire, keepalive=0.2, deadtime=1.0, groups=(("alpha", ("IPaddr::10.1.0.100/24",)),)
    )
    sim.run_for(30)
    woken: list[str] = []
    for name in ("alpha", "beta"):
        node = sim.node(name)
        evaluate = node._evaluate

        def counted(
            now: float, node: Node = node, evaluate: Callable[[float], None] = evaluate
        ) -> None:
            woken.append("input" if node._dirty else "timer")
            evaluate(now)

        monkeypatch.setattr(node, "_evaluate", counted)
    sim.run_for(60)
    assert woken == []
