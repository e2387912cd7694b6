"""respawn: a helper program is started as its user and started again when it exits,
unless it exits 100; a program dying in a loop is slowed down, not spun."""

from __future__ import annotations

import asyncio
import os
import pwd
import tempfile
from pathlib import Path

import pytest

from hbd.config.model import Respawn
from hbd.effects.respawn import RespawnedProgram, programs


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "client.sh"
    path.write_text(f"#!/bin/sh\necho x >> {tmp_path}/starts\n{body}\n")
    path.chmod(0o755)
    return str(path)


def starts(tmp_path: Path) -> int:
    f = tmp_path / "starts"
    return len(f.read_text().splitlines()) if f.exists() else 0


async def run_for(program: RespawnedProgram, seconds: float) -> None:
    task = asyncio.ensure_future(program.run())
    await asyncio.sleep(seconds)
    await program.stop()
    await asyncio.wait_for(task, 10)


def test_a_program_that_exits_is_started_again(tmp_path: Path) -> None:
    spec = Respawn("root", (script(tmp_path, "exit 3"),), "ha.cf:1")
    program = RespawnedProgram(spec, restart_delay=0.05)
    asyncio.run(run_for(program, 1.0))
    assert starts(tmp_path) >= 3
    assert program.last_rc == 3


def test_exit_100_means_do_not_respawn(tmp_path: Path) -> None:
    spec = Respawn("root", (script(tmp_path, "exit 100"),), "ha.cf:1")
    program = RespawnedProgram(spec, restart_delay=0.05)
    asyncio.run(run_for(program, 0.8))
    assert starts(tmp_path) == 1


def test_a_running_program_is_stopped_with_hbd(tmp_path: Path) -> None:
    spec = Respawn("root", (script(tmp_path, "exec sleep 30"),), "ha.cf:1")
    program = RespawnedProgram(spec, restart_delay=0.05)
    asyncio.run(run_for(program, 0.5))
    assert starts(tmp_path) == 1
    assert program.last_rc is not None  # it was terminated, and waited for


def test_a_program_respawning_too_fast_is_held_back(tmp_path: Path) -> None:
    spec = Respawn("root", (script(tmp_path, "exit 1"),), "ha.cf:1")
    program = RespawnedProgram(spec, restart_delay=0.01)
    asyncio.run(run_for(program, 1.5))
    assert starts(tmp_path) == 6  # five quick restarts, then a long pause


def test_an_unknown_user_is_reported_and_nothing_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = Respawn("no-such-user-hbd", (script(tmp_path, "exit 0"),), "ha.cf:7")
    asyncio.run(run_for(RespawnedProgram(spec), 0.2))
    assert starts(tmp_path) == 0
    assert "ha.cf:7: respawn user 'no-such-user-hbd' does not exist" in caplog.text


def test_ipfail_is_left_to_the_policy() -> None:
    specs = (
        Respawn("hacluster", ("/usr/lib/heartbeat/ipfail",), "ha.cf:1"),
        Respawn("root", ("/usr/bin/true",), "ha.cf:2"),
    )
    assert [p.name for p in programs(specs)] == ["/usr/bin/true"]


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="switches to another user")
def test_a_program_runs_as_its_user_with_that_users_groups_and_home() -> None:
    with tempfile.TemporaryDirectory(prefix="hbd-respawn-", dir="/tmp") as where:
        os.chmod(where, 0o777)  # pytest's tmp_path is root's alone
        run_as_nobody(Path(where))


def run_as_nobody(tmp_path: Path) -> None:
    pw = pwd.getpwnam("nobody")
    out = tmp_path / "who"
    body = (
        f'echo "$(id -u) $(id -g) $(id -G) $HOME $USER $LOGNAME $(umask)'
        f' ${{NOTIFY_SOCKET:-none}}" > {out}; exit 100'
    )
    os.environ["NOTIFY_SOCKET"] = "/run/systemd/notify"  # as systemd gives hbd
    try:
        program = RespawnedProgram(Respawn("nobody", (script(tmp_path, body),), "ha.cf:1"))
        asyncio.run(run_for(program, 0.8))
    finally:
        del os.environ["NOTIFY_SOCKET"]
    groups = " ".join(str(g) for g in os.getgrouplist("nobody", pw.pw_gid))
    assert out.read_text().split() == [
        str(pw.pw_uid), str(pw.pw_gid), *groups.split(),
        pw.pw_dir, "nobody", "nobody", "0022", "none",
    ]  # fmt: skip
