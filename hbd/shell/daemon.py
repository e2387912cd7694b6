"""The I/O shell: one asyncio loop that drives the sans-I/O core.

Data flows one way. A link driver reads bytes; the loop hands them, with the path id and
the monotonic `now`, to the engine; the engine returns frames to send and events; the loop
writes the frames and logs the events in words a Heartbeat user can grep. The group keeper
(`hbd.shell.keeper`) runs the resource groups, the policy, the service probes and the watchdog.
`hbctl` talks to the control socket. Timers are inputs: the loop sleeps until the earliest
of the engine's, the witnesses', the drivers' and the keeper's deadlines.

Signals: SIGTERM/SIGINT stop cleanly (groups handed over first, then the watchdog
disarmed), SIGHUP re-reads the configuration (a changed one restarts the protocol under a
new generation, so peers see it as a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import selectors
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hbd.config.load import load_config, local_node_name
from hbd.config.model import Config, Medium, PingGroup, PingNode
from hbd.core import events as ev
from hbd.core.engine import Engine
from hbd.core.errors import HbdError
from hbd.core.membership import NodeStatus
from hbd.core.states import NodeState, PathState
from hbd.core.witness import WitnessDead, Witnesses, WitnessUp
from hbd.effects.addresses import BuiltinAgents, PyrouteAddressManager
from hbd.effects.agents import Runner, ScriptRunner
from hbd.effects.identity import Identity, load_identity
from hbd.effects.realtime import go_realtime
from hbd.effects.respawn import RespawnedProgram, programs
from hbd.effects.systemd import Notifier, journal_fields, watchdog_interval
from hbd.effects.watchdog import Watchdog, WatchdogDevice
from hbd.links.base import Driver, Link, LinkLost, LinkOpened, LinkOpenFailed
from hbd.links.factory import make_link
from hbd.links.ping import PingLink
from hbd.links.serial import DEFAULT_LOCK_DIR
from hbd.shell.control import ControlServer
from hbd.shell.keeper import GroupKeeper
from hbd.shell.logsetup import configure_logging
from hbd.shell.settings import engine_settings

log = logging.getLogger("hbd")

STATUS_REFRESH = 1.0  # seconds between systemd STATUS= updates (when changed)


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    config_dir: str
    state_dir: str
    run_dir: str
    node_name: str | None = None
    verbose: int = 0
    lock_dir: str = DEFAULT_LOCK_DIR


class AlreadyRunning(HbdError):
    pass


def link_name(medium: Medium) -> str:
    """How Heartbeat names a link in its log lines: the interface or the tty."""
    return medium.device


def redundancy(nodes: tuple[NodeStatus, ...], local: str) -> str:
    """`redundant` when >= 2 paths are up to every live peer; `partitioned` when a peer is
    unreachable; else `degraded`."""
    level = "redundant"
    for node in nodes:
        if node.name == local:
            continue
        if node.state in (NodeState.DEAD, NodeState.INIT):
            return "partitioned"
        up = sum(1 for p in node.paths if p.state is PathState.UP)
        if up < 2:
            level = "degraded"
    return level


LogLine = tuple[int, str, dict[str, str]]  # level, text, journal fields


def event_log_line(event: ev.Event, names: dict[str, str]) -> LogLine | None:
    """The log line for a core event, in words a Heartbeat user can grep (None: debug)."""
    if isinstance(event, ev.NodeUp):
        text = f"Status update for node {event.node}: status up (generation {event.generation})"
        return logging.INFO, text, {"peer": event.node}
    if isinstance(event, ev.NodeActive):
        return (
            logging.INFO,
            f"Status update for node {event.node}: status active",
            {"peer": event.node},
        )
    if isinstance(event, ev.NodeDead):
        return logging.WARNING, f"node {event.node}: is dead", {"peer": event.node}
    if isinstance(event, ev.NodeLeft):
        return logging.INFO, f"Received shutdown notice from '{event.node}'.", {"peer": event.node}
    if isinstance(event, ev.NodeRestarted):
        text = (
            f"node {event.node} restarted: generation {event.old_generation} -> "
            f"{event.new_generation}"
        )
        return logging.INFO, text, {}
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
    if isinstance(event, ev.FrameDropped):
        text = (
            f"dropped a frame on {event.path} from {event.source or '?'}: "
            f"{event.reason.value} {event.detail}"
        )
        return logging.DEBUG, text, {}
    if isinstance(event, ev.LocalActive):
        return logging.INFO, "Local status now set to: 'active'", {}
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


class Daemon:
    """One hbd node: configuration, identity, links, engine, groups, control, signals."""

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
        self.registry: LoopRegistry | None = None
        self.config: Config | None = None
        self.identity: Identity | None = None
        self.engine: Engine | None = None
        self.witnesses: Witnesses | None = None
        self.keeper: GroupKeeper | None = None
        self.links: dict[str, Link] = {}
        self.pings: dict[str, PingLink] = {}
        self.names: dict[str, str] = {}
        self._registered: dict[str, tuple[int, int]] = {}  # driver id -> (fd, opens)
        self.control: ControlServer | None = None
        self.notifier = Notifier()
        self.dropped: Counter[str] = Counter()
        self._stop = False
        self._reload = False
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._status_line = ""
        self._status_at = 0.0
        self._wd_interval = watchdog_interval()
        self._wd_at = 0.0
        self._next_probe = 0.0
        self.started_at = 0.0
        self._owns_run_dir = False  # only then may shutdown remove the pid file
        self._ucast_paths: dict[tuple[str, str], str] = {}  # (device, peer) -> path id
        self.respawned: list[RespawnedProgram] = []

    # -- start and stop ---------------------------------------------------------------

    def run(self) -> int:
        return asyncio.run(self.main())

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.registry = LoopRegistry(loop, self._wake.set)
        try:
            self.start(loop)
            while not self._stop:
                await self._wait()
                self._tick(self.clock())
                if self._reload:
                    self._reload = False
                    self.reload()
            await self._hand_over()
            for program in self.respawned:
                await program.stop()
            if self.engine is not None:  # goodbye: peers declare us dead now, not in deadtime
                now = self.clock()
                self.engine.leave(now)
                self._flush(now)
        finally:
            if self._owns_run_dir:
                self.shutdown()
        return 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        opts = self.options
        node = local_node_name(opts.node_name)
        config = load_config(opts.config_dir, node)
        configure_logging(config, opts.verbose)
        for warning in config.warnings:
            log.warning("%s", warning)
        self._claim_run_dir()
        watchdog: WatchdogDevice | None = None
        if config.hacf.watchdog:
            watchdog = Watchdog(config.hacf.watchdog)  # opening arms it; errors name the path
        self._apply(config)
        now = self.clock()
        runner = self._runner or ScriptRunner(
            BuiltinAgents(PyrouteAddressManager()), ha_dir=opts.config_dir
        )
        self.keeper = GroupKeeper(
            config, runner=runner, watchdog=watchdog, spawn=self._spawn, now=now
        )
        if self.keeper.watchdog is not None and self.engine is not None:
            self._restart_engine(config, float(self.keeper.watchdog.timeout))
        for gid, probe in self.keeper.probes.items():
            self._sync_fd(f"probe:{gid}", probe)
        assert self.registry is not None
        self.control = ControlServer(opts.run_dir, self.registry, self._handle_request)
        for signum, handler in (
            (signal.SIGTERM, self._ask_stop),
            (signal.SIGINT, self._ask_stop),
            (signal.SIGHUP, self._ask_reload),
        ):
            loop.add_signal_handler(signum, handler)
        if config.hacf.realtime:
            go_realtime(config.hacf.rtprio)
        self.respawned = programs(config.hacf.respawn)
        for program in self.respawned:
            self._spawn(asyncio.ensure_future(program.run()))
        self.started_at = now
        self._tick(now)
        log.info(
            "hbd %s started: node %s, generation %d, %d path(s), %d group(s), wire %s",
            _version(),
            node,
            self.identity.generation if self.identity else 0,
            len(self.links),
            len(config.groups),
            config.hacf.wire.value,
        )
        self.notifier.ready(self._status_text(now))

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
                log.error("internal error in a resource operation: %r", t.exception())
            if self._wake is not None:
                self._wake.set()

        task.add_done_callback(done)

    async def _wait(self) -> None:
        assert self._wake is not None
        now = self.clock()
        timeout = max(0.0, min(self._next_deadline(now) - now, STATUS_REFRESH))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _hand_over(self) -> None:
        """A clean stop: give every group to the peers and wait until they are stopped."""
        if self.keeper is None:
            return
        now = self.clock()
        self.notifier.stopping("hbd is stopping: handing the groups over")
        log.info("stopping: handing the resource groups over")
        self.keeper.begin_stop(now)
        while True:
            self._tick(self.clock())
            if self.keeper.stopped(self.clock()):
                break
            await self._wait()
        # one more turn so the peers hear "stopped here" before this node goes silent
        self._tick(self.clock())

    def _restart_engine(self, config: Config, watchdog_timeout: float | None) -> None:
        assert self.identity is not None
        settings = engine_settings(
            config,
            uuid=self.identity.uuid,
            generation=self.identity.generation,
            wall_offset=time.time() - time.monotonic(),
        )
        if watchdog_timeout is not None:
            settings = dataclasses.replace(settings, watchdog_timeout=watchdog_timeout)
        self.engine = Engine(settings, self.clock())

    def _apply(self, config: Config) -> None:
        """Take `config` into use: identity (a new generation), engine, links, witnesses."""
        opts = self.options
        hacf = config.hacf
        self.identity = load_identity(
            opts.state_dir, config.node_name, hacf.uuidfrom, hacf.hbgenmethod
        )
        now = self.clock()
        timeout = self.keeper.watchdog.timeout if self.keeper and self.keeper.watchdog else None
        self._restart_engine(config, float(timeout) if timeout is not None else None)
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
        for pid, medium in wanted.items():
            self.names[pid] = link_name(medium)
            if pid not in self.links:
                link = make_link(medium, lock_dir=opts.lock_dir)
                self.links[pid] = link
                link.open(now)
                self._drain_link(pid, now)
                self._sync_fd(pid, link)
        for pid in list(self.pings):
            self._close_driver(pid)
        witnesses: list[PingNode | PingGroup] = [*hacf.ping_nodes, *hacf.ping_groups]
        for witness in witnesses:
            ping = PingLink(witness)
            self.pings[witness.path_id] = ping
            ping.open(now)
            self._drain_link(witness.path_id, now)
            self._sync_fd(witness.path_id, ping)
        self.witnesses = Witnesses(
            tuple(p.address for p in hacf.ping_nodes),
            tuple((g.name, g.addresses) for g in hacf.ping_groups),
            deadping=hacf.deadping,
            interval=hacf.keepalive,
            now=now,
        )
        self.config = config

    def _close_driver(self, pid: str) -> None:
        driver: Driver = self.links.pop(pid) if pid in self.links else self.pings.pop(pid)
        self._unregister(pid)
        driver.close()

    def _unregister(self, pid: str) -> None:
        if pid in self._registered and self.registry is not None:
            fd, _ = self._registered.pop(pid)
            with contextlib.suppress(KeyError, ValueError):
                self.registry.unregister(fd)

    def shutdown(self) -> None:
        now = self.clock()
        log.info("hbd is stopping")
        for pid in [*self.links, *self.pings]:
            self._close_driver(pid)
        if self.keeper is not None:
            for gid in self.keeper.probes:
                self._unregister(f"probe:{gid}")
            self.keeper.close(clean=self._stop)
        if self.control is not None:
            self.control.close()
            self.control = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._pidfile())
        log.info("%s hbd shutdown complete after %.1f s", self._node(), now - self.started_at)
        self.notifier.close()

    # -- the loop ---------------------------------------------------------------------

    def _next_deadline(self, now: float) -> float:
        candidates = [now + STATUS_REFRESH]
        for timer in (
            self.engine.get_timer() if self.engine else None,
            self.witnesses.get_timer() if self.witnesses else None,
            self.keeper.get_timer() if self.keeper else None,
            self._next_probe if self.keeper and self.keeper.probes else None,
        ):
            if timer is not None:
                candidates.append(timer)
        drivers: list[Driver] = [*self.links.values(), *self.pings.values()]
        for driver in drivers:
            t = driver.get_timer()
            if t is not None:
                candidates.append(t)
        if self._wd_interval is not None:
            candidates.append(self._wd_at + self._wd_interval)
        return min(candidates)

    def _tick(self, now: float) -> None:
        engine = self.engine
        assert engine is not None and self.config is not None
        items: list[tuple[str, Driver]] = [*self.links.items(), *self.pings.items()]
        for pid, driver in items:
            t = driver.get_timer()
            if t is not None and t <= now:
                driver.handle_timer(now)
            self._drain_link(pid, now)
            self._sync_fd(pid, driver)
        t = engine.get_timer()
        if t is not None and t <= now:
            engine.handle_timer(now)
        if self.witnesses is not None:
            if self.witnesses.due_echoes(now):
                for ping in self.pings.values():
                    ping.send_echo(now)
            t = self.witnesses.get_timer()
            if t is not None and t <= now:
                self.witnesses.handle_timer(now)
        if self.keeper is not None:
            if self.keeper.probes and now >= self._next_probe:
                self._next_probe = now + self.config.hacf.keepalive
                self.keeper.probe(now)
            self.keeper.turn(now, engine, self.witnesses)
        self._flush(now)
        if self._wd_interval is not None and now >= self._wd_at + self._wd_interval:
            fenced = self.keeper is not None and self.keeper.fencing.fenced is not None
            if not fenced:  # systemd's watchdog must not outlive a decision to be reset
                self.notifier.watchdog()
            self._wd_at = now
        if now - self._status_at >= STATUS_REFRESH:
            self._status_at = now
            line = self._status_text(now)
            if line != self._status_line:
                self._status_line = line
                self.notifier.status(line)

    def _flush(self, now: float) -> None:
        engine = self.engine
        assert engine is not None
        for pid, frame in engine.frames_to_send(now):
            link = self.links.get(pid)
            if link is not None:
                link.send(frame, now)
        while (event := engine.next_event()) is not None:
            self._log_event(event)
        if self.witnesses is not None:
            while (wevent := self.witnesses.next_event()) is not None:
                if isinstance(wevent, WitnessUp):
                    log.info("Ping node %s is up", wevent.witness)
                elif isinstance(wevent, WitnessDead):
                    log.warning(
                        "Ping node %s is dead (silent %.1f s)", wevent.witness, wevent.silent_for
                    )

    def _on_readable(self, pid: str) -> None:
        engine = self.engine
        if engine is None:
            return
        now = self.clock()
        if pid.startswith("probe:") and self.keeper is not None:
            group = pid[len("probe:") :]
            probe = self.keeper.probes.get(group)
            if probe is not None:
                for _reply in probe.on_readable(now):
                    self.keeper.probe_answered(group, now)
                self._sync_fd(pid, probe)
            return
        ping = self.pings.get(pid)
        if ping is not None:
            for reply in ping.on_readable(now):
                if self.witnesses is not None:
                    self.witnesses.reply(reply.address, reply.rtt_s, now)
        link = self.links.get(pid)
        if link is not None:
            for received in link.on_readable(now):
                medium = getattr(link, "medium", None)
                path = pid
                if medium is not None and medium.peer is not None:
                    path = self._ucast_paths.get((medium.device, received.source), pid)
                engine.receive_frame(path, received.data, now, source=received.source)
        self._drain_link(pid, now)
        driver = self._driver(pid)
        if driver is not None:
            self._sync_fd(pid, driver)
        self._flush(now)

    def _driver(self, pid: str) -> Link | PingLink | None:
        return self.links.get(pid) or self.pings.get(pid)

    def _drain_link(self, pid: str, now: float) -> None:
        link = self._driver(pid)
        if link is None:
            return
        while (event := link.next_event()) is not None:
            if isinstance(event, LinkOpened):
                log.info("Link %s opened", pid)
            elif isinstance(event, LinkLost):
                log.warning("Link %s lost: %s; reopening", pid, event.reason)
            elif isinstance(event, LinkOpenFailed):
                log.warning(
                    "Link %s cannot be opened: %s; retrying in %.1f s",
                    pid,
                    event.reason,
                    max(0.0, event.retry_at - now),
                )

    def _sync_fd(self, pid: str, driver: Link | PingLink | Driver) -> None:
        """(Re-)register a driver's descriptor after every call into it (it changes on
        reopen, and is None while the link is down)."""
        if self.registry is None:
            return
        fd = driver.fileno()
        opens = getattr(getattr(driver, "stats", None), "opens", 0)
        key = (fd, opens) if fd is not None else None
        old = self._registered.get(pid)
        if old == key:
            return
        self._unregister(pid)
        if fd is not None and key is not None:
            self.registry.register(fd, selectors.EVENT_READ, lambda _m, p=pid: self._on_readable(p))
            self._registered[pid] = key

    # -- events to log lines ----------------------------------------------------------

    def _log_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.FrameDropped):
            self.dropped[event.reason.value] += 1
        line = event_log_line(event, self.names)
        if line is None:
            log.debug("%s", event)
            return
        level, text, fields = line
        log.log(level, "%s", text, extra=journal_fields(**fields) if fields else None)

    # -- status and control -------------------------------------------------------------

    def status(self, now: float) -> dict[str, Any]:
        engine = self.engine
        assert engine is not None and self.config is not None
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
                "frames_sent": link.stats.frames_sent,
                "frames_received": link.stats.frames_received,
                "dropped": link.stats.frames_dropped,
            }
            for pid, link in self.links.items()
        }
        witnesses = self.witnesses.status(now) if self.witnesses else ()
        return {
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
            "redundancy": redundancy(nodes_status, engine.node),
            "dropped_frames": dict(self.dropped),
            **(self.keeper.status() if self.keeper is not None else {}),
        }

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
        if cmd == "reload":
            self._ask_reload()
            return {"ok": True}
        if cmd in ("standby", "takeover"):
            mode = request.get("mode", "all")
            if not isinstance(mode, str):
                return {"ok": False, "error": f"{cmd}: mode must be a string"}
            if self.keeper is None or not self.keeper.active:
                return {"ok": False, "error": f"{cmd}: this node runs no resource groups"}
            getattr(self.keeper, cmd)(mode, now)
            if self._wake is not None:
                self._wake.set()
            return {"ok": True, "message": f"{cmd} {mode} requested"}
        return {"ok": False, "error": f"unknown command '{cmd}'"}

    # -- reload, run dir ------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the configuration; keep running the old one if the new one is bad."""
        assert self.config is not None
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
        configure_logging(config, self.options.verbose)
        for warning in config.warnings:
            log.warning("%s", warning)
        self._apply(config)
        log.info(
            "configuration reloaded: new generation %d, %d path(s)",
            self.identity.generation if self.identity else 0,
            len(self.links),
        )

    def _pidfile(self) -> str:
        return os.path.join(self.options.run_dir, "hbd.pid")

    def _claim_run_dir(self) -> None:
        os.makedirs(self.options.run_dir, mode=0o755, exist_ok=True)
        path = self._pidfile()
        with contextlib.suppress(FileNotFoundError, ValueError):
            with open(path) as f:
                pid = int(f.read().strip())
            if pid != os.getpid() and _alive(pid):
                raise AlreadyRunning(
                    f"{path}: hbd (pid {pid}) already runs with this run directory; stop it "
                    "first or give another --run-dir"
                )
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
        self._owns_run_dir = True

    def _node(self) -> str:
        return self.config.node_name if self.config else "?"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
