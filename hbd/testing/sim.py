"""A deterministic cluster simulator: N engines, paths with latency, jitter, loss and cuts.

Nothing sleeps: an event queue holds frame deliveries, the engines' own timers are asked
for with `get_timer()`, and the clock jumps from one to the next. Randomness (loss,
jitter) comes from one seeded generator, so a run is repeatable to the bit.

Each path is a shared medium: a frame one node sends on `bcast:eth0` is offered to every
other node on that path, each direction (A -> B) with its own latency, jitter, loss and
cut, so asymmetric faults are one call. Serial paths keep bytes in order (a later frame
never overtakes an earlier one); datagram paths may reorder under jitter.

    sim = SimCluster(("alpha", "beta"), keepalive=0.2, deadtime=1.0)
    sim.run_for(5)
    sim.cut("bcast:eth0", "alpha", "beta")        # both directions
    sim.crash("beta")
    sim.run_for(2)
    [e for t, e in sim.events("alpha")]
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.engine import Engine, EngineSettings, PathKind
from hbd.core.errors import LocalProtocolError
from hbd.core.events import Event
from hbd.core.model import WireFormat
from hbd.core.wire.native import cluster_id

E = TypeVar("E")

DEFAULT_PATHS: tuple[tuple[str, PathKind], ...] = (
    ("serial:/dev/ttyS0", PathKind.SERIAL),
    ("bcast:eth0", PathKind.DATAGRAM),
    ("bcast:eth1", PathKind.DATAGRAM),
)
DEFAULT_KEYS = AuthKeys(
    active=AuthEntry(1, AuthMethod.SHA1, b"sim-secret"),
    entries={1: AuthEntry(1, AuthMethod.SHA1, b"sim-secret")},
)


class FakeClock:
    """Simulated monotonic time: it moves only when told to."""

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise LocalProtocolError(f"time cannot go back {seconds} s")
        self.now += seconds
        return self.now

    def jump_to(self, when: float) -> float:
        if when < self.now:
            raise LocalProtocolError(f"time cannot go back from {self.now} to {when}")
        self.now = when
        return self.now


@dataclass(frozen=True, slots=True)
class LinkParams:
    """One direction of one path: delay in seconds, loss as a fraction 0..1."""

    latency: float = 0.001
    jitter: float = 0.0
    loss: float = 0.0
    cut: bool = False


@dataclass(frozen=True, slots=True)
class Sent:
    """A frame one node put on a path, as the simulator saw it (for tests and traces)."""

    time: float
    node: str
    path: str
    data: bytes


class SimCluster:
    """N engines on simulated paths. See the module docstring."""

    def __init__(
        self,
        nodes: Iterable[str] = ("alpha", "beta"),
        paths: Iterable[tuple[str, PathKind]] = DEFAULT_PATHS,
        *,
        keepalive: float = 1.0,
        deadtime: float = 10.0,
        warntime: float | None = None,
        initdead: float | None = None,
        wire: WireFormat = WireFormat.HBD,
        adaptive_detector: bool = False,
        auth: AuthKeys = DEFAULT_KEYS,
        watchdog_timeout: float | None = None,
        latency: float = 0.001,
        seed: int = 0,
        start: float = 100.0,
        tweak: Callable[[EngineSettings], EngineSettings] | None = None,
    ) -> None:
        self.nodes = tuple(nodes)
        self.paths = tuple(paths)
        self.clock = FakeClock(start)
        self.random = random.Random(seed)
        self._tweak = tweak
        self._base = {
            n: EngineSettings(
                node=n,
                uuid=bytes([i + 1]) * 16,
                generation=1,
                nodes=self.nodes,
                paths=self.paths,
                auth=auth,
                keepalive=keepalive,
                deadtime=deadtime,
                warntime=deadtime / 3 if warntime is None else warntime,
                initdead=2 * deadtime if initdead is None else initdead,
                wire=wire,
                cluster_id=cluster_id(self.nodes, 694),
                watchdog_timeout=watchdog_timeout,
                adaptive_detector=adaptive_detector,
            )
            for i, n in enumerate(self.nodes)
        }
        self.address = {n: f"10.0.0.{i + 1}" for i, n in enumerate(self.nodes)}
        self.engines: dict[str, Engine | None] = {}
        self._links: dict[tuple[str, str, str], LinkParams] = {}
        for p, _ in self.paths:
            for a in self.nodes:
                for b in self.nodes:
                    if a != b:
                        self._links[(p, a, b)] = LinkParams(latency=latency)
        self._kinds = dict(self.paths)
        self._queue: list[tuple[float, int, str, str, bytes, str]] = []
        self._order = 0
        self._fifo: dict[tuple[str, str, str], float] = {}
        self._events: dict[str, list[tuple[float, Event]]] = {n: [] for n in self.nodes}
        self.sent: list[Sent] = []
        self.record_sent = False
        for n in self.nodes:
            self._boot(n, self._base[n])

    # -- faults ---------------------------------------------------------------------

    def link(
        self,
        path: str,
        a: str,
        b: str,
        *,
        both: bool = True,
        latency: float | None = None,
        jitter: float | None = None,
        loss: float | None = None,
    ) -> None:
        """Change latency, jitter or loss of `path` from a to b (and back, when `both`)."""
        for key in self._directions(path, a, b, both):
            old = self._links[key]
            self._links[key] = replace(
                old,
                latency=old.latency if latency is None else latency,
                jitter=old.jitter if jitter is None else jitter,
                loss=old.loss if loss is None else loss,
            )

    def cut(self, path: str, a: str, b: str, *, both: bool = True) -> None:
        """Frames on `path` from a stop reaching b (and b's reaching a, when `both`)."""
        for key in self._directions(path, a, b, both):
            self._links[key] = replace(self._links[key], cut=True)

    def heal(self, path: str, a: str, b: str, *, both: bool = True) -> None:
        for key in self._directions(path, a, b, both):
            self._links[key] = replace(self._links[key], cut=False)

    def isolate(self, node: str) -> None:
        """Cut every path between `node` and every other node."""
        for p, _ in self.paths:
            for other in self.nodes:
                if other != node:
                    self.cut(p, node, other)

    def crash(self, node: str) -> None:
        """The node stops dead: it sends nothing more and hears nothing."""
        self._check(node)
        self.engines[node] = None

    def restart(self, node: str) -> None:
        """Start the node again (crashed or not) with the next generation."""
        self._check(node)
        base = self._base[node]
        self._base[node] = replace(base, generation=base.generation + 1)
        self._boot(node, self._base[node])

    def inject(self, node: str, path: str, data: bytes, source: str | None = None) -> None:
        """Hand raw bytes to `node` as if read from `path` now (for forgeries and noise)."""
        engine = self._engine(node)
        engine.receive_frame(path, data, self.clock.now, source)
        self._flush(node)

    # -- running --------------------------------------------------------------------

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now + seconds)

    def run_until(self, until: float) -> None:
        """Process every delivery and timer up to `until`, then leave the clock there."""
        while True:
            when = self._next_time()
            if when is None or when > until:
                break
            self.clock.jump_to(max(when, self.clock.now))
            self._step(self.clock.now)
        self.clock.jump_to(until)

    # -- observing ------------------------------------------------------------------

    def engine(self, node: str) -> Engine:
        return self._engine(node)

    def events(self, node: str) -> list[tuple[float, Event]]:
        """Every event `node` reported so far, with the simulated time it came out."""
        self._check(node)
        return list(self._events[node])

    def events_of(self, node: str, kind: type[E]) -> list[tuple[float, E]]:
        """The events of one type `node` reported, with their times."""
        return [(t, e) for t, e in self.events(node) if isinstance(e, kind)]

    # -- internals ------------------------------------------------------------------

    def _check(self, node: str) -> None:
        if node not in self._base:
            raise LocalProtocolError(f"no node {node!r} in the simulation")

    def _engine(self, node: str) -> Engine:
        self._check(node)
        engine = self.engines[node]
        if engine is None:
            raise LocalProtocolError(f"node {node} is crashed")
        return engine

    def _directions(self, path: str, a: str, b: str, both: bool) -> list[tuple[str, str, str]]:
        keys = [(path, a, b)] + ([(path, b, a)] if both else [])
        for key in keys:
            if key not in self._links:
                raise LocalProtocolError(f"no path {path} between {a} and {b}")
        return keys

    def _boot(self, node: str, settings: EngineSettings) -> None:
        if self._tweak is not None:
            settings = self._tweak(settings)
        self.engines[node] = Engine(settings, self.clock.now)
        self._flush(node)

    def _next_time(self) -> float | None:
        times = [self._queue[0][0]] if self._queue else []
        for engine in self.engines.values():
            if engine is not None and (t := engine.get_timer()) is not None:
                times.append(t)
        return min(times, default=None)

    def _step(self, now: float) -> None:
        while self._queue and self._queue[0][0] <= now:
            _, _, dst, path, data, src = heapq.heappop(self._queue)
            engine = self.engines.get(dst)
            if engine is None:
                continue
            source = None if self._kinds[path] is PathKind.SERIAL else self.address[src]
            engine.receive_frame(path, data, now, source)
            self._flush(dst)
        for node in self.nodes:
            engine = self.engines[node]
            if engine is not None and (t := engine.get_timer()) is not None and t <= now:
                engine.handle_timer(now)
                self._flush(node)

    def _flush(self, node: str) -> None:
        engine = self.engines[node]
        if engine is None:
            return
        now = self.clock.now
        while (event := engine.next_event()) is not None:
            self._events[node].append((now, event))
        for path, data in engine.frames_to_send(now):
            if self.record_sent:
                self.sent.append(Sent(now, node, path, data))
            for dst in self.nodes:
                if dst != node:
                    self._transmit(now, path, node, dst, data)

    def _transmit(self, now: float, path: str, src: str, dst: str, data: bytes) -> None:
        params = self._links[(path, src, dst)]
        if params.cut or (params.loss and self.random.random() < params.loss):
            return
        delay = params.latency
        if params.jitter:
            delay += self.random.uniform(0, params.jitter)
        when = now + delay
        if self._kinds[path] is PathKind.SERIAL:  # a byte stream never reorders
            when = max(when, self._fifo.get((path, src, dst), when))
            self._fifo[(path, src, dst)] = when
        self._order += 1
        heapq.heappush(self._queue, (when, self._order, dst, path, data, src))
