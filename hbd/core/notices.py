"""Notices: the ordered stream of what happened on this node, for `hbctl events`, the
`notify` script and Heartbeat's rc.d hooks.

Theory of operation
-------------------
docs/events.md has the table of kinds and states this module produces; read it first.

The shell hands every node event to `Notices.observe` in the order the node produced
them, and after every turn the redundancy it reports (`Notices.redundancy`). Each change
an operator cares about becomes one `Notice` with the next sequence number: a peer's
status (up, active, dead, left, restarted), a heartbeat path to a peer (up, dead), a ping
node (up, dead), the redundancy (redundant, degraded), a group (acquiring, started,
releasing, stopped, failed), this node going (fence) or serving again, the arbiter's vote,
and the operator's standby and takeover commands. Nothing else decides anything here: the
stream is a faithful, ordered copy of what the node already logged.

The stream lives as long as the daemon process, so a reload (SIGHUP) keeps it; it is
identified by the node's generation, which a restart changes, so a reader following it
knows when a restart may have cost it events. It keeps the newest `capacity` notices; a
reader that asks for older ones is told how many it missed, never handed a gap silently.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from hbd.core import events as ev
from hbd.core import resources as rs
from hbd.core.witness import WitnessDead, WitnessUp

CAPACITY = 4096
KINDS = ("node", "path", "ping", "redundancy", "group", "fence", "vote", "command")


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing that happened. `at` is wall-clock time (seconds since the epoch)."""

    seq: int
    at: float
    node: str  # the node this happened on (the one keeping the stream)
    kind: str  # one of KINDS
    subject: str  # a peer, "peer path", a ping node, a group, this node
    state: str  # what it is now: dead, up, degraded, started, ...
    reason: str
    old: str | None = None  # what it was, when known

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": round(self.at, 3),
            "node": self.node,
            "kind": self.kind,
            "subject": self.subject,
            "state": self.state,
            "old": self.old,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Page:
    """What `since` returns: the notices after the asked sequence number, how many older
    ones the reader missed (fell out of the buffer), and where to ask next."""

    notices: tuple[Notice, ...]
    missed: int
    next: int  # the seq to ask `since` for next


class Notices:
    """The ordered stream of one node (see the module's theory of operation)."""

    def __init__(self, node: str, *, capacity: int = CAPACITY) -> None:
        self.node = node
        self._buffer: deque[Notice] = deque(maxlen=capacity)
        self._seq = 0
        self._state: dict[tuple[str, str], str] = {}  # (kind, subject) -> last state

    @property
    def last_seq(self) -> int:
        return self._seq

    def since(self, after: int, limit: int = 1000) -> Page:
        """The notices with seq > `after`, oldest first, at most `limit` of them."""
        first = self._buffer[0].seq if self._buffer else self._seq + 1
        missed = max(0, first - after - 1) if after < first - 1 else 0
        out = tuple(n for n in self._buffer if n.seq > after)[: max(0, limit)]
        return Page(out, missed, out[-1].seq if out else max(after, first - 1))

    def add(self, at: float, kind: str, subject: str, state: str, reason: str) -> Notice | None:
        """Record a change; None when `subject` already was in `state` (no news)."""
        if kind not in KINDS:
            raise ValueError(f"unknown notice kind {kind!r}")
        key = (kind, subject)
        old = self._state.get(key)
        if old == state and kind != "command":
            return None
        self._state[key] = state
        self._seq += 1
        notice = Notice(self._seq, at, self.node, kind, subject, state, reason, old)
        self._buffer.append(notice)
        return notice

    def redundancy(self, at: float, state: str, reason: str) -> Notice | None:
        return self.add(at, "redundancy", self.node, state, reason)

    def observe(self, at: float, event: object, path_names: dict[str, str]) -> Notice | None:
        """The notice for a node event, recorded (None: not one an operator follows)."""
        found = _describe(event, path_names)
        if found is None:
            return None
        kind, subject, state, reason = found
        return self.add(at, kind, subject, state, reason)


def _describe(event: object, names: dict[str, str]) -> tuple[str, str, str, str] | None:
    """(kind, subject, state, reason) for the events that make a notice."""
    if isinstance(event, ev.NodeUp):
        return "node", event.node, event.status, f"heard on {names.get(event.path, event.path)}"
    if isinstance(event, ev.NodeActive):
        return "node", event.node, "active", "it joined the cluster"
    if isinstance(event, ev.NodeDead):
        if event.last_heard is None:
            return "node", event.node, "dead", f"not heard within {event.deadtime:g} s"
        return "node", event.node, "dead", f"silent on every path for {event.deadtime:g} s"
    if isinstance(event, ev.NodeLeft):
        return "node", event.node, "left", "it stopped cleanly"
    if isinstance(event, ev.NodeRestarted | ev.GenerationWentBack):
        why = f"generation {event.old_generation} -> {event.new_generation}"
        return "node", event.node, "restarted", why
    if isinstance(event, ev.PathUp):
        return "path", f"{event.node} {names.get(event.path, event.path)}", "up", "heard again"
    if isinstance(event, ev.PathDown):
        how = " (the detector called it before deadtime)" if event.by_detector else ""
        subject = f"{event.node} {names.get(event.path, event.path)}"
        return "path", subject, "dead", f"silent for {event.silent_for:.1f} s{how}"
    if isinstance(event, WitnessUp):
        return "ping", _witness(event.witness), "up", "it answers"
    if isinstance(event, WitnessDead):
        return "ping", _witness(event.witness), "dead", f"silent for {event.silent_for:.1f} s"
    if isinstance(event, rs.GroupStarted):
        return "group", event.group, "started", "every resource runs"
    if isinstance(event, rs.GroupStopped):
        return "group", event.group, "stopped", "every resource is stopped"
    if isinstance(event, rs.GroupFailed):
        maybe = " (it may still be running)" if event.may_be_running else ""
        return "group", event.group, "failed", event.reason + maybe
    decision = getattr(event, "decision", None)  # hbd.core.node.Decided
    if decision is not None and isinstance(getattr(decision, "decision", None), str):
        return _decision(decision.decision, decision.reason)
    return None


def _witness(witness: str) -> str:
    return witness.split(":", 1)[1] if ":" in witness else witness


def _decision(line: str, reason: str) -> tuple[str, str, str, str] | None:
    verb, _, rest = line.partition(" ")
    if verb == "acquire" and rest:
        return "group", rest, "acquiring", reason
    if verb == "release" and rest:
        return "group", rest, "releasing", reason
    if line == "self-fence":
        return "fence", "self", "going", reason
    if line == "serve again":
        return "fence", "self", "serving", reason
    if verb == "qnetd" and rest:
        state = "ack" if rest.startswith("ACK") else "nack" if rest.startswith("NACK") else "none"
        return "vote", "qnetd", state, f"{rest}: {reason}"
    if verb == "hand" and rest.startswith("over "):
        mode = rest[len("over ") :]
        if mode.endswith(" delivered"):
            return "command", "release", "delivered", reason
        return "command", "release", mode, reason
    if verb in ("standby", "takeover") and rest and not rest.endswith(" ended"):
        return "command", verb, rest, reason
    if verb == "takeover" and rest.endswith(" ended"):
        return "command", verb, "ended", reason
    return None
