"""A clean stop says goodbye: the peer declares the leaving node dead at once instead of
waiting for deadtime, in both wire formats; the goodbye is authenticated and seq-checked
like any message, so a replayed one changes nothing."""

from __future__ import annotations

import pytest

from hbd.core.events import NodeDead, NodeLeft, NodeUp
from hbd.core.model import WireFormat
from hbd.core.states import NodeState
from hbd.testing import SimCluster

WIRES = pytest.mark.parametrize(
    "wire", [WireFormat.HBD, WireFormat.HEARTBEAT], ids=lambda w: w.value
)


@WIRES
def test_a_leaving_node_is_dead_at_once_not_after_deadtime(wire: WireFormat) -> None:
    sim = SimCluster(wire=wire, keepalive=0.2, deadtime=5.0)
    sim.run_for(3)
    left_at = sim.clock.now
    sim.engine("alpha").leave(left_at)
    sim.run_for(0.1)
    ((t_left, _),) = sim.events_of("beta", NodeLeft)
    ((t_dead, dead),) = sim.events_of("beta", NodeDead)
    assert t_left - left_at < 0.05 and t_dead == t_left
    assert dead.deadtime == 0.0
    assert sim.engine("beta").membership.node_state("alpha") is NodeState.DEAD
    sim.run_for(2)  # nothing more comes from a node that said goodbye
    assert len(sim.events_of("beta", NodeUp)) == 1


@WIRES
def test_a_restarted_node_is_welcomed_back_after_leaving(wire: WireFormat) -> None:
    sim = SimCluster(wire=wire, keepalive=0.2, deadtime=5.0)
    sim.run_for(3)
    sim.engine("alpha").leave(sim.clock.now)
    sim.run_for(0.5)
    sim.restart("alpha")
    sim.run_for(3)
    assert sim.engine("beta").membership.node_state("alpha") is NodeState.ACTIVE
