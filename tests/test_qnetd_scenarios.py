"""The rule with a vote, on the whole-node simulator with a simulated corosync-qnetd.

Each test is one row of issue 14's outcomes (docs/qnetd.md): keepalive 200 ms, deadtime
1 s, watchdog 1 s, a ping node, the real policy and qdevice client on both nodes, the
simulated qnetd (ffsplit, tie-breaker lowest: alpha) answering them byte for byte.
"""

from __future__ import annotations

from hbd.core.engine import PathKind
from hbd.core.policy import TAKEOVER_MARGIN, Rules
from hbd.core.qnetd.client import decision_time
from hbd.testing.sim import SimCluster

PATHS = (("serial:/dev/ttyS0", PathKind.SERIAL), ("bcast:eth0", PathKind.DATAGRAM))
VIP = "IPaddr::10.1.0.100/24"
BUDGET = 1.0 + 0.2 + 1.0 + TAKEOVER_MARGIN  # deadtime + keepalive + watchdog + margin
DECISION = decision_time(1.0)  # heartbeat 1 s: qnetd's minimum


class Watch:
    """Holders of the group over time: how long two held it, how long none did."""

    def __init__(self, sim: SimCluster, group: str) -> None:
        self.sim, self.group = sim, group
        self.dual = 0.0
        self.gap = 0.0
        self._since = sim.clock.now
        self._holders = len(sim.holders(group))
        self.changes: list[tuple[float, str, bool]] = []
        sim.on_hold = self._on_hold

    def _account(self) -> None:
        now = self.sim.clock.now
        if self._holders >= 2:
            self.dual += now - self._since
        if self._holders == 0:
            self.gap += now - self._since
        self._since = now

    def _on_hold(self, node: str, group: str, holding: bool) -> None:
        if group != self.group:
            return
        self._account()
        self._holders = len(self.sim.holders(group))
        self.changes.append((self.sim.clock.now, node, holding))

    def done(self) -> None:
        self._account()


def cluster(preferred: str = "alpha", **kw: object) -> SimCluster:
    sim = SimCluster(
        ("alpha", "beta"),
        PATHS,
        keepalive=0.2,
        deadtime=1.0,
        watchdog_timeout=1.0,
        groups=((preferred, (VIP, "svc")),),
        ping_lans=("eth0",),
        arbiter=True,
        **kw,  # type: ignore[arg-type]
    )
    sim.run_for(8)
    assert sim.started_on(VIP) == [preferred]
    assert sim.node("alpha").arbiter_status(sim.clock.now)["vote"] == "ACK"  # type: ignore[index]
    return sim


def split(sim: SimCluster) -> None:
    """Every heartbeat path cut and the LAN split (no probe crosses): the residual case
    of two nodes alone, with both still reaching the ping node and qnetd."""
    sim.cut("serial:/dev/ttyS0", "alpha", "beta")
    sim.lan_split("eth0", "alpha", "beta")


def test_every_path_cut_both_reach_qnetd_the_holder_with_the_vote_keeps() -> None:
    sim = cluster("alpha")  # alpha: the lowest node id, the tie-breaker's side
    watch = Watch(sim, VIP)
    split(sim)
    sim.run_for(20)
    watch.done()
    assert sim.holders(VIP) == ["alpha"] and sim.started_on(VIP) == ["alpha"]
    assert watch.dual == 0.0 and watch.gap == 0.0 and watch.changes == []
    assert sim.resets("alpha") == 0
    assert any("NACK" in d for d in sim.decisions("beta"))


def test_every_path_cut_the_holder_without_the_vote_goes_before_the_other_takes() -> None:
    sim = cluster("beta")
    watch = Watch(sim, VIP)
    split(sim)
    sim.run_for(20)
    watch.done()
    assert sim.holders(VIP) == ["alpha"]  # exactly one serves
    assert watch.dual == 0.0
    assert sim.resets("beta") == 1  # it lost the vote: released and fenced
    assert watch.gap < BUDGET + DECISION + 1.5


def test_the_standby_dies_nothing_changes_on_the_holder() -> None:
    sim = cluster("alpha")
    watch = Watch(sim, VIP)
    ops = len(sim.log)
    sim.power_off("beta")
    sim.run_for(20)
    watch.done()
    assert sim.started_on(VIP) == ["alpha"] and watch.changes == []
    assert not [e for e in sim.log if e[0] == "go"]
    stops = [e for e in sim.log[ops:] if e[0] == "op" and e[5] in ("start", "stop")]
    assert stops == []
    assert sim.node("alpha").arbiter_status(sim.clock.now)["members"] == ["alpha"]


def holder_power_loss(sim: SimCluster) -> float:
    """alpha, the holder, loses power: seconds until beta started the group."""
    watch = Watch(sim, VIP)
    died = sim.clock.now
    sim.power_off("alpha")
    sim.run_for(20)
    watch.done()
    assert sim.started_on(VIP) == ["beta"]
    started = next(t for t, node, holding in watch.changes if node == "beta" and holding)
    return started - died


def test_the_holder_dies_the_survivor_serves_within_budget_plus_decision_time() -> None:
    took = holder_power_loss(cluster("alpha"))
    # measured: 4.27 s to the start (budget 2.45 s + 1.82 s); the issue allows 3 s beyond
    assert took <= BUDGET + 3.0, took
    assert took >= BUDGET + DECISION - 0.3  # not before the bound that makes it safe


def test_qnetd_dies_nothing_moves_while_the_nodes_hear_each_other_and_status_says_degraded() -> (
    None
):
    sim = cluster("alpha")
    watch = Watch(sim, VIP)
    sim.qnetd_crash()
    sim.run_for(10)
    status = sim.node("alpha").arbiter_status(sim.clock.now)
    assert status is not None and status["degraded"] and not status["connected"]
    assert status["vote"] is None
    sim.qnetd_start()
    sim.run_for(5)
    sim.qnetd_power_off()  # silent this time: found by the echo timeout
    sim.run_for(10)
    watch.done()
    assert watch.changes == [] and not [e for e in sim.log if e[0] == "go"]
    reason = sim.node("beta").arbiter_status(sim.clock.now)["reason"]  # type: ignore[index]
    assert "did not answer the echo request" in str(reason) or "no answer" in str(reason)


def test_holder_reaches_qnetd_but_not_its_peer_and_the_peer_reaches_neither_holder_keeps() -> None:
    sim = cluster("alpha")
    watch = Watch(sim, VIP)
    sim.qnetd_cut("beta")
    split(sim)
    sim.run_for(20)
    watch.done()
    assert sim.started_on(VIP) == ["alpha"] and watch.changes == []
    assert sim.resets("alpha") == 0


def test_a_peer_that_reaches_neither_and_holds_the_group_goes_and_the_other_takes_over() -> None:
    sim = cluster("beta")
    watch = Watch(sim, VIP)
    sim.qnetd_cut("beta")
    split(sim)
    sim.run_for(20)
    watch.done()
    assert sim.holders(VIP) == ["alpha"] and watch.dual == 0.0
    assert sim.resets("beta") >= 1


def qnetd_gone(sim: SimCluster) -> None:
    """qnetd crashes and both nodes have told each other they lost it (rule 8)."""
    sim.qnetd_crash()
    sim.run_for(3)
    for n in ("alpha", "beta"):
        assert sim.node(n).arbiter_status(sim.clock.now)["connected"] is False  # type: ignore[index]


def test_qnetd_down_then_the_standby_dies_the_holder_keeps_as_without_an_arbiter() -> None:
    """Regression: with qnetd down, a holder whose standby lost power had no vote and went
    after the decision time: an arbiter made the cluster less available than none."""
    sim = cluster("alpha")
    qnetd_gone(sim)
    watch = Watch(sim, VIP)
    sim.power_off("beta")
    sim.run_for(20)
    watch.done()
    assert sim.started_on(VIP) == ["alpha"] and watch.changes == []
    assert sim.resets("alpha") == 0
    assert any("qnetd was unreachable from both" in d for d in sim.decisions("alpha"))


def test_qnetd_down_then_the_holder_dies_the_survivor_takes_over_as_without_an_arbiter() -> None:
    sim = cluster("alpha")
    qnetd_gone(sim)
    took = holder_power_loss(sim)
    # the budget, plus D: a holder that went by rule 7 may have waited D to go
    assert BUDGET + DECISION - 0.3 <= took <= BUDGET + 3.0, took


def test_qnetd_down_then_a_partition_the_peer_answers_nothing_moves() -> None:
    """Every heartbeat path cut, the LAN still whole: alpha's addresses answer beta's
    probes, as without an arbiter nothing moves."""
    sim = cluster("alpha")
    qnetd_gone(sim)
    watch = Watch(sim, VIP)
    sim.cut("serial:/dev/ttyS0", "alpha", "beta")
    sim.cut("bcast:eth0", "alpha", "beta")
    sim.run_for(15)
    watch.done()
    assert sim.started_on(VIP) == ["alpha"] and watch.changes == [] and watch.dual == 0.0
    assert sim.resets("alpha") == 0 and sim.resets("beta") == 0


def test_qnetd_down_then_the_residual_partition_puts_the_group_on_both_as_without_one() -> None:
    """Every path cut and the LAN split, both reaching the ping node, qnetd gone: the
    residual case of two nodes alone (docs/policy.md), the price of "handled as without
    an arbiter"; the explorer counts it apart, as it does without one."""
    sim = cluster("alpha")
    qnetd_gone(sim)
    watch = Watch(sim, VIP)
    split(sim)
    sim.run_for(15)
    watch.done()
    assert sorted(sim.holders(VIP)) == ["alpha", "beta"]
    assert sim.resets("alpha") == 0


def test_qnetd_back_during_the_residual_partition_its_nack_stops_the_taker() -> None:
    """The partition began with qnetd gone (as without one), qnetd comes back before the
    budget: it gives alpha, the holder, the vote and beta its NACK, which stops beta."""
    sim = cluster("alpha")
    qnetd_gone(sim)
    watch = Watch(sim, VIP)
    split(sim)
    sim.run_for(0.5)
    sim.qnetd_start()
    sim.run_for(15)
    watch.done()
    assert sim.holders(VIP) == ["alpha"] and watch.dual == 0.0
    assert any("gave the vote to the other side" in d for d in sim.decisions("beta"))


def test_an_ack_over_a_connection_the_peer_never_acknowledged_does_not_count() -> None:
    """alpha, cut off from qnetd, reaches it again just as every path is cut: beta never
    learnt it, so for all alpha knows beta follows the rules without an arbiter and keeps.
    qnetd's ACK to alpha must not let alpha take over; beta, holding, gets the NACK and
    goes. Safe, not available: the price of that race (docs/qnetd.md)."""
    sim = cluster("beta")
    sim.qnetd_cut("alpha")
    sim.run_for(4)
    assert sim.node("alpha").arbiter_status(sim.clock.now)["connected"] is False  # type: ignore[index]
    watch = Watch(sim, VIP)
    split(sim)
    sim.qnetd_cut("alpha", cut=False)
    sim.run_for(15)
    watch.done()
    assert watch.dual == 0.0
    assert "alpha" not in sim.holders(VIP)
    alpha = sim.node("alpha")
    assert alpha.policy.partition_rules("beta") is Rules.VOTE
    assert alpha.arbiter_status(sim.clock.now)["vote"] == "ACK"  # type: ignore[index]
    assert sim.resets("beta") >= 1  # the NACK: it went


def test_an_ack_over_a_connection_the_peer_acknowledged_counts() -> None:
    """The same, with a moment for beta to acknowledge alpha's reconnection before the
    cut (an advert each way, milliseconds): alpha's ACK counts, beta's NACK makes it
    go, and alpha takes over after the budget, the decision time and the vote's hold."""
    sim = cluster("beta")
    sim.qnetd_cut("alpha")
    sim.run_for(4)
    watch = Watch(sim, VIP)
    sim.qnetd_cut("alpha", cut=False)
    sim.run_for(0.2)
    split(sim)
    sim.run_for(15)
    watch.done()
    assert watch.dual == 0.0 and sim.holders(VIP) == ["alpha"]


def test_qnetds_echo_requests_ride_the_heartbeats_turns_and_wake_none_of_their_own() -> None:
    """qdevice's echo request goes every heartbeat (1 s here); from a quarter heartbeat
    before it is due it goes in the first turn a heartbeat goes out in (every 0.2 s), so
    the connection's check costs no wake-up of its own and still sees a silent qnetd
    within two heartbeats."""
    sim = cluster("alpha")
    beta = sim.node("beta")
    client = beta.qnetd
    assert client is not None
    echo_timer = client.get_timer
    handle_timer = beta.handle_timer
    alone = 0
    sent: list[float] = []
    ride = client.ride

    def riding(now: float) -> bool:
        went = ride(now)
        if went:
            sent.append(now)
        return went

    def counting(now: float) -> None:
        nonlocal alone
        client.get_timer = lambda: None  # type: ignore[method-assign]
        others = beta.get_timer()
        del client.get_timer
        due = echo_timer()
        if due is not None and due <= now and (others is None or others > now):
            alone += 1
        handle_timer(now)

    client.ride = riding  # type: ignore[method-assign]
    beta.handle_timer = counting  # type: ignore[method-assign]
    sim.run_for(20)
    assert len(sent) >= 19 and alone == 0, (len(sent), alone)
    assert beta.arbiter_status(sim.clock.now)["connected"] is True  # type: ignore[index]
    sim.qnetd_power_off()  # silent: found by a reply's deadline, not a ride
    start = sim.clock.now
    while beta.arbiter_status(sim.clock.now)["connected"] and sim.clock.now - start < 5:  # type: ignore[index]
        sim.run_for(0.05)
    assert sim.clock.now - start <= 2 * 1.0 + 0.05
