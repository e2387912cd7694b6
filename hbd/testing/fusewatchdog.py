"""A watchdog you can mount: a FUSE file that honours the Linux watchdog API.

Theory of operation. A real watchdog resets the machine when nobody pets it for
``timeout`` seconds. This one serves a single file over FUSE (``mfusepy`` on libfuse3)
that behaves like ``/dev/watchdog`` as ``drivers/watchdog/watchdog_dev.c`` defines it:

- opening starts the timer (one opener at a time, else EBUSY; re-opening a timer left
  running does not pet it); any write pets it; a write containing ``V`` allows the next
  close to stop it (magic close), a later write without ``V`` withdraws that;
- ioctls ``WDIOC_GETSUPPORT``, ``GETSTATUS``, ``GETBOOTSTATUS``, ``SETTIMEOUT`` (pets and
  reads back), ``GETTIMEOUT``, ``KEEPALIVE``, ``GETTIMELEFT``, ``SETOPTIONS`` with
  ``WDIOS_DISABLECARD`` / ``WDIOS_ENABLECARD``;
- closing without ``V`` leaves it running; in ``nowayout`` mode ``MAGICCLOSE`` is not
  advertised, ``V`` is ignored and ``DISABLECARD`` fails with EBUSY, as in the kernel.

When the timer expires the node is "reset" by a pluggable :class:`ResetAction`. The
shipped :class:`NodeReset` SIGKILLs every process of a network namespace, of a pid list
and of a pid file, then flushes the IPv4 addresses of every interface but ``lo`` in that
namespace -- what a power cycle does to a node's services and addresses. Each event is
logged as one JSON line with wall-clock and monotonic timestamps. After a reset the
timer is stopped (a rebooted machine starts with it off) and the old file handle is
stale: its writes and ioctls fail with ENODEV.

The timer logic (:class:`WatchdogTimer`) takes ``now`` as a parameter and is tested
without FUSE; :class:`WatchdogFS` is the thin FUSE shell and a ticker thread.

FUSE quirk: a FUSE regular file only gets "restricted" ioctls, whose argument the kernel
copies by the direction encoded in the number. ``WDIOC_SETOPTIONS`` is declared ``_IOR``
although it passes its value *in*, so FUSE never sends it; this server reads it from the
caller's memory through ``/proc/PID/mem`` (needs root or ptrace rights over the caller)
and copies it back unchanged. An ioctl with a NULL argument fails with EFAULT here, where
a kernel driver would accept it for ``KEEPALIVE``.

Command line::

    python -m hbd.testing.fusewatchdog MOUNTPOINT [--netns NAME] [--pidfile F] [--pid N]
        [--nowayout] [--log FILE] [--identity STR] [--timeout S] [--no-timeleft]

MOUNTPOINT may be a regular file (created if missing; it becomes the device) or a
directory (the device is ``MOUNTPOINT/watchdog``). Stop it with ``fusermount3 -u``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from hbd.effects.watchdog import (
    WDIOC_GETBOOTSTATUS,
    WDIOC_GETSTATUS,
    WDIOC_GETSUPPORT,
    WDIOC_GETTIMELEFT,
    WDIOC_GETTIMEOUT,
    WDIOC_KEEPALIVE,
    WDIOC_SETOPTIONS,
    WDIOC_SETTIMEOUT,
    WDIOF_CARDRESET,
    WDIOF_KEEPALIVEPING,
    WDIOF_MAGICCLOSE,
    WDIOF_SETTIMEOUT,
    WDIOS_DISABLECARD,
    WDIOS_ENABLECARD,
    WatchdogSupport,
    pack_watchdog_info,
)

__all__ = [
    "DEVICE_NAME",
    "EventLog",
    "MountedWatchdog",
    "NodeReset",
    "Release",
    "ResetAction",
    "WatchdogFS",
    "WatchdogTimer",
    "main",
    "mounted_watchdog",
    "read_events",
    "serve",
]

log = logging.getLogger(__name__)

DEVICE_NAME = "watchdog"  # the file served when the mount point is a directory
DEFAULT_IDENTITY = "hbd FUSE watchdog"
MIN_TIMEOUT = 1
MAX_TIMEOUT = 65535


def _fail(code: int, message: str) -> OSError:
    return OSError(code, f"{os.strerror(code)}: {message}")


class Release(Enum):
    """What closing the device did."""

    STOPPED = "stopped"  # magic close (or the timer was not running)
    LEFT_ARMED = "left armed"  # closed without 'V': the timer keeps running
    NOWAYOUT = "left armed (nowayout)"  # 'V' or not, nowayout keeps it running
    STALE = "stale handle"  # a handle from before the last reset


class WatchdogTimer:
    """The watchdog's state; every method takes the monotonic ``now``. Errors are OSError."""

    def __init__(
        self,
        *,
        timeout: int = 60,
        nowayout: bool = False,
        identity: str = DEFAULT_IDENTITY,
        timeleft: bool = True,
    ) -> None:
        if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout {timeout} s outside {MIN_TIMEOUT}..{MAX_TIMEOUT}")
        self.timeout = timeout
        self.nowayout = nowayout
        self.identity = identity
        self.timeleft_supported = timeleft
        self.running = False
        self.deadline: float | None = None
        self.resets = 0
        self._handle: int | None = None  # the one open handle
        self._next_handle = 1
        self._stale: set[int] = set()
        self._expect_close = False

    # --- what the device says about itself
    def support(self) -> WatchdogSupport:
        options = WDIOF_SETTIMEOUT | WDIOF_KEEPALIVEPING | WDIOF_CARDRESET
        if not self.nowayout:
            options |= WDIOF_MAGICCLOSE
        return WatchdogSupport(options=options, firmware_version=0, identity=self.identity)

    @property
    def is_open(self) -> bool:
        return self._handle is not None

    def boot_status(self) -> int:
        return WDIOF_CARDRESET if self.resets else 0

    # --- inputs
    def open(self, now: float) -> int:
        if self._handle is not None:
            raise _fail(errno.EBUSY, "the watchdog is already open")
        handle = self._next_handle
        self._next_handle += 1
        self._handle = handle
        self._expect_close = False
        if not self.running:  # FROM stopped -> TO running; re-open of a running timer: no pet
            self._start(now)
        return handle

    def write(self, handle: int, data: bytes, now: float) -> int:
        self.check(handle)
        if data:
            self._expect_close = b"V" in data and not self.nowayout
            self._ping(now)
        return len(data)

    def keepalive(self, handle: int, now: float) -> None:
        self.check(handle)
        self._ping(now)

    def set_timeout(self, handle: int, seconds: int, now: float) -> int:
        self.check(handle)
        if not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
            raise _fail(errno.EINVAL, f"timeout {seconds} s outside {MIN_TIMEOUT}..{MAX_TIMEOUT}")
        self.timeout = seconds
        self._ping(now)
        return self.timeout

    def get_timeout(self, handle: int) -> int:
        self.check(handle)
        return self.timeout

    def time_left(self, handle: int, now: float) -> int:
        self.check(handle)
        if not self.timeleft_supported:
            raise _fail(errno.EOPNOTSUPP, "this watchdog does not report time left")
        if not self.running or self.deadline is None:
            return 0
        return max(0, int(self.deadline - now))

    def set_options(self, handle: int, options: int, now: float) -> None:
        self.check(handle)
        if not options & (WDIOS_DISABLECARD | WDIOS_ENABLECARD):
            raise _fail(errno.EINVAL, f"no known option in 0x{options:x}")
        if options & WDIOS_DISABLECARD:
            if self.nowayout and self.running:
                raise _fail(errno.EBUSY, "nowayout: the watchdog cannot be stopped")
            self._stop()  # FROM running -> TO stopped
        if options & WDIOS_ENABLECARD and not self.running:
            self._start(now)  # FROM stopped -> TO running

    def release(self, handle: int, now: float) -> Release:
        if handle in self._stale:
            self._stale.discard(handle)
            return Release.STALE
        self.check(handle)
        self._handle = None
        expect_close, self._expect_close = self._expect_close, False
        if not self.running:
            return Release.STOPPED
        if self.nowayout:
            return Release.NOWAYOUT  # running, stays running
        if expect_close:
            self._stop()  # FROM running -> TO stopped (magic close)
            return Release.STOPPED
        return Release.LEFT_ARMED  # running, stays running

    def expire(self, now: float) -> bool:
        """True once when the deadline has passed: the node must be reset now."""
        if not self.running or self.deadline is None or now < self.deadline:
            return False
        self._stop()  # FROM running -> TO stopped: a rebooted machine starts with it off
        self.resets += 1
        if self._handle is not None:
            self._stale.add(self._handle)
            self._handle = None
        return True

    # --- internals
    def check(self, handle: int) -> None:
        """Raise unless ``handle`` is the open one (ENODEV if a reset made it stale)."""
        if handle in self._stale:
            raise _fail(errno.ENODEV, "the watchdog reset its node since this was opened")
        if handle != self._handle:
            raise _fail(errno.EBADF, f"handle {handle} is not open")

    def _start(self, now: float) -> None:
        self.running = True
        self.deadline = now + self.timeout

    def _stop(self) -> None:
        self.running = False
        self.deadline = None

    def _ping(self, now: float) -> None:
        if self.running:  # a ping on a stopped watchdog does nothing, as in the kernel
            self.deadline = now + self.timeout


# --- the reset ---------------------------------------------------------------------------


class ResetAction(Protocol):
    """Resets a node; returns what it did, for the log (JSON-serialisable)."""

    def __call__(self) -> Mapping[str, object]: ...


def _run_ip(args: Sequence[str]) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@dataclass
class NodeReset:
    """SIGKILL a node's processes and remove its IPv4 addresses, like a power cycle."""

    netns: str | None = None
    pids: Sequence[int] = ()
    pidfile: Path | None = None
    spare: frozenset[int] = field(default_factory=lambda: frozenset({os.getpid(), 1}))

    def victims(self, errors: list[str]) -> list[int]:
        found: set[int] = set(self.pids)
        if self.netns is not None:
            try:
                found.update(int(p) for p in _run_ip(["netns", "pids", self.netns]).split())
            except (RuntimeError, ValueError) as exc:
                errors.append(str(exc))
        if self.pidfile is not None:
            try:
                found.update(int(p) for p in self.pidfile.read_text().split())
            except FileNotFoundError:
                errors.append(f"pid file {self.pidfile} does not exist")
            except (OSError, ValueError) as exc:
                errors.append(f"pid file {self.pidfile}: {exc}")
        return sorted(found - self.spare)

    def remove_addresses(self, errors: list[str]) -> list[str]:
        if self.netns is None:
            return []
        removed: list[str] = []
        try:
            links = json.loads(_run_ip(["-n", self.netns, "-j", "-4", "addr", "show"]) or "[]")
        except (RuntimeError, ValueError) as exc:
            errors.append(str(exc))
            return removed
        for link in links:
            name = link.get("ifname", "")
            addrs = [a for a in link.get("addr_info", []) if a.get("family") == "inet"]
            if name == "lo" or not addrs:
                continue
            try:
                _run_ip(["-n", self.netns, "-4", "addr", "flush", "dev", name])
            except RuntimeError as exc:
                errors.append(str(exc))
                continue
            removed.extend(f"{a['local']}/{a['prefixlen']} dev {name}" for a in addrs)
        return removed

    def __call__(self) -> Mapping[str, object]:
        errors: list[str] = []
        killed: list[int] = []
        for pid in self.victims(errors):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
            except OSError as exc:
                errors.append(f"kill {pid}: {exc}")
        addresses = self.remove_addresses(errors)
        return {
            "netns": self.netns,
            "killed": killed,
            "addresses_removed": addresses,
            "errors": errors,
        }


# --- the log -----------------------------------------------------------------------------


class EventLog:
    """One JSON object per line: event, wall-clock (ISO and epoch) and monotonic times."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else path.absolute()  # libfuse chdirs to /
        self._lock = threading.Lock()

    def write(self, event: str, **details: object) -> dict[str, object]:
        wall = time.time()
        record: dict[str, object] = {
            "event": event,
            "wall": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(wall))
            + f".{int(wall % 1 * 1000):03d}",
            "wall_s": round(wall, 6),
            "monotonic_s": round(time.monotonic(), 6),
            **details,
        }
        line = json.dumps(record, sort_keys=False)
        with self._lock:
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(line + "\n")
        (log.warning if event == "reset" else log.info)("%s", line)
        return record


def read_events(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The events an :class:`EventLog` wrote, optionally only those named ``event``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if event is None or r.get("event") == event]


# --- the FUSE shell ----------------------------------------------------------------------


def _caller_int(address: int) -> bytes:
    """The 4 bytes at ``address`` in the calling process (for _IOR ioctls that pass data in)."""
    import mfusepy

    pid = mfusepy.fuse_get_context()[2]
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            mem.seek(address)
            data = mem.read(4)
    except (OSError, OverflowError, ValueError) as exc:
        raise _fail(errno.EFAULT, f"cannot read the ioctl argument of pid {pid}: {exc}") from exc
    if len(data) != 4:
        raise _fail(errno.EFAULT, f"short read of the ioctl argument of pid {pid}")
    return data


def _int_bytes(value: int) -> bytes:
    return value.to_bytes(4, sys.byteorder, signed=True)


class WatchdogFS:
    """mfusepy operations serving one watchdog file; pass ``raw_fi=True`` to FUSE."""

    use_ns = True  # tell mfusepy we take nanosecond times (avoids its deprecation warning)

    def __init__(
        self,
        timer: WatchdogTimer,
        reset: ResetAction,
        events: EventLog,
        *,
        root_is_device: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timer = timer
        self.reset = reset
        self.events = events
        self.root_is_device = root_is_device
        self.clock = clock
        self._cond = threading.Condition()
        self._stopping = False
        self._ticker = threading.Thread(target=self._tick, name="watchdog-timer", daemon=True)
        self._started = time.time()

    # --- the ticker: fires the reset when the deadline passes
    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._ticker.is_alive():
            self._ticker.join(timeout=5)

    def _tick(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = self.clock()
                if not self.timer.expire(now):
                    deadline = self.timer.deadline
                    self._cond.wait(None if deadline is None else max(0.0, deadline - now))
                    continue
                timeout = self.timer.timeout
            report = dict(self.reset())
            self.events.write("reset", timeout_s=timeout, resets=self.timer.resets, **report)

    def _changed(self) -> None:
        self._cond.notify_all()  # the deadline moved; the ticker recomputes its wait

    # --- filesystem
    def _is_device(self, path: str) -> bool:
        return path == "/" if self.root_is_device else path == "/" + DEVICE_NAME

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        when = int(self._started * 1e9)
        times = {"st_atime": when, "st_mtime": when, "st_ctime": when}
        if self._is_device(path):
            return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": 0, **times}
        if path == "/" and not self.root_is_device:
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, **times}
        raise _fail(errno.ENOENT, path)

    def readdir(self, path: str, fh: Any) -> list[str]:
        if path == "/" and not self.root_is_device:
            return [".", "..", DEVICE_NAME]
        raise _fail(errno.ENOTDIR, path)

    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        return 0  # `echo V > watchdog` opens with O_TRUNC

    def open(self, path: str, fi: Any) -> int:
        if not self._is_device(path):
            raise _fail(errno.ENOENT, path)
        with self._cond:
            was_running = self.timer.running
            fi.fh = self.timer.open(self.clock())
            fi.direct_io = 1  # every write reaches us: no page cache between pets
            fi.nonseekable = 1
            self._changed()
        self.events.write("open", timeout_s=self.timer.timeout, was_running=was_running)
        return 0

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        return b""

    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        with self._cond:
            written = self.timer.write(fi.fh, data, self.clock())
            self._changed()
            return written

    def flush(self, path: str, fi: Any) -> int:
        return 0

    def release(self, path: str, fi: Any) -> int:
        with self._cond:
            outcome = self.timer.release(fi.fh, self.clock())
            self._changed()
        self.events.write("close", outcome=outcome.value, running=self.timer.running)
        return 0

    def ioctl(
        self, path: str, cmd: int, arg: int | None, fi: Any, flags: int, data: int | None
    ) -> int:
        cmd &= 0xFFFFFFFF
        if data is None:
            raise _fail(errno.EFAULT, f"ioctl 0x{cmd:x} without an argument buffer")
        handle = fi.fh
        with self._cond:
            now = self.clock()
            if cmd == WDIOC_GETSUPPORT:
                self.timer.check(handle)
                out = pack_watchdog_info(self.timer.support())
            elif cmd == WDIOC_GETSTATUS:
                self.timer.check(handle)
                out = _int_bytes(0)
            elif cmd == WDIOC_GETBOOTSTATUS:
                self.timer.check(handle)
                out = _int_bytes(self.timer.boot_status())
            elif cmd == WDIOC_SETTIMEOUT:  # _IOWR: FUSE passes the value in
                wanted = int.from_bytes(ctypes.string_at(data, 4), sys.byteorder, signed=True)
                out = _int_bytes(self.timer.set_timeout(handle, wanted, now))
                self.events.write("set timeout", timeout_s=self.timer.timeout)
            elif cmd == WDIOC_GETTIMEOUT:
                out = _int_bytes(self.timer.get_timeout(handle))
            elif cmd == WDIOC_GETTIMELEFT:
                out = _int_bytes(self.timer.time_left(handle, now))
            elif cmd == WDIOC_KEEPALIVE:
                self.timer.keepalive(handle, now)
                try:  # FUSE copies our buffer back: leave the caller's int as it was
                    out = _caller_int(arg or 0)
                except OSError:
                    out = _int_bytes(0)
            elif cmd == WDIOC_SETOPTIONS:  # _IOR: FUSE does not pass the value in; read it
                raw = _caller_int(arg or 0)
                options = int.from_bytes(raw, sys.byteorder, signed=True)
                self.timer.set_options(handle, options, now)
                self.events.write("set options", options=options, running=self.timer.running)
                out = raw
            else:
                raise _fail(errno.ENOTTY, f"unknown watchdog ioctl 0x{cmd:x}")
            self._changed()
        ctypes.memmove(data, out, len(out))
        return 0


def serve(
    mountpoint: Path,
    *,
    reset: ResetAction,
    events: EventLog,
    timeout: int = 60,
    nowayout: bool = False,
    identity: str = DEFAULT_IDENTITY,
    timeleft: bool = True,
) -> WatchdogTimer:
    """Mount the watchdog at ``mountpoint`` and serve it until unmounted; blocks."""
    import mfusepy

    root_is_device = not mountpoint.is_dir()
    if root_is_device and not mountpoint.exists():
        mountpoint.touch(mode=0o600)
    timer = WatchdogTimer(timeout=timeout, nowayout=nowayout, identity=identity, timeleft=timeleft)
    fs = WatchdogFS(timer, reset, events, root_is_device=root_is_device)
    device = mountpoint if root_is_device else mountpoint / DEVICE_NAME
    fs.start()
    events.write(
        "mounted", device=str(device), timeout_s=timeout, nowayout=nowayout, identity=identity
    )
    try:
        mfusepy.FUSE(fs, str(mountpoint), foreground=True, raw_fi=True, fsname="hbd-fusewatchdog")
    finally:
        fs.stop()
        events.write("unmounted", running=timer.running, resets=timer.resets)
    return timer


# --- for tests: mount in a temporary place -----------------------------------------------


def _is_mounted(path: Path) -> bool:
    target = os.fsencode(path)
    with open("/proc/self/mountinfo", "rb") as info:
        for line in info:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace(b"\\040", b" ") == target:
                return True
    return False


@dataclass
class MountedWatchdog:
    """A running FUSE watchdog: its device path, log and server process."""

    path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        return read_events(self.log_path, event)

    def resets(self) -> list[dict[str, Any]]:
        return self.events("reset")

    def wait_for_reset(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` resets are logged; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            resets = self.resets()
            if len(resets) >= count:
                return resets
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.path}: {len(resets)} of {count} resets in {timeout} s")
            time.sleep(0.02)


@contextlib.contextmanager
def mounted_watchdog(
    *,
    netns: str | None = None,
    pids: Sequence[int] = (),
    pidfile: Path | None = None,
    nowayout: bool = False,
    identity: str = DEFAULT_IDENTITY,
    timeout: int = 60,
    timeleft: bool = True,
    directory: Path | None = None,
) -> Iterator[MountedWatchdog]:
    """Mount a FUSE watchdog file in a temp dir (a separate process), unmount it after.

    The server runs outside any namespace so that a reset cannot kill it.
    """
    with tempfile.TemporaryDirectory(prefix="hbd-wd-", dir=directory) as tmp:
        device = Path(tmp) / DEVICE_NAME
        log_path = Path(tmp) / "watchdog.log"
        command = [sys.executable, "-m", "hbd.testing.fusewatchdog", str(device)]
        command += ["--log", str(log_path), "--identity", identity, "--timeout", str(timeout)]
        if netns is not None:
            command += ["--netns", netns]
        if pidfile is not None:
            command += ["--pidfile", str(pidfile)]
        for pid in pids:
            command += ["--pid", str(pid)]
        if nowayout:
            command.append("--nowayout")
        if not timeleft:
            command.append("--no-timeleft")
        stderr_path = Path(tmp) / "server.stderr"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 10
            while not _is_mounted(device):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"FUSE watchdog at {device} did not mount: "
                        + stderr_path.read_text(errors="replace").strip()[-2000:]
                    )
                time.sleep(0.02)
            yield MountedWatchdog(path=device, log_path=log_path, process=process)
        finally:
            _unmount(device, process)


def _unmount(device: Path, process: subprocess.Popen[bytes]) -> None:
    if _is_mounted(device):
        done = subprocess.run(["fusermount3", "-u", str(device)], capture_output=True, check=False)
        if done.returncode != 0 and _is_mounted(device):  # busy: someone still holds it open
            subprocess.run(["fusermount3", "-u", "-z", str(device)], check=False)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- command line ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hbd.testing.fusewatchdog",
        description="Serve a FUSE file that behaves like /dev/watchdog and, when starved, "
        "'resets' its node: SIGKILL to its processes, its IPv4 addresses removed.",
    )
    parser.add_argument("mountpoint", type=Path, help="a file (becomes the device) or a dir")
    parser.add_argument("--netns", help="the node's network namespace (ip netns name)")
    parser.add_argument("--pidfile", type=Path, help="kill the pids listed in this file")
    parser.add_argument("--pid", type=int, action="append", default=[], help="kill this pid")
    parser.add_argument("--nowayout", action="store_true", help="ignore magic close")
    parser.add_argument("--log", type=Path, help="append JSON-line events to this file")
    parser.add_argument("--identity", default=DEFAULT_IDENTITY, help="WDIOC_GETSUPPORT identity")
    parser.add_argument("--timeout", type=int, default=60, help="initial timeout, s")
    parser.add_argument("--no-timeleft", action="store_true", help="GETTIMELEFT: EOPNOTSUPP")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="fusewatchdog: %(message)s")
    if not MIN_TIMEOUT <= args.timeout <= MAX_TIMEOUT:
        parser.error(f"--timeout {args.timeout} outside {MIN_TIMEOUT}..{MAX_TIMEOUT}")
    pidfile = None if args.pidfile is None else args.pidfile.absolute()  # libfuse chdirs to /
    reset = NodeReset(netns=args.netns, pids=tuple(args.pid), pidfile=pidfile)
    serve(
        args.mountpoint.absolute(),
        reset=reset,
        events=EventLog(args.log),
        timeout=args.timeout,
        nowayout=args.nowayout,
        identity=args.identity,
        timeleft=not args.no_timeleft,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
