"""Shared helpers for the bench scripts: namespaces, veth pairs, serial lines, hbd and
Heartbeat 3.0.6 nodes, per-process resource use, and printing tables.

Every bench script does `import common` first (it lives next to them). Importing it moves
this directory from the front of `sys.path` to the back, so that `bench/serial.py` never
shadows pyserial's `serial` for the scripts (or the hbd modules they import).

    with common.cleanup() as stack:
        a = stack.enter_context(common.namespace("a"))
        b = stack.enter_context(common.namespace("b"))
        common.veth(a, b, "eth0", "10.91.0.1/24", "10.91.0.2/24")
        tty_a, tty_b = stack.enter_context(common.serial_line(tmp / "ttyA", tmp / "ttyB"))
        node = common.HbdNode("alpha", a, tmp / "alpha")
        node.write_config(hacf, authkeys); node.start()
        ...
    print(common.table(["what", "value"], [["x", "1"]]))

Everything made here is removed when its context exits: a namespace takes every process
inside it (SIGTERM, then SIGKILL) and its interfaces with it; a serial line stops socat and
unlinks its two links. Names are unique per process (pid + counter), so runs never collide.
Needs root for namespaces; `missing_for_cluster()` says what is missing, if anything.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
    sys.path.append(sys.path.pop(0))  # see the module docstring: bench/serial.py vs pyserial

REPO = Path(HERE).parent
HEARTBEAT = "/usr/libexec/heartbeat/heartbeat"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_counter = itertools.count()


# -- output ---------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown pipe table (readable in a terminal, pastes into bench/README.md).

    Columns whose cells are all numbers (or "-") are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def numeric(i: int) -> bool:
        return all(_is_number(r[i]) for r in cells) and bool(cells)

    right = [numeric(i) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if r else ("-" * (w + 2))
            for w, r in zip(widths, right, strict=True)
        )
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def _is_number(text: str) -> bool:
    if text in ("-", ""):
        return True
    try:
        float(text.replace(",", "").rstrip("%x"))
    except ValueError:
        return False
    return True


def note(text: str) -> None:
    """A progress line on stderr (stdout holds only the results)."""
    print(text, file=sys.stderr, flush=True)


# -- commands and names -----------------------------------------------------------------


def unique(prefix: str, limit: int = 15) -> str:
    """`prefix` + pid + counter, at most `limit` characters (15 fits an interface name)."""
    suffix = f"{os.getpid() % 100000}x{next(_counter)}"
    return (prefix[: max(1, limit - len(suffix))] + suffix)[:limit]


def sh(*argv: str, check: bool = True, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """Run a command; when `check`, fail with its stderr if it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def script(name: str) -> str:
    """A console script installed next to this interpreter (`hbd`, `hbctl`), else PATH's."""
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (pip install -e '.[test]')")
    return found


def missing_for_cluster(heartbeat: bool = False) -> str | None:
    """Why a namespace cluster cannot run here (not root, no ip/socat/heartbeat), or None."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    for tool in ("ip", "socat", "unshare"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if heartbeat and not os.access(HEARTBEAT, os.X_OK):
        return f"needs Heartbeat 3.0.6 ({HEARTBEAT}: Debian package heartbeat)"
    return None


# -- namespaces, links, serial lines ----------------------------------------------------


@dataclass
class Namespace:
    """A network namespace made by `namespace()`."""

    name: str

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *argv, check=check)

    def ip(self, *args: str) -> subprocess.CompletedProcess[str]:
        return sh("ip", "-n", self.name, *args)

    def popen(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start `argv` inside the namespace, stdout and stderr appended to `log`."""
        with open(log, "ab") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.name, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def pids(self) -> list[int]:
        """Every process inside the namespace (its daemons and their children)."""
        out = sh("ip", "netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all(self, grace: float = 3.0) -> None:
        """SIGTERM everything inside, SIGKILL what is left after `grace` s, until empty."""
        deadline = time.monotonic() + grace
        sig = signal.SIGTERM
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        while pids := self.pids():
            if time.monotonic() > deadline:
                sig = signal.SIGKILL  # stragglers, and children forked during shutdown
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            if time.monotonic() > deadline + 10:
                raise RuntimeError(f"processes {pids} in {self.name} survive SIGKILL")
            time.sleep(0.05)


@contextlib.contextmanager
def namespace(prefix: str) -> Iterator[Namespace]:
    """A fresh network namespace with `lo` up; its processes killed and it deleted on exit."""
    ns = Namespace(unique(f"hbdb-{prefix}-", limit=40))
    sh("ip", "netns", "add", ns.name)
    try:
        ns.ip("link", "set", "lo", "up")
        yield ns
    finally:
        try:
            ns.kill_all()
        finally:
            sh("ip", "netns", "del", ns.name, check=False)


def veth(a: Namespace, b: Namespace, dev: str, addr_a: str, addr_b: str) -> None:
    """A veth pair named `dev` on both sides, made directly inside `a` and `b` (never in
    the root namespace), addressed (CIDR, with broadcast) and up. It goes with the
    namespaces."""
    sh(
        "ip",
        "link",
        "add",
        dev,
        "netns",
        a.name,
        "type",
        "veth",
        "peer",
        "name",
        dev,
        "netns",
        b.name,
    )
    for ns, addr in ((a, addr_a), (b, addr_b)):
        ns.ip("addr", "add", addr, "brd", "+", "dev", dev)
        ns.ip("link", "set", dev, "up")


@contextlib.contextmanager
def serial_line(link_a: Path, link_b: Path, timeout: float = 5.0) -> Iterator[tuple[str, str]]:
    """A socat pty pair (the bytes a null-modem cable carries) for the body: yields the
    two pty devices (/dev/pts/N) behind `link_a` and `link_b`; socat stopped and the links
    removed on exit."""
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={link_a}", f"pty,raw,echo=0,link={link_b}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while not (link_a.exists() and link_b.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"socat did not make {link_a} and {link_b}")
            time.sleep(0.01)
        yield os.path.realpath(link_a), os.path.realpath(link_b)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for link in (link_a, link_b):
            with contextlib.suppress(FileNotFoundError):
                link.unlink()


# -- nodes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Medium:
    """One path of a two-node cluster as a node's ha.cf names it."""

    kind: str  # "bcast", "ucast" or "serial"
    dev: str  # the interface, or the serial device
    peer: str = ""  # ucast: the peer's address

    def hacf_line(self) -> str:
        return f"{self.kind} {self.dev} {self.peer}".rstrip()


def hacf_text(
    nodes: Sequence[str],
    media: Sequence[Medium],
    keepalive_ms: int,
    deadtime_ms: int,
    *,
    extra: Sequence[str] = (),
) -> str:
    """ha.cf for a resource-less cluster: timings (warntime half, initdead twice deadtime,
    as Heartbeat recommends), `baud 19200`, every medium, every node, plus `extra`."""
    lines = [
        f"keepalive {keepalive_ms}ms",
        f"deadtime {deadtime_ms}ms",
        f"warntime {deadtime_ms // 2}ms",
        f"initdead {2 * deadtime_ms}ms",
        "udpport 694",
        "baud 19200",
        "auto_failback off",
        *extra,
        *(m.hacf_line() for m in media),
        "node " + " ".join(nodes),
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Node:
    """A daemon of one node: its namespace, its directory, its process."""

    name: str
    ns: Namespace
    root: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    def pids(self) -> list[int]:
        """Every process of this node: all of its namespace's."""
        return self.ns.pids()

    def stop(self) -> None:
        self.ns.kill_all()
        if self.proc is not None:
            self.proc.wait(5)

    def write_config(self, hacf: str, authkeys: str) -> None:
        """Write ha.cf (as `hacf_text` makes it) and authkeys where the daemon reads them."""
        raise NotImplementedError

    def start(self) -> None:
        """Start the daemon in the namespace (output appended to `log`)."""
        raise NotImplementedError

    def paths_up(self) -> int:
        """How many (peer, path) pairs the daemon reports up."""
        raise NotImplementedError


class HbdNode(Node):
    """hbd, with --config-dir/--state-dir/--run-dir under `root`; `launcher` goes before
    the hbd script (bench/idle.py `--cprofile`: python bench/cprofile_hbd.py OUT)."""

    launcher: tuple[str, ...] = ()

    def write_config(self, hacf: str, authkeys: str) -> None:
        etc = self.root / "ha.d"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "ha.cf").write_text(hacf)
        (etc / "authkeys").write_text(authkeys)
        os.chmod(etc / "authkeys", 0o600)
        (self.root / "state").mkdir(exist_ok=True)

    def start(self) -> None:
        argv = [
            *self.launcher,
            script("hbd"),
            "--config-dir",
            str(self.root / "ha.d"),
            "--state-dir",
            str(self.root / "state"),
            "--run-dir",
            str(self.root / "run"),
            "--node-name",
            self.name,
        ]
        self.proc = self.ns.popen(argv, self.log)

    def status(self) -> dict[str, Any] | None:
        """The daemon's status over its control socket, None if it does not answer."""
        from hbd.shell.control import ControlError, request

        try:
            return request(str(self.root / "run"), "status", timeout=2.0)
        except ControlError:
            return None

    def paths_up(self) -> int:
        """How many (peer, path) pairs this node reports up."""
        status = self.status() or {}
        return sum(
            1
            for view in status.get("nodes", {}).values()
            for path in view.get("paths", {}).values()
            if path.get("status") == "up"
        )


class HeartbeatNode(Node):
    """Heartbeat 3.0.6 in its own mount and UTS namespace: a private /etc/ha.d,
    /var/lib/heartbeat and /run under `root`, and the node name as hostname."""

    def write_config(self, hacf: str, authkeys: str) -> None:
        etc, lib, run = self.root / "etc", self.root / "lib", self.root / "run"
        for sub in ("rc.d", "resource.d"):
            if Path(f"/etc/ha.d/{sub}").is_dir():
                shutil.copytree(f"/etc/ha.d/{sub}", etc / sub, symlinks=True)
        for name in ("harc", "shellfuncs"):
            if Path(f"/etc/ha.d/{name}").exists():
                shutil.copy2(f"/etc/ha.d/{name}", etc / name)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "ha.cf").write_text(f"logfile {self.root}/ha-log\nuse_logd no\ncrm no\n" + hacf)
        (etc / "haresources").write_text("")
        (etc / "authkeys").write_text(authkeys)
        os.chmod(etc / "authkeys", 0o600)
        for sub in ("api", "casual", "ccm", "ckpt", "crm", "lrm", "pengine", "cores/root"):
            (lib / sub).mkdir(parents=True, exist_ok=True)
        (lib / "hb_uuid").write_bytes(os.urandom(16))
        for sub in ("heartbeat/ccm", "heartbeat/crm", "heartbeat/dopd", "crm", "lock"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("cores/hacluster", "ccm", "crm"):
            (lib / sub).mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(LookupError):
                shutil.chown(lib / sub, "hacluster", "haclient")
        for sub in ("heartbeat", "heartbeat/ccm", "heartbeat/crm", "heartbeat/dopd", "crm"):
            with contextlib.suppress(LookupError):
                shutil.chown(run / sub, "hacluster", "haclient")

    def start(self) -> None:
        shell = (
            f"hostname {self.name} && mount --make-rprivate / && "
            f"mount --bind {self.root}/etc /etc/ha.d && "
            f"mount --bind {self.root}/lib /var/lib/heartbeat && "
            f"mount --bind {self.root}/run /run && exec {HEARTBEAT} -f -l"
        )
        self.proc = self.ns.popen(["unshare", "--mount", "--uts", "sh", "-c", shell], self.log)

    def paths_up(self) -> int:
        """How many links to other nodes Heartbeat's log shows up ("Link hb2:eth0 up.",
        until a later "Link hb2:eth0 dead.")."""
        try:
            text = (self.root / "ha-log").read_text(errors="replace")
        except FileNotFoundError:
            return 0
        links: dict[str, bool] = {}
        for line in text.splitlines():
            _, found, rest = line.partition(" Link ")
            words = rest.split()
            if found and len(words) == 2 and not words[0].startswith(f"{self.name}:"):
                links[words[0]] = words[1] == "up."
        return sum(links.values())


class KeepalivedNode(Node):
    """keepalived in the node's namespace, its config and pid files under `root`."""

    def write_config(self, hacf: str, authkeys: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "keepalived.conf").write_text(hacf)

    def start(self) -> None:
        r = self.root
        argv = ["keepalived", "-n", "-l", "-D", "-f", str(r / "keepalived.conf")]
        argv += ["-p", str(r / "k.pid"), "-r", str(r / "vrrp.pid"), "-c", str(r / "chk.pid")]
        self.proc = self.ns.popen(argv, self.log)

    def paths_up(self) -> int:
        return 1


def wait_until(probe: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `probe` every 50 ms until true; seconds taken. RuntimeError after `timeout`."""
    start = time.monotonic()
    while not probe():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


# -- resource use from /proc --------------------------------------------------------------


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of `pid` in clock ticks, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of `pid` in KiB; (0, 0) if it is gone. PSS shares pages out fairly
    between the processes that map them (forked children share most of their parent's)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("Rss:", "Pss:"):
            values[parts[0]] = int(parts[1])
    return values.get("Rss:", 0), values.get("Pss:", 0)


@dataclass(frozen=True)
class Usage:
    """What a set of processes used over a window."""

    seconds: float  # the window's wall-clock length
    cpu_seconds: float  # user + system, all processes summed
    rss_kib: int  # summed at the window's end
    pss_kib: int
    processes: int

    @property
    def cpu_per_minute(self) -> float:
        return self.cpu_seconds * 60.0 / self.seconds


def measure_usage(pids: Callable[[], list[int]], seconds: float) -> Usage:
    """CPU time used by the processes `pids()` names over `seconds` of wall clock, and their
    memory at the end. A process that appears during the window counts with all its CPU
    time; one that exits during it loses its last interval (idle daemons do neither)."""
    before = {pid: t for pid in pids() if (t := cpu_ticks(pid)) is not None}
    start = time.monotonic()
    time.sleep(seconds)
    after = {pid: t for pid in pids() if (t := cpu_ticks(pid)) is not None}
    elapsed = time.monotonic() - start
    ticks = sum(t - before.get(pid, 0) for pid, t in after.items())
    rss = pss = 0
    for pid in after:
        r, p = memory_kib(pid)
        rss += r
        pss += p
    return Usage(elapsed, ticks / CLK_TCK, rss, pss, len(after))
