"""The serial driver over real pty pairs from socat: the bytes a null-modem cable carries."""

from __future__ import annotations

import os
import select
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbd.config.model import Medium, MediumKind
from hbd.links.base import LinkLost, LinkOpened, LinkOpenFailed, Received, reopen_backoff
from hbd.links.serial import SerialLink, UucpLock, lock_name

from netns import SocatPair, requires_socat, socat_pair

pytestmark = requires_socat


def serial_medium(device: Path, baud: int = 19200) -> Medium:
    return Medium(MediumKind.SERIAL, str(device), source="ha.cf:7", baud=baud)


def wait_readable(link: SerialLink, timeout: float = 2.0) -> bool:
    fd = link.fileno()
    assert fd is not None, "link is not open"
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


def receive(link: SerialLink, want: int, timeout: float = 2.0) -> bytes:
    """Read until `want` bytes arrived (bounded by `timeout`)."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < want and time.monotonic() < deadline:
        if wait_readable(link, deadline - time.monotonic()):
            data += b"".join(r.data for r in link.on_readable(time.monotonic()))
    return data


def events(link: SerialLink) -> list[object]:
    out: list[object] = []
    while (event := link.next_event()) is not None:
        out.append(event)
    return out


@pytest.fixture
def cable(tmp_path: Path) -> Iterator[SocatPair]:
    with socat_pair(tmp_path / "ttyA", tmp_path / "ttyB") as pair:
        yield pair


@pytest.fixture
def lock_dir(tmp_path: Path) -> str:
    path = tmp_path / "lock"
    path.mkdir()
    return str(path)


@pytest.mark.parametrize(
    ("baud", "speed"), [(9600, termios.B9600), (115200, termios.B115200), (460800, termios.B460800)]
)
def test_frames_cross_the_cable_both_ways_at_the_configured_baud(
    cable: SocatPair, lock_dir: str, baud: int, speed: int
) -> None:
    a = SerialLink(serial_medium(Path(cable.link_a), baud), lock_dir=lock_dir)
    b = SerialLink(serial_medium(Path(cable.link_b), baud), lock_dir=lock_dir)
    now = time.monotonic()
    with a, b:
        a.open(now)
        b.open(now)
        assert events(a) == [LinkOpened(f"serial:{cable.link_a}")]
        assert events(b) == [LinkOpened(f"serial:{cable.link_b}")]

        fd = a.fileno()
        assert fd is not None
        iflag, oflag, cflag, lflag, ispeed, ospeed, _cc = termios.tcgetattr(fd)
        assert (ispeed, ospeed) == (speed, speed)
        assert cflag & termios.CSIZE == termios.CS8
        assert not cflag & (termios.PARENB | termios.CSTOPB | termios.CRTSCTS)
        assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG)
        assert not iflag & (termios.IXON | termios.ISTRIP | termios.ICRNL | termios.IGNCR)
        assert not oflag & termios.OPOST

        binary = bytes(range(256)) + b"\r\n\x11\x13"  # survives raw mode untouched
        assert a.send(binary, now)
        assert receive(b, len(binary)) == binary
        assert b.send(b"###\rpong\n", now)
        got = b""
        while len(got) < 9 and wait_readable(a):
            received = a.on_readable(now)
            assert all(r.source == cable.link_a and r.path_id == a.path_id for r in received)
            got += b"".join(r.data for r in received)
        assert got == b"###\rpong\n"
        assert a.stats.frames_sent == 1 and a.stats.bytes_sent == len(binary)
        assert b.stats.bytes_received == len(binary)


def test_the_lock_refuses_a_second_opener_until_the_first_lets_go(
    cable: SocatPair, lock_dir: str
) -> None:
    first = SerialLink(serial_medium(Path(cable.link_a)), lock_dir=lock_dir)
    second = SerialLink(serial_medium(Path(cable.link_a)), lock_dir=lock_dir)
    now = 100.0
    first.open(now)
    lock_file = Path(lock_dir) / lock_name(cable.link_a)
    assert lock_file.read_bytes() == b"%10d\n" % os.getpid()

    second.open(now)
    [failed] = events(second)
    assert isinstance(failed, LinkOpenFailed)
    assert f"locked by pid {os.getpid()}" in failed.reason
    assert failed.retry_at == now + 0.5
    assert second.fileno() is None
    assert first.fileno() is not None

    first.close()
    assert not lock_file.exists()
    second.handle_timer(now + 0.5)
    assert events(second) == [LinkOpened(second.path_id)]
    assert lock_file.read_bytes() == b"%10d\n" % os.getpid()
    second.close()
    assert not lock_file.exists()


def test_a_stale_lock_left_by_a_dead_process_is_taken_over(cable: SocatPair, lock_dir: str) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock_file = Path(lock_dir) / lock_name(cable.link_a)
    lock_file.write_bytes(b"%10d\n" % dead.pid)

    link = SerialLink(serial_medium(Path(cable.link_a)), lock_dir=lock_dir)
    with link:
        link.open(1.0)
        assert events(link) == [LinkOpened(link.path_id)]
        assert lock_file.read_bytes() == b"%10d\n" % os.getpid()


def test_a_live_foreign_lock_in_heartbeats_format_is_respected(
    cable: SocatPair, lock_dir: str
) -> None:
    holder = subprocess.Popen(["sleep", "30"])
    try:
        lock_file = Path(lock_dir) / lock_name(cable.link_a)
        lock_file.write_bytes(b"%11d\n" % holder.pid)  # Heartbeat writes 11 digits + newline
        link = SerialLink(serial_medium(Path(cable.link_a)), lock_dir=lock_dir)
        link.open(1.0)
        [failed] = events(link)
        assert isinstance(failed, LinkOpenFailed)
        assert f"locked by pid {holder.pid}" in failed.reason
        assert lock_file.read_bytes() == b"%11d\n" % holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_lock_names_follow_heartbeat() -> None:
    assert lock_name("/dev/ttyS0") == "LCK..ttyS0"
    assert lock_name("/dev/pts/3") == "LCK..pts3"
    assert lock_name("/dev/serial/by-id/usb-FTDI_A1-if00") == "LCK..serialbyidusbFTDIA1if00"
    assert UucpLock("/dev/ttyUSB1", "/run/lock").path == "/run/lock/LCK..ttyUSB1"


def test_pulling_the_cable_reports_the_link_lost_and_replugging_reopens_it(
    cable: SocatPair, lock_dir: str
) -> None:
    a = SerialLink(serial_medium(Path(cable.link_a)), lock_dir=lock_dir)
    with a:
        a.open(time.monotonic())
        assert events(a) == [LinkOpened(a.path_id)]

        cable.kill()  # the far end vanishes: the pty's master closes
        assert wait_readable(a)
        assert a.on_readable(time.monotonic()) == []
        [lost] = events(a)
        assert isinstance(lost, LinkLost) and "far end closed" in lost.reason
        assert a.fileno() is None
        assert a.stats.losses == 1
        assert not a.send(b"into the void", time.monotonic())
        assert a.stats.dropped_down == 1
        assert not Path(lock_dir, lock_name(cable.link_a)).exists()  # released while down

        cable.start()  # replugged: new ptys behind the same names
        deadline = time.monotonic() + 5.0
        while a.fileno() is None and time.monotonic() < deadline:
            timer = a.get_timer()
            assert timer is not None
            time.sleep(max(0.0, min(timer - time.monotonic(), 0.1)))
            a.handle_timer(time.monotonic())
        assert a.fileno() is not None, "did not reopen within 5 s"
        assert [type(e) for e in events(a) if not isinstance(e, LinkOpenFailed)] == [LinkOpened]

        b = SerialLink(serial_medium(Path(cable.link_b)), lock_dir=lock_dir)
        with b:
            b.open(time.monotonic())
            assert a.send(b"back again\n", time.monotonic())
            assert receive(b, 11) == b"back again\n"


def reopen_delays(link: SerialLink, attempts: int) -> list[float]:
    now = 50.0
    link.open(now)
    delays = []
    for _ in range(attempts):
        [failed] = events(link)
        assert isinstance(failed, LinkOpenFailed)
        assert "unplugged" in failed.reason
        timer = link.get_timer()
        assert timer == failed.retry_at
        delays.append(round(timer - now, 3))
        link.handle_timer(timer - 0.001)  # not yet due: nothing happens
        assert link.next_event() is None
        now = timer
        link.handle_timer(now)
    link.close()
    assert link.get_timer() is None
    return delays


def test_reopen_attempts_back_off_from_half_a_second_to_five(tmp_path: Path, lock_dir: str) -> None:
    link = SerialLink(serial_medium(tmp_path / "unplugged"), lock_dir=lock_dir)
    assert reopen_delays(link, 7) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("deadtime", "expected"),
    [
        (1.0, [0.5, 0.5, 0.5, 0.5]),  # 200 ms / 1 s: a replug is heard within 0.7 s
        (0.6, [0.3, 0.3, 0.3, 0.3]),
        (4.0, [0.5, 1.0, 2.0, 2.0]),
        (30.0, [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]),  # Heartbeat's default deadtime: plain backoff
    ],
)
def test_a_heartbeat_path_retries_at_least_every_half_deadtime(
    tmp_path: Path, lock_dir: str, deadtime: float, expected: list[float]
) -> None:
    """Regression (fault matrix serial_replug_nics_down, address-less group): a 1.5 s
    unplug of the last path was reopened 3.5 s later, past the 3.45 s takeover budget, and
    the peer took the group over while alpha still ran it."""
    link = SerialLink(
        serial_medium(tmp_path / "unplugged"), lock_dir=lock_dir, backoff=reopen_backoff(deadtime)
    )
    assert reopen_delays(link, len(expected)) == expected


def test_a_reopen_backoff_needs_a_positive_deadtime() -> None:
    with pytest.raises(ValueError, match="positive deadtime"):
        reopen_backoff(0)


def test_a_full_line_drops_frames_without_blocking_and_never_cuts_one(
    cable: SocatPair, lock_dir: str
) -> None:
    a = SerialLink(serial_medium(Path(cable.link_a), 460800), lock_dir=lock_dir)
    b = SerialLink(serial_medium(Path(cable.link_b), 460800), lock_dir=lock_dir)
    with a, b:
        a.open(time.monotonic())
        b.open(time.monotonic())  # open but not reading: the line backs up
        frames = [b"%05d" % i + b"." * 994 + b"\n" for i in range(400)]  # ~400 kB, far more
        accepted = []  # than the ptys and socat can hold while nobody reads the far end
        slowest = 0.0
        for frame in frames:
            start = time.monotonic()
            if a.send(frame, start):
                accepted.append(frame)
            slowest = max(slowest, time.monotonic() - start)
        assert slowest < 0.05
        assert a.stats.dropped_full == len(frames) - len(accepted) > 0
        assert a.stats.frames_sent == len(accepted)

        want = sum(map(len, accepted))
        got = b""
        deadline = time.monotonic() + 5.0
        while len(got) < want and time.monotonic() < deadline:
            a.handle_timer(time.monotonic() + 1.0)  # finish the partly written frame
            if wait_readable(b, 0.05):
                got += b"".join(r.data for r in b.on_readable(time.monotonic()))
        assert got == b"".join(accepted), "the far end must see exactly the accepted frames"
        assert a.pending == 0


def test_a_baud_outside_the_supported_rates_is_refused_naming_the_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ha\.cf:7: baud 14400 not supported"):
        SerialLink(serial_medium(tmp_path / "ttyS0", 14400))


def test_received_bytes_name_the_path_and_device(cable: SocatPair, lock_dir: str) -> None:
    a = SerialLink(serial_medium(Path(cable.link_a)), lock_dir=lock_dir)
    b = SerialLink(serial_medium(Path(cable.link_b)), lock_dir=lock_dir)
    with a, b:
        a.open(1.0)
        b.open(1.0)
        assert a.send(b"x", 1.0)
        assert wait_readable(b)
        assert b.on_readable(2.0) == [Received(f"serial:{cable.link_b}", b"x", cable.link_b)]
