"""Round-trip time per path: every 5 s (20 s on serial) each node probes every path, and the
answer on the same path gives a smoothed RTT for status; echoes never disturb loss counting,
and an answer that is not to our latest probe is ignored."""

from __future__ import annotations

import pytest

from hbd.core.events import FrameDropped
from hbd.core.model import WireFormat
from hbd.testing import SimCluster

WIRES = pytest.mark.parametrize(
    "wire", [WireFormat.HBD, WireFormat.HEARTBEAT], ids=lambda w: w.value
)


@WIRES
def test_each_path_shows_its_own_round_trip(wire: WireFormat) -> None:
    sim = SimCluster(wire=wire, keepalive=0.2, deadtime=1.0)
    paths = sim.engine("alpha").path_ids
    slow, fast = paths[0], paths[1]
    sim.link(slow, "alpha", "beta", latency=0.040)  # 80 ms there and back
    sim.link(fast, "alpha", "beta", latency=0.002)
    sim.run_for(60)  # serial paths are probed every 20 s
    alpha = sim.engine("alpha")
    assert alpha.rtt("beta", slow) == pytest.approx(0.080, abs=0.005)
    assert alpha.rtt("beta", fast) == pytest.approx(0.004, abs=0.002)
    assert sim.engine("beta").rtt("alpha", slow) == pytest.approx(0.080, abs=0.005)
    for name in ("alpha", "beta"):  # probes are not counted as lost heartbeats
        status = sim.engine(name).node_status("beta" if name == "alpha" else "alpha", sim.clock.now)
        assert all(p.lost == 0 for p in status.paths)
        assert not sim.events_of(name, FrameDropped)


@WIRES
def test_a_cut_path_keeps_its_last_round_trip_and_gets_no_new_samples(wire: WireFormat) -> None:
    sim = SimCluster(wire=wire, keepalive=0.2, deadtime=1.0)
    path = sim.engine("alpha").path_ids[-1]  # a datagram path: probed every 5 s
    sim.run_for(12)
    before = sim.engine("alpha").rtt("beta", path)
    assert before is not None
    sim.cut(path, "alpha", "beta")
    sim.run_for(12)
    assert sim.engine("alpha").rtt("beta", path) == before


def test_no_round_trip_before_any_answer() -> None:
    sim = SimCluster(keepalive=0.2, deadtime=1.0)
    path = sim.engine("alpha").path_ids[0]
    assert sim.engine("alpha").rtt("beta", path) is None
