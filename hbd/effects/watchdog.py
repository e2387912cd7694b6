"""The Linux watchdog device (``linux/watchdog.h``) behind a replaceable object.

Opening the device arms it on most drivers; from then on the node is reset unless
the device is petted (a write, or ``WDIOC_KEEPALIVE``) at least once per timeout.
A clean stop writes ``V`` and closes (magic close); a close without ``V`` -- which is
what the kernel does for a killed daemon -- leaves the timer running, so the node is
reset. With ``nowayout`` even magic close is ignored.

Only the device lives here. *When* to pet is decided by the core (``hbd.core.fencing``);
the daemon holds a :class:`WatchdogDevice` (a real :class:`Watchdog`, or a
:class:`NullWatchdog` when none is configured or in tests) and carries out its actions.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import platform
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

__all__ = [
    "WATCHDOG_INFO_SIZE",
    "WDIOC_GETBOOTSTATUS",
    "WDIOC_GETPRETIMEOUT",
    "WDIOC_GETSTATUS",
    "WDIOC_GETSUPPORT",
    "WDIOC_GETTEMP",
    "WDIOC_GETTIMELEFT",
    "WDIOC_GETTIMEOUT",
    "WDIOC_KEEPALIVE",
    "WDIOC_SETOPTIONS",
    "WDIOC_SETPRETIMEOUT",
    "WDIOC_SETTIMEOUT",
    "WDIOF_ALARMONLY",
    "WDIOF_CARDRESET",
    "WDIOF_KEEPALIVEPING",
    "WDIOF_MAGICCLOSE",
    "WDIOF_PRETIMEOUT",
    "WDIOF_SETTIMEOUT",
    "WDIOS_DISABLECARD",
    "WDIOS_ENABLECARD",
    "WDIOS_TEMPPANIC",
    "NullWatchdog",
    "Watchdog",
    "WatchdogDevice",
    "WatchdogError",
    "WatchdogSupport",
    "default_timeout",
    "magic_close_warning",
    "pack_watchdog_info",
    "unpack_watchdog_info",
]

# --- ioctl number encoding (asm-generic/ioctl.h, and the few arches that differ) ---

_GENERIC_LAYOUT = (14, 2, 0, 1, 2)  # size bits, dir bits, NONE, WRITE, READ
_OLD_LAYOUT = (13, 3, 1, 4, 2)  # alpha, mips, powerpc, sparc


def _layout(machine: str) -> tuple[int, int, int, int, int]:
    if machine.startswith(("alpha", "mips", "ppc", "powerpc", "sparc")):
        return _OLD_LAYOUT
    return _GENERIC_LAYOUT


_IOC_SIZEBITS, _IOC_DIRBITS, _IOC_NONE, _IOC_WRITE, _IOC_READ = _layout(platform.machine())
_IOC_NRBITS: Final = 8
_IOC_TYPEBITS: Final = 8
_IOC_NRSHIFT: Final = 0
_IOC_TYPESHIFT: Final = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT: Final = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT: Final = _IOC_SIZESHIFT + _IOC_SIZEBITS


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    if not 0 <= size < (1 << _IOC_SIZEBITS):
        raise ValueError(f"ioctl argument size {size} does not fit in {_IOC_SIZEBITS} bits")
    return (
        (direction << _IOC_DIRSHIFT)
        | (kind << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def _ior(kind: int, nr: int, size: int) -> int:
    return _ioc(_IOC_READ, kind, nr, size)


def _iowr(kind: int, nr: int, size: int) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, kind, nr, size)


# struct watchdog_info { __u32 options; __u32 firmware_version; __u8 identity[32]; }
_WATCHDOG_INFO: Final = struct.Struct("=II32s")
WATCHDOG_INFO_SIZE: Final = _WATCHDOG_INFO.size  # 40
_INT: Final = struct.Struct("=i")  # the C int every other watchdog ioctl passes

WATCHDOG_IOCTL_BASE: Final = ord("W")
WDIOC_GETSUPPORT: Final = _ior(WATCHDOG_IOCTL_BASE, 0, WATCHDOG_INFO_SIZE)
WDIOC_GETSTATUS: Final = _ior(WATCHDOG_IOCTL_BASE, 1, _INT.size)
WDIOC_GETBOOTSTATUS: Final = _ior(WATCHDOG_IOCTL_BASE, 2, _INT.size)
WDIOC_GETTEMP: Final = _ior(WATCHDOG_IOCTL_BASE, 3, _INT.size)
# SETOPTIONS and KEEPALIVE are declared _IOR in the kernel header, although SETOPTIONS
# passes its argument *in*; keep the kernel's numbers (see hbd.testing.fusewatchdog).
WDIOC_SETOPTIONS: Final = _ior(WATCHDOG_IOCTL_BASE, 4, _INT.size)
WDIOC_KEEPALIVE: Final = _ior(WATCHDOG_IOCTL_BASE, 5, _INT.size)
WDIOC_SETTIMEOUT: Final = _iowr(WATCHDOG_IOCTL_BASE, 6, _INT.size)
WDIOC_GETTIMEOUT: Final = _ior(WATCHDOG_IOCTL_BASE, 7, _INT.size)
WDIOC_SETPRETIMEOUT: Final = _iowr(WATCHDOG_IOCTL_BASE, 8, _INT.size)
WDIOC_GETPRETIMEOUT: Final = _ior(WATCHDOG_IOCTL_BASE, 9, _INT.size)
WDIOC_GETTIMELEFT: Final = _ior(WATCHDOG_IOCTL_BASE, 10, _INT.size)

# watchdog_info.options (and GETSTATUS / GETBOOTSTATUS bits)
WDIOF_OVERHEAT: Final = 0x0001
WDIOF_FANFAULT: Final = 0x0002
WDIOF_EXTERN1: Final = 0x0004
WDIOF_EXTERN2: Final = 0x0008
WDIOF_POWERUNDER: Final = 0x0010
WDIOF_CARDRESET: Final = 0x0020
WDIOF_POWEROVER: Final = 0x0040
WDIOF_SETTIMEOUT: Final = 0x0080
WDIOF_MAGICCLOSE: Final = 0x0100
WDIOF_PRETIMEOUT: Final = 0x0200
WDIOF_ALARMONLY: Final = 0x0400
WDIOF_KEEPALIVEPING: Final = 0x8000

# WDIOC_SETOPTIONS arguments
WDIOS_DISABLECARD: Final = 0x0001
WDIOS_ENABLECARD: Final = 0x0002
WDIOS_TEMPPANIC: Final = 0x0004

_OPTION_NAMES: Final = {
    WDIOF_OVERHEAT: "OVERHEAT",
    WDIOF_FANFAULT: "FANFAULT",
    WDIOF_EXTERN1: "EXTERN1",
    WDIOF_EXTERN2: "EXTERN2",
    WDIOF_POWERUNDER: "POWERUNDER",
    WDIOF_CARDRESET: "CARDRESET",
    WDIOF_POWEROVER: "POWEROVER",
    WDIOF_SETTIMEOUT: "SETTIMEOUT",
    WDIOF_MAGICCLOSE: "MAGICCLOSE",
    WDIOF_PRETIMEOUT: "PRETIMEOUT",
    WDIOF_ALARMONLY: "ALARMONLY",
    WDIOF_KEEPALIVEPING: "KEEPALIVEPING",
}

# errnos meaning "this driver does not implement that ioctl"
_UNSUPPORTED: Final = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.ENOSYS})


def default_timeout(deadtime_s: float) -> int:
    """The watchdog timeout Heartbeat uses for a deadtime: ceil(deadtime + 10 ms), seconds."""
    if not math.isfinite(deadtime_s) or deadtime_s < 0:
        raise ValueError(f"deadtime must be a non-negative number of seconds, not {deadtime_s!r}")
    total_ms = round(deadtime_s * 1000) + 10  # Heartbeat keeps deadtime in whole ms
    return -(-total_ms // 1000)


@dataclass(frozen=True, slots=True)
class WatchdogSupport:
    """What ``WDIOC_GETSUPPORT`` says about a device (``struct watchdog_info``)."""

    options: int
    firmware_version: int
    identity: str

    @property
    def magic_close(self) -> bool:
        """Writing 'V' before close stops the timer (WDIOF_MAGICCLOSE)."""
        return bool(self.options & WDIOF_MAGICCLOSE)

    @property
    def settable_timeout(self) -> bool:
        return bool(self.options & WDIOF_SETTIMEOUT)

    @property
    def keepalive_ioctl(self) -> bool:
        return bool(self.options & WDIOF_KEEPALIVEPING)

    def option_names(self) -> list[str]:
        """The WDIOF_* flag names set in ``options``, low bit first; unknown bits as hex."""
        names = [name for bit, name in _OPTION_NAMES.items() if self.options & bit]
        unknown = self.options & ~sum(_OPTION_NAMES)
        if unknown:
            names.append(f"0x{unknown:x}")
        return names


def pack_watchdog_info(support: WatchdogSupport) -> bytes:
    """``struct watchdog_info`` bytes; the identity is cut to 31 bytes plus a NUL."""
    identity = support.identity.encode("utf-8", "replace")[:31]
    return _WATCHDOG_INFO.pack(support.options, support.firmware_version, identity)


def unpack_watchdog_info(data: bytes) -> WatchdogSupport:
    options, firmware, identity = _WATCHDOG_INFO.unpack(data[:WATCHDOG_INFO_SIZE])
    text = identity.split(b"\0", 1)[0].decode("utf-8", "replace")
    return WatchdogSupport(options=options, firmware_version=firmware, identity=text)


def magic_close_warning(path: str, support: WatchdogSupport) -> str | None:
    """The start-up warning to log when magic close does not work, else None."""
    if support.magic_close:
        return None
    return (
        f"watchdog {path} ({support.identity or 'no identity'}) does not support magic close "
        "(nowayout): a clean stop of hbd will still reset this machine when the timeout expires"
    )


class WatchdogError(Exception):
    """A watchdog device operation failed; names the device, the operation and the cause."""

    def __init__(self, path: str, operation: str, cause: OSError | str) -> None:
        self.path = path
        self.operation = operation
        self.errno: int | None = cause.errno if isinstance(cause, OSError) else None
        reason = (cause.strerror or str(cause)) if isinstance(cause, OSError) else cause
        if isinstance(cause, OSError) and cause.errno is not None:
            reason = f"{reason} ({errno.errorcode.get(cause.errno, cause.errno)})"
        super().__init__(f"watchdog {path}: {operation}: {reason}")


@runtime_checkable
class WatchdogDevice(Protocol):
    """What the daemon needs from a watchdog; :class:`Watchdog` and :class:`NullWatchdog`."""

    @property
    def path(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def magic_close_works(self) -> bool: ...

    def set_timeout(self, seconds: int) -> int: ...

    def get_timeout(self) -> int: ...

    def get_support(self) -> WatchdogSupport: ...

    def pet(self) -> None: ...

    def time_left(self) -> int | None: ...

    def disarm(self) -> None: ...

    def close_armed(self) -> None: ...


class Watchdog:
    """An open Linux watchdog device. Opening it arms it on most drivers.

    ``pet_with_ioctl`` pets with ``WDIOC_KEEPALIVE`` instead of writing one NUL byte
    (a write also cancels a pending magic close, as in the kernel).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        pet_with_ioctl: bool = False,
        sysfs: Path = Path("/sys"),
    ) -> None:
        self._path = os.fspath(path)
        self._pet_with_ioctl = pet_with_ioctl
        self._sysfs = sysfs
        self._support: WatchdogSupport | None = None
        try:
            self._fd: int | None = os.open(self._path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise WatchdogError(self._path, "cannot open", exc) from exc

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"fd={self._fd}"
        return f"Watchdog({self._path!r}, {state})"

    @property
    def path(self) -> str:
        return self._path

    @property
    def closed(self) -> bool:
        return self._fd is None

    def fileno(self) -> int:
        return self._require_open("fileno")

    def _require_open(self, operation: str) -> int:
        if self._fd is None:
            raise WatchdogError(self._path, operation, "device already closed")
        return self._fd

    def _ioctl_int(self, request: int, value: int, operation: str) -> int:
        fd = self._require_open(operation)
        buf = bytearray(_INT.pack(value))
        try:
            fcntl.ioctl(fd, request, buf, True)
        except OSError as exc:
            raise WatchdogError(self._path, operation, exc) from exc
        result: int = _INT.unpack(buf)[0]
        return result

    def set_timeout(self, seconds: int) -> int:
        """Set the timeout (whole seconds) and return what the device now reports.

        The driver may round to what its hardware can do; the value returned is the
        one read back with ``WDIOC_GETTIMEOUT``. Setting the timeout also pets.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise ValueError(f"watchdog timeout must be a whole number >= 1 s, not {seconds!r}")
        self._ioctl_int(WDIOC_SETTIMEOUT, seconds, f"cannot set timeout to {seconds} s")
        return self.get_timeout()

    def get_timeout(self) -> int:
        return self._ioctl_int(WDIOC_GETTIMEOUT, 0, "cannot read timeout")

    def get_support(self) -> WatchdogSupport:
        fd = self._require_open("get support")
        buf = bytearray(WATCHDOG_INFO_SIZE)
        try:
            fcntl.ioctl(fd, WDIOC_GETSUPPORT, buf, True)
        except OSError as exc:
            raise WatchdogError(self._path, "cannot read support (WDIOC_GETSUPPORT)", exc) from exc
        self._support = unpack_watchdog_info(bytes(buf))
        return self._support

    @property
    def magic_close_works(self) -> bool:
        """Whether 'V' then close stops the timer; False means a clean stop resets.

        Asks the device once (``WDIOC_GETSUPPORT``); a device that cannot tell counts as
        False, since a clean stop is then not known to be safe.
        """
        if self._support is None:
            try:
                self.get_support()
            except WatchdogError:
                return False
        return self._support is not None and self._support.magic_close and not self.nowayout

    @property
    def nowayout(self) -> bool | None:
        """The kernel's ``nowayout`` for this device from sysfs; None if it cannot be found.

        Drivers still advertise WDIOF_MAGICCLOSE under nowayout; sysfs tells the truth.
        ``/dev/watchdog`` (misc 10:130) is the first watchdog, ``watchdog0``.
        """
        fd = self._require_open("read nowayout")
        info = os.fstat(fd)
        if not stat.S_ISCHR(info.st_mode):
            return None
        major, minor = os.major(info.st_rdev), os.minor(info.st_rdev)
        if (major, minor) == (10, 130):
            node = self._sysfs / "class" / "watchdog" / "watchdog0"
        else:
            node = self._sysfs / "dev" / "char" / f"{major}:{minor}"
        try:
            return (node / "nowayout").read_text().strip() == "1"
        except (OSError, UnicodeDecodeError):
            return None

    def pet(self) -> None:
        fd = self._require_open("pet")
        if self._pet_with_ioctl:
            self._ioctl_int(WDIOC_KEEPALIVE, 0, "cannot pet (WDIOC_KEEPALIVE)")
            return
        try:
            os.write(fd, b"\0")
        except OSError as exc:
            raise WatchdogError(self._path, "cannot pet (write)", exc) from exc

    def time_left(self) -> int | None:
        """Seconds until the reset (``WDIOC_GETTIMELEFT``), None if the driver cannot tell."""
        try:
            return self._ioctl_int(WDIOC_GETTIMELEFT, 0, "cannot read time left")
        except WatchdogError as exc:
            if exc.errno in _UNSUPPORTED:
                return None
            raise

    def set_options(self, options: int) -> None:
        """``WDIOC_SETOPTIONS``, e.g. WDIOS_DISABLECARD / WDIOS_ENABLECARD."""
        self._ioctl_int(WDIOC_SETOPTIONS, options, f"cannot set options 0x{options:x}")

    def disarm(self) -> None:
        """Magic close: write 'V' then close. With nowayout the timer keeps running."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.write(fd, b"V")
        except OSError as exc:
            os.close(fd)
            raise WatchdogError(self._path, "cannot write magic close 'V'", exc) from exc
        try:
            os.close(fd)
        except OSError as exc:
            raise WatchdogError(self._path, "cannot close", exc) from exc

    def close_armed(self) -> None:
        """Close without 'V': the timer keeps running, as when the daemon is killed."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.close(fd)
        except OSError as exc:
            raise WatchdogError(self._path, "cannot close", exc) from exc


class NullWatchdog:
    """A watchdog that does nothing but count: for tests and for nodes without one."""

    def __init__(
        self,
        path: str = "(none)",
        *,
        timeout: int = 60,
        magic_close: bool = True,
        identity: str = "hbd null watchdog",
    ) -> None:
        self._path = path
        self.timeout = timeout
        self.pets = 0
        self.disarmed = False
        self.closed_armed = False
        options = WDIOF_SETTIMEOUT | WDIOF_KEEPALIVEPING | (WDIOF_MAGICCLOSE if magic_close else 0)
        self._support = WatchdogSupport(options=options, firmware_version=0, identity=identity)

    def __repr__(self) -> str:
        return f"NullWatchdog({self._path!r}, timeout={self.timeout}, pets={self.pets})"

    @property
    def path(self) -> str:
        return self._path

    @property
    def closed(self) -> bool:
        return self.disarmed or self.closed_armed

    @property
    def magic_close_works(self) -> bool:
        return self._support.magic_close

    def _require_open(self, operation: str) -> None:
        if self.closed:
            raise WatchdogError(self._path, operation, "device already closed")

    def set_timeout(self, seconds: int) -> int:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise ValueError(f"watchdog timeout must be a whole number >= 1 s, not {seconds!r}")
        self._require_open(f"cannot set timeout to {seconds} s")
        self.timeout = seconds
        self.pets += 1
        return seconds

    def get_timeout(self) -> int:
        self._require_open("cannot read timeout")
        return self.timeout

    def get_support(self) -> WatchdogSupport:
        self._require_open("get support")
        return self._support

    def pet(self) -> None:
        self._require_open("pet")
        self.pets += 1

    def time_left(self) -> int | None:
        return None

    def disarm(self) -> None:
        if not self.closed:
            self.disarmed = True

    def close_armed(self) -> None:
        if not self.closed:
            self.closed_armed = True
