"""What a program hbd starts (a resource agent, a `respawn` client) must not inherit from it.

hbd runs with settings that are right for a heartbeat daemon and wrong for the services it
starts, and a child inherits all of them unless told otherwise:

- SCHED_FIFO (`realtime on`): hbd sets it with SCHED_RESET_ON_FORK (hbd.effects.realtime),
  so children start at SCHED_OTHER, nice 0, as Heartbeat's make_normaltime() did. A
  realtime policy hbd did not choose (`realtime off` under `chrt -f`, a realtime parent, a
  unit's CPUSchedulingPolicy=) gets the same flag before every start (`child_argv`);
- the memory lock (`mlockall(MCL_CURRENT|MCL_FUTURE)`): not inherited by fork(2) and
  cleared by execve(2) (mlockall(2)), so a child's memory is never locked;
- `OOMScoreAdjust=-1000` (the unit): a database started by a resource script would be the
  one process the OOM killer may never pick. `child_argv` runs the child under util-linux's
  `choom -n 0`, which resets it before the program starts (raising one's own score needs no
  privilege); without choom (util-linux, Essential on Debian) the child keeps hbd's score;
- `UMask=0027` (the unit, for hbd's own files): children get 0022, a service's default;
- the service manager's variables for hbd itself (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
  `LISTEN_FDS`, ...): a child daemon that speaks sd_notify would talk to hbd's unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from typing import IO, Any

CHILD_UMASK = 0o022
# set by systemd for hbd itself (sd_notify, watchdog, socket activation, the journal stream)
SERVICE_MANAGER_VARIABLES = frozenset(
    {
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "JOURNAL_STREAM",
    }
)


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the variables systemd set for hbd's own process."""
    return {k: v for k, v in env.items() if k not in SERVICE_MANAGER_VARIABLES}


def own_oom_score_adj() -> int:
    """This process's /proc/self/oom_score_adj (0 when it cannot be read)."""
    try:
        with open("/proc/self/oom_score_adj") as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


@functools.cache
def _choom() -> str | None:
    return shutil.which("choom", path=os.defpath + ":/usr/bin:/bin")


def reset_scheduling_on_fork() -> None:
    """Make every process this thread starts begin at SCHED_OTHER, nice 0, whatever
    policy this thread has (SCHED_RESET_ON_FORK: no privilege needed to set it)."""
    try:
        policy = os.sched_getscheduler(0)
        if policy & os.SCHED_RESET_ON_FORK:
            return
        os.sched_setscheduler(0, policy | os.SCHED_RESET_ON_FORK, os.sched_getparam(0))
    except OSError:  # not allowed here (a seccomp filter): the child keeps hbd's policy
        pass


def child_argv(argv: Sequence[str]) -> list[str]:
    """`argv`, run with an OOM score of 0 when hbd's own is below that (`choom -n 0 --`).
    Called right before each start: it also sees to the child's scheduling policy."""
    reset_scheduling_on_fork()
    choom = _choom()
    if choom is None or own_oom_score_adj() >= 0:
        return list(argv)
    return [choom, "-n", "0", "--", *argv]


async def run_child(
    argv: Sequence[str], env: Mapping[str, str], timeout: float, out: IO[Any]
) -> int | None:
    """Run `argv` as a child as above (its own session, umask 022, stdin /dev/null, output
    to `out`) and wait at most `timeout` seconds: its exit status (negative: the signal
    that ended it), or None when it was killed -- its whole process group -- at the
    timeout. Cancelled, it kills the group too: a child is never left behind. OSError
    when it cannot be started."""
    proc = await asyncio.create_subprocess_exec(
        *child_argv(argv),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        env=dict(env),
        start_new_session=True,
        umask=CHILD_UMASK,
    )
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return None
    except BaseException:  # cancelled: never leave a child behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
