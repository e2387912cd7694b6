"""`hbctl release` (Heartbeat's hb_standby): ask the peer to take groups, once.

Unlike `hbctl standby`, nothing stays refused: the peer answers the offer with a takeover
claim of its own, the groups move by the hand-off rules (never two holders), and when the
peer dies later this node takes them back. Scenarios on the whole-node simulator.
"""

from __future__ import annotations

import pytest

from hbd.core.advert import Standby
from hbd.core.errors import LocalProtocolError
from hbd.core.model import AutoFailback
from hbd.testing.sim import SimCluster

from test_partition import Watch, cluster


def settled(*groups: tuple[str, tuple[str, ...]], **kw: object) -> SimCluster:
    sim = cluster(*groups, **kw)
    sim.run_for(5)
    return sim


def test_release_hands_the_groups_to_the_peer_once_and_refuses_nothing_after() -> None:
    sim = settled(("alpha", ("svc",)), auto_failback=AutoFailback.ON)
    assert sim.started_on("svc") == ["alpha"]
    w = Watch(sim)
    sim.release("alpha", "all")
    w.until(lambda: sim.started_on("svc") == ["beta"], 5)
    w.run(3)
    assert sim.started_on("svc") == ["beta"] and w.most == 1
    # the offer was withdrawn once beta saw it; alpha refuses nothing
    assert sim.node("alpha").policy.advert().offer is Standby.NONE
    assert sim.node("alpha").policy.summary()["standby"] == {"alpha": "none", "beta": "none"}
    assert any("hand over all delivered" in d for d in sim.decisions("alpha"))
    sim.power_off("beta")  # unlike hb_standby's persistent cousin, alpha takes them back
    w.until(lambda: sim.started_on("svc") == ["alpha"], 10)
    assert sim.started_on("svc") == ["alpha"] and w.most == 1


def test_release_local_moves_only_the_groups_this_node_prefers() -> None:
    sim = settled(("alpha", ("one",)), ("beta", ("two",)), auto_failback=AutoFailback.OFF)
    sim.stop_daemon("beta")
    sim.run_for(4)
    sim.start_daemon("beta")  # auto_failback off: both groups stay on alpha
    sim.run_for(6)
    assert sim.started_on("one") == ["alpha"] and sim.started_on("two") == ["alpha"]
    w = Watch(sim)
    sim.release("alpha", "foreign")  # give back beta's own group, keep alpha's
    w.until(lambda: sim.started_on("two") == ["beta"], 5)
    w.run(2)
    assert sim.started_on("one") == ["alpha"] and sim.started_on("two") == ["beta"]
    assert w.most == 1


def test_a_peer_in_standby_declines_the_offer_and_says_why() -> None:
    sim = settled(("alpha", ("svc",)))
    sim.standby("beta", "all")
    sim.run_for(2)
    sim.release("alpha", "all")
    sim.run_for(3)
    assert sim.started_on("svc") == ["alpha"]
    assert any("this node is in standby all" in d for d in sim.decisions("beta"))


def test_release_without_a_peer_is_refused_with_the_reason() -> None:
    sim = settled(("alpha", ("svc",)))
    sim.power_off("beta")
    sim.run_for(3)
    with pytest.raises(LocalProtocolError, match="no peer is heard"):
        sim.node("alpha").release("all", sim.clock.now)
    with pytest.raises(LocalProtocolError, match="not a standby mode"):
        sim.node("alpha").release("sideways", sim.clock.now)


def test_hb_standby_and_hb_takeover_take_heartbeats_arguments(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hbd.commands import cli
    from hbd.shell import control

    asked: list[tuple[str, str, str]] = []

    def request(run_dir: str, cmd: str, **params: str) -> dict[str, object]:
        asked.append((run_dir, cmd, params["mode"]))
        return {"ok": True, "message": f"{cmd} {params['mode']} requested"}

    monkeypatch.setattr(control, "request", request)
    monkeypatch.setenv("HBD_RUN_DIR", "/run/hbd-test")
    assert cli.hb_standby_main([]) == 0 and cli.hb_takeover_main(["failback"]) == 0
    assert asked == [("/run/hbd-test", "release", "all"), ("/run/hbd-test", "takeover", "failback")]
    assert cli.hb_standby_main(["sideways"]) == 2
    assert "usage: hb_standby [all|foreign|local|failback]" in capsys.readouterr().err
