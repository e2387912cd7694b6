"""Ping witnesses: which ping nodes and ping groups this node can reach.

Theory of operation
-------------------
A witness is an address outside the cluster (a router, a switch) that answers ICMP echo.
Witnesses are never members: they only tell a node whether *it* can still reach the
outside world, which is how the policy tells "my peer is gone" from "I am cut off".

Inputs: `echo_sent(address, now)` each time the shell sends an echo, `reply(address, rtt,
now)` for each matching answer, `handle_timer(now)`. A ping node is up from its first reply
until it has been silent for `deadping` (Heartbeat's directive, default deadtime); a ping
group is up while any member is up. Before the first reply a witness is `init`, and it is
declared dead when `deadping` passes from start without a reply, exactly like a node
with initdead. The shell asks `due_echoes(now)` which addresses to ping: every `interval`
(keepalive), so a dead witness is noticed within deadping plus one interval.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WitnessUp:
    """A ping node or group answered (first time, or again after being dead)."""

    witness: str  # path id: ping:ADDR or ping_group:NAME


@dataclass(frozen=True, slots=True)
class WitnessDead:
    """A ping node or group stopped answering for deadping."""

    witness: str
    silent_for: float


WitnessEvent = WitnessUp | WitnessDead


@dataclass(frozen=True, slots=True)
class WitnessStatus:
    witness: str
    status: str  # init / up / dead
    rtt: float | None  # seconds, last measured
    last_reply_age: float | None


class _Target:
    __slots__ = ("last_reply", "rtt", "status")

    def __init__(self) -> None:
        self.status = "init"
        self.last_reply: float | None = None
        self.rtt: float | None = None


class Witnesses:
    """Liveness of the configured ping nodes and ping groups."""

    def __init__(
        self,
        ping_nodes: tuple[str, ...],
        ping_groups: tuple[tuple[str, tuple[str, ...]], ...],
        *,
        deadping: float,
        interval: float,
        now: float,
    ) -> None:
        self._deadping = deadping
        self._interval = interval
        self._start = now
        self._targets: dict[str, _Target] = {}
        self._nodes = {f"ping:{a}": a for a in ping_nodes}
        self._groups = {f"ping_group:{name}": members for name, members in ping_groups}
        for address in (*ping_nodes, *(a for _, ms in ping_groups for a in ms)):
            self._targets.setdefault(address, _Target())
        self._status: dict[str, str] = dict.fromkeys((*self._nodes, *self._groups), "init")
        self._answered: set[str] = set()  # witnesses that have answered since start
        self._next_echo = now
        self._events: deque[WitnessEvent] = deque()

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(self._targets)

    def witness_ids(self) -> tuple[str, ...]:
        return (*self._nodes, *self._groups)

    # -- inputs ---------------------------------------------------------------------

    def reply(self, address: str, rtt: float, now: float) -> None:
        target = self._targets.get(address)
        if target is None:
            return  # an answer from an address we never pinged: ignore
        target.last_reply = now
        target.rtt = rtt
        target.status = "up"
        self._update(now)

    def handle_timer(self, now: float) -> None:
        for target in self._targets.values():
            last = target.last_reply if target.last_reply is not None else self._start
            if target.status != "dead" and now >= last + self._deadping:
                target.status = "dead"
        self._update(now)

    def due_echoes(self, now: float) -> tuple[str, ...]:
        """Addresses to ping now (all of them, once per interval); () when not yet due."""
        if now < self._next_echo or not self._targets:
            return ()
        self._next_echo = now + self._interval
        return tuple(self._targets)

    # -- outputs --------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if not self._targets:
            return None
        deadlines = [self._next_echo]
        for target in self._targets.values():
            if target.status != "dead":
                last = target.last_reply if target.last_reply is not None else self._start
                deadlines.append(last + self._deadping)
        return min(deadlines)

    def next_event(self) -> WitnessEvent | None:
        return self._events.popleft() if self._events else None

    def status(self, now: float) -> tuple[WitnessStatus, ...]:
        out: list[WitnessStatus] = []
        for wid in self.witness_ids():
            members = (self._nodes[wid],) if wid in self._nodes else self._groups[wid]
            heard = [t for t in (self._targets[a] for a in members) if t.last_reply is not None]
            best = max(heard, key=lambda t: t.last_reply or 0.0, default=None)
            out.append(
                WitnessStatus(
                    wid,
                    self._status[wid],
                    best.rtt if best else None,
                    now - best.last_reply if best and best.last_reply is not None else None,
                )
            )
        return tuple(out)

    def configured(self) -> bool:
        return bool(self._status)

    def ever_up(self) -> bool:
        """Some witness has answered since start: its silence now is evidence."""
        return bool(self._answered)

    def never_answered(self) -> tuple[str, ...]:
        """Witnesses that have not answered once since start."""
        return tuple(w for w in self._status if w not in self._answered)

    def any_up(self) -> bool:
        """True when at least one witness answers: this node still reaches the outside."""
        return any(s == "up" for s in self._status.values())

    # -- internals ------------------------------------------------------------------

    def _update(self, now: float) -> None:
        for wid in self.witness_ids():
            members = (self._nodes[wid],) if wid in self._nodes else self._groups[wid]
            states = [self._targets[a].status for a in members]
            new = "up" if "up" in states else "dead" if all(s == "dead" for s in states) else "init"
            old = self._status[wid]
            if new == old:
                continue
            self._status[wid] = new  # init -> up, up -> dead, dead -> up, init -> dead
            if new == "up":
                self._answered.add(wid)
                self._events.append(WitnessUp(wid))
            elif new == "dead":
                lasts = [self._targets[a].last_reply for a in members]
                heard = [t for t in lasts if t is not None]
                since = max(heard) if heard else self._start
                self._events.append(WitnessDead(wid, now - since))
