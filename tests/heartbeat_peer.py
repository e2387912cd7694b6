"""A real Linux-HA Heartbeat 3.0.6 node (Debian's `heartbeat` package) as a test peer.

    peer = HeartbeatPeer("hb", ns, tmp_path / "hb")          # ns: a tests/netns.py Netns
    peer.configure(media=["bcast eth0", "serial /dev/pts/7"], nodes=("hb", "alpha"),
                   auth=AUTH["sha1"])
    peer.start()
    peer.wait_log("Local status now set to: 'active'", timeout=20)
    peer.cl_status("nodestatus", "alpha").stdout              # "active\\n"
    peer.link_status("alpha", "eth0")                         # "up"
    peer.stop()                                               # SIGTERM, every process reaped
    peer.start()                                              # a restart: generation + 1

Heartbeat reads fixed paths (/etc/ha.d, /var/lib/heartbeat, /run/heartbeat ...) and takes
its node name from `uname -n`, so each node runs in

- the network namespace the test gives it (`ip netns exec`),
- a private mount namespace (`unshare --mount`) where /etc/ha.d, /var/lib/heartbeat and
  /run are bind mounts of directories under `root` (on Debian /var/run is a symlink to
  /run; were it a directory it would be bound too), and
- a private UTS namespace (`unshare --uts`) with its hostname set to the node name.

Nothing on the host changes: the mounts vanish with the last process of the mount
namespace, the hostname with the UTS namespace. `cl_status` and anything else that must
talk to the daemon run in the same namespaces through `nsenter` on the master process.
The master forks helpers (FIFO reader, one reader and writer per medium, and during
shutdown more children); `stop()` and `kill()` sweep every process left in the mount
namespace, which only this node's processes share, until none is left.

Serial lines: to cut one, stop the socat joining the ptys (SIGSTOP/SIGCONT), never kill
it: on a hung-up pty Heartbeat's reader logs "EOF in ttygets" in a busy loop (hundreds of
MB a minute) and never reopens the line.

Limits Heartbeat itself enforces (heartbeat/config.c): deadtime must exceed twice the
keepalive, initdead must be at least deadtime; an initdead under 10 s only warns.
Needs root; tests using it are marked `root` (see `requires_heartbeat`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import netns

HEARTBEAT = "/usr/libexec/heartbeat/heartbeat"
CL_STATUS = "/usr/bin/cl_status"
HA_D = Path("/etc/ha.d")  # the host's copy: rc.d, resource.d, harc, shellfuncs

requires_heartbeat = pytest.mark.skipif(
    not (os.path.exists(HEARTBEAT) and os.path.exists(CL_STATUS))
    or shutil.which("nsenter") is None,
    reason="needs Debian's heartbeat package (heartbeat 3.0.6) and nsenter",
)

# authkeys entries by method; the same key text goes into the hbd node's authkeys
AUTH = {
    "sha1": "auth 1\n1 sha1 hbd-interop-sha1-key\n",
    "md5": "auth 2\n2 md5 hbd-interop-md5-key\n",
}

# directories heartbeat 3.0.6 (and its cluster-glue helpers) expect to exist
_LIB_DIRS = ("api", "casual", "ccm", "ckpt", "crm", "lrm", "pengine", "cores/root")
_LIB_HACLUSTER = ("ccm", "crm", "cores/hacluster")
_RUN_DIRS = ("heartbeat/ccm", "heartbeat/crm", "heartbeat/dopd", "crm", "lock")
_RUN_HACLUSTER = ("heartbeat", "heartbeat/ccm", "heartbeat/crm", "heartbeat/dopd", "crm")


@dataclass(frozen=True)
class HbTiming:
    """ha.cf timings for the Heartbeat node (Heartbeat's syntax: seconds, or `500ms`)."""

    keepalive: str = "500ms"
    warntime: str = "2"
    deadtime: str = "3"
    initdead: str = "6"

    def lines(self) -> list[str]:
        return [
            f"keepalive {self.keepalive}",
            f"warntime {self.warntime}",
            f"deadtime {self.deadtime}",
            f"initdead {self.initdead}",
        ]


@dataclass
class HeartbeatPeer:
    """One Heartbeat node in network namespace `ns`, its private trees under `root`."""

    name: str
    ns: netns.Netns
    root: Path
    uuid: bytes = bytes(range(0x50, 0x60))
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _master: int | None = field(default=None, repr=False)

    # -- files ------------------------------------------------------------------------

    @property
    def etc(self) -> Path:
        return self.root / "etc"  # mounted on /etc/ha.d

    @property
    def lib(self) -> Path:
        return self.root / "lib"  # mounted on /var/lib/heartbeat

    @property
    def run_dir(self) -> Path:
        return self.root / "run"  # mounted on /run

    @property
    def log_path(self) -> Path:
        return self.root / "ha-log"

    @property
    def debug_path(self) -> Path:
        return self.root / "ha-debug"

    def configure(
        self,
        media: Sequence[str],
        nodes: Sequence[str],
        auth: str,
        timing: HbTiming = HbTiming(),
        haresources: str = "",
        extra: Sequence[str] = (),
        auto_failback: str = "off",
    ) -> str:
        """Write ha.cf, authkeys, haresources and the state/run trees; the ha.cf text.

        `media` are ha.cf lines (`bcast eth0`, `ucast eth1 10.0.0.2`, `serial /dev/pts/3`),
        `auth` an authkeys text (e.g. `AUTH["sha1"]`), `extra` more ha.cf lines."""
        if self.etc.exists():
            shutil.rmtree(self.etc)
        self.etc.mkdir(parents=True)
        for sub in ("rc.d", "resource.d"):
            shutil.copytree(HA_D / sub, self.etc / sub, symlinks=True)
        for f in ("harc", "shellfuncs"):
            if (HA_D / f).exists():
                shutil.copy2(HA_D / f, self.etc / f)
        hacf = "\n".join(
            [
                "# written by tests/heartbeat_peer.py",
                f"logfile {self.log_path}",
                f"debugfile {self.debug_path}",
                *timing.lines(),
                *media,
                f"auto_failback {auto_failback}",
                "crm no",
                *extra,
                *(f"node {n}" for n in nodes),
            ]
        )
        (self.etc / "ha.cf").write_text(hacf + "\n")
        (self.etc / "haresources").write_text(haresources)
        (self.etc / "authkeys").write_text(auth)
        os.chmod(self.etc / "authkeys", 0o600)
        for d in (*_LIB_DIRS, *_LIB_HACLUSTER):
            (self.lib / d).mkdir(parents=True, exist_ok=True)
        if not (self.lib / "hb_uuid").exists():
            (self.lib / "hb_uuid").write_bytes(self.uuid)
        for d in _RUN_DIRS:
            (self.run_dir / d).mkdir(parents=True, exist_ok=True)
        for d in _LIB_HACLUSTER:
            shutil.chown(self.lib / d, "hacluster", "haclient")
        for d in _RUN_HACLUSTER:
            shutil.chown(self.run_dir / d, "hacluster", "haclient")
        return hacf

    @property
    def generation(self) -> int | None:
        """The generation Heartbeat stored (it sends this value as `hg`)."""
        try:
            return int((self.lib / "hb_generation").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    # -- running ----------------------------------------------------------------------

    def _wrapped(self, command: str) -> list[str]:
        """argv running shell `command` in this node's network, mount and UTS namespaces,
        with the bind mounts and hostname set up first."""
        binds = [
            (self.etc, "/etc/ha.d"),
            (self.lib, "/var/lib/heartbeat"),
            (self.run_dir, "/run"),
        ]
        if os.path.isdir("/var/run") and not os.path.islink("/var/run"):
            binds.append((self.run_dir, "/var/run"))
        setup = [f"hostname {shlex.quote(self.name)}", "mount --make-rprivate /"]
        setup += [f"mount --bind {shlex.quote(str(src))} {dst}" for src, dst in binds]
        script = " && ".join([*setup, f"exec {command}"])
        enter = ["ip", "netns", "exec", self.ns.name, "unshare", "--mount", "--uts"]
        return [*enter, "sh", "-c", script]

    def start(self, timeout: float = 10.0) -> None:
        """Start heartbeat in the foreground (`-f`); returns once it has validated its
        configuration and started (its API socket appears only later, after initdead at
        worst: `cl_status` callers poll)."""
        if self.running:
            raise RuntimeError(f"heartbeat {self.name} is already running (pid {self.pid})")
        self.starts += 1
        mark = self.log_mark()
        with open(self.root / "stdout", "ab") as out:
            out.write(f"---- test harness: start #{self.starts} ----\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self._wrapped(f"{HEARTBEAT} -f"),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._master = self.proc.pid  # ip netns exec, unshare and sh all exec: one pid
        deadline = time.monotonic() + timeout
        while "Configuration validated. Starting heartbeat" not in self.logfile()[mark:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log()[-3000:]
                self.kill()
                raise RuntimeError(f"heartbeat {self.name} did not start:\n{tail}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self._master is not None, f"heartbeat {self.name} was never started"
        return self._master

    def _mount_ns(self) -> str | None:
        try:
            return os.readlink(f"/proc/{self.pid}/ns/mnt")
        except (OSError, AssertionError):
            return None

    def _pids_in_mount_ns(self, mnt: str) -> list[int]:
        """Every process in mount namespace `mnt` (only this node's processes share it)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/mnt") == mnt:
                    pids.append(int(entry))
        return pids

    def _sweep(self, mnt: str | None, first: signal.Signals, grace: float) -> None:
        """Send `first` to the master, wait up to `grace`, then SIGKILL whatever is left
        in its mount namespace until nothing is."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(first)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        for _ in range(50):
            left = self._pids_in_mount_ns(mnt) if mnt is not None else []
            if self.proc.poll() is None:
                left.append(self.proc.pid)
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
            self.proc.poll()
        else:
            raise RuntimeError(f"heartbeat {self.name}: processes {left} survive SIGKILL")
        self.proc.wait(5)
        self.proc = None

    def stop(self, timeout: float = 20.0) -> float:
        """A clean shutdown (SIGTERM, as `/etc/init.d/heartbeat stop`); seconds it took.

        Heartbeat tells its peers it is leaving; stragglers after `timeout` are killed
        and the test fails."""
        mnt = self._mount_ns()
        start = time.monotonic()
        self._sweep(mnt, signal.SIGTERM, timeout)
        took = time.monotonic() - start
        if took >= timeout:
            raise AssertionError(f"heartbeat {self.name} ignored SIGTERM for {timeout:g} s")
        return took

    def kill(self) -> None:
        """SIGKILL every process of this node: it dies without a word (a crash)."""
        self._sweep(self._mount_ns(), signal.SIGKILL, 0.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- looking at it ----------------------------------------------------------------

    def in_namespaces(self, *argv: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the running node's network, mount and UTS namespaces."""
        enter = ["nsenter", f"--target={self.pid}", "--mount", "--uts", "--net", "--"]
        return netns.run(*enter, *argv, check=False, timeout=timeout)

    def cl_status(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`cl_status ARGS` as run on this node (talks to the daemon's API socket)."""
        return self.in_namespaces(CL_STATUS, *args)

    def node_status(self, node: str) -> str:
        """`cl_status nodestatus NODE`: active, up, dead, ... ('' if cl_status cannot ask:
        it prints nothing then; note it exits 1 when the answer is `dead`)."""
        return self.cl_status("nodestatus", node).stdout.strip()

    def links(self, node: str) -> list[str]:
        """`cl_status listhblinks NODE`: the link names it has for `node`."""
        proc = self.cl_status("listhblinks", node)
        return proc.stdout.split() if proc.returncode == 0 else []

    def link_status(self, node: str, link: str) -> str:
        """`cl_status hblinkstatus NODE LINK`: up or dead ('' if cl_status cannot ask;
        it exits 1 when the answer is `dead`)."""
        return self.cl_status("hblinkstatus", node, link).stdout.strip()

    def log(self) -> str:
        """Heartbeat's log file (ha.cf `logfile`) with its stdout appended."""
        parts = []
        for p in (self.log_path, self.root / "stdout"):
            with contextlib.suppress(FileNotFoundError):
                parts.append(p.read_text(errors="replace"))
        return "".join(parts)

    def logfile(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def debug_log(self) -> str:
        try:
            return self.debug_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        """A position in the log file; `wait_log(..., since=mark)` looks only after it."""
        return len(self.logfile())

    def wait_log(self, text: str, timeout: float, since: int = 0) -> float:
        """Wait until `text` appears in the log file (after `since`); seconds taken."""
        start = time.monotonic()
        while text not in self.logfile()[since:]:
            if time.monotonic() - start > timeout:
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {text!r} in heartbeat "
                    f"{self.name}'s log\n---- log ----\n{self.logfile()[since:][-3000:]}"
                )
            time.sleep(0.05)
        return time.monotonic() - start
