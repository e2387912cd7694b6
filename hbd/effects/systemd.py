"""systemd integration: sd_notify (READY/STATUS/WATCHDOG/STOPPING/RELOADING) and the journal.

Both halves use systemd-python (``systemd.daemon.notify``, ``systemd.journal.sendv``) when
it is importable and fall back to speaking the protocols themselves, which are small and
stable:

* notify: one AF_UNIX SOCK_DGRAM datagram of newline-separated ``KEY=value`` assignments to
  the socket named by ``$NOTIFY_SOCKET`` (a filesystem path, or an abstract name written
  with a leading ``@``). No ``$NOTIFY_SOCKET`` means "not run by systemd": every call is a
  no-op that returns False.
* journal: one AF_UNIX SOCK_DGRAM datagram to ``/run/systemd/journal/socket`` in the native
  protocol (``KEY=value\\n``, or ``KEY\\n`` + little-endian u64 length + bytes + ``\\n`` for
  values holding a newline); an entry too large for a datagram travels as a sealed memfd
  passed with SCM_RIGHTS. No socket means no journal: use :func:`make_journal_handler`,
  which then returns None so the caller keeps its stderr handler.

Structured fields in log calls::

    log.warning("path down", extra=journal_fields(peer="beta", path="serial:/dev/ttyS0"))
    # same as extra={"hbd_fields": {"PEER": "beta", "PATH": "serial:/dev/ttyS0"}}

then ``journalctl -u hbd PEER=beta`` finds it. The usual fields are NODE, PEER, PATH and
GROUP; any valid journal field name (``[A-Z0-9_]``, not starting with ``_``) is accepted.

A failed notification or journal write never raises into the daemon: notify calls return
False, and the handler reports through ``logging.Handler.handleError``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib
import logging
import os
import re
import socket
import struct
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Final

__all__ = [
    "JOURNAL_SOCKET",
    "JournalHandler",
    "Notifier",
    "encode_journal_entry",
    "journal_fields",
    "make_journal_handler",
    "watchdog_interval",
]

JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"
FIELDS_ATTR: Final = "hbd_fields"
IDENTIFIER: Final = "hbd"

_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")

log = logging.getLogger(__name__)


def _import_libsystemd(name: str) -> ModuleType | None:
    """Return systemd.<name> from systemd-python, or None when it is not installed."""
    try:
        return importlib.import_module(f"systemd.{name}")
    except ImportError:
        return None


# --------------------------------------------------------------------------- notify


class Notifier:
    """Tells the service manager how hbd is doing (sd_notify(3)).

    ``environ`` defaults to ``os.environ`` and is read once, here. ``use_libsystemd``:
    None = systemd-python when importable, False = always the built-in datagram sender,
    True = require systemd-python (ImportError otherwise). systemd-python reads
    ``os.environ`` itself, so an explicit ``environ`` always uses the built-in sender.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        use_libsystemd: bool | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.socket_name: str | None = env.get("NOTIFY_SOCKET") or None
        self._address: str | bytes | None = None
        self._sock: socket.socket | None = None
        self._daemon: ModuleType | None = None
        if self.socket_name is None:
            return
        if use_libsystemd is not False and environ is None:
            self._daemon = _import_libsystemd("daemon")
            if self._daemon is None and use_libsystemd:
                raise ImportError("use_libsystemd=True but systemd-python is not installed")
        if self._daemon is None:
            self._address = _notify_address(self.socket_name)

    @property
    def enabled(self) -> bool:
        """True when a service manager is listening (``$NOTIFY_SOCKET`` was set)."""
        return self.socket_name is not None

    @property
    def backend(self) -> str:
        """ "libsystemd", "socket" or "none": which sender this notifier uses."""
        if self._daemon is not None:
            return "libsystemd"
        return "socket" if self._address is not None else "none"

    def ready(self, status: str | None = None) -> bool:
        """Startup finished: configuration valid, paths open (``READY=1``)."""
        return self.notify(READY="1", STATUS=status)

    def status(self, text: str) -> bool:
        """One line of cluster state for ``systemctl status`` (``STATUS=``)."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Pet systemd's software watchdog (``WATCHDOG=1``); call from the main loop."""
        return self.notify(WATCHDOG="1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown began (``STOPPING=1``)."""
        return self.notify(STOPPING="1", STATUS=status)

    def reloading(self, status: str | None = None) -> bool:
        """A SIGHUP reload began (``RELOADING=1``); send :meth:`ready` again when done.

        ``MONOTONIC_USEC`` is included as systemd >= 253 (Type=notify-reload) requires it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING="1", MONOTONIC_USEC=str(usec), STATUS=status)

    def notify(self, **assignments: str | None) -> bool:
        """Send ``KEY=value`` assignments (None values are left out) in one datagram.

        Returns True if the message was handed to the service manager, False when not run
        under systemd or when sending failed (logged at debug level, never raised).
        """
        lines = []
        for key, value in assignments.items():
            if value is None:
                continue
            if not _FIELD_NAME.fullmatch(key):
                raise ValueError(f"sd_notify: invalid assignment name {key!r}")
            lines.append(f"{key}={_one_line(value)}")
        if not self.enabled or not lines:
            return False
        message = "\n".join(lines)
        if self._daemon is not None:
            return bool(self._daemon.notify(message))
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            assert self._address is not None
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            log.debug("sd_notify to %s failed: %s", self.socket_name, exc)
            return False
        return True

    def close(self) -> None:
        """Release the datagram socket (the notifier stays usable; it reopens on demand)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _notify_address(name: str) -> str | bytes | None:
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    log.warning("NOTIFY_SOCKET=%r is neither a path nor an @abstract name; not notifying", name)
    return None


def _one_line(value: str) -> str:
    return " ".join(value.splitlines())


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pets, or None when systemd's watchdog is off for us.

    Like sd_watchdog_enabled(3): ``$WATCHDOG_USEC`` is the timeout; ``$WATCHDOG_PID``, when
    set, names the process it is meant for. We pet at half the timeout, as systemd advises.
    Raises ValueError naming the variable when either is malformed.
    """
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid:
        if not raw_pid.isdigit() or int(raw_pid) <= 0:
            raise ValueError(f"WATCHDOG_PID={raw_pid!r} is not a process id")
        if int(raw_pid) != os.getpid():
            return None
    if not raw_usec.isdigit() or int(raw_usec) <= 0:
        raise ValueError(f"WATCHDOG_USEC={raw_usec!r} is not a positive number of microseconds")
    return int(raw_usec) / 1_000_000 / 2


# --------------------------------------------------------------------------- journal


def journal_fields(
    *,
    node: str | None = None,
    peer: str | None = None,
    path: str | None = None,
    group: str | None = None,
    **more: str,
) -> dict[str, dict[str, str]]:
    """Build ``extra=`` for a logging call: ``{"hbd_fields": {"NODE": ..., ...}}``.

    Extra keyword names are upper-cased; a name the journal would reject raises ValueError.
    """
    fields: dict[str, str] = {}
    for key, value in (("NODE", node), ("PEER", peer), ("PATH", path), ("GROUP", group)):
        if value is not None:
            fields[key] = value
    for key, value in more.items():
        fields[_field_name(key.upper())] = value
    return {FIELDS_ATTR: fields}


def _field_name(name: str) -> str:
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(
            f"journal field name {name!r} must be 1-64 of A-Z, 0-9, _ and not start with _"
        )
    return name


# logging level -> syslog priority (journal PRIORITY=)
_PRIORITIES: Final = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)


def _priority(levelno: int) -> int:
    for level, priority in _PRIORITIES:
        if levelno >= level:
            return priority
    return 7  # debug


def encode_journal_entry(fields: Mapping[str, str | bytes]) -> bytes:
    """Encode fields in journald's native protocol (systemd.journal-fields(7), sd_journal_send)."""
    out = bytearray()
    for key, value in fields.items():
        name = _field_name(key).encode()
        data = value.encode() if isinstance(value, str) else value
        if b"\n" in data:
            out += name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """A logging handler writing structured entries to the systemd journal.

    Every entry carries MESSAGE (the formatted record, traceback included), PRIORITY,
    SYSLOG_IDENTIFIER (default ``hbd``), SYSLOG_PID, LOGGER, CODE_FILE/LINE/FUNC, and the
    record's ``hbd_fields`` mapping (see :func:`journal_fields`).

    ``socket_path`` other than the default always uses the built-in native-protocol sender
    (systemd-python can only talk to the default socket); ``use_libsystemd`` as for
    :class:`Notifier`.
    """

    def __init__(
        self,
        socket_path: str = JOURNAL_SOCKET,
        *,
        identifier: str = IDENTIFIER,
        use_libsystemd: bool | None = None,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self.socket_path = socket_path
        self.identifier = identifier
        self._journal: ModuleType | None = None
        self._sock: socket.socket | None = None
        if use_libsystemd is not False and socket_path == JOURNAL_SOCKET:
            self._journal = _import_libsystemd("journal")
            if self._journal is None and use_libsystemd:
                raise ImportError("use_libsystemd=True but systemd-python is not installed")

    @property
    def backend(self) -> str:
        """ "libsystemd" or "socket": which sender this handler uses."""
        return "socket" if self._journal is None else "libsystemd"

    def entry_fields(self, record: logging.LogRecord) -> dict[str, str]:
        """The journal fields for one record (public so they can be inspected in tests)."""
        fields = {
            "MESSAGE": self.format(record),
            "PRIORITY": str(_priority(record.levelno)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "SYSLOG_PID": str(record.process or os.getpid()),
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
        }
        extra: Any = getattr(record, FIELDS_ATTR, None)
        if extra is not None:
            if not isinstance(extra, Mapping):
                raise TypeError(f"{FIELDS_ATTR} must be a mapping, not {type(extra).__name__}")
            for key, value in extra.items():
                fields[_field_name(str(key).upper())] = str(value)
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = self.entry_fields(record)
            if self._journal is not None:
                self._journal.sendv(*(f"{key}={value}" for key, value in fields.items()))
            else:
                self._send(encode_journal_entry(fields))
        except Exception:
            self.handleError(record)

    def _send(self, datagram: bytes) -> None:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.sendto(datagram, self.socket_path)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):  # too big for one datagram
                raise
            self._send_memfd(datagram)

    def _send_memfd(self, datagram: bytes) -> None:
        """Large entries: a sealed memfd passed as the datagram's only content (SCM_RIGHTS)."""
        assert self._sock is not None
        fd = os.memfd_create("hbd-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(datagram)
            while view:
                view = view[os.write(fd, view) :]
            seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))
            self._sock.sendmsg([], [rights], 0, self.socket_path)
        finally:
            os.close(fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._sock is not None:
                self._sock.close()
        self._sock = None
        super().close()


def make_journal_handler(
    socket_path: str = JOURNAL_SOCKET, *, identifier: str = IDENTIFIER
) -> JournalHandler | None:
    """A JournalHandler if journald is listening at ``socket_path``, else None."""
    if not os.path.exists(socket_path):
        return None
    return JournalHandler(socket_path, identifier=identifier)
