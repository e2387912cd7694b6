"""`respawn USER PROGRAM [ARGS]` (ha.cf): helper programs hbd starts and keeps running.

As Heartbeat: each program runs as USER and is started again whenever it exits, except with
exit status 100, which means "do not restart me". A program that exits more than
`TOO_FAST_COUNT` times within `TOO_FAST_WINDOW` seconds is "respawning too fast": hbd waits
`TOO_FAST_WINDOW` seconds before the next start instead of looping. ipfail is never started
(the config layer warns: hbd's policy does its job). On a clean stop every program gets
SIGTERM, then SIGKILL after `STOP_GRACE` seconds. A program runs with USER's groups, HOME,
USER and LOGNAME, and without what it must not inherit from hbd (hbd.effects.children).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import time
from collections import deque

from hbd.config.model import Respawn
from hbd.effects.children import CHILD_UMASK, child_argv, child_environment

log = logging.getLogger("hbd")

NO_RESTART = 100
RESTART_DELAY = 1.0
TOO_FAST_COUNT = 5
TOO_FAST_WINDOW = 60.0
STOP_GRACE = 5.0


class RespawnedProgram:
    """One respawn line, kept running by `run()` until `stop()`."""

    def __init__(self, spec: Respawn, *, restart_delay: float = RESTART_DELAY) -> None:
        self.spec = spec
        self.restart_delay = restart_delay
        self.starts = 0
        self.exits: deque[float] = deque(maxlen=TOO_FAST_COUNT + 1)
        self.last_rc: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._stopped = asyncio.Event()

    @property
    def name(self) -> str:
        return self.spec.argv[0]

    async def run(self) -> None:
        user = self.spec.user
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            log.error(
                "%s: respawn user '%s' does not exist; not starting %s",
                self.spec.source,
                user,
                self.name,
            )
            return
        while not self._stopping:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *child_argv(self.spec.argv),
                    user=pw.pw_uid,
                    group=pw.pw_gid,
                    extra_groups=os.getgrouplist(pw.pw_name, pw.pw_gid),  # as initgroups(3)
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                    umask=CHILD_UMASK,
                    env=user_environment(pw),
                )
            except OSError as e:
                log.error("%s: cannot start %s: %s", self.spec.source, self.name, e.strerror)
                return
            self.starts += 1
            log.info(
                'Starting "%s" as uid %d  gid %d (pid %d)',
                " ".join(self.spec.argv),
                pw.pw_uid,
                pw.pw_gid,
                self._proc.pid,
            )
            rc = await self._proc.wait()
            self.last_rc = rc
            if self._stopping:
                return
            log.warning('Client "%s" exited with return code %d.', self.name, rc)
            if rc == NO_RESTART:
                log.info('Client "%s" asked not to be respawned (exit 100).', self.name)
                return
            now = time.monotonic()
            self.exits.append(now)
            delay = self.restart_delay
            if len(self.exits) > TOO_FAST_COUNT and now - self.exits[0] < TOO_FAST_WINDOW:
                log.error(
                    'Client "%s" respawning too fast; waiting %.0f s', self.name, TOO_FAST_WINDOW
                )
                delay = TOO_FAST_WINDOW
                self.exits.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), delay)  # a stop cuts it short
            if self._stopping:
                return
            log.info('Respawning client "%s":', self.name)

    async def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def user_environment(pw: pwd.struct_passwd) -> dict[str, str]:
    """hbd's environment for a program run as `pw`: its own HOME, USER and LOGNAME, and
    none of the variables systemd set for hbd (hbd.effects.children)."""
    env = child_environment(os.environ)
    env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
    return env


def programs(specs: tuple[Respawn, ...]) -> list[RespawnedProgram]:
    """The respawn lines hbd runs: all but ipfail (its job is the policy's)."""
    return [RespawnedProgram(s) for s in specs if not s.argv[0].endswith("/ipfail")]
