"""The I/O shell: one asyncio loop that carries the sans-I/O node's inputs and actions.

Data flows one way. A link driver reads bytes; the loop hands them, with the path id and
the monotonic `now`, to the node (`hbd.core.node.Node`); the node returns frames to send,
actions to carry out (run an agent, pet the watchdog, send pings or probes, remember a
peer's addresses, go) and events, which the loop logs in words a Heartbeat user can
grep. Results (agent exits, ping and probe answers) go back to the node as inputs.
Timers are inputs too. The loop wakes only for a readable descriptor or a due timer: one
asyncio timer handle is armed, after every turn, at the earliest of the node's
(`Node.get_timer`), the drivers' and the systemd watchdog's deadlines, and nothing else
wakes it -- no polling interval, so an idle node wakes at its heartbeat rate (a frame in
per peer and path, a heartbeat out) and costs what that costs. The drivers' descriptors
(links, ping and probe sockets) sit in an epoll set of their own (`DescriptorSet`) that
the asyncio loop watches as one descriptor: the frames of every path that arrived
together (a peer's heartbeat on bcast and ucast) are read in one turn, and so are those
that arrive while it runs (the serial copy, a little behind); the node's output is
flushed at once and the timer re-armed once for all of them. `hbctl` talks to the
control socket.

Signals: SIGTERM/SIGINT stop cleanly (groups handed over first, then the watchdog
disarmed), SIGHUP re-reads the configuration and applies it to the running node: the
generation, membership and adverts carry over, so the peers notice nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import gc
import logging
import os
import select
import selectors
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hbd.config.load import check_watchdog_device, load_config, local_node_name
from hbd.config.model import Config, Medium, PingGroup, PingNode
from hbd.config.safefiles import UnsafeFile, check_owner, open_regular
from hbd.core import events as ev
from hbd.core import resources as rs
from hbd.core.errors import ConfigError, HbdError, LocalProtocolError
from hbd.core.membership import NodeStatus
from hbd.core.node import (
    Decided,
    GoingDown,
    Node,
    NodeEvent,
    PetWatchdog,
    QnetdClose,
    QnetdConnect,
    QnetdSend,
    QnetdStartTls,
    RememberPeerAddresses,
    RememberPeerGenerations,
    SendPings,
    SendProbes,
    Stalled,
    WitnessesUnproven,
)
from hbd.core.notices import Notice, Notices
from hbd.core.states import NodeState, PathState
from hbd.core.witness import WitnessDead, WitnessUp
from hbd.effects.addresses import (
    ADDRESSES_FILE,
    AddedAddresses,
    BuiltinAgents,
    PyrouteAddressManager,
)
from hbd.effects.agents import Runner, ScriptRunner
from hbd.effects.identity import (
    UUID_FILE,
    Identity,
    load_identity,
    load_peer_addresses,
    save_peer_addresses,
)
from hbd.effects.peerstate import load_peer_generations, save_peer_generations
from hbd.effects.qnetd import QnetdConnection
from hbd.effects.realtime import go_realtime
from hbd.effects.respawn import RespawnedProgram, programs
from hbd.effects.systemd import Notifier, journal_fields, watchdog_interval
from hbd.effects.watchdog import (
    Watchdog,
    WatchdogDevice,
    WatchdogError,
    default_timeout,
    magic_close_warning,
)
from hbd.links.base import (
    Driver,
    Link,
    LinkLost,
    LinkOpened,
    LinkOpenFailed,
    ReopeningDriver,
    reopen_backoff,
)
from hbd.links.factory import make_link
from hbd.links.ping import PingLink
from hbd.links.probe import AddressProber
from hbd.links.serial import DEFAULT_LOCK_DIR
from hbd.links.udp import with_scope
from hbd.shell.control import ControlServer
from hbd.shell.hooks import Hooks, HookSettings, write_shims
from hbd.shell.logsetup import configure_logging
from hbd.shell.metrics import Counts, MetricsServer, exposition
from hbd.shell.settings import node_settings

log = logging.getLogger("hbd")

STATUS_REFRESH = 1.0  # seconds at least between systemd STATUS= updates (only on a change)
MIN_SLEEP = 0.001  # a deadline still due right after its turn is retried this much later
READ_ROUNDS = 4  # looks at the drivers' descriptors in one turn (the first and 3 more)
SHUTDOWN_LIMIT = 300.0  # seconds a clean stop waits for the groups to stop


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    config_dir: str
    state_dir: str
    run_dir: str
    node_name: str | None = None
    verbose: int = 0
    lock_dir: str = DEFAULT_LOCK_DIR


@dataclass(frozen=True, slots=True)
class WatchdogInfo:
    device: str
    timeout: int
    magic_close: bool


class AlreadyRunning(HbdError):
    pass


class PidFileError(HbdError):
    """The pid file is not one hbd may write (a symbolic link, another user's file, ...)."""


def link_name(medium: Medium) -> str:
    """How Heartbeat names a link in its log lines: the interface or the tty."""
    return medium.device


def redundancy(
    nodes: tuple[NodeStatus, ...], local: str, left: frozenset[str] = frozenset()
) -> str:
    """`redundant` when >= 2 paths are up to every live peer; `partitioned` when a peer is
    unreachable; else `degraded` -- also when a peer is down because it stopped cleanly
    (said goodbye, `left`): no redundancy, but no partition either."""
    level = "redundant"
    for node in nodes:
        if node.name == local:
            continue
        if node.name in left:
            level = "degraded"
            continue
        if node.state in (NodeState.DEAD, NodeState.INIT):
            return "partitioned"
        up = sum(1 for p in node.paths if p.state is PathState.UP)
        if up < 2:
            level = "degraded"
    return level


def degraded_by(nodes: tuple[NodeStatus, ...], local: str, left: frozenset[str]) -> str:
    """Why `redundancy` says degraded, in words: peers that stopped cleanly, and peers
    reached over fewer than two paths (naming the paths that are down)."""
    why = []
    for node in nodes:
        if node.name == local:
            continue
        if node.name in left:
            why.append(f"{node.name} stopped cleanly")
            continue
        up = [p for p in node.paths if p.state is PathState.UP]
        if len(up) < 2:
            down = ", ".join(p.path for p in node.paths if p.state is not PathState.UP)
            why.append(
                f"{node.name}: {len(up)} of {len(node.paths)} paths up"
                + (f" ({down} down)" if down else "")
            )
    return "; ".join(why)


LogLine = tuple[int, str, dict[str, str]]  # level, text, journal fields


def describe_event(event: object) -> str:
    """A debug line for an event without a log line of its own: its kind and fields, with
    bytes shown as their length (never a repr of a payload: binary, long, maybe secret)."""
    if not dataclasses.is_dataclass(event):
        return type(event).__name__
    parts = []
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, bytes | bytearray | memoryview):
            parts.append(f"{f.name}={len(value)} bytes")
        else:
            parts.append(f"{f.name}={value}")
    return f"{type(event).__name__} {' '.join(parts)}"


def event_log_line(event: NodeEvent, names: dict[str, str]) -> LogLine | None:
    """The log line for a node event, in words a Heartbeat user can grep (None: debug)."""
    if isinstance(event, ev.DeadtimeDiffers):
        text = (
            f"node {event.node} advertises deadtime {event.theirs:g} s, this node's is "
            f"{event.ours:g} s: it is declared dead after its own {event.theirs:g} s (as "
            "Heartbeat does); give both nodes the same deadtime and keepalive"
        )
        return logging.WARNING, text, {"peer": event.node}
    if isinstance(event, ev.NodeUp):
        text = f"Status update for node {event.node}: status up (generation {event.generation})"
        return logging.INFO, text, {"peer": event.node}
    if isinstance(event, ev.NodeActive):
        text = f"Status update for node {event.node}: status active"
        return logging.INFO, text, {"peer": event.node}
    if isinstance(event, ev.NodeDead):
        return logging.WARNING, f"node {event.node}: is dead", {"peer": event.node}
    if isinstance(event, ev.NodeLeft):
        return logging.INFO, f"Received shutdown notice from '{event.node}'.", {"peer": event.node}
    if isinstance(event, ev.NodeRestarted):
        text = (
            f"node {event.node} restarted: generation {event.old_generation} -> "
            f"{event.new_generation}"
        )
        return logging.INFO, text, {"peer": event.node}
    if isinstance(event, ev.GenerationWentBack):
        text = (
            f"node {event.node} came back with generation {event.new_generation}, lower than "
            f"its last {event.old_generation}, after a silence of its deadtime: a new "
            "incarnation (reinstalled, or its state directory lost); taken as a restart"
        )
        return logging.WARNING, text, {"peer": event.node}
    if isinstance(event, ev.PathUp | ev.PathDown):
        word = "up" if isinstance(event, ev.PathUp) else "dead"
        text = f"Link {event.node}:{names.get(event.path, event.path)} {word}."
        return logging.INFO, text, {"peer": event.node, "path": event.path}
    if isinstance(event, ev.LateHeartbeat):
        text = (
            f"Late heartbeat: node {event.node}, interval {event.interval_ms} ms "
            f"(path {event.path})"
        )
        return logging.WARNING, text, {}
    if isinstance(event, ev.DuplicateNode):
        text = (
            f"two sources claim node {event.node}: {event.first} and {event.second} "
            f"({event.detail}); a cloned machine? give each node its own uuid (remove the "
            "state directory's uuid file on the clone)"
        )
        return logging.ERROR, text, {}
    if isinstance(event, ev.UuidClash):
        if event.fixed:
            text = f"node {event.node} has a uuid of its own again ({event.claimant})"
            return logging.INFO, text, {"peer": event.node}
        text = (
            f"node {event.node} claims this node's own uuid {event.uuid.hex()} ({event.claimant})"
            ": one of the two machines is a clone (a copied disk image or state directory). "
            f"On the clone ({event.node}, unless this one is): stop hbd, remove the state "
            "directory's uuid file (Heartbeat: /var/lib/heartbeat/hb_uuid), start it again; "
            "hbctl status exits 2 until then"
        )
        return logging.ERROR, text, {"peer": event.node}
    if isinstance(event, ev.FrameDropped):
        text = (
            f"dropped a frame on {event.path} from {event.source or '?'}: "
            f"{event.reason.value} {event.detail}"
        )
        return logging.DEBUG, text, {}
    if isinstance(event, ev.LocalActive):
        return logging.INFO, "Local status now set to: 'active'", {}
    if isinstance(event, WitnessUp):
        return logging.INFO, f"Ping node {event.witness} is up", {}
    if isinstance(event, WitnessDead):
        text = f"Ping node {event.witness} is dead (silent {event.silent_for:.1f} s)"
        return logging.WARNING, text, {}
    if isinstance(event, WitnessesUnproven) and event.reaches is not None:
        text = (
            f"no ping node has answered since start ({', '.join(event.witnesses)}), though "
            f"one answers {event.reaches}: this node's way to it is broken (link, route, "
            "firewall), and it counts as isolated: it takes over nothing, and holding a "
            "group it goes when its peer may count it dead"
        )
        return logging.ERROR, text, {}
    if isinstance(event, WitnessesUnproven):
        text = (
            f"no ping node has answered since start ({', '.join(event.witnesses)}) although "
            "a peer is heard over the network: check the ping addresses, routes and "
            "firewalls. Until one answers, losing the peer cannot be told from isolation"
        )
        return logging.ERROR, text, {}
    if isinstance(event, Decided):
        d = event.decision
        verb, _, group = d.decision.partition(" ")
        if verb in ("acquire", "release") and group:  # Heartbeat's words, for grep
            word = "Acquiring" if verb == "acquire" else "Releasing"
            return logging.INFO, f"{word} resource group: {group} ({d.reason})", {"group": group}
        return logging.INFO, f"policy: {d.decision} ({d.reason})", {}
    if isinstance(event, Stalled):
        text = f"the event loop stalled for {event.gap:.1f} s" + (
            ": this node goes (it may be running resources)" if event.going else ""
        )
        return logging.CRITICAL if event.going else logging.WARNING, text, {}
    return _resource_log_line(event)


def _resource_log_line(event: NodeEvent) -> LogLine | None:
    if isinstance(event, rs.GroupStarted):
        return logging.INFO, f"resource group {event.group} started", {"group": event.group}
    if isinstance(event, rs.GroupStopped):
        return logging.INFO, f"resource group {event.group} stopped", {"group": event.group}
    if isinstance(event, rs.GroupFailed):
        text = f"resource group {event.group} failed: {event.reason}"
        return logging.ERROR, text, {"group": event.group}
    if isinstance(event, rs.ResourceFailed):
        text = f"resource {event.resource} {event.op} failed: {event.reason}"
        return logging.ERROR, text, {"group": event.group}
    if isinstance(event, rs.ResourceStuck):
        return logging.CRITICAL, str(event), {"group": event.group}
    if isinstance(event, rs.StopRetrying | rs.ResourceWarning):
        return logging.WARNING, str(event), {"group": event.group}
    return None


class LoopRegistry:
    """What the daemon and the control server need of a selector, on the asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        self.loop = loop
        self.wake = wake
        self._events: dict[int, int] = {}

    @staticmethod
    def _fd(fileobj: Any) -> int:
        return fileobj if isinstance(fileobj, int) else int(fileobj.fileno())

    def register(self, fileobj: Any, events: int, data: Any = None) -> None:
        fd = self._fd(fileobj)

        def call(mask: int) -> None:
            data(mask)
            self.wake()

        if events & selectors.EVENT_READ:
            self.loop.add_reader(fd, call, selectors.EVENT_READ)
        if events & selectors.EVENT_WRITE:
            self.loop.add_writer(fd, call, selectors.EVENT_WRITE)
        self._events[fd] = events

    def modify(self, fileobj: Any, events: int, data: Any = None) -> None:
        self.unregister(fileobj)
        self.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> None:
        fd = self._fd(fileobj)
        if self._events.pop(fd, None) is None:
            raise KeyError(fd)
        self.loop.remove_reader(fd)
        self.loop.remove_writer(fd)


class DescriptorSet:
    """The drivers' descriptors in one level-triggered epoll set, which the asyncio loop
    watches as a single descriptor: when any is readable, `on_ready` gets every readable
    one at once (see the module docstring)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_ready: Callable[[list[int]], None]
    ) -> None:
        self.loop = loop
        self._epoll = select.epoll()
        self._on_ready = on_ready
        loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int) -> None:
        self._epoll.register(fd, select.EPOLLIN)

    def discard(self, fd: int) -> None:
        """Stop watching `fd` (already closed, or never added: nothing to do)."""
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)

    def readable(self) -> list[int]:
        """The descriptors readable now (no waiting)."""
        return [fd for fd, _mask in self._epoll.poll(0)]

    def _ready(self) -> None:
        fds = self.readable()
        if fds:
            self._on_ready(fds)

    def close(self) -> None:
        if not self._epoll.closed:
            self.loop.remove_reader(self._epoll.fileno())
            self._epoll.close()


class Daemon:
    """One hbd node's I/O: configuration, identity, links, the node, agents, watchdog,
    control socket and signals."""

    def __init__(
        self,
        options: DaemonOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        runner: Runner | None = None,
    ) -> None:
        self.options = options
        self.clock = clock
        self._runner = runner
        self.runner: Runner | None = None
        self.registry: LoopRegistry | None = None
        self.descriptors: DescriptorSet | None = None  # the drivers', served in one turn
        self._by_fd: dict[int, str] = {}  # a registered driver descriptor -> its id
        self.config: Config | None = None
        self.identity: Identity | None = None
        self.node: Node | None = None
        self.device: WatchdogDevice | None = None
        self.watchdog: WatchdogInfo | None = None
        self.links: dict[str, Link] = {}
        self.pings: dict[str, PingLink] = {}
        self.prober = AddressProber()
        self.qnetd = QnetdConnection(
            on_connected=lambda: self._qnetd_input("connected"),
            on_data=lambda data: self._qnetd_input("data", data),
            on_failed=lambda reason: self._qnetd_input("failed", reason),
            on_tls=lambda: self._qnetd_input("tls"),
        )
        self.names: dict[str, str] = {}
        self._registered: dict[str, tuple[int, int, int]] = {}  # id -> (fd, opens, driver)
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self.counts = Counts()
        self._last_pet: float | None = None
        self.notifier = Notifier()
        self.dropped: Counter[str] = Counter()
        self._peer_addresses: dict[str, tuple[str, ...]] = {}
        self._peer_generations: tuple[tuple[str, int, int], ...] = ()
        self._stop = False
        self._reload = False
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._status_line = ""
        self._status_at = 0.0
        self._status_dirty = False  # a node event since the last STATUS= (systemd only)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None  # the deadline (daemon clock) it is armed for
        self._wd_interval = watchdog_interval()
        self._wd_at = 0.0
        self.started_at = 0.0
        self._owns_run_dir = False  # only then may shutdown remove the pid file
        self._open_failures: dict[str, str] = {}  # path id -> reason last logged
        self._pid_fd: int | None = None  # the pid file, flock'ed while this daemon runs
        self._ucast_paths: dict[tuple[str, str], str] = {}  # (device, peer) -> path id
        self._stuck = False  # a clean stop gave up on groups that may still run
        self._handing_over = False  # a clean stop's hand-over waits on every turn
        self.respawned: list[RespawnedProgram] = []
        self.loop_stats: Counter[str] = Counter()  # turns of the loop, by what woke it
        # timer turns by whose deadlines had come ("engine+fencing"; "nothing": woke early)
        self.woken_by: Counter[str] = Counter()
        self.notices = Notices("")  # the ordered stream (hbctl events); named at start
        self.hooks: Hooks | None = None
        self._shim_dir = ""
        self._noticed = False  # a notice since the redundancy was last looked at

    # -- start and stop ---------------------------------------------------------------

    def run(self) -> int:
        return asyncio.run(self.main())

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.registry = LoopRegistry(loop, self._after_io)
        try:
            self.start(loop)
            while not self._stop:
                # the node's work happens in the timer and reader callbacks; this only
                # waits for a stop or a reload
                await self._wake.wait()
                self._wake.clear()
                if self._reload:
                    self._reload = False
                    self.reload()
                    self._arm(self.clock())
            await self._hand_over()
            for program in self.respawned:
                await program.stop()
            if self.node is not None:  # goodbye: peers declare us dead now, not in deadtime
                now = self.clock()
                self.node.leave(now)
                self._flush(now)
            if self.hooks is not None and self.config is not None:
                try:  # the last notices' hooks, each within its timeout, all within two
                    await asyncio.wait_for(self.hooks.close(), 2 * self.config.hacf.notify_timeout)
                except TimeoutError:
                    log.warning("hooks: still running at the stop; killed")
        finally:
            if self._owns_run_dir:
                self.shutdown()
        return 1 if self._stuck else 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Everything that can fail comes first; the watchdog is armed last, so a start-up
        that fails never leaves an armed device to reset the machine into the same failure."""
        opts = self.options
        node = local_node_name(opts.node_name)
        config = load_config(opts.config_dir, node)
        check_watchdog_device(config.hacf)
        self.config = config
        configure_logging(config, opts.verbose)
        for warning in config.warnings:
            log.warning("%s", warning)
        self._claim_run_dir()
        self.identity = load_identity(
            opts.state_dir, config.node_name, config.hacf.uuidfrom, config.hacf.hbgenmethod
        )
        peers = tuple(n for n in config.hacf.nodes if n != config.node_name)
        self._peer_addresses, notes = load_peer_addresses(opts.state_dir, peers)
        for note in notes:
            log.warning("%s", note)
        self._peer_generations, notes = load_peer_generations(opts.state_dir, peers)
        for note in notes:
            log.warning("%s", note)
        now = self.clock()
        self.descriptors = DescriptorSet(loop, self._on_descriptors)
        self._open_links(config, now)
        added = AddedAddresses(os.path.join(opts.state_dir, ADDRESSES_FILE))
        self.runner = self._runner or ScriptRunner(
            BuiltinAgents(PyrouteAddressManager(), added=added), ha_dir=opts.config_dir
        )
        assert self.registry is not None
        self.control = ControlServer(
            opts.run_dir, self.registry, self._handle_request, clock=self.clock
        )
        self._open_metrics(config)
        self.notices = Notices(config.node_name)
        self._shim_dir = write_shims(opts.run_dir)
        self.hooks = Hooks(self._hook_settings(config))
        timeout = self._arm_watchdog(config)
        now = self.clock()
        self.node = Node(self._settings(config, timeout), now)
        self.config = config
        for signum, handler in (
            (signal.SIGTERM, self._ask_stop),
            (signal.SIGINT, self._ask_stop),
            (signal.SIGHUP, self._ask_reload),
        ):
            loop.add_signal_handler(signum, handler)
        # what start-up built (modules, config, the node) lives as long as the process:
        # out of the collector's way, so a full collection does not walk it every time
        # (a collection of the whole heap cost up to 18 ms in bench/fuzz.py's workers)
        gc.collect()
        gc.freeze()
        if config.hacf.realtime:
            go_realtime(config.hacf.rtprio)
        self.respawned = programs(config.hacf.respawn)
        for program in self.respawned:
            self._spawn(asyncio.ensure_future(program.run()))
        self.started_at = now
        self._loop = loop
        self._tick(now)
        self._arm(now)
        log.info(
            "hbd %s started: node %s, generation %d, %d path(s), %d group(s), wire %s",
            _version(),
            node,
            self.identity.generation,
            len(self.links),
            len(config.groups),
            config.hacf.wire.value,
        )
        self.notifier.ready(self._status_text(now))

    def _settings(self, config: Config, timeout: float | None) -> Any:
        assert self.identity is not None
        return node_settings(
            config,
            uuid=self.identity.uuid,
            generation=self.identity.generation,
            watchdog_timeout=timeout,
            peer_addresses=self._peer_addresses,
            wall_offset=time.time() - time.monotonic(),
            peer_generations=self._peer_generations,
        )

    def _arm_watchdog(self, config: Config) -> float | None:
        hacf = config.hacf
        if not hacf.watchdog:
            return None
        try:
            device = Watchdog(hacf.watchdog)  # opening arms it
        except WatchdogError as e:
            raise ConfigError(hacf.path, hacf.watchdog_line, str(e)) from None
        self.device = device
        wanted = int(hacf.watchdog_timeout or default_timeout(hacf.deadtime))
        try:
            got = device.set_timeout(wanted)
            support = device.get_support()
        except WatchdogError as e:
            raise ConfigError(hacf.path, hacf.watchdog_line, str(e)) from None
        self.watchdog = WatchdogInfo(device.path, got, device.magic_close_works)
        log.info("watchdog %s armed: timeout %d s (%s)", device.path, got, support.identity)
        warning = magic_close_warning(device.path, support)
        if warning is not None or not device.magic_close_works:
            log.warning(
                "%s",
                warning
                or f"watchdog {device.path}: magic close does not work (nowayout): "
                "a clean stop of hbd will reset this machine",
            )
        if got < hacf.deadtime:
            log.warning("watchdog timeout %d s is shorter than deadtime %g s", got, hacf.deadtime)
        device.pet()
        self._last_pet = self.clock()
        return float(got)

    def _ask_stop(self) -> None:
        self._stop = True
        if self._wake is not None:
            self._wake.set()

    def _ask_reload(self) -> None:
        self._reload = True
        if self._wake is not None:
            self._wake.set()

    def _spawn(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("internal error in a background task: %r", t.exception())
            if self._wake is not None:
                self._wake.set()

        task.add_done_callback(done)

    async def _wait(self) -> None:
        """Until the next input (any timer or descriptor turn, a stop, an agent's end)."""
        assert self._wake is not None
        await self._wake.wait()
        self._wake.clear()

    async def _hand_over(self) -> None:
        """A clean stop: give every group to the peers and wait until they are stopped here
        (and taken there). A stop that cannot finish never ends as "stopped": the node
        goes (with a watchdog, it stays armed and pets no more)."""
        node = self.node
        if node is None:
            return
        now = self.clock()
        self.notifier.stopping("hbd is stopping: handing the groups over")
        log.info("stopping: handing the resource groups over")
        self._handing_over = True  # from now on every turn wakes this loop
        node.begin_stop(now)
        self._flush(now)
        self._arm(now)
        while True:
            now = self.clock()
            if node.stopped(now):
                break
            if now - node.stop_began() > SHUTDOWN_LIMIT:
                self._stuck = True
                log.critical(
                    "groups still not stopped after %.0f s: they may still run; %s",
                    SHUTDOWN_LIMIT,
                    "the watchdog stays armed and will reset this machine"
                    if self.device is not None
                    else "no watchdog: they are left for a human (hbctl status shows them)",
                )
                node.give_up(now, f"a clean stop could not stop the groups in {SHUTDOWN_LIMIT:g} s")
                self._flush(now)
                break
            await self._wait()
        # one more turn so the peers hear "stopped here" before this node goes silent
        now = self.clock()
        self._tick(now)
        self._arm(now)

    def _open_links(self, config: Config, now: float) -> None:
        """Open the links and ping witnesses `config` names (closing the ones it does not)."""
        hacf = config.hacf
        wanted = {m.path_id: m for m in hacf.media}
        # Every ucast line of one device shares its port, and the kernel hands a datagram
        # to any one of those sockets: the sender's address says which path it came over.
        self._ucast_paths = {
            (m.device, m.peer): m.path_id for m in hacf.media if m.peer is not None
        }
        for pid in list(self.links):
            old = self.links[pid]
            if pid not in wanted or getattr(old, "medium", None) != wanted[pid]:
                self._close_driver(pid)
        new: dict[str, Link] = {}
        for pid, medium in wanted.items():
            self.names[pid] = link_name(medium)
            backoff = reopen_backoff(hacf.deadtime)
            if pid not in self.links:
                new[pid] = make_link(medium, lock_dir=self.options.lock_dir, backoff=backoff)
            elif isinstance(kept := self.links[pid], ReopeningDriver):
                kept.use_backoff(backoff)
        witnesses: list[PingNode | PingGroup] = [*hacf.ping_nodes, *hacf.ping_groups]
        pings = {w.path_id: PingLink(w) for w in witnesses}
        for pid in list(self.pings):
            self._close_driver(pid)
        for pid, link in new.items():
            self.links[pid] = link
            link.open(now)
            self._drain_link(pid, now)
            self._sync_fd(pid, link)
        for pid, ping in pings.items():
            self.pings[pid] = ping
            ping.open(now)
            self._drain_link(pid, now)
            self._sync_fd(pid, ping)

    def _close_driver(self, pid: str) -> None:
        driver: Driver = self.links.pop(pid) if pid in self.links else self.pings.pop(pid)
        self._unregister(pid)
        driver.close()

    def _unregister(self, pid: str) -> None:
        if pid in self._registered and self.descriptors is not None:
            fd, _opens, _driver = self._registered.pop(pid)
            if self._by_fd.get(fd) == pid:
                del self._by_fd[fd]
            self.descriptors.discard(fd)

    def shutdown(self) -> None:
        now = self.clock()
        log.info("hbd is stopping")
        for pid in [*self.links, *self.pings]:
            self._close_driver(pid)
        for key in list(self.prober.drivers):
            self._unregister(key)
        self.prober.close()
        if self.descriptors is not None:
            self.descriptors.close()
            self.descriptors = None
        self.qnetd.close()
        self._close_watchdog(clean=self._stop)
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self._shim_dir:
            shutil.rmtree(self._shim_dir, ignore_errors=True)  # written at start: ours
            self._shim_dir = ""
        if self._pid_fd is not None:  # removed while still locked, then let go
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._pidfile())
            os.close(self._pid_fd)
            self._pid_fd = None
        uptime = now - self.started_at if self.started_at else 0.0
        log.info("%s hbd shutdown complete after %.1f s", self._node(), uptime)
        self.notifier.close()

    def _close_watchdog(self, clean: bool) -> None:
        device = self.device
        if device is None:
            return
        fenced = self.node is not None and self.node.fenced is not None
        if self.node is None:  # start-up failed after arming: nothing ran, nothing to fence
            clean = True
        if clean and not fenced and not self._stuck:
            device.disarm()
            log.info("watchdog %s disarmed (magic close)", device.path)
        else:
            device.close_armed()
            log.warning("watchdog %s left armed: this node will be reset", device.path)

    # -- the loop ---------------------------------------------------------------------

    def _drivers(self) -> list[tuple[str, Driver]]:
        return [*self.links.items(), *self.pings.items(), *self.prober.drivers.items()]

    def _due(self, now: float) -> list[str]:
        """Whose deadlines have come by `now`, by the names `_next_deadline` takes the
        earliest of: the node's parts (`Node.due`), "links", "systemd", "control",
        "status"."""
        due = self.node.due(now) if self.node is not None else []
        if any((t := d.get_timer()) is not None and t <= now for _pid, d in self._drivers()):
            due.append("links")
        if self._wd_interval is not None and self._wd_at + self._wd_interval <= now:
            due.append("systemd")
        if self.control is not None and (t := self.control.get_timer()) is not None and t <= now:
            due.append("control")
        if self._status_dirty and self.notifier.enabled and self._status_at + STATUS_REFRESH <= now:
            due.append("status")
        return due

    def _next_deadline(self, now: float) -> float | None:
        """The earliest deadline of the node, the drivers, the systemd watchdog and a
        pending STATUS= update; None when nothing is due ever (then only I/O wakes)."""
        candidates: list[float] = []
        t = self.node.get_timer() if self.node is not None else None
        if t is not None:
            candidates.append(t)
        for _pid, driver in self._drivers():
            t = driver.get_timer()
            if t is not None:
                candidates.append(t)
        if self._wd_interval is not None:
            candidates.append(self._wd_at + self._wd_interval)
        t = self.control.get_timer() if self.control is not None else None
        if t is not None:
            candidates.append(t)
        if self._status_dirty and self.notifier.enabled:
            candidates.append(self._status_at + STATUS_REFRESH)
        return min(candidates, default=None)

    def _arm(self, now: float) -> None:
        """Arm the one timer at the next deadline (after every input: it may have moved)."""
        loop = self._loop
        if loop is None:
            return
        deadline = self._next_deadline(now)
        if deadline is not None and deadline <= now and self._timer_at == deadline:
            deadline = now + MIN_SLEEP  # still due right after its own turn: not a spin
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = loop.call_at(loop.time() + max(0.0, deadline - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.loop_stats["turns"] += 1
        self.loop_stats["timer"] += 1
        now = self.clock()
        self.woken_by["+".join(self._due(now)) or "nothing"] += 1
        self._tick(now)
        self._arm(now)
        if self._handing_over and self._wake is not None:
            self._wake.set()

    def _after_io(self) -> None:
        """After a descriptor's turn (the drivers', or the control socket's)."""
        self.loop_stats["turns"] += 1
        self.loop_stats["io"] += 1
        now = self.clock()
        self._pet_systemd(now)
        self._arm(now)
        if self._handing_over and self._wake is not None:
            self._wake.set()

    def _tick(self, now: float) -> None:
        node = self.node
        assert node is not None
        for pid, driver in self._drivers():
            t = driver.get_timer()
            if t is not None and t <= now:
                driver.handle_timer(now)
                self._drain_link(pid, now)
                self._sync_fd(pid, driver)
        t = node.get_timer()
        if t is not None and t <= now:
            node.handle_timer(now)
        control = self.control
        if control is not None and (t := control.get_timer()) is not None and t <= now:
            control.handle_timer(now)  # idle clients hung up on, accepts resumed
        self._flush(now)
        self._pet_systemd(now)
        if self._status_dirty and now - self._status_at >= STATUS_REFRESH:
            self._status_dirty = False
            self._status_at = now
            if self.notifier.enabled:
                line = self._status_text(now)
                if line != self._status_line:
                    self._status_line = line
                    self.notifier.status(line)

    def _pet_systemd(self, now: float) -> None:
        """WATCHDOG=1 in the first turn at least half the interval (WatchdogSec/4) after
        the last: the turns heartbeats wake anyway carry it, and the interval's end
        (WatchdogSec/2, the deadline `_next_deadline` arms) wakes the loop only when no
        turn came. Never once the node decided to go: systemd's watchdog must not outlive
        that decision."""
        if self._wd_interval is None or now < self._wd_at + self._wd_interval / 2:
            return
        if self.node is None or self.node.fenced is None:
            self.notifier.watchdog()
        self._wd_at = now

    def _flush(self, now: float) -> None:
        """Carry out everything the node asked for, then log what it reported."""
        node = self.node
        assert node is not None
        for pid, frame in node.frames_to_send(now):
            link = self.links.get(pid)
            if link is not None:
                link.send(frame, now)
        while (action := node.next_action()) is not None:
            self._carry_out(action, now)
        while (event := node.next_event()) is not None:
            self._log_event(event)
        if self._noticed:
            self._noticed = False
            level, why = self._redundancy(now)
            self._notice(
                self.notices.redundancy(
                    time.time(), level, why or "every peer over 2 paths or more"
                )
            )
        if self.prober.drivers.keys() != self._probe_keys:
            self._sync_probes()

    def _carry_out(self, action: Any, now: float) -> None:
        if isinstance(action, rs.RunAgent):
            self._spawn(asyncio.ensure_future(self._run_agent(action)))
        elif isinstance(action, PetWatchdog):
            if self.device is not None:
                self.device.pet()
                self._last_pet = now
        elif isinstance(action, GoingDown):
            if self.device is not None:
                log.critical(
                    "self-fencing: %s; no longer petting %s, reset within %d s",
                    action.reason,
                    self.device.path,
                    self.watchdog.timeout if self.watchdog else 0,
                )
            else:
                log.critical("going: %s (no watchdog: releasing everything)", action.reason)
        elif isinstance(action, SendPings):
            for ping in self.pings.values():
                ping.send_echo(now)
        elif isinstance(action, SendProbes):
            self.prober.set_targets(action.addresses, now)
            self._sync_probes()
            self.prober.probe(now)
        elif isinstance(action, RememberPeerGenerations):
            try:
                save_peer_generations(self.options.state_dir, action.generations)
            except OSError as e:
                log.warning(
                    "cannot keep the peers' generations in %s: %s (after a restart, replays "
                    "of their earlier frames are refused only once they are heard again)",
                    self.options.state_dir,
                    e,
                )
        elif isinstance(action, QnetdConnect):
            log.info("connecting to qnetd %s:%d", action.host, action.port)
            self.qnetd.connect(action.host, action.port)
        elif isinstance(action, QnetdSend):
            self.qnetd.send(action.data)
        elif isinstance(action, QnetdStartTls):
            self.qnetd.start_tls()
        elif isinstance(action, QnetdClose):
            self.qnetd.close()
        elif isinstance(action, RememberPeerAddresses):
            self._peer_addresses[action.peer] = action.addresses
            try:
                save_peer_addresses(self.options.state_dir, self._peer_addresses)
            except OSError as e:
                log.warning(
                    "cannot remember %s's addresses in %s: %s (probing still works until "
                    "this daemon restarts)",
                    action.peer,
                    self.options.state_dir,
                    e,
                )

    def _qnetd_input(self, what: str, arg: Any = None) -> None:
        """The qnetd connection reported something: hand it to the node, carry out."""
        node = self.node
        if node is None:
            return
        now = self.clock()
        if what == "connected":
            node.qnetd_connected(now)
        elif what == "data":
            node.qnetd_data(arg, now)
        elif what == "tls":
            node.qnetd_tls_started(now)
        else:
            node.qnetd_failed(str(arg), now)
        self._flush(now)
        self._arm(now)  # the node's deadlines may have moved
        if self._wake is not None:
            self._wake.set()

    async def _run_agent(self, action: rs.RunAgent) -> None:
        """Run one agent operation; whatever happens, its end goes back to the node."""
        assert self.runner is not None
        try:
            result = await self.runner.run(action.resource, action.op, action.timeout)
        except Exception as e:  # every failure to run an agent is a failed operation
            self._agent_result(action, None, f"{type(e).__name__}: {e}")
            return
        self._agent_result(action, result, None)

    def _agent_result(self, action: rs.RunAgent, result: Any, error: str | None) -> None:
        node = self.node
        if node is None:
            return
        now = self.clock()
        try:
            if result is None:
                log.error(
                    "resource %s %s could not be run: %s", action.resource.spec, action.op, error
                )
                node.agent_failed(action.group, action.index, action.op, error or "", now)
            elif result.rc is None:
                node.agent_timed_out(action.group, action.index, action.op, now, result.duration_ms)
            else:
                node.agent_done(
                    action.group,
                    action.index,
                    action.op,
                    result.rc,
                    result.output,
                    now,
                    result.duration_ms,
                )
        except LocalProtocolError as e:  # the node moved on (a reload, a restart)
            log.warning("a late result of %s %s was dropped: %s", action.group, action.op, e)
        self._flush(now)
        self._arm(now)

    _probe_keys: frozenset[str] = frozenset()

    def _sync_probes(self) -> None:
        for key in self._probe_keys - self.prober.drivers.keys():
            self._unregister(key)
        self._probe_keys = frozenset(self.prober.drivers)
        for key, driver in self.prober.drivers.items():
            self._sync_fd(key, driver)

    def _on_descriptors(self, fds: list[int]) -> None:
        """One turn for every driver descriptor readable now: read them all and flush the
        node's output (a heartbeat due behind the peer's goes at once); then look again,
        and read what arrived meanwhile in the same turn -- the rest of a peer's heartbeat
        usually does (the tty layer hands a serial copy over a little after the datagrams
        were read) -- before the timer is re-armed once. At most `READ_ROUNDS` looks, so
        a flood of frames cannot keep the loop from its timer and the control socket."""
        node = self.node
        if node is None:
            return
        for round_ in range(READ_ROUNDS):
            if round_:
                self.loop_stats["folded"] += 1
            now = self.clock()
            for fd in fds:
                pid = self._by_fd.get(fd)
                if pid is not None:
                    self._read(pid, now)
            self._flush(now)
            if self.descriptors is None or not (fds := self.descriptors.readable()):
                break
        self._after_io()

    def _read(self, pid: str, now: float) -> None:
        """Hand what driver `pid` has read to the node (its output waits for the flush)."""
        node = self.node
        assert node is not None
        link = self.links.get(pid)
        if link is not None:  # a heartbeat path: what nearly every turn reads
            medium = getattr(link, "medium", None)  # a UDP link's (a serial line has none)
            for received in link.on_readable(now):
                path, source = pid, received.source
                if medium is not None:
                    if medium.peer is not None:
                        path = self._ucast_paths.get((medium.device, source), pid)
                    # the core learns the sender's address to probe it: a link-local one
                    # is reached only on the interface it was heard on
                    source = with_scope(source, medium.device)
                node.receive_frame(path, received.data, now, source=source)
            self._drain_link(pid, now, link)
            self._sync_fd(pid, link)
            return
        if pid in self.prober.drivers:
            for address in self.prober.on_readable(pid, now):
                node.probe_reply(address, now)
        ping = self.pings.get(pid)
        if ping is not None:
            for reply in ping.on_readable(now):
                node.witness_reply(reply.address, reply.rtt_s, now)
        self._drain_link(pid, now)
        driver = self._driver(pid)
        if driver is not None:
            self._sync_fd(pid, driver)

    def _driver(self, pid: str) -> Driver | None:
        return self.links.get(pid) or self.pings.get(pid) or self.prober.drivers.get(pid)

    def _drain_link(self, pid: str, now: float, link: Driver | None = None) -> None:
        """Log what driver `pid` (`link`, when the caller has it) reported."""
        if link is None:
            link = self._driver(pid)
        if link is None:
            return
        # a probe's socket is no heartbeat path: its comings and goings are for debugging
        quiet = pid in self.prober.drivers
        info = logging.DEBUG if quiet else logging.INFO
        warning = logging.DEBUG if quiet else logging.WARNING
        while (event := link.next_event()) is not None:
            if isinstance(event, LinkOpened):
                self._open_failures.pop(pid, None)
                log.log(info, "Link %s opened", pid)
            elif isinstance(event, LinkLost):
                log.log(warning, "Link %s lost: %s; reopening", pid, event.reason)
            elif isinstance(event, LinkOpenFailed):
                # the same reason again (a retry) is news only to a debug log
                again = self._open_failures.get(pid) == event.reason
                self._open_failures[pid] = event.reason
                log.log(
                    logging.DEBUG if again else warning,
                    "Link %s cannot be opened: %s; retrying in %.1f s",
                    pid,
                    event.reason,
                    max(0.0, event.retry_at - now),
                )

    def _sync_fd(self, pid: str, driver: Driver) -> None:
        """(Re-)register a driver's descriptor after every call into it (it changes on
        reopen, and is None while the link is down)."""
        if self.descriptors is None:
            return
        fd = driver.fileno()
        opens = getattr(getattr(driver, "stats", None), "opens", 0)
        # the driver object too: a new driver may get the closed one's descriptor number
        key = (fd, opens, id(driver)) if fd is not None else None
        old = self._registered.get(pid)
        if old == key:
            return
        self._unregister(pid)
        if fd is not None and key is not None:
            self.descriptors.add(fd)
            self._by_fd[fd] = pid
            self._registered[pid] = key

    def _log_event(self, event: NodeEvent) -> None:
        if isinstance(event, Decided):
            self.counts.decided(event.decision.decision, event.decision.reason)
        if isinstance(event, ev.FrameDropped):
            self.dropped[event.reason.value] += 1
        else:
            self._status_dirty = True  # what STATUS= says may have changed
        if self._notice(self.notices.observe(time.time(), event, self.names)):
            self._noticed = True
        line = event_log_line(event, self.names)
        if line is None:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s", describe_event(event))
            return
        level, text, fields = line
        log.log(level, "%s", text, extra=journal_fields(**fields) if fields else None)

    def _notice(self, notice: Notice | None) -> bool:
        if notice is None:
            return False
        if self.hooks is not None:
            self.hooks.submit(notice)
        return True

    def _hook_settings(self, config: Config) -> HookSettings:
        h = config.hacf
        return HookSettings(
            node=config.node_name,
            notify=h.notify,
            timeout=h.notify_timeout,
            rc_dir=os.path.join(self.options.config_dir, "rc.d") if h.rc_hooks else None,
            ha_dir=self.options.config_dir,
            shim_dir=self._shim_dir,
            logfile=h.logfile,
            debugfile=h.debugfile,
            logfacility=h.logfacility,
        )

    def _events(self, request: dict[str, Any]) -> dict[str, Any]:
        after, limit = request.get("after", 0), request.get("limit", 1000)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            return {"ok": False, "error": "events: 'after' must be a sequence number >= 0"}
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10000:
            return {"ok": False, "error": "events: 'limit' must be a number from 1 to 10000"}
        page = self.notices.since(after, limit)
        return {
            "ok": True,
            "stream": self.node.engine.generation if self.node is not None else None,
            "events": [n.to_json() for n in page.notices],
            "missed": page.missed,
            "next": page.next,
            "last": self.notices.last_seq,
        }

    # -- status and control -------------------------------------------------------------

    def status(self, now: float) -> dict[str, Any]:
        node = self.node
        assert node is not None and self.config is not None
        engine = node.engine
        nodes_status = engine.nodes_status(now)
        nodes: dict[str, Any] = {}
        for n in nodes_status:
            if n.name == engine.node:
                continue
            nodes[n.name] = {
                "status": n.state.value,
                "uuid": _uuid_text(n.uuid),
                "generation": n.generation,
                "last_heard_ms": _ms(n.last_heard_age),
                "deadtime_ms": _ms(n.deadtime),
                "watchdog_ms": _ms(n.watchdog),
                "paths": {
                    p.path: {
                        "status": p.state.value,
                        "last_heard_ms": _ms(p.last_heard_age),
                        "loss": round(p.loss, 4),
                        "rtt_ms": _ms(engine.rtt(n.name, p.path)),
                        "interval_ms": _ms(p.mean_interval),
                        "jitter_ms": _ms(p.jitter),
                        "received": p.received,
                        "lost": p.lost,
                    }
                    for p in n.paths
                },
            }
        links = {
            pid: {
                "open": link.fileno() is not None,
                "error": getattr(link, "last_failure", None),
                "frames_sent": link.stats.frames_sent,
                "frames_received": link.stats.frames_received,
                "dropped": link.stats.frames_dropped,
            }
            for pid, link in self.links.items()
        }
        witnesses = node.witnesses.status(now)
        level, why = self._redundancy(now, nodes_status)
        out: dict[str, Any] = {
            "node": engine.node,
            "state": engine.local_state.value,
            "uuid": _uuid_text(self.identity.uuid if self.identity else None),
            "generation": engine.generation,
            "uptime_s": round(now - self.started_at, 1),
            "nodes": nodes,
            "links": links,
            "ping_nodes": {
                w.witness: {"status": w.status, "rtt_ms": _ms(w.rtt)} for w in witnesses
            },
            "redundancy": level,
            "dropped_frames": dict(self.dropped),
            "probes": node.probe_status(now),
            "watchdog": None
            if self.watchdog is None
            else {
                "device": self.watchdog.device,
                "timeout_s": self.watchdog.timeout,
                "magic_close": self.watchdog.magic_close,
                "time_left_s": None
                if self._last_pet is None
                else round(max(0.0, self.watchdog.timeout - (now - self._last_pet)), 3),
            },
            "fenced": node.fenced,
            "loop": {
                **{k: self.loop_stats[k] for k in ("turns", "timer", "io", "folded")},
                "woken_by": dict(self.woken_by),
            },
            "qnetd": node.arbiter_status(now),
            "events": {
                "last": self.notices.last_seq,
                "hooks_pending": self.hooks.pending if self.hooks is not None else 0,
                "hooks_run": self.hooks.runs if self.hooks is not None else 0,
                "hooks_failed": self.hooks.failures if self.hooks is not None else 0,
            },
        }
        if level == "degraded":
            out["degraded_by"] = why
        clashes = engine.membership.uuid_clashes()
        if clashes:
            out["uuid_clash"] = {
                "uuid": _uuid_text(self.identity.uuid if self.identity else None),
                "uuid_file": os.path.join(self.options.state_dir, UUID_FILE),
                "peers": clashes,
            }
        if node.active:
            out["groups"] = node.rm.snapshot(node.holders())
            out["decisions"] = [
                {
                    "at": round(d.at, 3),
                    "ago_s": round(now - d.at, 1),
                    "decision": d.decision,
                    "reason": d.reason,
                }
                for d in list(node.policy.decisions)[-10:]
            ]
            out["targets"] = node.policy.targets()
            out["policy"] = node.policy.summary()
            if node.hbres is not None:
                out["heartbeat_peer"] = node.hbres.summary()
        return out

    def _redundancy(
        self, now: float, nodes_status: tuple[NodeStatus, ...] | None = None
    ) -> tuple[str, str]:
        """The redundancy level and, when degraded, why (`degraded_by`)."""
        node = self.node
        assert node is not None
        engine = node.engine
        if nodes_status is None:
            nodes_status = engine.nodes_status(now)
        membership = engine.membership
        stopped = frozenset(n.name for n in nodes_status if membership.has_left(n.name))
        level = redundancy(nodes_status, engine.node, stopped)
        if level == "degraded":
            return level, degraded_by(nodes_status, engine.node, stopped)
        arbiter = node.arbiter_status(now)
        if arbiter is not None and arbiter["degraded"] and level == "redundant":
            # the arbiter is unreachable: a partition now is decided without its vote (as
            # without one, or, if the peer still reaches it, by the peer's vote alone)
            return "degraded", "arbiter unreachable"  # docs/qnetd.md, "How it fails"
        if level == "partitioned":
            lost = [
                n.name
                for n in nodes_status
                if n.name != engine.node
                and n.name not in stopped
                and n.state in (NodeState.DEAD, NodeState.INIT)
            ]
            return level, "no path reaches " + ", ".join(lost)
        return level, ""

    def _status_text(self, now: float) -> str:
        s = self.status(now)
        peers = ", ".join(
            f"{name} {n['status']} ({sum(p['status'] == 'up' for p in n['paths'].values())}/"
            f"{len(n['paths'])} paths)"
            for name, n in s["nodes"].items()
        )
        held = [g["name"] for g in s.get("groups", []) if g.get("holder") == s["node"]]
        groups = f"; holds {', '.join(held)}" if held else ""
        return f"{s['node']} {s['state']}, {s['redundancy']}; {peers or 'no peers'}{groups}"

    def _handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        now = self.clock()
        if cmd == "status":
            return {"ok": True, **self.status(now)}
        if cmd == "events":
            return self._events(request)
        if cmd == "reload":
            self._ask_reload()
            return {"ok": True}
        if cmd in ("standby", "takeover", "release"):
            mode = request.get("mode", "all")
            if not isinstance(mode, str):
                return {"ok": False, "error": f"{cmd}: mode must be a string"}
            node = self.node
            if node is None:
                return {"ok": False, "error": f"{cmd}: the node is not running"}
            try:
                getattr(node, cmd)(mode, now)
            except LocalProtocolError as e:
                return {"ok": False, "error": str(e)}
            self._flush(now)  # the timer is re-armed after this socket's turn
            return {"ok": True, "message": f"{cmd} {mode} requested"}
        return {"ok": False, "error": f"unknown command '{cmd}'"}

    # -- reload, run dir ------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the configuration and apply it to the running node, wholly or not at
        all: a bad edit, or one that needs a restart, keeps the old one running."""
        assert self.config is not None and self.node is not None
        log.info("SIGHUP: re-reading the configuration in %s", self.options.config_dir)
        try:
            config = load_config(self.options.config_dir, self.config.node_name)
        except Exception as e:  # a bad edit must never take a running node down
            log.error("configuration not reloaded, still running the old one: %s", e)
            return
        if config == self.config:
            log.info("configuration unchanged")
            return
        old = self.config
        if config.groups != old.groups or config.hacf.watchdog != old.hacf.watchdog:
            log.error(
                "configuration not reloaded: resource groups or the watchdog changed, which "
                "needs a restart of hbd (hand the groups over first: hbctl standby all)"
            )
            return
        timeout = float(self.watchdog.timeout) if self.watchdog is not None else None
        try:
            settings = self._settings(config, timeout)
            self.node.reconfigure(settings, self.clock())
        except (LocalProtocolError, ValueError) as e:
            log.error("configuration not reloaded, still running the old one: %s", e)
            return
        configure_logging(config, self.options.verbose)
        for warning in config.warnings:
            log.warning("%s", warning)
        if self.hooks is not None:
            self.hooks.configure(self._hook_settings(config))
        now = self.clock()
        self._open_links(config, now)
        if config.hacf.metrics != old.hacf.metrics:
            self._open_metrics(config)
        self.config = config
        changed = sorted(
            f.name
            for f in old.hacf.__dataclass_fields__.values()
            if getattr(old.hacf, f.name) != getattr(config.hacf, f.name)
            and f.name not in ("warnings", "path")
        )
        log.info(
            "configuration reloaded (changed: %s); %d path(s), generation %d kept",
            ", ".join(changed) or "authkeys",
            len(self.links),
            self.node.engine.generation,
        )
        self._flush(now)

    def _open_metrics(self, config: Config) -> None:
        """The Prometheus endpoint `metrics ADDRESS:PORT` asks for (closing any other): a
        port that cannot be had is one error line, and hbd runs on without it."""
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if config.hacf.metrics is None:
            return
        host, port = config.hacf.metrics
        try:
            self.metrics = MetricsServer.open(host, port, self._exposition)
        except OSError as e:
            log.error(
                "metrics %s:%d: cannot listen: %s (running without metrics)",
                host,
                port,
                e.strerror or e,
            )
            return
        log.info("metrics on http://%s:%d/metrics", host, port)

    def _exposition(self) -> bytes:
        return exposition(lambda: self.status(self.clock()), self.counts)

    def _pidfile(self) -> str:
        return os.path.join(self.options.run_dir, "hbd.pid")

    def _claim_run_dir(self) -> None:
        """Take the pid file: opened without following a symbolic link, never truncated
        before it is ours, and flock'ed for as long as this daemon runs, so a second hbd
        is refused by the lock (naming the first one's pid), and a file left by a crash,
        whatever pid it names, is simply taken over."""
        os.makedirs(self.options.run_dir, mode=0o755, exist_ok=True)
        path = self._pidfile()
        for _attempt in range(3):
            try:
                fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o644)
            except UnsafeFile as e:
                raise PidFileError(f"{e}; remove it (hbd writes its pid file itself)") from None
            try:
                st = os.fstat(fd)
                try:
                    check_owner(path, st)
                except UnsafeFile as e:
                    raise PidFileError(str(e)) from None
                if st.st_nlink != 1:
                    raise PidFileError(
                        f"{path}: has {st.st_nlink} names (a hard link to another file?); "
                        "remove it (hbd writes its pid file itself)"
                    )
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    raise AlreadyRunning(
                        f"{path}: hbd (pid {text or '?'}) already runs with this run "
                        "directory; stop it first or give another --run-dir"
                    ) from None
                try:
                    same = os.stat(path, follow_symlinks=False).st_ino == st.st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # the holder removed it as we opened it: open the new one
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except BaseException:
                os.close(fd)
                raise
            self._pid_fd = fd
            self._owns_run_dir = True
            return
        raise PidFileError(
            f"{path}: keeps being replaced while hbd starts; is another hbd starting?"
        )

    def _node(self) -> str:
        return self.config.node_name if self.config else "?"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _uuid_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    import uuid

    try:
        return str(uuid.UUID(bytes=raw))
    except ValueError:
        return raw.hex()


def _version() -> str:
    from hbd import __version__

    return __version__
