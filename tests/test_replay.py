"""Replay protection: each (generation, sequence) from a sender is accepted once.

The window is format-agnostic: native frames give (generation, seq), Heartbeat's status
messages give (hg, seq); both are plain integers here.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbd.core.errors import DropReason, LocalProtocolError
from hbd.core.wire import Dropped
from hbd.core.wire.replay import DEFAULT_WIDTH, Accepted, ReplayWindow


def reason(result: Accepted | Dropped) -> DropReason | None:
    return result.reason if isinstance(result, Dropped) else None


def test_a_peers_first_frame_is_accepted_and_a_copy_of_it_is_a_replay() -> None:
    window = ReplayWindow()
    assert window.check(7, 100) == Accepted(first=True)
    assert window.generation == 7
    assert window.highest == 100
    assert reason(window.check(7, 100)) is DropReason.REPLAYED


def test_frames_in_order_are_accepted_and_skipped_sequences_are_counted_as_a_gap() -> None:
    window = ReplayWindow()
    window.check(1, 1)
    assert window.check(1, 2) == Accepted(gap=0)
    assert window.check(1, 3) == Accepted(gap=0)
    assert window.check(1, 7) == Accepted(gap=3)  # 4, 5 and 6 lost or still on the way
    assert window.highest == 7


def test_a_late_frame_inside_the_window_is_accepted_once() -> None:
    window = ReplayWindow()
    window.check(1, 10)
    window.check(1, 14)
    assert window.check(1, 12) == Accepted()  # reordered by the network
    assert reason(window.check(1, 12)) is DropReason.REPLAYED
    assert window.highest == 14


def test_a_frame_below_the_window_is_stale() -> None:
    window = ReplayWindow(width=DEFAULT_WIDTH)
    window.check(1, 1000)
    oldest_in_window = 1000 - DEFAULT_WIDTH + 1
    assert window.check(1, oldest_in_window) == Accepted()
    result = window.check(1, oldest_in_window - 1)
    assert reason(result) is DropReason.STALE
    assert "below the window" in str(result)


def test_a_jump_further_than_the_window_forgets_everything_below_it() -> None:
    window = ReplayWindow(width=8)
    window.check(1, 1)
    assert window.check(1, 100) == Accepted(gap=98)
    assert reason(window.check(1, 1)) is DropReason.STALE
    assert window.check(1, 93) == Accepted()  # inside the new window, never seen
    assert reason(window.check(1, 92)) is DropReason.STALE


def test_a_higher_generation_is_a_restart_and_starts_the_window_over() -> None:
    window = ReplayWindow()
    window.check(4, 5000)
    assert window.check(5, 1) == Accepted(restarted=True, previous_generation=4)
    assert window.generation == 5
    assert window.check(5, 2) == Accepted()
    # the old life's frames, however high their sequence, are stale now
    result = window.check(4, 5001)
    assert reason(result) is DropReason.STALE
    assert "generation 4 is older than current 5" in str(result)


def test_an_older_generation_than_the_first_one_seen_is_stale() -> None:
    window = ReplayWindow()
    window.check(9, 1)
    assert reason(window.check(8, 2)) is DropReason.STALE


def test_one_heartbeat_on_three_paths_counts_once_per_sender_and_once_per_path() -> None:
    per_sender = ReplayWindow()
    per_path = {path: ReplayWindow() for path in ("serial:/dev/ttyS0", "bcast:eth0", "bcast:eth1")}
    counted = 0
    for path, window in per_path.items():
        if isinstance(per_sender.check(3, 42), Accepted):
            counted += 1
        assert isinstance(window.check(3, 42), Accepted), path
    assert counted == 1
    # a replay on any one path is refused there too
    assert reason(per_path["bcast:eth0"].check(3, 42)) is DropReason.REPLAYED


def test_a_window_of_width_one_accepts_only_increasing_sequences() -> None:
    window = ReplayWindow(width=1)
    window.check(1, 5)
    assert reason(window.check(1, 5)) is DropReason.REPLAYED
    assert reason(window.check(1, 4)) is DropReason.STALE
    assert window.check(1, 6) == Accepted()


def test_a_window_narrower_than_one_is_a_callers_mistake() -> None:
    with pytest.raises(LocalProtocolError, match="at least 1"):
        ReplayWindow(width=0)


class ModelWindow:
    """The rule spelled out with a set: what the bitmap must agree with."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.generation: int | None = None
        self.seen: set[int] = set()

    def check(self, generation: int, seq: int) -> DropReason | None:
        if self.generation is None or generation > self.generation:
            self.generation, self.seen = generation, {seq}
            return None
        if generation < self.generation:
            return DropReason.STALE
        top = max(self.seen)
        if seq <= top - self.width:
            return DropReason.STALE
        if seq in self.seen:
            return DropReason.REPLAYED
        self.seen.add(seq)
        return None


@given(
    width=st.integers(1, 70),
    pairs=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 200)), max_size=300),
)
def test_the_window_agrees_with_the_set_model(width: int, pairs: list[tuple[int, int]]) -> None:
    window, model = ReplayWindow(width), ModelWindow(width)
    for generation, seq in pairs:
        assert reason(window.check(generation, seq)) is model.check(generation, seq)


@given(st.lists(st.tuples(st.integers(), st.integers()), max_size=50))
def test_any_numbers_give_an_answer_never_an_exception(pairs: list[tuple[int, int]]) -> None:
    window = ReplayWindow()
    for generation, seq in pairs:
        assert isinstance(window.check(generation, seq), Accepted | Dropped)


@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.integers(0, 150)),
        max_size=80,
    ),
    st.sampled_from([1, 8, DEFAULT_WIDTH]),
)
def test_seen_tells_a_copy_exactly_when_check_would_call_it_a_replay(
    frames: list[tuple[int, int]], width: int
) -> None:
    # membership asks `seen` first for every copy on a second path: it must agree with
    # `check` on every frame, or a fresh message would be taken for a copy (or the reverse)
    window = ReplayWindow(width)
    for generation, seq in frames:
        seen = window.seen(generation, seq)
        result = window.check(generation, seq)
        assert seen == (reason(result) is DropReason.REPLAYED), (generation, seq)
