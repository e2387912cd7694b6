"""The shape every link driver keeps, and the reopen-with-backoff machinery they share.

A driver is the daemon's eyes and hands on one path; it decides nothing. It owns one
file descriptor and follows the same input-method style as the core:

- ``open(now)`` / ``close()``: ``open`` means "keep this path open from now on"; if the
  device or socket cannot be opened yet the driver waits and retries by itself.
- ``fileno()``: the descriptor to poll for reading, or ``None`` while closed or waiting
  to reopen (the daemon re-reads it after every call into the driver).
- ``on_readable(now)``: drain what the descriptor holds, return what arrived.
- ``send(frame, now)``: never blocks; ``False`` (and a counter in ``stats``) when the
  frame was dropped because the line or socket is full or the link is down.
- ``get_timer()`` / ``handle_timer(now)``: the next reopen attempt (and, for serial,
  finishing a partly written frame), as timers-as-inputs.
- ``next_event()``: link status changes, oldest first: ``LinkOpened`` when the path
  became usable, ``LinkLost(reason)`` when a usable path broke, ``LinkOpenFailed(reason)``
  each time an open attempt fails (with the time of the next attempt). ``None`` when
  there is nothing more.

``now`` is the daemon's monotonic clock, always passed in.
"""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Reopen backoff: first retry after 0.5 s, doubling up to 5 s -- and, for a heartbeat
# path, never more than half the deadtime (`reopen_backoff`).
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 5.0


@dataclass(frozen=True, slots=True)
class Received:
    """Bytes that arrived on a path. `source` is the sender's IP for UDP, the device for serial."""

    path_id: str
    data: bytes
    source: str


@dataclass(frozen=True, slots=True)
class LinkOpened:
    """The path became usable (first open or reopen)."""

    path_id: str


@dataclass(frozen=True, slots=True)
class LinkLost:
    """A usable path broke (far end closed, cable pulled, device gone); a reopen is scheduled."""

    path_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class LinkOpenFailed:
    """An attempt to open the path failed; the next attempt is at `retry_at`."""

    path_id: str
    reason: str
    retry_at: float


LinkEvent = LinkOpened | LinkLost | LinkOpenFailed


@dataclass(slots=True)
class LinkStats:
    """Counters a driver keeps for status and tests."""

    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    dropped_full: int = 0  # frames dropped because the line or socket buffer was full
    dropped_down: int = 0  # frames dropped because the link was down or closed
    opens: int = 0  # successful opens, first one included
    losses: int = 0  # times a usable link broke

    @property
    def frames_dropped(self) -> int:
        return self.dropped_full + self.dropped_down


@runtime_checkable
class Driver(Protocol):
    """What the daemon's loop needs from any driver (data link or ping)."""

    @property
    def path_id(self) -> str: ...

    def open(self, now: float | None = None) -> None: ...

    def close(self) -> None: ...

    def fileno(self) -> int | None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> LinkEvent | None: ...


@runtime_checkable
class Link(Driver, Protocol):
    """A path that carries heartbeat frames: serial, bcast, mcast, ucast."""

    stats: LinkStats

    def on_readable(self, now: float) -> list[Received]: ...

    def send(self, frame: bytes, now: float) -> bool: ...


class Backoff:
    """Exponential backoff: `initial`, doubling, capped at `maximum`; `reset()` after success."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"backoff needs 0 < initial <= maximum, got {initial}, {maximum}")
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


def reopen_backoff(deadtime: float) -> Backoff:
    """The reopen backoff for a heartbeat path of a cluster with this `deadtime`.

    A path that comes back (a serial adapter replugged, a NIC up again) must carry a
    frame before the peer could be taken for dead because of the reopen delay alone: a cut
    shorter than the takeover budget must never move a group (docs/policy.md, F). So the
    retry interval doubles from 0.5 s but never exceeds deadtime / 2 (nor 5 s): a restored
    path is reopened within deadtime / 2 and heard a keepalive later. A device that stays
    absent costs one failed open() per interval, nothing more.
    """
    if deadtime <= 0:
        raise ValueError(f"reopen backoff needs a positive deadtime, got {deadtime}")
    maximum = min(BACKOFF_MAX, deadtime / 2)
    return Backoff(min(BACKOFF_INITIAL, maximum), maximum)


class ReopeningDriver(abc.ABC):
    """Open / lose / reopen-with-backoff bookkeeping shared by the drivers.

    Subclasses implement `_do_open()` (acquire the descriptor, raise `OSError` or
    `LinkUnavailable` with a reason when it cannot be had yet), `_do_close()` (release
    everything, never raise) and `_fd()`. They call `_lost(reason, now)` when a usable
    descriptor breaks.

    States: CLOSED (not wanted) -> OPEN (descriptor usable) or WAITING (retry at
    `_retry_at`); OPEN -> WAITING on loss; any -> CLOSED on `close()`.
    """

    def __init__(self, path_id: str, backoff: Backoff | None = None) -> None:
        self._path_id = path_id
        self._backoff = backoff or Backoff()
        self._events: deque[LinkEvent] = deque()
        self._wanted = False
        self._is_open = False
        self._retry_at: float | None = None
        self.stats = LinkStats()
        self.last_failure: str | None = None  # why it is down (status shows it); None when open

    @property
    def path_id(self) -> str:
        return self._path_id

    @property
    def is_open(self) -> bool:
        return self._is_open

    # -- subclass hooks --------------------------------------------------------------

    @abc.abstractmethod
    def _do_open(self) -> None:
        """Acquire the descriptor; raise OSError/LinkUnavailable when not possible now."""

    @abc.abstractmethod
    def _do_close(self) -> None:
        """Release the descriptor and anything held with it; must not raise."""

    @abc.abstractmethod
    def _fd(self) -> int | None:
        """The descriptor while open."""

    # -- the common API ---------------------------------------------------------------

    def use_backoff(self, backoff: Backoff) -> None:
        """Back off with `backoff` from the next failure on (a reload changed the deadtime)."""
        self._backoff = backoff

    def open(self, now: float | None = None) -> None:
        """Start keeping the path open; a failure schedules a retry instead of raising.

        Pass `now`; without it a failed first attempt is due again at the next
        `handle_timer(now)`, which then backs off from the real time.
        """
        if self._wanted:
            return
        self._wanted = True
        self._try_open(now)

    def close(self) -> None:
        """Stop using the path and release it; no event is reported for a wanted close."""
        self._wanted = False
        self._retry_at = None
        self._is_open = False
        self._do_close()

    def fileno(self) -> int | None:
        return self._fd() if self._is_open else None

    def get_timer(self) -> float | None:
        return self._retry_at if self._wanted and not self._is_open else None

    def handle_timer(self, now: float) -> None:
        due = self._retry_at is not None and now >= self._retry_at
        if self._wanted and not self._is_open and due:
            self._try_open(now)

    def next_event(self) -> LinkEvent | None:
        return self._events.popleft() if self._events else None

    def __enter__(self) -> ReopeningDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- shared machinery -----------------------------------------------------------

    def _try_open(self, now: float | None) -> None:
        try:
            self._do_open()
        except (OSError, LinkUnavailable) as e:
            self._do_close()
            self._retry_at = 0.0 if now is None else now + self._backoff.next_delay()
            self.last_failure = describe(e)
            self._events.append(LinkOpenFailed(self._path_id, self.last_failure, self._retry_at))
            return
        self.last_failure = None
        self._is_open = True
        self._retry_at = None
        self._backoff.reset()
        self.stats.opens += 1
        self._events.append(LinkOpened(self._path_id))

    def _lost(self, reason: str, now: float) -> None:
        """A usable descriptor broke: close it, report it, schedule the first reopen."""
        if not self._is_open:
            return
        self._is_open = False
        self._do_close()
        self.stats.losses += 1
        self._backoff.reset()
        self._retry_at = now + self._backoff.next_delay()
        self.last_failure = reason
        self._events.append(LinkLost(self._path_id, reason))


class LinkUnavailable(Exception):
    """The path cannot be opened right now (e.g. the port is locked by another program)."""


def describe(error: BaseException) -> str:
    """A short human reason for an OS error, e.g. `[Errno 5] Input/output error` -> text."""
    if isinstance(error, OSError) and error.strerror:
        name = f" {error.filename}" if error.filename else ""
        return f"{error.strerror}{name}"
    return str(error) or type(error).__name__
