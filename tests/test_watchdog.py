"""The watchdog device layer: ioctl numbers, support flags, errors, and the swappable null one.

The real device behaviour (timer, magic close, nowayout) is tested against the FUSE
watchdog in test_fusewatchdog.py; here the layer is checked on its own.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from hbd.effects.watchdog import (
    WATCHDOG_INFO_SIZE,
    WDIOC_GETSUPPORT,
    WDIOC_GETTIMELEFT,
    WDIOC_GETTIMEOUT,
    WDIOC_KEEPALIVE,
    WDIOC_SETOPTIONS,
    WDIOC_SETTIMEOUT,
    WDIOF_KEEPALIVEPING,
    WDIOF_MAGICCLOSE,
    WDIOF_SETTIMEOUT,
    NullWatchdog,
    Watchdog,
    WatchdogDevice,
    WatchdogError,
    WatchdogSupport,
    default_timeout,
    magic_close_warning,
    pack_watchdog_info,
    unpack_watchdog_info,
)


def decode(request: int) -> tuple[int, int, int, int]:
    """(direction, size, type, nr) of an ioctl number, asm-generic layout."""
    return request >> 30, (request >> 16) & 0x3FFF, (request >> 8) & 0xFF, request & 0xFF


def test_ioctl_numbers_carry_direction_size_type_and_number_as_linux_watchdog_h() -> None:
    read, read_write = 2, 3
    assert decode(WDIOC_GETSUPPORT) == (read, WATCHDOG_INFO_SIZE, ord("W"), 0)
    assert decode(WDIOC_SETOPTIONS) == (read, 4, ord("W"), 4)
    assert decode(WDIOC_KEEPALIVE) == (read, 4, ord("W"), 5)
    assert decode(WDIOC_SETTIMEOUT) == (read_write, 4, ord("W"), 6)
    assert decode(WDIOC_GETTIMEOUT) == (read, 4, ord("W"), 7)
    assert decode(WDIOC_GETTIMELEFT) == (read, 4, ord("W"), 10)
    # the numbers a C program gets from <linux/watchdog.h> on x86-64
    assert (WDIOC_GETSUPPORT, WDIOC_SETTIMEOUT, WDIOC_GETTIMEOUT) == (
        0x80285700,
        0xC0045706,
        0x80045707,
    )


def test_struct_watchdog_info_is_40_bytes_and_round_trips() -> None:
    support = WatchdogSupport(WDIOF_MAGICCLOSE | WDIOF_SETTIMEOUT, 7, "iTCO_wdt")
    packed = pack_watchdog_info(support)
    assert len(packed) == WATCHDOG_INFO_SIZE == 40
    assert unpack_watchdog_info(packed) == support


def test_an_identity_longer_than_the_field_is_cut_and_stays_nul_terminated() -> None:
    packed = pack_watchdog_info(WatchdogSupport(0, 0, "x" * 50))
    assert packed[-1:] == b"\0"
    assert unpack_watchdog_info(packed).identity == "x" * 31


def test_support_flags_are_named_and_magic_close_read_from_them() -> None:
    support = WatchdogSupport(WDIOF_SETTIMEOUT | WDIOF_KEEPALIVEPING | 0x10000, 0, "soft")
    assert support.option_names() == ["SETTIMEOUT", "KEEPALIVEPING", "0x10000"]
    assert not support.magic_close
    assert support.settable_timeout and support.keepalive_ioctl


@pytest.mark.parametrize(
    ("deadtime", "timeout"),
    [(30, 31), (0.99, 1), (1, 2), (1.995, 3), (10.5, 11), (0, 1)],
)
def test_default_timeout_is_deadtime_plus_10_ms_rounded_up_as_heartbeat(
    deadtime: float, timeout: int
) -> None:
    assert default_timeout(deadtime) == timeout


def test_default_timeout_refuses_a_negative_deadtime() -> None:
    with pytest.raises(ValueError, match="deadtime"):
        default_timeout(-1)


def test_no_warning_when_magic_close_works_and_a_clear_one_when_it_does_not() -> None:
    assert magic_close_warning("/dev/watchdog", WatchdogSupport(WDIOF_MAGICCLOSE, 0, "x")) is None
    warning = magic_close_warning("/dev/watchdog0", WatchdogSupport(WDIOF_SETTIMEOUT, 0, "wdat"))
    assert warning is not None
    assert "/dev/watchdog0" in warning and "nowayout" in warning and "reset" in warning


def test_opening_a_missing_device_names_the_path_and_the_cause(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-watchdog"
    with pytest.raises(WatchdogError) as caught:
        Watchdog(missing)
    assert str(missing) in str(caught.value)
    assert "No such file or directory" in str(caught.value)
    assert caught.value.errno == errno.ENOENT


def test_on_a_plain_file_pets_are_writes_and_the_ioctls_fail_naming_the_path(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "not-a-watchdog"
    plain.write_bytes(b"")
    dog = Watchdog(plain)
    dog.pet()
    dog.pet()
    assert plain.read_bytes() == b"\0\0"
    assert dog.time_left() is None  # ENOTTY: "this driver cannot tell"
    assert not dog.magic_close_works  # cannot tell: a clean stop is not known to be safe
    with pytest.raises(WatchdogError, match=r"not-a-watchdog.*GETSUPPORT.*ENOTTY"):
        dog.get_support()
    with pytest.raises(WatchdogError, match=r"cannot set timeout to 5 s"):
        dog.set_timeout(5)
    dog.close_armed()


def test_disarm_writes_v_then_closes_and_close_armed_writes_nothing(tmp_path: Path) -> None:
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.write_bytes(b"")
    killed.write_bytes(b"")
    Watchdog(clean).disarm()
    dog = Watchdog(killed)
    dog.close_armed()
    assert clean.read_bytes() == b"V"
    assert killed.read_bytes() == b""
    assert dog.closed
    with pytest.raises(WatchdogError, match="already closed"):
        dog.pet()
    dog.disarm()  # closing twice is harmless
    assert killed.read_bytes() == b""


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_a_timeout_that_is_not_a_whole_positive_second_is_refused(
    tmp_path: Path, bad: object
) -> None:
    plain = tmp_path / "wd"
    plain.write_bytes(b"")
    dog = Watchdog(plain)
    try:
        with pytest.raises(ValueError, match="whole number"):
            dog.set_timeout(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="whole number"):
            NullWatchdog().set_timeout(bad)  # type: ignore[arg-type]
    finally:
        dog.close_armed()


def test_the_null_watchdog_counts_what_the_daemon_did_and_refuses_use_after_close() -> None:
    dog = NullWatchdog(timeout=60)
    assert isinstance(dog, WatchdogDevice)
    assert dog.set_timeout(11) == 11 and dog.get_timeout() == 11
    dog.pet()
    dog.pet()
    assert dog.pets == 3  # setting the timeout pets, as on a real device
    assert dog.time_left() is None
    dog.disarm()
    assert dog.disarmed and not dog.closed_armed and dog.closed
    with pytest.raises(WatchdogError, match="already closed"):
        dog.pet()


def test_a_null_watchdog_can_stand_for_a_nowayout_device() -> None:
    dog = NullWatchdog("/dev/watchdog", magic_close=False)
    assert not dog.magic_close_works
    assert magic_close_warning(dog.path, dog.get_support()) is not None
    dog.close_armed()
    assert dog.closed_armed and not dog.disarmed


def test_the_real_watchdog_satisfies_the_protocol(tmp_path: Path) -> None:
    plain = tmp_path / "wd"
    plain.write_bytes(b"")
    dog = Watchdog(plain)
    try:
        assert isinstance(dog, WatchdogDevice)
    finally:
        dog.close_armed()


def test_nowayout_comes_from_sysfs_for_a_character_device(tmp_path: Path) -> None:
    null = os.stat("/dev/null").st_rdev  # a character device standing in for a watchdog
    node = tmp_path / "dev" / "char" / f"{os.major(null)}:{os.minor(null)}"
    node.mkdir(parents=True)
    dog = Watchdog("/dev/null", sysfs=tmp_path)
    try:
        assert dog.nowayout is None  # no such attribute: unknown
        (node / "nowayout").write_text("1\n")
        assert dog.nowayout is True
        (node / "nowayout").write_text("0\n")
        assert dog.nowayout is False
    finally:
        dog.close_armed()


def test_a_plain_file_has_no_sysfs_nowayout(tmp_path: Path) -> None:
    plain = tmp_path / "wd"
    plain.write_bytes(b"")
    dog = Watchdog(plain, sysfs=tmp_path)
    try:
        assert dog.nowayout is None
    finally:
        dog.close_armed()
