"""`hbd demo`: a two-node hbd cluster on this machine, shown step by step.

The demo writes two node configurations (alpha and beta) into a temporary directory and
starts one `hbd` per node, each with its own configuration, state and run directories:

- a serial path over two pseudo-terminals whose masters this process joins (`SerialCable`:
  a null-modem cable in a thread; cutting the cable is ceasing to relay), and
- a UDP path on loopback: `ucast lo PEER LOCAL` binds each node to its own address
  (127.0.0.1 for alpha, 127.0.0.2 for beta), so both share one port on one host;
- a harmless resource group `demo-service`: a resource.d script that creates a file on
  start, removes it on stop and prints "running"/"stopped" on status.

Then it shows, with a live status table, what hbd does when a path is cut, when the active
node dies and when it comes back, checking each outcome and measuring the failover and
failback times. Whatever happens (an error, Ctrl-C) it stops the daemons, closes the
pseudo-terminals and removes the directory. docs/demo.md explains each step.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import random
import secrets
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hbd.shell.control import ControlError, request

T = TypeVar("T")
Statuses = dict[str, dict[str, Any] | None]  # node -> its status, None if it does not answer

GROUP = "demo-service"
NODES = ("alpha", "beta")
ADDRESSES = {"alpha": "127.0.0.1", "beta": "127.0.0.2"}
KEEPALIVE_MS = 200
DEADTIME_MS = 1000
WARNTIME_MS = 600
INITDEAD_MS = 2000
POLL = 0.05  # seconds between status polls
REFRESH = 0.25  # seconds between live-table refreshes
START_TIMEOUT = 20.0  # both nodes up, every path up, the group started
CHANGE_TIMEOUT = 15.0  # a path death, a failover, a failback
STOP_TIMEOUT = 10.0  # SIGTERM to exit
LOCK_DIR = "/var/lock"  # where hbd's serial driver takes its UUCP locks


class DemoFailed(Exception):
    """A step did not do what it should; the message says what was expected and seen."""


# -- the serial cable ---------------------------------------------------------------------


class SerialCable:
    """A null-modem cable between two pseudo-terminals, relayed in a thread.

    Each node opens the slave side of its own pty (`device(node)`); the thread copies
    whatever one master reads to the other master. `cut()` stops relaying (bytes are read
    and dropped, as a cut cable loses them), `restore()` relays again. This process keeps
    the slave sides open too, so a node's crash never hangs up the line, and puts them in
    raw mode at once so nothing is echoed back before a node configures its port.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []
        try:
            self._masters: list[int] = []
            self._slaves: list[int] = []
            for _ in range(2):
                master, slave = os.openpty()
                self._fds += [master, slave]
                tty.setraw(slave)
                os.set_blocking(master, False)
                self._masters.append(master)
                self._slaves.append(slave)
            self.devices = [os.ttyname(s) for s in self._slaves]
            self._wake_r, self._wake_w = os.pipe()
            self._fds += [self._wake_r, self._wake_w]
        except BaseException:
            self.close()
            raise
        self._connected = threading.Event()
        self._connected.set()
        self._stopping = False
        self.relayed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._relay, name="demo-serial", daemon=True)
        self._thread.start()

    def device(self, side: int) -> str:
        return self.devices[side]

    def cut(self) -> None:
        self._connected.clear()

    def restore(self) -> None:
        self._connected.set()

    def flush(self, side: int) -> None:
        """Drop what waits unread on `side`'s line (what the peer sent while no one read)."""
        termios.tcflush(self._slaves[side], termios.TCIFLUSH)

    def _relay(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._wake_r, selectors.EVENT_READ)
            for i, master in enumerate(self._masters):
                sel.register(master, selectors.EVENT_READ, i)
            while not self._stopping:
                for key, _ in sel.select(1.0):
                    if key.data is None:
                        return
                    self._pass(key.data)

    def _pass(self, side: int) -> None:
        src, dst = self._masters[side], self._masters[1 - side]
        try:
            data = os.read(src, 4096)
        except BlockingIOError:
            return
        except OSError:  # EIO: no slave open; cannot happen while we hold them, but never spin
            time.sleep(0.05)
            return
        if not self._connected.is_set():
            self.dropped += len(data)
            return
        try:
            self.relayed += os.write(dst, data)
        except OSError:  # the far line is full (nobody reads it): a cable loses the bytes
            self.dropped += len(data)

    def close(self) -> None:
        thread = getattr(self, "_thread", None)
        if thread is not None and thread.is_alive():
            self._stopping = True
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            thread.join(5.0)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


# -- one node -----------------------------------------------------------------------------


def _hbd_command() -> list[str]:
    """How to run `hbd`: the console script next to this interpreter, else this module's."""
    script = Path(sysconfig.get_path("scripts")) / "hbd"
    if script.exists():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from hbd.commands.cli import hbd_main; sys.exit(hbd_main())",
    ]


@dataclass
class DemoNode:
    """One hbd daemon of the demo, with its directories under `root`."""

    name: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def config_dir(self) -> Path:
        return self.root / "ha.d"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def service_file(self) -> Path:
        return self.root / "service.running"

    @property
    def log_path(self) -> Path:
        return self.root / "hbd.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
        self.state_dir.mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *_hbd_command(),
                    "--config-dir",
                    str(self.config_dir),
                    "--state-dir",
                    str(self.state_dir),
                    "--run-dir",
                    str(self.run_dir),
                    "--node-name",
                    self.name,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops the nodes
            )
        self.pids.append(self.proc.pid)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the node dies without a word, as on a power loss."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def terminate(self) -> int | None:
        """SIGTERM and wait; the exit status, or None if it had to be killed."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def status(self) -> dict[str, Any] | None:
        if not self.running:
            return None
        try:
            return request(str(self.run_dir), "status", timeout=1.0)
        except ControlError:
            return None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# -- configuration ------------------------------------------------------------------------


def _free_udp_port() -> int:
    """A port free on both loopback addresses, preferably in 7000-7999."""
    candidates = [*random.sample(range(7000, 8000), 50), 0]
    for port in candidates:
        socks: list[socket.socket] = []
        try:
            for addr in (ADDRESSES["alpha"], ADDRESSES["beta"]):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((addr, port))
                port = s.getsockname()[1]
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise DemoFailed("no free UDP port on 127.0.0.1 and 127.0.0.2 (is loopback up?)")


SERVICE_SCRIPT = """\
#!/bin/sh
# hbd demo: a harmless "service" that is just a file. Heartbeat's resource.d convention:
# the last argument is start, stop or status; status prints "running" or "stopped".
# Each start and stop is also appended to a journal both nodes share, so the demo can check
# the order of a hand-off.
state={state}
journal={journal}
eval op=\\${{$#}}
case "$op" in
  start) : > "$state"; echo "{node} start" >> "$journal"; echo "demo-service started";;
  stop) rm -f "$state"; echo "{node} stop" >> "$journal"; echo "demo-service stopped";;
  status) if [ -e "$state" ]; then echo "running"; else echo "stopped"; fi;;
  *) echo "usage: $0 start|stop|status" >&2; exit 1;;
esac
exit 0
"""


def journal_path(node: DemoNode) -> Path:
    """The start/stop journal both nodes' service scripts append to."""
    return node.root.parent / "service.journal"


def read_journal(tmp: Path) -> list[str]:
    try:
        return (tmp / "service.journal").read_text().splitlines()
    except FileNotFoundError:
        return []


def journal_overlap(entries: list[str]) -> str | None:
    """Replay the journal ("NODE start|stop|power-loss" lines): did a node start the
    service while another still ran it? A description of the first overlap, else None."""
    running: set[str] = set()
    for entry in entries:
        node, _, op = entry.partition(" ")
        if op == "start":
            others = running - {node}
            if others:
                return f"{node} started {GROUP} while {', '.join(sorted(others))} still ran it"
            running.add(node)
        else:
            running.discard(node)
    return None


def write_configs(nodes: dict[str, DemoNode], cable: SerialCable, port: int) -> None:
    """ha.cf, authkeys (0600), haresources and resource.d/demo-service for every node."""
    key = secrets.token_hex(32)
    for side, (name, node) in enumerate(nodes.items()):
        peer = next(n for n in nodes if n != name)
        conf = node.config_dir
        (conf / "resource.d").mkdir(parents=True)
        (conf / "ha.cf").write_text(
            f"# hbd demo: node {name}\n"
            f"keepalive {KEEPALIVE_MS}ms\n"
            f"warntime {WARNTIME_MS}ms\n"
            f"deadtime {DEADTIME_MS}ms\n"
            f"initdead {INITDEAD_MS}ms\n"
            "auto_failback on\n"
            "wire hbd\n"
            "logfacility none\n"  # the log goes to stderr, kept in NODE/hbd.log; not syslog
            f"serial {cable.device(side)}\n"
            f"udpport {port}\n"
            f"ucast lo {ADDRESSES[peer]} {ADDRESSES[name]}\n"
            f"node {' '.join(nodes)}\n"
        )
        fd = os.open(conf / "authkeys", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"auth 1\n1 sha256 {key}\n")
        (conf / "haresources").write_text(f"{NODES[0]} {GROUP}\n")
        script = conf / "resource.d" / GROUP
        script.write_text(
            SERVICE_SCRIPT.format(
                state=shlex.quote(str(node.service_file)),
                journal=shlex.quote(str(journal_path(node))),
                node=name,
            )
        )
        script.chmod(0o755)


# -- the status table ---------------------------------------------------------------------


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _rtt(value: Any) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _group(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((g for g in status.get("groups", []) if g.get("name") == GROUP), None)


def render(nodes: dict[str, DemoNode], statuses: Statuses) -> Group:
    """Both nodes' views: each node and who holds the group, then its paths to the peer."""
    summary = Table(title="the cluster, as each node sees it", title_justify="left")
    for column in ("node", "hbd", "gen", "redundancy", f"{GROUP} holder", "here", "file"):
        summary.add_column(column)
    paths = Table()
    # hbd reports rtt_ms per path once it measures it; until then the column is left out
    with_rtt = any(
        p.get("rtt_ms") is not None
        for status in statuses.values()
        if status is not None
        for peer in status["nodes"].values()
        for p in peer["paths"].values()
    )
    for column in ("node", "path to the peer", "state", "last heard", "loss"):
        paths.add_column(column)
    if with_rtt:
        paths.add_column("rtt")
    lines: list[Text] = []
    for name, node in nodes.items():
        status = statuses.get(name)
        service = "present" if node.service_file.exists() else "-"
        if status is None:
            what = "not running" if not node.running else "not answering"
            summary.add_row(name, Text(what, style="red"), "-", "-", "-", "-", service)
            continue
        group = _group(status)
        redundancy = status["redundancy"]
        style = {"redundant": "green", "degraded": "yellow"}.get(redundancy, "red")
        summary.add_row(
            name,
            status["state"],
            str(status["generation"]),
            Text(redundancy, style=style),
            (group.get("holder") or "nobody") if group else "-",
            group["state"] if group else "-",
            service,
        )
        rows = [(pid, p) for peer in status["nodes"].values() for pid, p in peer["paths"].items()]
        for i, (pid, p) in enumerate(sorted(rows, key=lambda r: r[0])):
            paths.add_row(
                name if i == 0 else "",
                pid,
                Text(p["status"], style="green" if p["status"] == "up" else "red"),
                _ms(p["last_heard_ms"]),
                f"{p['loss'] * 100:.0f} %",
                *([_rtt(p.get("rtt_ms"))] if with_rtt else []),
            )
        if status.get("decisions"):
            last = status["decisions"][-1]
            lines.append(Text(f"{name}'s last decision: {last['decision']}: {last['reason']}"))
    return Group(summary, paths, *lines)


# -- the demo -----------------------------------------------------------------------------


class Demo:
    def __init__(self, console: Console, interactive: bool) -> None:
        self.console = console
        self.interactive = interactive
        self.tmp = Path(tempfile.mkdtemp(prefix="hbd-demo-"))
        self.cable: SerialCable | None = None
        self.nodes = {name: DemoNode(name, self.tmp / name) for name in NODES}
        self.statuses: Statuses = {}
        self.both_files_seen = False

    @property
    def alpha(self) -> DemoNode:
        return self.nodes["alpha"]

    @property
    def beta(self) -> DemoNode:
        return self.nodes["beta"]

    # -- helpers

    def say(self, text: str) -> None:
        """One line of news, never wrapped, so scripts can grep it."""
        self.console.print(text, soft_wrap=True)

    def step(self, number: int, title: str, explanation: str) -> None:
        self.console.print()
        self.console.rule(f"[bold]Step {number}: {title}")
        self.console.print(explanation)

    def pause(self) -> None:
        if self.interactive:
            self.console.input("[dim]Press Enter to go on (Ctrl-C ends the demo)...[/dim]")

    def poll(self) -> Statuses:
        self.statuses = {name: node.status() for name, node in self.nodes.items()}
        if self.alpha.service_file.exists() and self.beta.service_file.exists():
            self.both_files_seen = True
        return self.statuses

    def wait(
        self,
        what: str,
        probe: Callable[[Statuses], T | None],
        timeout: float,
    ) -> tuple[T, float]:
        """Poll both nodes until `probe(statuses)` gives a value, showing the live table.

        Returns (value, seconds taken); raises DemoFailed after `timeout` seconds."""
        start = time.monotonic()
        shown = 0.0
        with Live(
            render(self.nodes, self.statuses), console=self.console, auto_refresh=False
        ) as live:
            while True:
                statuses = self.poll()
                value = probe(statuses)
                now = time.monotonic()
                if value is not None or now - start > timeout:
                    live.update(render(self.nodes, statuses), refresh=True)
                    break
                if now - shown >= REFRESH:
                    live.update(render(self.nodes, statuses), refresh=self.console.is_terminal)
                    shown = now
                time.sleep(POLL)
        if not self.console.is_terminal:
            self.console.print()  # a Live that does not animate leaves the last line open
        if value is None:
            raise DemoFailed(f"timed out after {timeout:g} s waiting for {what}")
        return value, time.monotonic() - start

    def watch(self, seconds: float, check: Callable[[Statuses], str | None]) -> None:
        """Keep polling for `seconds`; `check` returns a complaint if something moved."""

        def probe(statuses: Statuses) -> bool | None:
            complaint = check(statuses)
            if complaint is not None:
                raise DemoFailed(complaint)
            return True if time.monotonic() >= end else None

        end = time.monotonic() + seconds
        self.wait("the quiet period", probe, seconds + 5)

    # -- the steps

    def setup(self) -> None:
        self.cable = SerialCable()
        port = _free_udp_port()
        write_configs(self.nodes, self.cable, port)
        self.say(f"Demo directory: {self.tmp}")
        self.say(
            f"  serial path: {self.cable.device(0)} (alpha) <-> {self.cable.device(1)} (beta), "
            "relayed by this demo as a null-modem cable"
        )
        self.say(
            f"  UDP path: ucast on lo, alpha {ADDRESSES['alpha']} <-> beta "
            f"{ADDRESSES['beta']}, port {port}"
        )
        self.say(
            f"  keepalive {KEEPALIVE_MS} ms, deadtime {DEADTIME_MS} ms, initdead "
            f"{INITDEAD_MS} ms, auto_failback on, wire hbd with a random sha256 key"
        )
        self.say(f"  resource group: '{NODES[0]} {GROUP}' (a script that creates a file)")

    def step1(self) -> None:
        self.step(
            1,
            "both nodes up",
            "Starting hbd for alpha and beta. They find each other on both paths; alpha is "
            f"the preferred node of {GROUP}, so once beta agrees, alpha starts it.",
        )
        for node in self.nodes.values():
            node.start()
            self.say(f"  started hbd for {node.name}: pid {node.pids[-1]}, log {node.log_path}")
        _, took = self.wait(
            "both nodes up, every path up, the group started on alpha",
            lambda s: True if self._all_up(s) and self._held_by(s, "alpha") else None,
            START_TIMEOUT,
        )
        self.say(f"[green]OK[/green]: redundant, {GROUP} runs on alpha ({took:.1f} s after start).")

    def step2(self) -> None:
        assert self.cable is not None
        self.step(
            2,
            "cut the serial path",
            "The demo stops relaying the serial cable. Each node declares that path dead "
            "after the deadtime, and the cluster is degraded: one path left, so a second "
            "failure could not be told from a dead peer. Nothing moves: the peer is alive.",
        )
        self.cable.cut()
        t0 = time.monotonic()
        self.wait(
            "both nodes to see the serial path dead (degraded)",
            lambda s: True if self._serial_dead(s) and self._held_by(s, "alpha") else None,
            CHANGE_TIMEOUT,
        )
        took = time.monotonic() - t0
        self.say(f"Serial path dead after {took:.1f} s; watching {DEADTIME_MS * 2} ms more...")
        self.watch(DEADTIME_MS * 2 / 1000, self._nothing_moved)
        self.say(f"[green]OK[/green]: degraded, and {GROUP} stayed on alpha.")
        self.pause()
        self.say("Restoring the serial path...")
        self.cable.restore()
        self.wait(
            "every path up again (redundant)",
            lambda s: True if self._all_up(s) and self._held_by(s, "alpha") else None,
            CHANGE_TIMEOUT,
        )
        self.say("[green]OK[/green]: redundant again.")

    def step3(self) -> float:
        self.step(
            3,
            "kill the active node",
            "alpha's hbd gets SIGKILL and its service file is removed: a power loss takes "
            "the service with it. beta stops hearing alpha on every path; after the "
            "deadtime it declares alpha dead. Both nodes share this machine, so beta has "
            "no address of alpha's to probe: after the takeover budget (its deadtime, "
            "with no watchdog as in the demo) beta takes it over, and hbd logs that "
            "safety then rests on the paths.",
        )
        t0 = time.monotonic()
        self.alpha.kill()
        self.alpha.service_file.unlink(missing_ok=True)
        with open(journal_path(self.alpha), "a") as f:
            f.write("alpha power-loss\n")
        self.wait(
            "beta to take the group over",
            lambda s: (
                True
                if self._group_on(s.get("beta"), "beta") and self.beta.service_file.exists()
                else None
            ),
            CHANGE_TIMEOUT,
        )
        took = time.monotonic() - t0
        self.say(
            f"[green]OK[/green]: beta runs {GROUP}. [bold]Failover time: {took:.2f} s[/bold] "
            f"(kill to started on beta; deadtime {DEADTIME_MS} ms)."
        )
        return took

    def step4(self, old_generation: int) -> float:
        assert self.cable is not None
        self.step(
            4,
            "restart alpha",
            "alpha comes back with a new generation (beta learns it restarted). With "
            f"auto_failback on, {GROUP} goes home to alpha by a hand-off: beta stops it "
            "first, and only then does alpha start it - never two at once.",
        )
        self.cable.flush(0)  # what beta sent to the dead alpha is stale
        mark = len(read_journal(self.tmp))
        t0 = time.monotonic()
        self.alpha.start()
        self.say(f"  started hbd for alpha again: pid {self.alpha.pids[-1]}")
        self.wait(
            "the group back on alpha",
            lambda s: (
                True
                if self._held_by(s, "alpha")
                and self.alpha.service_file.exists()
                and not self.beta.service_file.exists()
                else None
            ),
            CHANGE_TIMEOUT + INITDEAD_MS / 1000,
        )
        took = time.monotonic() - t0
        alpha = self.statuses["alpha"]
        assert alpha is not None
        generation = int(alpha["generation"])
        if generation <= old_generation:
            raise DemoFailed(
                f"alpha came back with generation {generation}, not > {old_generation}"
            )
        moves = read_journal(self.tmp)[mark:]
        if moves != ["beta stop", "alpha start"]:
            raise DemoFailed(
                f"the failback was not a hand-off (beta stop, then alpha start): the service "
                f"journal says {', '.join(moves) or 'nothing'}"
            )
        self.say(f"  hand-off: beta stopped {GROUP}, then alpha started it")
        self.say(
            f"[green]OK[/green]: alpha is back (generation {old_generation} -> {generation}) "
            f"and runs {GROUP} again. [bold]Failback time: {took:.2f} s[/bold] (restart to "
            "started on alpha)."
        )
        _, more = self.wait(
            "every path up again (redundant)",
            lambda s: True if self._all_up(s) and self._held_by(s, "alpha") else None,
            CHANGE_TIMEOUT,
        )
        self.say(f"[green]OK[/green]: every path up again ({more:.1f} s later): redundant.")
        return took

    def step5(self) -> None:
        self.step(
            5,
            "stop both nodes",
            "SIGTERM: beta (holding nothing) stops first, then alpha stops its group "
            "and exits. Then the demo removes everything it made.",
        )
        for node in (self.beta, self.alpha):
            rc = node.terminate()
            if rc != 0:
                how = f"killed after {STOP_TIMEOUT:g} s" if rc is None else f"exit status {rc}"
                raise DemoFailed(f"hbd {node.name} did not stop cleanly on SIGTERM ({how})")
            self.say(f"  hbd {node.name} stopped (exit 0)")
        left = [n.name for n in self.nodes.values() if n.service_file.exists()]
        if left:
            raise DemoFailed(f"{GROUP} still running on {', '.join(left)} after hbd stopped")
        self.say(f"[green]OK[/green]: both stopped, {GROUP} stopped.")

    def run(self) -> tuple[float, float]:
        self.setup()
        self.pause()
        self.step1()
        self.pause()
        self.step2()
        self.pause()
        alpha = self.statuses["alpha"]
        assert alpha is not None
        generation = int(alpha["generation"])
        failover = self.step3()
        self.pause()
        failback = self.step4(generation)
        self.pause()
        self.step5()
        if self.both_files_seen:
            raise DemoFailed(f"{GROUP} ran on both nodes at once at some point")
        overlap = journal_overlap(read_journal(self.tmp))
        if overlap is not None:
            raise DemoFailed(overlap)
        return failover, failback

    def cleanup(self) -> list[str]:
        """Stop every process, close the ptys, remove the directory; what went wrong."""
        problems: list[str] = []
        for node in reversed(self.nodes.values()):  # beta first: alpha holds the group
            if node.running and node.terminate() is None:
                problems.append(f"hbd {node.name} ignored SIGTERM and was killed")
        if self.cable is not None:
            self.cable.close()
            self._remove_stale_locks()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.tmp.exists():
            problems.append(f"could not remove {self.tmp}")
        return problems

    def _remove_stale_locks(self) -> None:
        """A killed hbd leaves its UUCP lock on the pty behind: remove the locks our nodes' pids
        hold, and only those."""
        pids = {pid for node in self.nodes.values() for pid in node.pids}
        for path in glob.glob(os.path.join(LOCK_DIR, "LCK..*")):
            with contextlib.suppress(OSError, ValueError):
                with open(path) as f:
                    pid = int(f.read().strip())
                if pid in pids:
                    os.unlink(path)

    def failure_report(self) -> None:
        for node in self.nodes.values():
            tail = node.log_tail()
            if tail:
                self.console.print(f"[bold]---- last lines of {node.name}'s log ----[/bold]")
                self.console.print(Text(tail), soft_wrap=True)

    # -- probes

    @staticmethod
    def _all_up(statuses: Statuses) -> bool:
        for status in statuses.values():
            if status is None or status.get("redundancy") != "redundant":
                return False
            for peer in status["nodes"].values():
                if peer["status"] not in ("up", "active") or not peer["paths"]:
                    return False
                if any(p["status"] != "up" for p in peer["paths"].values()):
                    return False
        return True

    @staticmethod
    def _serial_dead(statuses: Statuses) -> bool:
        for status in statuses.values():
            if status is None or status.get("redundancy") != "degraded":
                return False
            for peer in status["nodes"].values():
                for pid, p in peer["paths"].items():
                    want = "dead" if pid.startswith("serial:") else "up"
                    if p["status"] != want:
                        return False
        return True

    @staticmethod
    def _group_on(status: dict[str, Any] | None, node: str) -> bool:
        group = _group(status) if status is not None else None
        return group is not None and group.get("holder") == node and group["state"] == "started"

    def _held_by(self, statuses: Statuses, node: str) -> bool:
        """`node` runs the group, and every node that answers agrees."""
        if not self._group_on(statuses.get(node), node):
            return False
        return all(
            s is not None and (_group(s) or {}).get("holder") == node for s in statuses.values()
        )

    def _nothing_moved(self, statuses: Statuses) -> str | None:
        if not self._held_by(statuses, "alpha") or not self.alpha.service_file.exists():
            return f"{GROUP} moved (or stopped) although only one path was cut"
        if self.beta.service_file.exists():
            return f"{GROUP} started on beta although alpha still runs it"
        return None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM to the demo cleans up like Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def demo_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hbd demo",
        description="Start a two-node hbd cluster (alpha, beta) on this machine, with a serial "
        "path over a pty pair and a UDP path on loopback, and show a path cut, a failover "
        "and a failback. Everything is removed at the end.",
    )
    parser.add_argument(
        "--no-interactive",
        dest="interactive",
        action="store_false",
        help="run straight through without pausing between steps (for scripts)",
    )
    args = parser.parse_args(argv)
    console = Console()
    demo = Demo(console, args.interactive and sys.stdin.isatty())
    rc = 1
    try:
        with _sigterm_as_interrupt():
            try:
                failover, failback = demo.run()
            except DemoFailed as e:
                console.print(f"[bold red]hbd demo failed:[/bold red] {e}", soft_wrap=True)
                demo.failure_report()
            except KeyboardInterrupt:
                console.print("\n[yellow]hbd demo interrupted; cleaning up.[/yellow]")
                rc = 130
            except OSError as e:
                console.print(f"[bold red]hbd demo failed:[/bold red] {e}", soft_wrap=True)
                demo.failure_report()
            else:
                console.print()
                console.rule("[bold]Summary")
                console.print(
                    f"Every step did what it should. Failover {failover:.2f} s, "
                    f"failback {failback:.2f} s.",
                    soft_wrap=True,
                )
                rc = 0
    finally:
        # a second Ctrl-C (or SIGTERM) must not cut the cleanup short
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            problems = demo.cleanup()
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
    for problem in problems:
        console.print(f"[bold red]cleanup:[/bold red] {problem}", soft_wrap=True)
    if not problems:
        console.print(
            f"Cleaned up: hbd processes stopped, ptys closed, {demo.tmp} removed.", soft_wrap=True
        )
    return rc or (1 if problems else 0)
