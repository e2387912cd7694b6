"""Fencing: when to pet the watchdog, and when to stop for good.

Theory of operation
-------------------
The watchdog resets this node unless it is petted at least every `timeout` seconds. hbd
pets it only while it can vouch for itself (docs/policy.md, "the takeover budget"):

- only after every deadline up to now has been looked at, so a pet is never given by a
  node that should already have gone: `pet_due` is asked last, after the decisions;
- only while the node keeps time: an input that comes more than `stall_bound` after the
  one before means the node was hung, SIGSTOPped or starved that long. Its peers may then
  have declared it dead and started counting their takeover budget, so a node that may be
  running anything must go (the caller fences); one that runs nothing starts nothing until
  its view is fresh again;
- never again once `fence(reason)` was called.

From `pet_interval` (a quarter of the timeout, at most a second) after the last pet, the
next goes in whatever turn comes first -- a heartbeat's, as a rule; twice that (half the
timeout, at most 2 s: the reset is still as far again away) is the deadline `get_timer`
gives, for when no turn comes. So the pets wake no turn of their own while heartbeats go
out at least every pet interval -- at 1 Hz with a 4 s watchdog too, where the heartbeats'
turns come a second apart and a deadline at one pet interval raced them. How late a hung
node's last pet can be is bounded by when it hung, not by this schedule: the takeover
budget does not depend on it.

`stall_bound` is deadtime minus one keepalive: a node silent for less was still
heartbeating within deadtime, so no peer can have declared it dead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fenced:
    """This node stopped petting: its watchdog resets it within `timeout` seconds."""

    at: float
    reason: str


class Fencing:
    """Pet scheduling and stall detection for one node; remembers a fence once decided."""

    def __init__(self, timeout: float | None, *, stall_bound: float, now: float) -> None:
        self.timeout = timeout  # None: no watchdog armed
        self.stall_bound = stall_bound
        self.pet_interval = min(timeout / 4, 1.0) if timeout else 1.0
        self._last_input = now
        self._next_pet = now  # the deadline for the next pet
        self._pet_from = now  # from when a turn that comes anyway gives it
        self.fenced: Fenced | None = None

    def observe(self, now: float) -> float | None:
        """An input arrived at `now`: the gap since the previous one when it is a stall."""
        gap = now - self._last_input
        self._last_input = max(self._last_input, now)
        return gap if gap > self.stall_bound else None

    def fence(self, now: float, reason: str) -> Fenced | None:
        """Stop petting for good. Returns the new Fenced, or None if already fenced."""
        if self.fenced is not None:
            return None
        self.fenced = Fenced(now, reason)
        return self.fenced

    def unfence(self) -> None:
        """Serve again: only for a node that went without a watchdog (nothing reset it)."""
        if self.timeout is not None:
            raise ValueError("a node that stopped petting an armed watchdog cannot come back")
        self.fenced = None

    def pet_due(self, now: float) -> bool:
        """Whether to pet now (then the next pet is scheduled)."""
        if self.timeout is None or self.fenced is not None or now < self._pet_from:
            return False
        self._pet_from = now + self.pet_interval
        self._next_pet = now + 2 * self.pet_interval
        return True

    def get_timer(self) -> float | None:
        if self.timeout is None or self.fenced is not None:
            return None
        return self._next_pet
