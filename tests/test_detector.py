"""The adaptive detector may call a PATH dead sooner than deadtime on a stable link; it never
calls a NODE dead later (or sooner) than deadtime."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from hbd.core.detector import ArrivalStats, PhiAccrual
from hbd.core.events import NodeDead, PathDown
from hbd.core.membership import Beat, Membership

PATHS = ("bcast:eth0", "bcast:eth1")


def feed(stats: ArrivalStats, intervals: list[float]) -> None:
    for i in intervals:
        stats.observe_interval(i)


def test_no_opinion_before_enough_samples() -> None:
    stats, phi = ArrivalStats(), PhiAccrual(1.0)
    feed(stats, [1.0] * 5)
    assert phi.timeout(stats, 30.0) == 30.0
    assert phi.phi(stats, 100.0) is None


def test_stable_link_gets_a_timeout_far_below_deadtime() -> None:
    stats, phi = ArrivalStats(), PhiAccrual(1.0)
    rng = random.Random(1)
    feed(stats, [1.0 + rng.uniform(-0.005, 0.005) for _ in range(50)])
    timeout = phi.timeout(stats, 30.0)
    assert 3.0 < timeout < 4.0  # one keepalive, two keepalives' pause, a little spread
    # suspicion grows with silence
    low, high = phi.phi(stats, 2.0), phi.phi(stats, timeout)
    assert low is not None and high is not None and low < 1 < 7.9 < high


def test_jittery_lossy_link_gets_a_longer_timeout_never_above_deadtime() -> None:
    stable, lossy, phi = ArrivalStats(), ArrivalStats(), PhiAccrual(0.2)
    rng = random.Random(2)
    feed(stable, [0.2] * 100)
    feed(lossy, [0.2 * (1 + (rng.random() < 0.3) + (rng.random() < 0.1)) for _ in range(100)])
    assert phi.timeout(stable, 1.0) < phi.timeout(lossy, 1.0) <= 1.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=0, max_size=120),
    st.floats(min_value=0.01, max_value=1e5),
)
def test_timeout_never_exceeds_deadtime(intervals: list[float], deadtime: float) -> None:
    stats = ArrivalStats()
    feed(stats, intervals)
    assert PhiAccrual(1.0).timeout(stats, deadtime) <= deadtime


def run(adaptive: bool, stop_at: float) -> tuple[list[tuple[float, object]], float]:
    m = Membership(
        "alpha",
        ("alpha", "beta"),
        PATHS,
        keepalive=1.0,
        deadtime=30.0,
        warntime=10.0,
        initdead=60.0,
        now=0.0,
        adaptive=adaptive,
    )
    got: list[tuple[float, object]] = []
    seq, t, last = 0, 0.0, 0.0
    rng = random.Random(3)
    while t < stop_at:
        seq += 1
        t = seq * 1.0 + rng.uniform(0, 0.002)
        for p in PATHS:
            if p == "bcast:eth1" and t > stop_at / 2:
                continue  # eth1 is cut half way through
            m.receive(Beat("beta", p, 1, seq, "active", deadtime=30.0), t)
        last = t
        while (d := m.get_timer()) is not None and d <= t:
            m.handle_timer(d)
            got.extend((d, e) for e in iter(m.next_event, None))
        got.extend((t, e) for e in iter(m.next_event, None))
    while (d := m.get_timer()) is not None:
        m.handle_timer(d)
        got.extend((d, e) for e in iter(m.next_event, None))
    return got, last


def test_detector_calls_the_cut_path_dead_sooner() -> None:
    plain, _ = run(False, 200.0)
    adaptive, _ = run(True, 200.0)
    (p_plain,) = [(t, e) for t, e in plain if isinstance(e, PathDown) and e.path == "bcast:eth1"]
    (p_fast,) = [(t, e) for t, e in adaptive if isinstance(e, PathDown) and e.path == "bcast:eth1"]
    assert isinstance(p_fast[1], PathDown) and p_fast[1].by_detector
    assert p_fast[0] < p_plain[0] - 20  # seconds, not deadtime's 30


def test_detector_never_moves_node_death() -> None:
    for adaptive in (False, True):
        events, last = run(adaptive, 150.0)
        dead = [(t, e) for t, e in events if isinstance(e, NodeDead)]
        assert dead == [(last + 30.0, NodeDead("beta", last, 30.0))]
        # every path went down before or with the node, never after
        downs = [t for t, e in events if isinstance(e, PathDown)]
        assert downs and max(downs) <= last + 30.0


def test_the_threshold_quantile_is_the_normal_distributions_far_out_in_the_tail() -> None:
    from hbd.core.detector import _normal_tail_quantile

    # qnorm(tail, lower.tail = FALSE), to the digits published tables give
    for tail, z in ((0.5, 0.0), (0.025, 1.959964), (1e-3, 3.090232), (1e-8, 5.612001)):
        assert abs(_normal_tail_quantile(tail) - z) < 1e-6
    assert abs(_normal_tail_quantile(1e-12) - 7.034484) < 1e-6  # where 1 - cdf has no digits
