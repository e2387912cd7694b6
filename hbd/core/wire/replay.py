"""Replay protection: a per-sender window over (generation, sequence), for both wire formats.

A sender numbers its frames with a generation (hbd's `generation`, Heartbeat's `hg`, which
goes up each time the node starts) and a sequence within it (`seq`, going up by one per
frame). A receiver keeps one `ReplayWindow` per sender and asks it about each authenticated
frame:

- the first frame ever seen is accepted (`Accepted.first`);
- a higher generation means the peer restarted: the window starts over at the new
  generation and the frame is accepted with `Accepted.restarted` set;
- an older generation is `STALE`: a frame from before the peer's restart, or a replay of one;
- a sequence above the highest seen is accepted and moves the window up (`Accepted.gap`
  counts the sequences skipped, frames lost or not yet arrived);
- a sequence within the window (the `width` sequences ending at the highest seen) is
  accepted once, out of order, and is `REPLAYED` after that;
- a sequence below the window is `STALE`: too old to tell whether it was seen.

The window never raises: whatever numbers a (signed) frame carries, the answer is an
`Accepted` or a `Dropped`.

One frame sent on several paths arrives several times with the same (generation,
sequence). The sender's window sees it once and calls the copies `REPLAYED`: the frame
counts once. A caller that wants every path refreshed, but only by fresh frames, keeps a
second window per (sender, path) as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from hbd.core.errors import DropReason, LocalProtocolError
from hbd.core.wire import Dropped

DEFAULT_WIDTH = 64


@dataclass(frozen=True, slots=True)
class Accepted:
    """A frame the window let through.

    `first`: the first frame ever seen from this sender. `restarted`: a new generation;
    `previous_generation` is the one it replaced. `gap`: sequences skipped between the
    highest seen before and this one (0 when in order, or for a late frame inside the window).
    """

    first: bool = False
    restarted: bool = False
    previous_generation: int | None = None
    gap: int = 0


class ReplayWindow:
    """Which (generation, sequence) pairs one sender has already been accepted with."""

    __slots__ = ("_bits", "_generation", "_mask", "_top", "width")

    def __init__(self, width: int = DEFAULT_WIDTH) -> None:
        if width < 1:
            raise LocalProtocolError(f"replay window width must be at least 1, not {width}")
        self.width = width
        self._mask = (1 << width) - 1
        self._generation: int | None = None
        self._top = 0  # highest sequence accepted in this generation
        self._bits = 0  # bit i set: sequence top - i was accepted

    @property
    def generation(self) -> int | None:
        """The sender's current generation, None before its first frame."""
        return self._generation

    @property
    def highest(self) -> int | None:
        """The highest sequence accepted in the current generation, None before any."""
        return None if self._generation is None else self._top

    def seen(self, generation: int, seq: int) -> bool:
        """Whether (generation, seq) was accepted already: what `check` would refuse as
        `REPLAYED`, told without building the refusal (a copy on a second path)."""
        if generation != self._generation or seq > self._top:
            return False
        behind = self._top - seq
        return behind < self.width and bool(self._bits >> behind & 1)

    def ahead(self, generation: int, seq: int) -> bool:
        """Whether (generation, seq) is of the current generation and above every sequence
        accepted in it: what `check` accepts in order (and `advance` takes)."""
        return generation == self._generation and seq > self._top

    def advance(self, seq: int) -> int:
        """Accept `seq`, which `ahead` says is in order, as `check` would; the gap (the
        sequences skipped, as `Accepted.gap`)."""
        shift = seq - self._top
        if shift <= 0 or self._generation is None:
            raise LocalProtocolError(f"seq {seq} is not ahead of {self._top}")
        self._bits = ((self._bits << shift) | 1) & self._mask if shift < self.width else 1
        self._top = seq
        return shift - 1

    def check(self, generation: int, seq: int) -> Accepted | Dropped:
        """Accept (generation, seq) once; say why not otherwise. Never raises."""
        current = self._generation
        if current is None or generation > current:
            self._generation = generation
            self._top = seq
            self._bits = 1
            if current is None:
                return Accepted(first=True)
            return Accepted(restarted=True, previous_generation=current)
        if generation < current:
            return Dropped(
                DropReason.STALE, f"generation {generation} is older than current {current}"
            )
        if seq > self._top:
            return Accepted(gap=self.advance(seq))
        behind = self._top - seq
        if behind >= self.width:
            return Dropped(
                DropReason.STALE,
                f"seq {seq} is below the window (highest {self._top}, width {self.width})",
            )
        bit = 1 << behind
        if self._bits & bit:
            return Dropped(DropReason.REPLAYED, f"seq {seq} of generation {generation} seen")
        self._bits |= bit
        return Accepted()
