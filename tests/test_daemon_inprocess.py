"""The daemon shell in-process, no root: an injected clock, a fake agent runner, a real
loop turn at a time. Each scenario is a way the shell could be left half-done:

- an agent that cannot even be run (ENOSPC, EMFILE, any exception) is a failed
  operation fed back to the node, never a group wedged in "unknown";
- a clean stop whose stops never finish ends with the node going, never "stopped";
- a start-up that fails never opens (arms) the watchdog, and says so in one line;
- a reload applies wholly or not at all, and one that removes every ping node does not
  make the node believe it is isolated;
- a built-in agent that timed out does nothing afterwards.

One node (alpha) of a two-node cluster whose peer (beta) never answers: after initdead
and the takeover budget it runs its group alone, as a node that starts during a partition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hbd.core.model import AgentKind, Resource
from hbd.core.resources import Op
from hbd.effects.addresses import BuiltinAgents
from hbd.effects.agents import OpResult, ScriptRunner
from hbd.links.serial import lock_name
from hbd.shell import daemon as daemon_module
from hbd.shell.daemon import SHUTDOWN_LIMIT, Daemon, DaemonOptions
from hbd.testing.sim import FakeClock

from confkit import GOOD_AUTHKEYS
from netns import free_port as free_tcp_or_udp_port
from netns import sleeper

GROUP = "svc"


def free_port() -> int:
    return free_tcp_or_udp_port(socket.SOCK_DGRAM)


def hacf(port: int, extra: str = "") -> str:
    return (
        "keepalive 200ms\ndeadtime 1\nwarntime 500ms\ninitdead 2\nauto_failback on\n"
        f"udpport {port}\nucast lo 127.0.0.2 127.0.0.1\nwire hbd\nnode alpha beta\n{extra}"
    )


class FakeRunner:
    """Runs agents instantly; `fail[(resource, op)]` raises that exception, `hang` ops
    never return (until the test releases them)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Op]] = []
        self.running: set[str] = set()
        self.fail: dict[tuple[str, Op], BaseException] = {}
        self.hang: set[tuple[str, Op]] = set()
        self.release = asyncio.Event()

    async def run(self, resource: Resource, op: Op, timeout: float) -> OpResult:
        key = (resource.spec, op)
        self.calls.append(key)
        if key in self.fail:
            raise self.fail.pop(key)
        if key in self.hang:
            await self.release.wait()
        if op == "start":
            self.running.add(resource.spec)
        elif op == "stop":
            self.running.discard(resource.spec)
        elif op == "status":
            return OpResult(0 if resource.spec in self.running else 7, "", 1)
        return OpResult(0, "", 1)


class Harness:
    def __init__(self, tmp_path: Path, runner: FakeRunner, extra: str = "") -> None:
        self.root = tmp_path
        self.config = tmp_path / "ha.d"
        self.config.mkdir()
        self.port = free_port()
        (self.config / "ha.cf").write_text(hacf(self.port, extra))
        (self.config / "authkeys").write_text(GOOD_AUTHKEYS.replace("sha1", "sha256"))
        (self.config / "authkeys").chmod(0o600)
        (self.config / "haresources").write_text(f"alpha {GROUP}\n")
        rd = self.config / "resource.d"
        rd.mkdir()
        (rd / GROUP).write_text("#!/bin/sh\nexit 0\n")
        (rd / GROUP).chmod(0o755)
        self.clock = FakeClock(1000.0)
        self.runner = runner
        self.options = DaemonOptions(
            config_dir=str(self.config),
            state_dir=str(tmp_path / "state"),
            run_dir=str(tmp_path / "run"),
            node_name="alpha",
        )
        self.daemon = Daemon(self.options, clock=self.clock, runner=runner)  # type: ignore[arg-type]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        d = self.daemon
        d._wake = asyncio.Event()
        d.registry = daemon_module.LoopRegistry(loop, d._wake.set)
        d.start(loop)

    async def run(self, seconds: float, step: float = 0.05) -> None:
        """Move the clock on, a loop turn per step, letting agent tasks run."""
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.advance(step)
            for _ in range(3):
                await asyncio.sleep(0)
            self.daemon._tick(self.clock())

    async def until(self, condition: Callable[[], bool], limit: float) -> None:
        end = self.clock.now + limit
        while not condition():
            assert self.clock.now < end, "the condition never held"
            await self.run(0.05)

    def group(self) -> dict[str, Any]:
        status = self.daemon.status(self.clock())
        return next(g for g in status["groups"] if g["name"] == GROUP)

    def close(self) -> None:
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        self.daemon.shutdown()


@contextmanager
def quiet_logs() -> Iterator[None]:
    logger = logging.getLogger("hbd")
    yield
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EMFILE, "Too many open files"),
        RuntimeError("a bug"),
    ],
    ids=["ENOSPC", "EMFILE", "any exception"],
)
def test_an_agent_that_cannot_be_run_is_a_failed_operation_not_a_wedged_group(
    tmp_path: Path, error: BaseException
) -> None:
    async def scenario() -> None:
        runner = FakeRunner()
        runner.fail[(GROUP, "start")] = error
        h = Harness(tmp_path, runner)
        await h.start()
        try:
            await h.until(lambda: (GROUP, "start") in runner.calls, 10)
            await h.run(1.0)
            g = h.group()
            assert g["state"] in ("failed", "stopped"), g  # the start failed: stopped again
            assert g["state"] != "unknown"
            assert (GROUP, "stop") in runner.calls  # the failed start was cleaned up
            decisions = h.daemon.status(h.clock())["decisions"]
            assert any("release" in d["decision"] or "acquire" in d["decision"] for d in decisions)
            # the operator clears the failure: the next start succeeds
            h.daemon.node.standby("off", h.clock())  # type: ignore[union-attr]
            await h.until(lambda: h.group()["state"] == "started", 10)
        finally:
            h.close()

    with quiet_logs():
        asyncio.run(scenario())


def test_a_clean_stop_whose_stop_never_returns_goes_and_never_reports_stopped(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        runner = FakeRunner()
        h = Harness(tmp_path, runner)
        await h.start()
        try:
            await h.until(lambda: h.group()["state"] == "started", 10)
            runner.hang.add((GROUP, "stop"))
            node = h.daemon.node
            assert node is not None
            h.daemon._stop = True
            task = asyncio.ensure_future(h.daemon._hand_over())
            while not task.done():
                h.clock.advance(0.5)  # below the stall bound: a loop keeping time
                h.daemon._tick(h.clock())
                h.daemon._wake.set()  # type: ignore[union-attr]
                await asyncio.sleep(0)
            await task
            assert h.clock.now - node.stop_began() >= SHUTDOWN_LIMIT
            assert node.fenced is not None and "could not stop" in node.fenced
            assert h.daemon._stuck  # main() exits 1: the groups may still run
            assert not node.stopped(h.clock())
        finally:
            runner.release.set()
            h.close()

    with quiet_logs():
        asyncio.run(scenario())


def test_a_start_up_that_fails_never_arms_the_watchdog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(daemon_module, "Watchdog", lambda path: opened.append(path))
    device = tmp_path / "watchdog"
    device.touch()
    runner = FakeRunner()
    h = Harness(tmp_path, runner, extra=f"watchdog {device}\n")
    (tmp_path / "state").write_text("a file where the state directory should be")

    async def scenario() -> None:
        with pytest.raises(daemon_module.HbdError, match="state"):
            await h.start()

    with quiet_logs():
        asyncio.run(scenario())
    assert opened == []


def test_a_missing_watchdog_device_is_one_line_naming_the_hacf_line(tmp_path: Path) -> None:
    runner = FakeRunner()
    h = Harness(tmp_path, runner, extra="watchdog /dev/no-such-watchdog\n")

    async def scenario() -> None:
        with pytest.raises(daemon_module.ConfigError) as e:
            await h.start()
        assert str(e.value).startswith(
            f"{h.config}/ha.cf:10: watchdog device /dev/no-such-watchdog"
        )

    with quiet_logs():
        asyncio.run(scenario())


def test_a_reload_that_removes_every_ping_node_does_not_make_the_node_isolated(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        runner = FakeRunner()
        h = Harness(tmp_path, runner, extra="ping 127.0.0.9\n")
        await h.start()
        try:
            generation = h.daemon.node.engine.generation  # type: ignore[union-attr]
            (h.config / "ha.cf").write_text(hacf(h.port))
            h.daemon.reload()
            await h.run(0.5)
            node = h.daemon.node
            assert node is not None
            assert (
                node.policy.isolation.value
                == "no ping nodes are configured: isolation cannot be told"
            )
            assert node.engine.generation == generation
            assert h.daemon.config is not None and not h.daemon.config.hacf.ping_nodes
        finally:
            h.close()

    with quiet_logs():
        asyncio.run(scenario())


def test_a_bad_reload_keeps_the_old_configuration_whole(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = FakeRunner()
        h = Harness(tmp_path, runner)
        await h.start()
        try:
            before = h.daemon.config
            (h.config / "ha.cf").write_text(hacf(h.port, "deadtime 0.1\n"))  # invalid
            h.daemon.reload()
            assert h.daemon.config is before
            (h.config / "haresources").write_text(f"beta {GROUP}\n")  # needs a restart
            (h.config / "ha.cf").write_text(hacf(h.port))
            h.daemon.reload()
            assert h.daemon.config is before
        finally:
            h.close()

    with quiet_logs():
        asyncio.run(scenario())


class BlockingAddresses:
    """An address manager whose `find_interface` waits until released (a slow netlink)."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.added: list[str] = []

    def find_interface(self, ip: Any) -> tuple[str, int] | None:
        self.go.wait(5)
        return ("eth0", 24)

    def address_interfaces(self, ip: Any) -> tuple[str, ...]:
        return ("eth0",) if str(ip) in self.added else ()

    def add_address(self, addr: Any) -> None:
        self.added.append(str(addr.ip))

    def remove_address(self, addr: Any) -> None:
        self.added.remove(str(addr.ip))

    def send_gratuitous_arp(self, *args: Any) -> int:
        return 0


def test_a_built_in_agent_that_timed_out_does_nothing_afterwards() -> None:
    addresses = BlockingAddresses()
    runner = ScriptRunner(BuiltinAgents(addresses, arp_count=0))  # type: ignore[arg-type]
    vip = Resource("IPaddr", ("10.70.0.5/24",), AgentKind.BUILTIN, None, "haresources:1")

    async def scenario() -> None:
        result = await runner.run(vip, "start", 0.05)
        assert result.timed_out
        stop = asyncio.ensure_future(runner.run(vip, "stop", 5.0))  # waits its turn
        await asyncio.sleep(0.1)
        addresses.go.set()  # the timed-out start's thread resumes: it must not add
        assert (await stop).rc == 0
        await asyncio.sleep(0.1)
        assert addresses.added == []

    asyncio.run(scenario())


def test_the_runner_times_operations_with_the_injected_clock() -> None:
    clock = FakeClock(50.0)
    runner = ScriptRunner(None, clock=clock)
    vip = Resource("IPaddr", ("10.70.0.5/24",), AgentKind.BUILTIN, None, "haresources:1")
    result = asyncio.run(runner.run(vip, "status", 1.0))
    assert result.duration_ms == 0  # no built-ins: answered at once, on the fake clock


def test_a_serial_path_held_down_by_a_live_pids_lock_says_so_in_status_and_once_in_the_log(
    tmp_path: Path,
) -> None:
    locks = tmp_path / "lock"
    locks.mkdir()
    master, slave = os.openpty()
    device = os.ttyname(slave)
    lock_file = locks / lock_name(device)
    holder = sleeper()  # alive, without the port open
    lock_file.write_bytes(b"%10d\n" % holder.pid)
    log_file = tmp_path / "hbd.log"

    async def scenario() -> None:
        h = Harness(tmp_path, FakeRunner(), extra=f"logfile {log_file}\nserial {device}\n")
        h.daemon.options = dataclasses.replace(h.options, lock_dir=str(locks))
        await h.start()
        try:
            await h.run(12.0, step=0.25)  # a retry every 0.5 .. 5 s
            [serial] = [v for v in h.daemon.status(h.clock())["links"].values() if v["error"]]
            assert not serial["open"]
            assert f"locked by pid {holder.pid} (sleep) in {lock_file}" in serial["error"]
            assert "stale-looking" in serial["error"]
        finally:
            h.close()

    try:
        with quiet_logs():
            asyncio.run(scenario())
    finally:
        holder.kill()
        holder.wait()
        os.close(master)
        os.close(slave)
    said = [line for line in log_file.read_text().splitlines() if "cannot be opened" in line]
    assert len(said) == 1, said  # the retries do not repeat it
    assert f"{device} is locked by pid {holder.pid} (sleep) in {lock_file}" in said[0]
    assert f"stays down until pid {holder.pid} ends or {lock_file} is removed" in said[0]


def test_the_loop_sleeps_until_the_nodes_next_deadline_with_no_periodic_wake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one timer is armed at Node.get_timer() (the earliest deadline of anything), and
    nothing else wakes the loop: no polling interval, no once-a-second status refresh."""

    async def scenario() -> None:
        h = Harness(tmp_path, FakeRunner())
        h.daemon.clock = time.monotonic  # the real loop's timers, on the real clock
        await h.start()
        try:
            d, node = h.daemon, h.daemon.node
            assert node is not None
            ticks: list[float] = []
            far = time.monotonic() + 3600.0
            deadline = [far]
            monkeypatch.setattr(node, "get_timer", lambda: deadline[0])

            def handle_timer(now: float) -> None:  # as a node does: its deadline moves on
                ticks.append(now)
                deadline[0] = far

            monkeypatch.setattr(node, "handle_timer", handle_timer)
            for _pid, driver in d._drivers():
                monkeypatch.setattr(driver, "get_timer", lambda: None)
            d._arm(time.monotonic())
            turns = d.loop_stats["timer"]
            await asyncio.sleep(1.6)  # past any "refresh every second"
            assert d.loop_stats["timer"] == turns, "the loop woke with nothing due"
            assert ticks == []
            # a deadline 0.3 s away: exactly one turn, at it, then asleep again
            deadline[0] = time.monotonic() + 0.3
            d._arm(time.monotonic())
            soon = deadline[0]
            while not ticks:
                await asyncio.sleep(0.01)
                assert time.monotonic() < soon + 2.0, "the due deadline never woke the loop"
            await asyncio.sleep(0.5)
            assert d.loop_stats["timer"] == turns + 1
            assert len(ticks) == 1 and soon <= ticks[0] < soon + 0.25
        finally:
            h.close()

    with quiet_logs():
        asyncio.run(scenario())


def test_systemds_watchdog_rides_the_turns_heartbeats_wake_and_wakes_none_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WATCHDOG=1 goes in the first turn at least half the interval after the last (with
    WatchdogSec=1.5s: the interval is 0.75 s, a keepalive 0.2 s): never later than the
    interval, and no turn is woken for it alone while heartbeats go out."""

    async def scenario() -> None:
        h = Harness(tmp_path, FakeRunner())
        await h.start()
        try:
            d, node = h.daemon, h.daemon.node
            assert node is not None
            d._wd_interval = interval = 0.75
            pets: list[float] = []
            monkeypatch.setattr(d.notifier, "watchdog", lambda: pets.append(h.clock.now))
            d._tick(h.clock())  # the first pet, at once after the start
            assert pets == [h.clock.now]
            alone = 0  # turns nothing but the watchdog was due in
            end = h.clock.now + 10.0
            while h.clock.now < end:
                due = d._next_deadline(h.clock.now)
                assert due is not None
                h.clock.advance(max(0.0, due - h.clock.now))
                now = h.clock()
                others = (node.get_timer(), *(v.get_timer() for _, v in d._drivers()))
                due = d._due(now)  # what the loop's counters would say woke this turn
                assert ("systemd" in due) == (d._wd_at + interval <= now)
                if not any(t is not None and t <= now for t in others):
                    assert due == ["systemd"]
                    alone += 1
                d._tick(now)
                for _ in range(3):
                    await asyncio.sleep(0)
            gaps = [b - a for a, b in itertools.pairwise(pets)]
            assert len(pets) >= 10
            assert all(interval / 2 <= g <= interval + 1e-9 for g in gaps), gaps
            assert alone == 0, f"{alone} turns woken for the watchdog alone"
        finally:
            h.close()

    with quiet_logs():
        asyncio.run(scenario())


def test_descriptors_readable_together_are_served_in_one_turn() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pairs = [socket.socketpair() for _ in range(3)]
        by_fd = {a.fileno(): a for a, _b in pairs}
        turns: list[list[int]] = []

        def serve(fds: list[int]) -> None:
            turns.append(sorted(fds))
            for fd in fds:
                by_fd[fd].recv(64)

        descriptors = daemon_module.DescriptorSet(loop, serve)
        try:
            for fd in by_fd:
                descriptors.add(fd)
            first, second, third = (a.fileno() for a, _b in pairs)
            pairs[0][1].send(b"a heartbeat on one path")
            pairs[2][1].send(b"its copy on another")
            await asyncio.sleep(0.1)
            assert turns == [sorted([first, third])]  # one turn for both
            descriptors.discard(third)
            pairs[2][1].send(b"no longer watched")
            pairs[1][1].send(b"still watched")
            await asyncio.sleep(0.1)
            assert turns[1:] == [[second]]
            pairs[1][0].close()  # closed behind its back: discarding it is no error
            descriptors.discard(second)
        finally:
            descriptors.close()
            for a, b in pairs:
                a.close()
                b.close()

    asyncio.run(scenario())


def test_a_copy_that_arrives_while_its_turn_runs_is_read_in_that_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rest of a heartbeat (the serial copy, a little behind the datagrams) that
    becomes readable while the turn reading the first copies runs is read before the turn
    ends; a flood is read a few rounds at a time, the loop's other work between them."""

    async def scenario() -> None:
        h = Harness(tmp_path, FakeRunner())
        h.daemon.clock = time.monotonic
        await h.start()
        pairs = [socket.socketpair() for _ in range(2)]
        try:
            d = h.daemon
            assert d.descriptors is not None
            first, late = (a for a, _b in pairs)
            names = {first.fileno(): "copy on bcast", late.fileno(): "copy on serial"}
            read: list[str] = []
            real_read = d._read

            def read_one(pid: str, now: float) -> None:
                if pid not in names.values():
                    return real_read(pid, now)
                sock = first if pid == "copy on bcast" else late
                while True:
                    try:
                        sock.recv(64)
                    except BlockingIOError:
                        break
                read.append(pid)
                if flood[0]:
                    flood[0] -= 1
                    pairs[0][1].send(b"and another")
                elif pid == "copy on bcast" and not flood[1]:
                    flood[1] = 1
                    pairs[1][1].send(b"the serial copy, arriving meanwhile")

            flood = [0, 0]  # frames still to send behind the one read; serial copy sent
            monkeypatch.setattr(d, "_read", read_one)
            for sock in (first, late):
                sock.setblocking(False)
                d.descriptors.add(sock.fileno())
                d._by_fd[sock.fileno()] = names[sock.fileno()]
            await asyncio.sleep(0.2)
            io, folded = d.loop_stats["io"], d.loop_stats["folded"]
            pairs[0][1].send(b"a heartbeat")
            await asyncio.sleep(0.2)
            assert read == ["copy on bcast", "copy on serial"]
            assert d.loop_stats["io"] == io + 1, "the late copy took a turn of its own"
            assert d.loop_stats["folded"] == folded + 1
            # a frame arriving behind every frame read: a few rounds a turn, not forever
            read.clear()
            flood[0] = 2 * daemon_module.READ_ROUNDS
            io = d.loop_stats["io"]
            pairs[0][1].send(b"a flood")
            await asyncio.sleep(0.3)
            assert len(read) == 2 * daemon_module.READ_ROUNDS + 1
            assert d.loop_stats["io"] - io >= 3
        finally:
            for a, b in pairs:
                if d.descriptors is not None:
                    d.descriptors.discard(a.fileno())
                d._by_fd.pop(a.fileno(), None)
                a.close()
                b.close()
            h.close()

    with quiet_logs():
        asyncio.run(scenario())


def test_the_daemon_loads_no_module_it_needs_only_for_tools() -> None:
    import subprocess
    import sys

    heavy = ("statistics", "decimal", "fractions", "scapy", "pyroute2", "prometheus_client")
    code = f"import sys, hbd.shell.daemon; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # each costs resident (and, with mlockall, locked) memory


def test_an_address_operation_loads_only_the_netlink_module_of_pyroute2_it_uses() -> None:
    """pyroute2/__init__.py imports every pyroute2 API (NDB with sqlite3, IPDB, conntrack,
    nftables): 8 MiB, held for the daemon's life. The address manager loads
    `pyroute2.iproute.linux` alone, and a later `import pyroute2` still gets all of it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ipaddress import ip_address\n"
        "from hbd.effects.addresses import PyrouteAddressManager, pyroute2_iproute\n"
        "assert PyrouteAddressManager().address_interfaces(ip_address('127.0.0.1')) == ('lo',)\n"
        "heavy = ('pyroute2', 'pyroute2.ndb', 'pyroute2.ipdb', 'pyroute2.conntrack', 'sqlite3')\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "import pyroute2\n"
        "print(pyroute2.IPRoute is pyroute2_iproute().IPRoute, 'pyroute2.ndb' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True True"]
