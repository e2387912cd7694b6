"""The I/O shell: one event loop that drives the sans-I/O core.

Data flows one way. A link driver reads bytes; the loop hands them, with the path id and
the monotonic `now`, to the engine; the engine returns frames to send and events; the loop
writes the frames, logs the events in words a Heartbeat user can grep, and answers
`hbctl` over the control socket. Timers are inputs: the loop sleeps until the earliest of
the engine's, the witnesses' and the drivers' deadlines.

Signals: SIGTERM/SIGINT stop cleanly, SIGHUP re-reads the configuration (a changed one
restarts the protocol under a new generation, so peers see it as a restart).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hbd.config.load import load_config
from hbd.config.model import Config, Medium, PingGroup, PingNode
from hbd.control import ControlServer
from hbd.core import events as ev
from hbd.core.engine import Engine, EngineSettings
from hbd.core.membership import NodeStatus
from hbd.core.states import NodeState, PathState
from hbd.core.witness import WitnessDead, Witnesses, WitnessUp
from hbd.identity import Identity, load_identity, local_node_name
from hbd.links.base import Driver, Link, LinkLost, LinkOpened, LinkOpenFailed, make_link
from hbd.links.ping import PingLink
from hbd.links.serial import DEFAULT_LOCK_DIR
from hbd.logsetup import configure_logging
from hbd.systemd import Notifier, watchdog_interval

log = logging.getLogger("hbd")

DEFAULT_RUN_DIR = "/run/hbd"
STATUS_REFRESH = 1.0  # seconds between systemd STATUS= updates (when changed)


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    config_dir: str
    state_dir: str
    run_dir: str
    node_name: str | None = None
    verbose: int = 0
    lock_dir: str = DEFAULT_LOCK_DIR


class AlreadyRunning(Exception):
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


class Daemon:
    """One hbd node: configuration, identity, links, engine, control socket, signals."""

    def __init__(
        self, options: DaemonOptions, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.options = options
        self.clock = clock
        self.selector = selectors.PollSelector()  # stateless: safe across fd reuse on reopen
        self.config: Config | None = None
        self.identity: Identity | None = None
        self.engine: Engine | None = None
        self.witnesses: Witnesses | None = None
        self.links: dict[str, Link] = {}
        self.pings: dict[str, PingLink] = {}
        self.names: dict[str, str] = {}
        self._registered: dict[str, tuple[int, int]] = {}  # path -> (fd, opens)
        self.control: ControlServer | None = None
        self.notifier = Notifier()
        self.dropped: Counter[str] = Counter()
        self._stop = False
        self._reload = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._status_line = ""
        self._status_at = 0.0
        self._wd_interval = watchdog_interval()
        self._wd_at = 0.0
        self.started_at = 0.0
        self._owns_run_dir = False  # only then may shutdown remove the pid file
        self._ucast_paths: dict[tuple[str, str], str] = {}  # (device, peer) -> path id

    # -- start and stop ---------------------------------------------------------------

    def start(self) -> None:
        opts = self.options
        node = local_node_name(opts.node_name)
        config = load_config(opts.config_dir, node)
        configure_logging(config, opts.verbose)
        for warning in config.warnings:
            log.warning("%s", warning)
        self._claim_run_dir()
        self._apply(config)
        self.control = ControlServer(opts.run_dir, self.selector, self._handle_request)
        self._install_signals()
        now = self.clock()
        self.started_at = now
        self._tick(now)
        log.info(
            "hbd %s started: node %s, generation %d, %d path(s), wire %s",
            _version(),
            node,
            self.identity.generation if self.identity else 0,
            len(self.links),
            config.hacf.wire.value,
        )
        self.notifier.ready(self._status_text(now))

    def _apply(self, config: Config) -> None:
        """Take `config` into use: identity (a new generation), engine, links, witnesses."""
        opts = self.options
        hacf = config.hacf
        self.identity = load_identity(
            opts.state_dir, config.node_name, hacf.uuidfrom, hacf.hbgenmethod
        )
        now = self.clock()
        settings = EngineSettings.from_config(
            config,
            uuid=self.identity.uuid,
            generation=self.identity.generation,
            wall_offset=time.time() - time.monotonic(),
        )
        self.engine = Engine(settings, now)
        wanted = {m.path_id: m for m in hacf.media}
        # Every ucast line of one device shares its port, and the kernel hands a datagram
        # to any one of those sockets: the sender's address says which path it came over.
        self._ucast_paths = {
            (m.device, m.peer): m.path_id for m in hacf.media if m.peer is not None
        }
        for pid in list(self.links):
            old = self.links[pid]
            if pid not in wanted or getattr(old, "medium", None) != wanted[pid]:
                self._close_link(pid)
        for pid, medium in wanted.items():
            self.names[pid] = link_name(medium)
            if pid not in self.links:
                link = make_link(medium, lock_dir=opts.lock_dir)
                self.links[pid] = link
                link.open(now)
                self._drain_link(pid, now)
                self._sync_fd(pid)
        for pid in list(self.pings):
            self._close_link(pid)
        witnesses: list[PingNode | PingGroup] = [*hacf.ping_nodes, *hacf.ping_groups]
        for witness in witnesses:
            ping = PingLink(witness)
            self.pings[witness.path_id] = ping
            ping.open(now)
            self._drain_link(witness.path_id, now)
            self._sync_fd(witness.path_id)
        self.witnesses = Witnesses(
            tuple(p.address for p in hacf.ping_nodes),
            tuple((g.name, g.addresses) for g in hacf.ping_groups),
            deadping=hacf.deadping,
            interval=hacf.keepalive,
            now=now,
        )
        self.config = config

    def _driver(self, pid: str) -> Link | PingLink | None:
        return self.links.get(pid) or self.pings.get(pid)

    def _close_link(self, pid: str) -> None:
        link: Driver = self.links.pop(pid) if pid in self.links else self.pings.pop(pid)
        if pid in self._registered:
            fd, _ = self._registered.pop(pid)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)
        link.close()

    def shutdown(self) -> None:
        now = self.clock()
        self.notifier.stopping("hbd is stopping")
        log.info("hbd is stopping")
        for pid in [*self.links, *self.pings]:
            self._close_link(pid)
        if self.control is not None:
            self.control.close()
            self.control = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._pidfile())
        log.info("%s hbd shutdown complete after %.1f s", self._node(), now - self.started_at)
        self.notifier.close()

    def run(self) -> int:
        try:
            self.start()
            while not self._stop:
                self.step()
        finally:
            if self._owns_run_dir:
                self.shutdown()
        return 0

    # -- the loop ---------------------------------------------------------------------

    def step(self) -> None:
        """Wait for input or the next deadline, then handle everything that is due."""
        now = self.clock()
        deadline = self._next_deadline(now)
        timeout = max(0.0, min(deadline - now, STATUS_REFRESH))
        for key, mask in self.selector.select(timeout):
            key.data(mask)
        self._tick(self.clock())
        if self._reload:
            self._reload = False
            self.reload()

    def _next_deadline(self, now: float) -> float:
        candidates = [now + STATUS_REFRESH]
        if self.engine is not None:
            t = self.engine.get_timer()
            if t is not None:
                candidates.append(t)
        if self.witnesses is not None:
            t = self.witnesses.get_timer()
            if t is not None:
                candidates.append(t)
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
        assert engine is not None
        items: list[tuple[str, Driver]] = [*self.links.items(), *self.pings.items()]
        for pid, driver in items:
            t = driver.get_timer()
            if t is not None and t <= now:
                driver.handle_timer(now)
            self._drain_link(pid, now)
            self._sync_fd(pid)
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
        self._flush(now)
        if self._wd_interval is not None and now >= self._wd_at + self._wd_interval:
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
        self._sync_fd(pid)
        self._flush(now)

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

    def _sync_fd(self, pid: str) -> None:
        link = self._driver(pid)
        if link is None:
            return
        fd = link.fileno()
        key = (fd, link.stats.opens) if fd is not None else None
        old = self._registered.get(pid)
        if old == key:
            return
        if old is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(old[0])
            del self._registered[pid]
        if fd is not None and key is not None:
            self.selector.register(fd, selectors.EVENT_READ, lambda _m, p=pid: self._on_readable(p))
            self._registered[pid] = key

    # -- events to log lines ----------------------------------------------------------

    def _log_event(self, event: ev.Event) -> None:
        name = self.names
        if isinstance(event, ev.NodeUp):
            log.info(
                "Status update for node %s: status up (generation %d)", event.node, event.generation
            )
        elif isinstance(event, ev.NodeActive):
            log.info("Status update for node %s: status active", event.node)
        elif isinstance(event, ev.NodeDead):
            log.warning("node %s: is dead", event.node)
        elif isinstance(event, ev.NodeRestarted):
            log.info(
                "node %s restarted: generation %d -> %d",
                event.node,
                event.old_generation,
                event.new_generation,
            )
        elif isinstance(event, ev.PathUp):
            log.info("Link %s:%s up.", event.node, name.get(event.path, event.path))
        elif isinstance(event, ev.PathDown):
            log.info("Link %s:%s dead.", event.node, name.get(event.path, event.path))
        elif isinstance(event, ev.LateHeartbeat):
            log.warning(
                "Late heartbeat: node %s, interval %d ms (path %s)",
                event.node,
                event.interval_ms,
                event.path,
            )
        elif isinstance(event, ev.DuplicateNode):
            log.error(
                "two sources claim node %s: %s and %s (%s); a cloned machine? give each node "
                "its own uuid (remove the state directory's uuid file on the clone)",
                event.node,
                event.first,
                event.second,
                event.detail,
            )
        elif isinstance(event, ev.FrameDropped):
            self.dropped[event.reason.value] += 1
            log.debug(
                "dropped a frame on %s from %s: %s %s",
                event.path,
                event.source or "?",
                event.reason.value,
                event.detail,
            )
        elif isinstance(event, ev.LocalActive):
            log.info("Local status now set to: 'active'")
        else:
            log.debug("%s", event)

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
                        "rtt_ms": None,
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
        }

    def _status_text(self, now: float) -> str:
        s = self.status(now)
        peers = ", ".join(
            f"{name} {n['status']} ({sum(p['status'] == 'up' for p in n['paths'].values())}/"
            f"{len(n['paths'])} paths)"
            for name, n in s["nodes"].items()
        )
        return f"{s['node']} {s['state']}, {s['redundancy']}; {peers or 'no peers'}"

    def _handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        now = self.clock()
        if cmd == "status":
            return {"ok": True, **self.status(now)}
        if cmd == "reload":
            self._reload = True
            return {"ok": True}
        return {"ok": False, "error": f"unknown command '{cmd}'"}

    # -- signals, reload, run dir -------------------------------------------------------

    def _install_signals(self) -> None:
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeup)

        def on_stop(signum: int, _frame: object) -> None:
            self._stop = True

        def on_hup(signum: int, _frame: object) -> None:
            self._reload = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _drain_wakeup(self, _mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

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
