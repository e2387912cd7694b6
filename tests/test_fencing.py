"""Fencing decides when to pet: on time while inputs keep coming, never after a fence; a
gap between inputs longer than the stall bound is reported for the node to act on."""

import pytest

from hbd.core.fencing import Fencing


def test_a_healthy_loop_pets_in_the_first_turn_a_quarter_timeout_after_the_last() -> None:
    # inputs every 0.1 s (a heartbeat's turns): each pet in the first turn from the pet
    # interval (a quarter of the timeout, at most 1 s) on; twice that is the deadline
    f = Fencing(2.0, stall_bound=0.8, now=0.0)
    assert f.pet_interval == 0.5
    pets = []
    now = 0.0
    while now < 3.0:
        assert f.observe(now) is None
        if f.pet_due(now):
            pets.append(now)
            assert f.get_timer() == now + 1.0  # the deadline, should no turn come
        now = round(now + 0.1, 3)
    assert pets == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_a_loop_woken_only_by_its_deadlines_pets_every_half_timeout_at_most_2_s() -> None:
    f = Fencing(8.0, stall_bound=0.8, now=0.0)
    pets = []
    now = 0.0
    while now < 7.0:
        if f.pet_due(now):
            pets.append(now)
        timer = f.get_timer()
        assert timer is not None
        now = timer
    assert pets == [0.0, 2.0, 4.0, 6.0]  # twice a quarter of 8 s capped at a second


def test_a_gap_longer_than_the_stall_bound_is_reported_once() -> None:
    f = Fencing(2.0, stall_bound=0.8, now=0.0)
    assert f.observe(0.1) is None
    assert f.observe(1.5) == pytest.approx(1.4)  # stalled 1.4 s, e.g. SIGSTOP then SIGCONT
    assert f.observe(1.6) is None


def test_a_fence_is_final_pets_nothing_and_is_reported_once() -> None:
    f = Fencing(2.0, stall_bound=0.8, now=0.0)
    first = f.fence(0.2, "isolated")
    assert first is not None and first.reason == "isolated"
    assert f.fence(0.3, "again") is None
    assert not f.pet_due(0.4)
    assert f.get_timer() is None
    with pytest.raises(ValueError, match="cannot come back"):
        f.unfence()


def test_without_a_watchdog_nothing_is_petted_and_a_node_that_went_may_come_back() -> None:
    f = Fencing(None, stall_bound=0.8, now=0.0)
    assert not f.pet_due(0.1)
    assert f.observe(2.0) is not None
    f.fence(2.0, "deaf peer")
    f.unfence()
    assert f.fenced is None
