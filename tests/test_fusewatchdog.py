"""The FUSE test watchdog: its timer logic (no FUSE, time jumps) and the real mounted file
driven by the real hbd.effects.watchdog layer, resetting a node made in a network namespace.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hbd.effects.watchdog import (
    WDIOF_MAGICCLOSE,
    WDIOS_DISABLECARD,
    WDIOS_ENABLECARD,
    Watchdog,
    WatchdogError,
    magic_close_warning,
)
from hbd.testing.fusewatchdog import (
    MountedWatchdog,
    NodeReset,
    Release,
    WatchdogTimer,
    mounted_watchdog,
    read_events,
)

from netns import Netns, namespace, run, stop_process, unique_name

# --- the timer on its own: now jumps, nothing sleeps -----------------------------------


def test_opening_starts_the_timer_and_a_write_pushes_the_deadline() -> None:
    timer = WatchdogTimer(timeout=10)
    fd = timer.open(now=100.0)
    assert timer.running and timer.deadline == 110.0
    timer.write(fd, b"\0", now=105.0)
    assert not timer.expire(now=114.9)
    assert timer.expire(now=115.0)
    assert timer.resets == 1 and not timer.running


def test_magic_close_stops_only_if_the_last_write_held_a_v() -> None:
    timer = WatchdogTimer(timeout=10)
    fd = timer.open(now=0.0)
    timer.write(fd, b"V", now=1.0)
    timer.write(fd, b"\0", now=2.0)  # a later write withdraws the V
    assert timer.release(fd, now=3.0) is Release.LEFT_ARMED
    assert timer.expire(now=12.0)

    fd = timer.open(now=20.0)
    timer.write(fd, b"xV", now=21.0)
    assert timer.release(fd, now=22.0) is Release.STOPPED
    assert timer.deadline is None and not timer.expire(now=1000.0)


def test_nowayout_ignores_v_refuses_disablecard_and_does_not_advertise_magic_close() -> None:
    timer = WatchdogTimer(timeout=5, nowayout=True)
    assert not timer.support().options & WDIOF_MAGICCLOSE
    fd = timer.open(now=0.0)
    with pytest.raises(OSError) as refused:
        timer.set_options(fd, WDIOS_DISABLECARD, now=1.0)
    assert refused.value.errno == errno.EBUSY
    timer.write(fd, b"V", now=2.0)
    assert timer.release(fd, now=2.0) is Release.NOWAYOUT
    assert timer.expire(now=7.0)


def test_a_second_opener_is_refused_and_reopening_a_running_timer_does_not_pet_it() -> None:
    timer = WatchdogTimer(timeout=10)
    fd = timer.open(now=0.0)
    with pytest.raises(OSError) as busy:
        timer.open(now=1.0)
    assert busy.value.errno == errno.EBUSY
    assert timer.release(fd, now=2.0) is Release.LEFT_ARMED
    timer.open(now=5.0)
    assert timer.deadline == 10.0  # still the deadline of the first open


def test_disablecard_stops_pets_do_not_restart_it_and_enablecard_does() -> None:
    timer = WatchdogTimer(timeout=3)
    fd = timer.open(now=0.0)
    timer.set_options(fd, WDIOS_DISABLECARD, now=1.0)
    timer.write(fd, b"\0", now=2.0)
    assert not timer.running and not timer.expire(now=100.0)
    timer.set_options(fd, WDIOS_ENABLECARD, now=100.0)
    assert timer.deadline == 103.0


def test_set_timeout_pets_and_checks_its_range_and_time_left_counts_down() -> None:
    timer = WatchdogTimer(timeout=60)
    fd = timer.open(now=0.0)
    assert timer.set_timeout(fd, 2, now=30.0) == 2
    assert timer.deadline == 32.0
    assert timer.time_left(fd, now=30.5) == 1
    with pytest.raises(OSError) as bad:
        timer.set_timeout(fd, 0, now=31.0)
    assert bad.value.errno == errno.EINVAL and timer.timeout == 2


def test_after_a_reset_the_old_handle_is_stale_and_the_device_can_be_opened_again() -> None:
    timer = WatchdogTimer(timeout=1)
    old = timer.open(now=0.0)
    assert timer.expire(now=1.0)
    with pytest.raises(OSError) as stale:
        timer.write(old, b"\0", now=1.5)
    assert stale.value.errno == errno.ENODEV
    assert timer.release(old, now=2.0) is Release.STALE
    new = timer.open(now=3.0)
    assert timer.running and timer.deadline == 4.0 and new != old


def test_a_node_reset_reads_its_pid_file_when_it_fires_and_spares_itself(tmp_path: Path) -> None:
    pidfile = tmp_path / "hbd.pid"
    reset = NodeReset(pids=[os.getpid()], pidfile=pidfile)
    errors: list[str] = []
    assert reset.victims(errors) == []
    assert "does not exist" in errors[0]
    with subprocess.Popen(["sleep", "30"]) as child:
        pidfile.write_text(f"{child.pid}\n")
        report = reset()
        assert child.wait(timeout=5) == -9
    assert report["killed"] == [child.pid]


# --- the mounted file, driven by the real device layer ---------------------------------

requires_fuse = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("fusermount3") is None or not os.path.exists("/dev/fuse"),
    reason="needs root, /dev/fuse and fusermount3",
)


@dataclass
class Node:
    """A node in a namespace: one address on a veth and one service process."""

    ns: Netns
    service: subprocess.Popen[bytes]
    address: str

    def addresses(self) -> str:
        return self.ns.ip("-4", "-o", "addr", "show").stdout


@pytest.fixture
def node() -> Iterator[Node]:
    with namespace("wd") as ns:
        ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        ns.ip("addr", "add", "10.79.0.1/24", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        service = ns.popen("sleep", "60")
        deadline = time.monotonic() + 5
        while str(service.pid) not in run("ip", "netns", "pids", ns.name).stdout.split():
            assert time.monotonic() < deadline, "the service did not enter its namespace"
            time.sleep(0.01)  # `ip netns exec` enters the namespace, then execs sleep
        yield Node(ns, service, "10.79.0.1/24")


def settle(dog: MountedWatchdog, event: str = "close", count: int = 1) -> None:
    """FUSE sends RELEASE after close() returns; wait until the server logged it."""
    deadline = time.monotonic() + 5
    while len(dog.events(event)) < count:
        assert time.monotonic() < deadline, f"no {event!r} event in {dog.log_path}"
        time.sleep(0.01)


@pytest.mark.root
@requires_fuse
def test_timeout_is_set_read_back_and_support_tells_magic_close_works() -> None:
    with mounted_watchdog(identity="node-a watchdog") as dog:
        wd = Watchdog(dog.path)
        try:
            assert wd.set_timeout(7) == 7 and wd.get_timeout() == 7
            support = wd.get_support()
            assert support.identity == "node-a watchdog"
            assert {"SETTIMEOUT", "MAGICCLOSE", "KEEPALIVEPING"} <= set(support.option_names())
            assert wd.magic_close_works and magic_close_warning(wd.path, support) is None
            left = wd.time_left()
            assert left is not None and 5 <= left <= 7
            with pytest.raises(WatchdogError, match=r"Device or resource busy"):
                Watchdog(dog.path)  # one opener at a time, like /dev/watchdog
        finally:
            wd.disarm()


@pytest.mark.root
@requires_fuse
def test_petting_keeps_the_node_alive_past_the_timeout(node: Node) -> None:
    with mounted_watchdog(netns=node.ns.name) as dog:
        wd = Watchdog(dog.path)
        try:
            wd.set_timeout(1)
            until = time.monotonic() + 2.5
            while time.monotonic() < until:
                wd.pet()
                time.sleep(0.2)
            assert dog.resets() == []
            assert node.service.poll() is None
        finally:
            wd.disarm()


@pytest.mark.root
@requires_fuse
def test_starving_it_kills_the_nodes_processes_and_removes_its_addresses(node: Node) -> None:
    assert node.address.split("/")[0] in node.addresses()
    with mounted_watchdog(netns=node.ns.name) as dog:
        wd = Watchdog(dog.path, pet_with_ioctl=True)
        wd.set_timeout(1)
        wd.pet()
        petted = time.monotonic()
        (reset,) = dog.wait_for_reset(timeout=5)
        fired_after = time.monotonic() - petted
        wd.close_armed()
    assert 0.9 <= fired_after <= 2.0
    assert node.service.wait(timeout=5) == -9  # SIGKILL
    assert "10.79.0.1" not in node.addresses() and "127.0.0.1" in node.addresses()
    assert reset["addresses_removed"] == ["10.79.0.1/24 dev eth0"]
    assert reset["killed"] == [node.service.pid]
    assert reset["errors"] == []
    assert reset["wall_s"] > 0 and reset["monotonic_s"] > 0


@pytest.mark.root
@requires_fuse
def test_magic_close_disarms(node: Node) -> None:
    with mounted_watchdog(netns=node.ns.name) as dog:
        wd = Watchdog(dog.path)
        wd.set_timeout(1)
        wd.disarm()
        settle(dog)
        time.sleep(1.5)
        assert dog.resets() == []
        assert dog.events("close")[-1]["outcome"] == Release.STOPPED.value
    assert node.service.poll() is None


@pytest.mark.root
@requires_fuse
def test_closing_without_v_leaves_it_armed_and_the_node_is_reset(node: Node) -> None:
    with mounted_watchdog(netns=node.ns.name) as dog:
        wd = Watchdog(dog.path)
        wd.set_timeout(1)
        wd.close_armed()
        settle(dog)
        assert dog.events("close")[-1]["outcome"] == Release.LEFT_ARMED.value
        dog.wait_for_reset(timeout=5)
        assert node.service.wait(timeout=5) == -9
        again = Watchdog(dog.path)  # the "rebooted" node can open it afresh
        again.disarm()


@pytest.mark.root
@requires_fuse
def test_nowayout_ignores_magic_close_and_refuses_to_be_disabled(node: Node) -> None:
    with mounted_watchdog(netns=node.ns.name, nowayout=True) as dog:
        wd = Watchdog(dog.path)
        assert not wd.magic_close_works
        assert "nowayout" in (magic_close_warning(wd.path, wd.get_support()) or "")
        wd.set_timeout(1)
        with pytest.raises(WatchdogError, match="EBUSY"):
            wd.set_options(WDIOS_DISABLECARD)
        wd.disarm()
        settle(dog)
        assert dog.events("close")[-1]["outcome"] == Release.NOWAYOUT.value
        dog.wait_for_reset(timeout=5)
    assert node.service.wait(timeout=5) == -9


@pytest.mark.root
@requires_fuse
def test_disablecard_stops_the_timer_and_enablecard_restarts_it(node: Node) -> None:
    with mounted_watchdog(netns=node.ns.name) as dog:
        wd = Watchdog(dog.path)
        try:
            wd.set_timeout(1)
            wd.set_options(WDIOS_DISABLECARD)
            assert wd.time_left() == 0
            time.sleep(1.5)
            assert dog.resets() == [] and node.service.poll() is None
            wd.set_options(WDIOS_ENABLECARD)
            dog.wait_for_reset(timeout=5)
            assert node.service.wait(timeout=5) == -9
        finally:
            wd.close_armed()


@pytest.mark.root
@requires_fuse
def test_a_watchdog_without_gettimeleft_reports_none() -> None:
    with mounted_watchdog(timeleft=False) as dog:
        wd = Watchdog(dog.path)
        try:
            assert wd.time_left() is None
        finally:
            wd.disarm()


@pytest.mark.root
@requires_fuse
def test_the_command_line_serves_a_directory_and_logs_each_event(tmp_path: Path) -> None:
    mnt = tmp_path / unique_name("mnt")
    mnt.mkdir()
    log = tmp_path / "wd.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "hbd.testing.fusewatchdog", str(mnt), "--log", str(log)],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (mnt / "watchdog").exists():
            assert server.poll() is None and time.monotonic() < deadline, "did not mount"
            time.sleep(0.02)
        assert os.listdir(mnt) == ["watchdog"]
        wd = Watchdog(mnt / "watchdog")
        wd.set_timeout(3)
        wd.disarm()
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        try:
            server.wait(timeout=5)
        finally:
            stop_process(server)
    assert server.returncode == 0
    names = [event["event"] for event in read_events(log)]
    assert names[0] == "mounted" and names[-1] == "unmounted"
    assert "open" in names and "set timeout" in names
