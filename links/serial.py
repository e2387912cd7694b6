"""The serial path: a null-modem line opened with pyserial, 8N1, raw, never blocking.

pyserial opens and configures the tty (baud, 8N1, raw, no flow control); the driver
then reads and writes the descriptor itself so it sees the real errno: EAGAIN means
"nothing now" or "line full", EIO or end-of-file means the far end went away (a pty's
master closed, a USB adapter unplugged). A lost line is closed, reported with
`LinkLost`, and reopened with backoff; `LinkOpened` says it is back.

A frame is written whole or not at all: if the kernel takes only part of it, the rest
is kept and finished from `handle_timer` (`get_timer` asks for a short retry), and
frames offered meanwhile are dropped and counted, so the far end never sees a frame
cut in the middle by a newer one.

Two programs never share a port: a UUCP lock file (`/var/lock/LCK..ttyS0`, the pid in
ASCII as `%10d\\n`) is taken before opening, named as Heartbeat names it, and a lock
left by a dead process is taken over.
"""

from __future__ import annotations

import contextlib
import os
import stat
import termios
import time

import serial

from hbd.config.model import Medium, MediumKind
from hbd.config.safefiles import create_temp, open_regular

from .base import Backoff, LinkUnavailable, Received, ReopeningDriver, describe

SUPPORTED_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400, 460800)
DEFAULT_LOCK_DIR = "/var/lock"
READ_CHUNK = 4096
MAX_READ_PER_CALL = 65536  # bytes drained per on_readable, so one line cannot starve the loop
FLUSH_RETRY = 0.02  # seconds between attempts to finish a partly written frame
STALE_EMPTY_LOCK = 1.0  # an empty lock file older than this is a crashed writer's


def lock_name(device: str) -> str:
    """`LCK..` + the device's alphanumerics after `/dev/` (Heartbeat's rule): ttyS0, pts3."""
    rest = device[5:] if device.startswith("/dev/") else device
    return "LCK.." + "".join(c for c in rest if c.isalnum())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _process_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().decode(errors="replace").strip() or None
    except OSError:
        return None


def _uses_device(pid: int, device: str) -> bool | None:
    """Whether process `pid` has `device` open; None when that cannot be told."""
    try:
        wanted = os.stat(device).st_rdev
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for name in names:
        try:
            st = os.stat(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == wanted:
            return True
    return False


class UucpLock:
    """A UUCP/FHS lock file for one device: created atomically with link(2)."""

    def __init__(self, device: str, lock_dir: str = DEFAULT_LOCK_DIR) -> None:
        self.device = device
        self.lock_dir = lock_dir
        self.path = os.path.join(lock_dir, lock_name(device))
        self.held = False

    def owner(self) -> int | None:
        """The pid written in the lock file, or None if there is no readable lock (a
        symbolic link, a FIFO or any other planted non-file is no lock: never followed,
        never waited on)."""
        try:
            fd = open_regular(self.path)
        except OSError:
            return None
        try:
            text = os.read(fd, 64)
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            return int(text.strip() or b"x")
        except ValueError:
            return None

    def acquire(self) -> None:
        """Take the lock; raise `LinkUnavailable` naming the holder if a live process has it."""
        if self.held:
            return
        pid = os.getpid()
        # a fresh name (O_EXCL): the lock directory is often world-writable (/run/lock)
        fd, tmp = create_temp(self.lock_dir, f"tmp{pid}-", 0o644)
        try:
            try:
                os.write(fd, b"%10d\n" % pid)
            finally:
                os.close(fd)
            for _attempt in range(2):
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    self._remove_if_stale()
                    continue
                self.held = True
                return
            holder = self.owner()
            if holder is None:
                raise LinkUnavailable(f"{self.device} is locked by another program ({self.path})")
            raise LinkUnavailable(self._held_by(holder))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _held_by(self, holder: int) -> str:
        """Why the lock is not ours: the holder's pid and name, and, when that process does
        not have the port open, that the lock looks stale -- it still stands."""
        name = _process_name(holder)
        who = f"pid {holder} ({name})" if name else f"pid {holder}"
        if _uses_device(holder, self.device) is not False:
            return f"{self.device} is locked by {who} ({self.path})"
        return (
            f"{self.device} is locked by {who} in {self.path}, which does not have "
            f"{self.device} open: a stale-looking lock (a reused pid?); hbd never takes over "
            f"a live process's lock, so this path stays down until pid {holder} ends or "
            f"{self.path} is removed"
        )

    def _remove_if_stale(self) -> None:
        holder = self.owner()
        if holder is None:
            # Empty or garbage: a writer may be mid-way; only an old one is stale.
            try:
                age = time.time() - os.lstat(self.path).st_mtime
            except FileNotFoundError:
                return
            if age < STALE_EMPTY_LOCK:
                return
        elif holder == os.getpid() or (holder > 1 and _pid_alive(holder)):
            return  # held by a live process (possibly another driver in this one)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def release(self) -> None:
        """Remove the lock file if it is ours."""
        if not self.held:
            return
        self.held = False
        if self.owner() == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class SerialLink(ReopeningDriver):
    """One `serial` medium. `source` of everything received is the device path."""

    def __init__(
        self,
        medium: Medium,
        *,
        lock_dir: str = DEFAULT_LOCK_DIR,
        backoff: Backoff | None = None,
    ) -> None:
        if medium.kind is not MediumKind.SERIAL:
            raise ValueError(f"{medium.source}: SerialLink needs a serial medium, not {medium}")
        if medium.baud not in SUPPORTED_BAUDS:
            raise ValueError(
                f"{medium.source}: baud {medium.baud} not supported "
                f"(use one of {', '.join(map(str, SUPPORTED_BAUDS))})"
            )
        super().__init__(medium.path_id, backoff)
        self.medium = medium
        self.device = medium.device
        self.baud = medium.baud
        self.lock = UucpLock(medium.device, lock_dir)
        self._port: serial.Serial | None = None
        self._pending = b""  # the unwritten tail of a frame the kernel took only part of
        self._flush_at: float | None = None

    def _do_open(self) -> None:
        self.lock.acquire()
        port = serial.Serial(
            port=None,
            baudrate=self.baud,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
            timeout=0,
            write_timeout=0,
            xonxoff=False,
            rtscts=False,
            dsrdtr=False,
        )
        port.port = self.device
        port.open()  # O_NOCTTY|O_NONBLOCK, raw termios; SerialException is an OSError
        self._port = port
        fd = port.fileno()
        os.set_blocking(fd, False)
        # pyserial leaves VMIN=0 for timeout=0, where an empty read returns b"" and looks
        # like a hangup; VMIN=1 with O_NONBLOCK gives EAGAIN instead, so b"" means EOF.
        attrs = termios.tcgetattr(fd)
        attrs[6][termios.VMIN] = 1
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)

    def _do_close(self) -> None:
        port, self._port = self._port, None
        self._pending = b""
        self._flush_at = None
        if port is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                port.close()
        self.lock.release()

    def _fd(self) -> int | None:
        return self._port.fileno() if self._port is not None else None

    # -- input ---------------------------------------------------------------------

    def on_readable(self, now: float) -> list[Received]:
        """Drain what the line holds; EIO or end-of-file report the link lost.

        Call it on POLLIN and also on POLLHUP/POLLERR: a closed far end shows as those.
        """
        fd = self.fileno()
        if fd is None:
            return []
        chunks: list[bytes] = []
        total = 0
        while total < MAX_READ_PER_CALL:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as e:
                self._lost(f"read from {self.device} failed: {describe(e)}", now)
                break
            if not chunk:
                self._lost(f"end of file on {self.device}: far end closed", now)
                break
            chunks.append(chunk)
            total += len(chunk)
        if not chunks:
            return []
        data = b"".join(chunks)
        self.stats.frames_received += 1
        self.stats.bytes_received += len(data)
        return [Received(self.path_id, data, self.device)]

    # -- output --------------------------------------------------------------------

    def send(self, frame: bytes, now: float) -> bool:
        """Queue `frame` whole to the line without blocking; False if dropped."""
        fd = self.fileno()
        if fd is None:
            self.stats.dropped_down += 1
            return False
        if self._pending and not self._flush(fd, now):
            if self.fileno() is None:
                self.stats.dropped_down += 1
            else:
                self.stats.dropped_full += 1
            return False
        written = self._write(fd, frame, now)
        if written is None:  # the link broke
            self.stats.dropped_down += 1
            return False
        if written == 0:
            self.stats.dropped_full += 1
            return False
        if written < len(frame):
            self._pending = frame[written:]
            self._flush_at = now + FLUSH_RETRY
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(frame)
        return True

    def _write(self, fd: int, data: bytes, now: float) -> int | None:
        """Bytes the kernel took (0 when full), or None when the line is gone."""
        while True:
            try:
                return os.write(fd, data)
            except BlockingIOError:
                return 0
            except InterruptedError:
                continue
            except OSError as e:
                self._lost(f"write to {self.device} failed: {describe(e)}", now)
                return None

    def _flush(self, fd: int, now: float) -> bool:
        """Try to finish the partly written frame; True when nothing is left."""
        written = self._write(fd, self._pending, now)
        if written is None:
            return False
        self._pending = self._pending[written:]
        self._flush_at = now + FLUSH_RETRY if self._pending else None
        return not self._pending

    @property
    def pending(self) -> int:
        """Bytes of a partly written frame still waiting for room on the line."""
        return len(self._pending)

    # -- timers --------------------------------------------------------------------

    def get_timer(self) -> float | None:
        timers = [t for t in (super().get_timer(), self._flush_at) if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        fd = self.fileno()
        if fd is not None and self._flush_at is not None and now >= self._flush_at:
            self._flush(fd, now)
        super().handle_timer(now)


__all__ = [
    "DEFAULT_LOCK_DIR",
    "SUPPORTED_BAUDS",
    "SerialLink",
    "UucpLock",
    "lock_name",
]
