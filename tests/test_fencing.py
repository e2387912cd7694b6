"""Fencing decides when to pet: on time while the loop keeps time, never after a stall or
a fence."""

from hbd.core.fencing import Fencing


def test_a_healthy_loop_pets_every_quarter_timeout_at_most_every_second() -> None:
    f = Fencing(2.0, stall_bound=0.8, now=0.0)
    pets = []
    now = 0.0
    while now < 3.0:
        pet, fenced = f.turn(now)
        assert fenced is None
        if pet:
            pets.append(now)
        now = round(now + 0.1, 3)
    assert pets == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_a_loop_that_comes_back_late_never_pets_again() -> None:
    f = Fencing(2.0, stall_bound=0.8, now=0.0)
    assert f.turn(0.1) == (True, None)
    pet, fenced = f.turn(1.5)  # stalled 1.4 s, e.g. SIGSTOP then SIGCONT
    assert not pet and fenced is not None and "stalled for 1.4 s" in fenced.reason
    assert f.turn(1.6) == (False, None)
    assert f.get_timer() is None


def test_a_fence_is_final_and_reported_once() -> None:
    f = Fencing(2.0, stall_bound=0.8, now=0.0)
    first = f.fence(0.2, "isolated")
    assert first is not None and first.reason == "isolated"
    assert f.fence(0.3, "again") is None
    assert f.turn(0.4) == (False, None)


def test_without_a_watchdog_nothing_is_petted_but_stalls_are_still_noticed() -> None:
    f = Fencing(None, stall_bound=0.8, now=0.0)
    assert f.turn(0.1) == (False, None)
    pet, fenced = f.turn(2.0)
    assert not pet and fenced is not None
