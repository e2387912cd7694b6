"""Samplers: where a group runs, every 10 ms, on every node.

The one thing a failover must never do is run the group on two nodes at once.
`VipSampler` checks every given network namespace for the group's address, and
`StateFileSampler` (for a group without an address) each node's pid file of the service,
every `interval` seconds (10 ms by default) from a background thread; both record:

- a timeline of changes (`Change`: when, and on which nodes the address was from then on),
  plus the test's own `mark(...)` labels, so a report reads "kill at 1.20 s, on beta at 3.41 s";
- every overlap (`Overlap`): the span of consecutive samples that found the address on
  two or more nodes; `dual_ms` is their total and `assert_never_dual()` fails the test with
  the timeline if there was any;
- how honest the cadence was: `samples` taken and the largest gap between two (`max_gap`).

    with VipSampler("10.80.0.100", {"alpha": ns_a.name, "beta": ns_b.name}) as vip:
        ...                                   # make the address move
        vip.wait_on("beta", timeout=10)       # seconds until only beta has it
        vip.mark("killed alpha")
    vip.assert_never_dual()                   # after the with: the thread is stopped
    print(vip.report())

`StateFileSampler` counts a node as running the group while its pid file names a live
process (not a zombie): a pid file left behind by a killed service, a reset or a power loss
is what a stale pid file is on a real machine, not a running service.

How a VIP sample is taken: one netlink socket per namespace (pyroute2's `NetNS`), opened and
closed by the sampler thread; each sample asks every namespace for its IPv4 addresses
(about 0.5 ms each). The namespaces are read one after the other, so a sample is not an
atomic snapshot: an address that moved from A to B within that half millisecond could be
seen on both (a false alarm that would itself mean a hand-off with no gap at all), and an
overlap shorter than one interval can be missed. Hand-offs between hbd nodes leave at
least an advert round trip (hundreds of milliseconds) between the stop and the start, so
any real double-holding lasts many samples.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

INTERVAL = 0.01  # seconds between samples


@dataclass(frozen=True, slots=True)
class Change:
    """From `at` (seconds since the sampler started) the address was on `holders`."""

    at: float
    holders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    """A label the test put on the timeline (`Sampler.mark`)."""

    at: float
    label: str


@dataclass(frozen=True, slots=True)
class Overlap:
    """Consecutive samples that found the address on several nodes: [start, end)."""

    start: float
    end: float
    holders: tuple[str, ...]

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


class Sampler:
    """Samples on which of `nodes` the group runs; subclasses say how to look.

    `what` names the thing watched in reports and errors ("VIP 10.91.0.100")."""

    def __init__(self, what: str, nodes: Sequence[str], interval: float = INTERVAL) -> None:
        if len(nodes) < 2:
            raise ValueError("a dual-active check needs at least two nodes")
        self.what = what
        self.nodes = tuple(nodes)
        self.interval = interval
        self.t0 = 0.0
        self.samples = 0
        self.max_gap = 0.0
        self.timeline: list[Change] = []
        self.marks: list[Mark] = []
        self.overlaps: list[Overlap] = []
        self._open_overlap: tuple[float, tuple[str, ...]] | None = None
        self._current: tuple[str, ...] | None = None
        self._last_sample: float | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- how to look (the sampler thread calls these) -----------------------------------

    def _open(self) -> dict[str, Any]:
        """Per node, whatever `_holds` needs (opened in the sampler thread)."""
        return {node: None for node in self.nodes}

    def _holds(self, node: str, handle: Any) -> bool:
        raise NotImplementedError

    def _close(self, handles: Mapping[str, Any]) -> None:
        del handles

    # -- running ------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> None:
        """Start sampling; returns once the first sample is in (or raises why not)."""
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"sampler {self.what}", daemon=True)
        self._thread.start()
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self._current is not None or self._error is not None, timeout
            )
        if self._error is not None or not ok:
            self.stop()

    def stop(self) -> None:
        """Stop the thread; close any open overlap; re-raise an error the thread hit."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            if self._thread.is_alive():
                raise RuntimeError(f"sampler of {self.what} did not stop")
        with self._lock:
            if self._open_overlap is not None:
                start, holders = self._open_overlap
                self.overlaps.append(Overlap(start, self._now(), holders))
                self._open_overlap = None
        if self._error is not None:
            raise RuntimeError(f"sampler of {self.what} failed") from self._error
        if self.samples == 0:
            raise RuntimeError(f"sampler of {self.what} took no sample")

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _run(self) -> None:
        handles: dict[str, Any] = {}
        try:
            handles = self._open()
            next_at = time.monotonic()
            while not self._stop.is_set():
                holders = tuple(node for node, h in handles.items() if self._holds(node, h))
                self._record(holders)
                next_at += self.interval
                delay = next_at - time.monotonic()
                if delay < 0:  # fell behind (a busy machine): do not try to catch up
                    next_at = time.monotonic()
                    delay = 0.0
                self._stop.wait(delay)
        except BaseException as e:  # reported by stop(), in the test's thread
            with self._changed:
                self._error = e
                self._changed.notify_all()
        finally:
            self._close(handles)

    def _record(self, holders: tuple[str, ...]) -> None:
        now = self._now()
        with self._changed:
            self.samples += 1
            if self._last_sample is not None:
                self.max_gap = max(self.max_gap, now - self._last_sample)
            self._last_sample = now
            if holders != self._current:
                self.timeline.append(Change(now, holders))
                self._current = holders
                if len(holders) >= 2 and self._open_overlap is None:
                    self._open_overlap = (now, holders)
                elif len(holders) < 2 and self._open_overlap is not None:
                    start, was = self._open_overlap
                    self.overlaps.append(Overlap(start, now, was))
                    self._open_overlap = None
            self._changed.notify_all()

    # -- reading ------------------------------------------------------------------------

    def holders(self) -> tuple[str, ...]:
        """The nodes the latest sample found the address on."""
        with self._lock:
            return self._current or ()

    def mark(self, label: str) -> float:
        """Put `label` on the timeline now; returns the time (seconds since start)."""
        at = self._now()
        with self._lock:
            self.marks.append(Mark(at, label))
        return at

    def wait_on(self, node: str | None, timeout: float) -> float:
        """Wait until the address is on `node` alone (None: on no node); seconds taken."""
        want = () if node is None else (node,)
        start = time.monotonic()
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self._current == want or self._error is not None, timeout
            )
        if self._error is not None:
            raise RuntimeError(f"sampler of {self.what} failed") from self._error
        if not ok:
            raise AssertionError(
                f"{self.what} not on {node or 'no node'} within {timeout:g} s\n{self.report()}"
            )
        return time.monotonic() - start

    def first_on(self, node: str, after: float = 0.0) -> float | None:
        """When (seconds since start) the address was first seen on `node` at or after
        `after`, or None."""
        with self._lock:
            return next((c.at for c in self.timeline if c.at >= after and node in c.holders), None)

    def ever_on(self, node: str, after: float = 0.0) -> bool:
        return self.first_on(node, after) is not None

    @property
    def dual_ms(self) -> float:
        """Total time the address was seen on two nodes or more (closed overlaps)."""
        with self._lock:
            return sum(o.ms for o in self.overlaps)

    def report(self) -> str:
        """The timeline and marks in time order, with the sampling statistics."""
        with self._lock:
            rows: list[tuple[float, str]] = [
                (c.at, f"on {', '.join(c.holders) or 'no node'}") for c in self.timeline
            ]
            rows += [(m.at, f"-- {m.label}") for m in self.marks]
            rows += [(o.start, f"!! DUAL-ACTIVE on {', '.join(o.holders)} for {o.ms:.0f} ms")
                     for o in self.overlaps]  # fmt: skip
            lines = [f"  {at:8.3f} s  {text}" for at, text in sorted(rows)]
            head = (
                f"{self.what}: {self.samples} samples every {self.interval * 1000:g} ms, "
                f"largest gap {self.max_gap * 1000:.1f} ms, dual-active "
                f"{sum(o.ms for o in self.overlaps):.0f} ms"
            )
        return "\n".join([head, *lines])

    def assert_never_dual(self) -> None:
        """Fail with the timeline if the address was ever seen on two nodes at once."""
        with self._lock:
            overlaps = list(self.overlaps)
            if self._open_overlap is not None:
                start, holders = self._open_overlap
                overlaps.append(Overlap(start, self._now(), holders))
        if overlaps:
            raise AssertionError(f"{self.what} was on two nodes at once\n{self.report()}")


class VipSampler(Sampler):
    """Samples where `address` is among `namespaces` (node name -> netns name)."""

    def __init__(
        self, address: str, namespaces: Mapping[str, str], interval: float = INTERVAL
    ) -> None:
        super().__init__(f"VIP {address}", tuple(namespaces), interval)
        self.address = address
        self.namespaces = dict(namespaces)

    def _open(self) -> dict[str, Any]:
        from pyroute2 import NetNS

        handles: dict[str, Any] = {}
        try:
            for node, ns in self.namespaces.items():
                handles[node] = NetNS(ns)
        except BaseException:
            self._close(handles)
            raise
        return handles

    def _holds(self, node: str, handle: Any) -> bool:
        del node
        return any(
            a.get_attr("IFA_ADDRESS") == self.address
            for a in handle.get_addr(family=socket.AF_INET)
        )

    def _close(self, handles: Mapping[str, Any]) -> None:
        for h in handles.values():
            h.close()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a killed, unreaped service)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # pid (comm) STATE ...: comm may hold spaces or parentheses, the state follows the last ")"
    return stat.rpartition(")")[2].split()[0] != "Z"


class StateFileSampler(Sampler):
    """Samples which nodes run a service without an address: node name -> its pid file.

    A node runs it while its pid file names a live process."""

    def __init__(
        self, label: str, pidfiles: Mapping[str, Path], interval: float = INTERVAL
    ) -> None:
        super().__init__(label, tuple(pidfiles), interval)
        self.pidfiles = dict(pidfiles)

    def _holds(self, node: str, handle: Any) -> bool:
        del handle
        try:
            text = self.pidfiles[node].read_text().strip()
        except FileNotFoundError:
            return False
        return text.isdigit() and pid_alive(int(text))
