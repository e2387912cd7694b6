"""The agent runner with real scripts (tests/agents/), driven by the resource-group core."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hbd.core.model import AgentKind, Resource, ResourceGroup
from hbd.core.resources import GroupFailed, GroupStarted, GroupStopped, ResourceManager, RunAgent
from hbd.effects.agents import OpResult, ScriptRunner, agent_command, carry_out, ocf_environment

AGENTS = Path(__file__).parent / "agents"


def agent(script: str, *args: str, kind: AgentKind = AgentKind.RESOURCE_D) -> Resource:
    return Resource(script, args, kind, str(AGENTS / script), "haresources:3")


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the recorder agents keep their log and state."""
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("HBD_TEST_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("HBD_TEST_STATE", str(tmp_path / "state"))
    return tmp_path


def calls(world: Path) -> list[str]:
    log = world / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


async def run_until_idle(rm: ResourceManager, runner: ScriptRunner) -> list[object]:
    events: list[object] = []
    while True:
        a = rm.next_action()
        if a is None:
            t = rm.get_timer()
            if t is None:
                break
            await asyncio.sleep(max(0.0, t - time.monotonic()))
            rm.handle_timer(time.monotonic())
            continue
        assert isinstance(a, RunAgent)
        await carry_out(runner, rm, a)
    while (e := rm.next_event()) is not None:
        events.append(e)
    return events


def test_group_of_real_scripts_starts_left_to_right_and_stops_right_to_left(world: Path) -> None:
    group = ResourceGroup(
        "alpha",
        (agent("recorder", "ip"), agent("recorder", "disk", "/dev/sdb1"), agent("recorder", "web")),
        "haresources:3",
    )

    async def scenario() -> tuple[list[object], list[object]]:
        rm = ResourceManager([group], node_name="alpha")
        runner = ScriptRunner()
        rm.probe_all(time.monotonic())
        await run_until_idle(rm, runner)
        rm.acquire(group.name, time.monotonic())
        up = await run_until_idle(rm, runner)
        rm.release(group.name, time.monotonic())
        down = await run_until_idle(rm, runner)
        return up, down

    up, down = asyncio.run(scenario())
    assert GroupStarted(group.name) in up
    assert GroupStopped(group.name) in down
    assert calls(world) == [
        "ip status",
        "disk status",
        "web status",
        "ip status",
        "ip start",
        "disk status",
        "disk start",
        "web status",
        "web start",
        "web stop",
        "disk stop",
        "ip stop",
    ]
    assert list((world / "state").iterdir()) == []


def test_a_failing_start_unwinds_what_ran_with_real_scripts(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HBD_TEST_FAIL", "disk")
    group = ResourceGroup(
        "alpha",
        (agent("recorder", "ip"), agent("recorder", "disk"), agent("recorder", "web")),
        "haresources:3",
    )

    async def scenario() -> list[object]:
        rm = ResourceManager([group], node_name="alpha")
        rm.probe_all(time.monotonic())
        rm.acquire(group.name, time.monotonic())
        return await run_until_idle(rm, ScriptRunner())

    events = asyncio.run(scenario())
    assert [c for c in calls(world) if not c.endswith("status")] == [
        "ip start",
        "disk start",
        "disk stop",
        "ip stop",
    ]  # web was probed stopped and never started: it is left alone
    assert any(isinstance(e, GroupFailed) and "disk" in e.reason for e in events)
    assert events[-1] == GroupStopped(group.name)


def test_output_is_logged_with_the_resource_named_and_rc_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hbd.effects.agents")
    res = agent("failing", "3")
    result = asyncio.run(ScriptRunner().run(res, "start", 5.0))
    assert result.rc == 3 and not result.timed_out
    assert "failing: about to start" in result.output
    assert "failing: start went wrong" in result.output  # stderr is captured too
    msgs = [r.getMessage() for r in caplog.records]
    assert "failing::3 start: failing: start went wrong" in msgs
    assert any(m.startswith("failing::3 start: rc=3 (") for m in msgs)
    assert any(r.levelno == logging.ERROR for r in caplog.records)


@pytest.mark.slow
def test_a_slow_script_within_its_timeout_completes_and_its_duration_is_measured() -> None:
    result = asyncio.run(ScriptRunner().run(agent("slow", "1.2"), "start", 5.0))
    assert result.rc == 0
    assert "slow start done after 1.2 s" in result.output
    assert 1150 <= result.duration_ms < 3000


def test_a_hanging_script_is_killed_with_its_whole_process_group_at_the_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pidfile = tmp_path / "pids"
    res = agent("hanging", str(pidfile))

    async def scenario() -> tuple[OpResult, float]:
        loop_ticks = 0

        async def ticker() -> None:  # the event loop keeps running meanwhile
            nonlocal loop_ticks
            while True:
                await asyncio.sleep(0.05)
                loop_ticks += 1

        t = asyncio.create_task(ticker())
        started = time.monotonic()
        result = await ScriptRunner().run(res, "stop", 0.8)
        elapsed = time.monotonic() - started
        t.cancel()
        assert loop_ticks >= 10
        return result, elapsed

    result, elapsed = asyncio.run(scenario())
    assert result.timed_out is True
    assert 0.8 <= elapsed < 3.0
    assert "hanging: stop under way" in result.output
    shell, child = (int(p) for p in pidfile.read_text().split())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and (_alive(shell) or _alive(child)):
        time.sleep(0.02)
    assert not _alive(shell) and not _alive(child)
    assert any("timed out after 0.8 s, killed" in r.getMessage() for r in caplog.records)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_timed_out_stop_is_retried_by_the_core_with_real_timeouts(tmp_path: Path) -> None:
    res = agent("hanging", str(tmp_path / "pids"))
    group = ResourceGroup("alpha", (res,), "haresources:3")

    async def scenario() -> list[object]:
        from hbd.core.resources import Timeouts

        rm = ResourceManager(
            [group],
            node_name="alpha",
            timeouts=Timeouts(stop=0.3, status=0.3),
            stop_retry_max=1,
            stop_retry_delay=0.1,
        )
        rm.release(group.name, time.monotonic())
        return await run_until_idle(rm, ScriptRunner())

    events = asyncio.run(scenario())
    failed = [e for e in events if isinstance(e, GroupFailed)]
    assert len(failed) == 1 and failed[0].may_be_running
    assert not any(isinstance(e, GroupStopped) for e in events)


def ocf(instance: str, *settings: tuple[str, str], script: str = "ocf_dummy") -> Resource:
    """OCF::ocf_dummy::INSTANCE with the given instance-file assignments."""
    return Resource(
        "OCF", (script, instance), AgentKind.OCF, str(AGENTS / script), "haresources:3", settings
    )


def test_ocf_agent_gets_its_environment_and_exit_codes_decide(tmp_path: Path) -> None:
    state = tmp_path / "dummy"
    res = ocf("db1", ("OCF_RESKEY_state", str(state)), ("OCF_RESKEY_colour", "blue"))
    runner = ScriptRunner(ocf_root="/usr/lib/ocf")

    async def op(name: str) -> int | None:
        return (await runner.run(res, name, 5.0)).rc  # type: ignore[arg-type]

    assert asyncio.run(op("status")) == 7  # not running
    assert asyncio.run(op("start")) == 0
    assert asyncio.run(op("status")) == 0
    assert asyncio.run(op("stop")) == 0
    assert (tmp_path / "dummy.log").read_text().split() == ["monitor", "start", "monitor", "stop"]
    env = dict(line.split("=", 1) for line in (tmp_path / "dummy.env").read_text().splitlines())
    assert env["OCF_RESKEY_colour"] == "blue"
    assert env["OCF_RESOURCE_INSTANCE"] == "db1"
    assert env["OCF_RESOURCE_TYPE"] == "ocf_dummy"
    assert env["OCF_ROOT"] == "/usr/lib/ocf"
    assert env["OCF_RA_VERSION_MAJOR"] == "1"


def test_ocf_monitor_error_keeps_the_group_from_starting(tmp_path: Path) -> None:
    res = ocf("d", ("OCF_RESKEY_state", str(tmp_path / "d")), ("OCF_RESKEY_broken", "yes"))
    group = ResourceGroup("alpha", (res,), "haresources:3")

    async def scenario() -> list[object]:
        rm = ResourceManager([group], node_name="alpha")
        rm.acquire(group.name, time.monotonic())
        return await run_until_idle(rm, ScriptRunner())

    events = asyncio.run(scenario())
    assert "start" not in (tmp_path / "d.log").read_text().split()
    assert any(isinstance(e, GroupFailed) for e in events)
    assert events[-1] == GroupStopped(group.name)


def test_resource_d_and_init_d_commands_follow_heartbeat() -> None:
    fs = Resource(
        "Filesystem",
        ("/dev/sdb1", "/srv", "ext4"),
        AgentKind.RESOURCE_D,
        "/etc/ha.d/resource.d/Filesystem",
        "haresources:2",
    )
    argv, env = agent_command(fs, "start")
    assert argv == ["/etc/ha.d/resource.d/Filesystem", "/dev/sdb1", "/srv", "ext4", "start"]
    assert env["HA_DIR"] == "/etc/ha.d"
    httpd = Resource("apache2", (), AgentKind.INIT_D, "/etc/init.d/apache2", "haresources:2")
    assert agent_command(httpd, "status")[0] == ["/etc/init.d/apache2", "status"]
    argv, env = agent_command(ocf("web", ("OCF_RESKEY_a", "1"), ("plain", "x")), "status")
    assert argv == [str(AGENTS / "ocf_dummy"), "monitor"]
    assert (env["OCF_RESOURCE_INSTANCE"], env["OCF_RESKEY_a"], env["plain"]) == ("web", "1", "x")


def test_a_resource_that_is_not_ocf_type_instance_is_refused_not_run() -> None:
    half = Resource("OCF", ("ocf_dummy",), AgentKind.OCF, str(AGENTS / "ocf_dummy"), "h:3")
    with pytest.raises(ValueError, match="not an OCF::type::instance resource"):
        ocf_environment(half)
    result = asyncio.run(ScriptRunner().run(half, "start", 5.0))
    assert result.rc == 6 and "OCF::ocf_dummy: not an OCF::type::instance" in result.output


def test_a_missing_script_is_reported_not_raised() -> None:
    missing = Resource("nope", (), AgentKind.RESOURCE_D, "/nonexistent/nope", "haresources:9")
    result = asyncio.run(ScriptRunner().run(missing, "start", 5.0))
    assert result.rc == 5 and "cannot run /nonexistent/nope" in result.output
    assert os.path.exists(AGENTS / "recorder")


CHILD_FACTS = r"""
import asyncio, json, os, sys
from hbd.core.model import AgentKind, Resource
from hbd.effects.agents import ScriptRunner
from hbd.effects.realtime import go_realtime

try:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("-1000")  # what the unit's OOMScoreAdjust= gives hbd
    print("hbd-oom -1000")
except PermissionError:  # no CAP_SYS_RESOURCE (a container): hbd keeps 0 too
    print("hbd-oom 0")
os.umask(0o027)  # the unit's UMask=
os.environ.update(NOTIFY_SOCKET="/run/systemd/notify", WATCHDOG_USEC="5000000")
assert go_realtime(None) == [], "no realtime here"
script = Resource("facts", (), AgentKind.RESOURCE_D, sys.argv[1], "haresources:1")
result = asyncio.run(ScriptRunner().run(script, "start", 10.0))
print(result.output)
"""


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="sets its own OOM score and realtime priority")
def test_scripts_do_not_inherit_hbds_oom_protection_realtime_umask_or_notify_socket(
    tmp_path: Path,
) -> None:
    facts = tmp_path / "facts"
    facts.write_text(
        "#!/bin/sh\n"
        'echo "oom $(cat /proc/self/oom_score_adj)"\n'
        'echo "umask $(umask)"\n'
        "echo \"policy $(sed -n 's/^policy *: *//p' /proc/self/sched)\"\n"
        "echo \"locked $(sed -n 's/^VmLck:[[:space:]]*//p' /proc/self/status)\"\n"
        'echo "notify ${NOTIFY_SOCKET:-unset} ${WATCHDOG_USEC:-unset}"\n'
    )
    facts.chmod(0o755)
    run = subprocess.run(
        [sys.executable, "-c", CHILD_FACTS, str(facts)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = dict(line.split(" ", 1) for line in run.stdout.split("\n") if line)
    assert got.pop("hbd-oom") in ("-1000", "0")
    assert got == {
        "oom": "0", "umask": "0022", "policy": "0", "locked": "0 kB", "notify": "unset unset"
    }  # fmt: skip


INHERITED_REALTIME = r"""
import asyncio, sys
from hbd.config.model import Respawn
from hbd.core.model import AgentKind, Resource
from hbd.effects.agents import ScriptRunner
from hbd.effects.respawn import RespawnedProgram

# `realtime off`, but hbd itself was started at SCHED_FIFO (chrt, a realtime parent)
script = Resource("facts", (), AgentKind.RESOURCE_D, sys.argv[1], "haresources:1")
print(asyncio.run(ScriptRunner().run(script, "start", 10.0)).output, end="")
asyncio.run(RespawnedProgram(Respawn("root", (sys.argv[1],), "ha.cf:1")).run())
"""


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="runs hbd's code at a realtime priority")
def test_an_hbd_started_at_realtime_priority_still_runs_its_children_at_normal_priority(
    tmp_path: Path,
) -> None:
    facts = tmp_path / "facts"
    facts.write_text(
        "#!/bin/sh\n"
        "echo \"policy $(sed -n 's/^policy *: *//p' /proc/self/sched)"
        " locked $(sed -n 's/^VmLck:[[:space:]]*//p' /proc/self/status)\"\n"
        "exit 100\n"  # a respawned program that asks not to be restarted
    )
    facts.chmod(0o755)
    run = subprocess.run(
        ["chrt", "-f", "10", sys.executable, "-c", INHERITED_REALTIME, str(facts)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["policy 0 locked 0 kB"] * 2, run.stdout  # script, respawn


def test_a_child_of_an_oom_protected_hbd_runs_under_choom_with_score_0(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hbd.effects import children

    if shutil.which("choom") is None:
        pytest.skip("needs util-linux's choom")
    monkeypatch.setattr(children, "own_oom_score_adj", lambda: -1000)
    argv = children.child_argv(["/bin/sh", "-c", "cat /proc/self/oom_score_adj"])
    assert Path(argv[0]).name == "choom"
    assert argv[1:] == ["-n", "0", "--", "/bin/sh", "-c", "cat /proc/self/oom_score_adj"]
    assert subprocess.run(argv, capture_output=True, text=True, check=True).stdout == "0\n"
    monkeypatch.setattr(children, "own_oom_score_adj", lambda: 0)
    assert children.child_argv(["/bin/true"]) == ["/bin/true"]  # nothing to undo


ARENAS = r"""
import ctypes, sys, tempfile, threading
from hbd.effects.realtime import go_realtime

libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "realtime":
    go_realtime(None)


def work():  # what a built-in agent's thread does: allocate, free
    kept = [bytearray(4096) for _ in range(200)]
    del kept


t = threading.Thread(target=work)
t.start()
t.join()
with tempfile.NamedTemporaryFile("r") as out:
    fp = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(out.read().count("<heap nr="))
"""


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="sets its own realtime priority")
def test_an_agents_thread_allocates_from_the_daemons_one_malloc_arena() -> None:
    """A thread's own glibc arena kept what it freed resident -- and, with mlockall,
    locked -- for the daemon's life (~3 MiB a node, bench/idle.py)."""
    counts = {}
    for mode in ("plain", "realtime"):
        run = subprocess.run(
            [sys.executable, "-c", ARENAS, mode], capture_output=True, text=True, timeout=30
        )
        assert run.returncode == 0, run.stderr
        counts[mode] = int(run.stdout)
    assert counts == {"plain": 2, "realtime": 1}
