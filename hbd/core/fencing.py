"""Fencing: when to pet the watchdog, and when to stop for good.

Theory of operation
-------------------
The watchdog resets this node unless it is petted at least every `timeout` seconds. hbd
pets it only while it can vouch for itself:

- only from the main loop, and only while the loop keeps time: a loop that comes back more
  than `stall_bound` late (hung, SIGSTOPped, starved) has been silent long enough for its
  peers to declare it dead and start counting their takeover budget, so it must not carry
  on: it stops petting and lets the watchdog reset the node;
- never again once `fence(reason)` was called (the policy found this node isolated or the
  non-survivor, or a resource could not be stopped).

`stall_bound` is deadtime minus one keepalive: a loop late by less was still heartbeating
within deadtime, so no peer can have declared this node dead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fenced:
    """This node stopped petting: its watchdog resets it within `timeout` seconds."""

    at: float
    reason: str


class Fencing:
    """Decides each loop turn whether to pet; remembers a fence once decided."""

    def __init__(self, timeout: float | None, *, stall_bound: float, now: float) -> None:
        self.timeout = timeout  # None: no watchdog armed
        self.stall_bound = stall_bound
        self.pet_interval = min(timeout / 4, 1.0) if timeout else 1.0
        self._last_turn = now
        self._next_pet = now
        self.fenced: Fenced | None = None

    def fence(self, now: float, reason: str) -> Fenced | None:
        """Stop petting for good. Returns the new Fenced, or None if already fenced."""
        if self.fenced is not None:
            return None
        self.fenced = Fenced(now, reason)
        return self.fenced

    def turn(self, now: float) -> tuple[bool, Fenced | None]:
        """One loop turn: (pet now?, a fence decided in this turn because the loop stalled)."""
        gap = now - self._last_turn
        self._last_turn = now
        new: Fenced | None = None
        if gap > self.stall_bound:
            new = self.fence(
                now,
                f"the event loop stalled for {gap:.1f} s (more than {self.stall_bound:.1f} s): "
                "peers may already count this node dead",
            )
        if self.timeout is None or self.fenced is not None or now < self._next_pet:
            return False, new
        self._next_pet = now + self.pet_interval
        return True, new

    def get_timer(self) -> float | None:
        if self.timeout is None or self.fenced is not None:
            return None
        return self._next_pet
