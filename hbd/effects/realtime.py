"""`realtime on` and `rtprio N` (ha.cf): run hbd at a realtime priority, locked in memory.

As Heartbeat: SCHED_FIFO at `rtprio` (default halfway between the minimum and maximum
SCHED_FIFO priorities) and mlockall, so heartbeats keep going when the machine is swapping
or busy. The children hbd starts do not inherit it (SCHED_RESET_ON_FORK, and
hbd.effects.children for a policy hbd did not set), as Heartbeat's make_normaltime() saw to;
nor the memory lock: mlockall(2)'s locks and MCL_FUTURE are not inherited by fork(2) and are
cleared by execve(2) (tests/test_scripts.py reads a child's VmLck). Failures are warnings,
never fatal (a container may refuse both).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os

log = logging.getLogger("hbd")

MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4  # Linux >= 4.4: lock pages as they are touched, not every mapped page
M_ARENA_MAX = -8  # glibc mallopt(3): how many malloc arenas the threads may use


def default_rtprio() -> int:
    low = os.sched_get_priority_min(os.SCHED_FIFO)
    high = os.sched_get_priority_max(os.SCHED_FIFO)
    return (low + high) // 2


def go_realtime(rtprio: int | None) -> list[str]:
    """Raise this process to SCHED_FIFO and lock its memory; returns what could not be done."""
    problems: list[str] = []
    prio = rtprio if rtprio is not None else default_rtprio()
    try:
        # children (resource scripts, the services they start) start at normal priority
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(prio))
    except OSError as e:
        problems.append(f"cannot run at realtime priority {prio}: {e.strerror}")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    # The threads built-in agents run in malloc from the main arena: each one's own arena
    # kept what it had freed (~3 MiB) resident, and locked, for the daemon's life.
    mallopt = getattr(libc, "mallopt", None)  # glibc's; another libc keeps its own way
    if mallopt is not None:
        mallopt(M_ARENA_MAX, 1)
    # Every page hbd touches stays in memory (never swapped out), but mapped pages it never
    # touches -- thread stacks of 8 MiB, arenas, libraries' unused parts -- are not made
    # resident just to be locked: without MCL_ONFAULT a node locked 115-206 MiB for about
    # 60 MiB it used (bench/idle.py). A kernel without it (before 4.4) locks everything.
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0:
        onfault_error = ctypes.get_errno()
        if onfault_error != errno.EINVAL or libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
            why = os.strerror(ctypes.get_errno())
            problems.append(f"cannot lock itself into memory: {why}")
    for problem in problems:
        log.warning("realtime: %s", problem)
    return problems
