"""Hooks: the `notify` script and Heartbeat's rc.d scripts, run for each notice, in order.

Each notice (`hbd.core.notices`) becomes at most two runs, queued in the order the notices
were made: the `notify SCRIPT` of ha.cf, with the change as arguments, and -- for a peer's
status and a path's -- the rc.d script Heartbeat would run for it (`rc.d/status`,
`rc.d/ifstat`, when present and executable), with the environment Heartbeat gives it. One
run at a time: the next starts when the previous exited or was killed at
`notify_timeout`. A run never blocks the daemon's loop (asyncio subprocesses) and never
delays a decision: notices are made after the node acted. docs/events.md has the
arguments and variables.

Heartbeat's own rc.d scripts call its resource manager (`rc.d/status` runs `mach_down`
for a dead node, which starts that node's groups with `ResourceManager takegroup`). Run
beside hbd, that would start groups behind its policy. So every rc.d run gets a PATH and
`HA_NOARCHBIN` that begin with a directory of stand-ins hbd writes at start
(`RUN_DIR/heartbeat-bin`): `mach_down` and `ResourceManager` say hbd moves groups itself
and do nothing, `hb_takeover` asks hbd for a takeover, `hb_standby` asks the peer to take
this node's groups (`hbctl release`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from hbd.core.notices import Notice
from hbd.effects.children import child_environment, run_child

log = logging.getLogger("hbd")

MAX_QUEUED = 1000  # runs waiting; more are not run (hbctl events still has every notice)
OUTPUT_LIMIT = 4096  # bytes of a failed run's output kept for the log
SHIM_DIR = "heartbeat-bin"


@dataclass(frozen=True, slots=True)
class Run:
    """One hook run: what to execute, with which extra environment, for which notice."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    seq: int
    what: str  # for the log: "notify" or "rc.d/status"


@dataclass(frozen=True, slots=True)
class HookSettings:
    node: str
    notify: str | None  # the `notify` script
    timeout: float
    rc_dir: str | None  # Heartbeat's rc.d (None: rc_hooks off)
    ha_dir: str  # the configuration directory (HA_DIR)
    shim_dir: str  # the stand-ins for Heartbeat's helpers
    logfile: str | None = None
    debugfile: str | None = None
    logfacility: str | None = None


def runs_for(notice: Notice, s: HookSettings) -> list[Run]:
    """The runs a notice asks for under `s`, notify first."""
    out: list[Run] = []
    if s.notify is not None:
        env = (
            ("HBD_SEQ", str(notice.seq)),
            ("HBD_TIME", f"{notice.at:.3f}"),
            ("HBD_NODE", notice.node),
            ("HBD_KIND", notice.kind),
            ("HBD_SUBJECT", notice.subject),
            ("HBD_STATE", notice.state),
            ("HBD_OLD", notice.old or ""),
            ("HBD_REASON", notice.reason),
        )
        argv = (s.notify, notice.kind, notice.subject, notice.state, notice.old or "")
        out.append(Run(argv, env, notice.seq, "notify"))
    if s.rc_dir is not None:
        found = heartbeat_message(notice)
        if found is not None:
            kind, fields, old = found
            script = os.path.join(s.rc_dir, kind)
            if os.access(script, os.X_OK) and os.path.isfile(script):
                ha = [(f"HA_{k}", v) for k, v in fields] + _heartbeat_environment(s)
                if old is not None:
                    ha.append(("HA_OSTATUS", old))
                out.append(Run((script, kind), tuple(ha), notice.seq, f"rc.d/{kind}"))
    return out


# Heartbeat's node status words: a ping node that answers is "ping", any node lost "dead"
_STATUS = {"up": "up", "active": "active", "dead": "dead", "left": "dead"}


def heartbeat_message(
    notice: Notice,
) -> tuple[str, list[tuple[str, str]], str | None] | None:
    """(rc.d name, message fields, old status) as Heartbeat's notify_world gives them."""
    if notice.kind == "node" and notice.state in _STATUS:
        old = _STATUS.get(notice.old or "")
        return (
            "status",
            [("t", "status"), ("src", notice.subject), ("st", _STATUS[notice.state])],
            old,
        )
    if notice.kind == "ping":
        st = "ping" if notice.state == "up" else "dead"
        old = None if notice.old is None else ("ping" if notice.old == "up" else "dead")
        fields = [("t", "status"), ("src", notice.subject), ("st", st)]
        if st == "dead":
            fields.append(("comment", "ping"))
        return "status", fields, old
    if notice.kind == "path":
        peer, _, path = notice.subject.partition(" ")
        ifname = path.split(":", 1)[1] if ":" in path else path
        return (
            "ifstat",
            [("t", "ifstat"), ("node", peer), ("ifname", ifname), ("st", notice.state)],
            None,
        )
    return None


def _heartbeat_environment(s: HookSettings) -> list[tuple[str, str]]:
    env = [
        ("HA_CURHOST", s.node),
        ("HA_DIR", s.ha_dir),
        ("HA_RCDIR", os.path.join(s.ha_dir, "rc.d")),
        ("HA_FUNCS", os.path.join(s.ha_dir, "shellfuncs")),
        ("HA_CF", os.path.join(s.ha_dir, "ha.cf")),
        ("HA_RESOURCEDIR", os.path.join(s.ha_dir, "resource.d")),
        ("HA_NOARCHBIN", s.shim_dir),
        ("HA_LOGD", "no"),
    ]
    for name, value in (
        ("HA_LOGFILE", s.logfile),
        ("HA_DEBUGLOG", s.debugfile),
        ("HA_LOGFACILITY", s.logfacility),
    ):
        if value:
            env.append((name, value))
    return env


class Hooks:
    """Queues runs and carries them out one at a time on the running asyncio loop."""

    def __init__(self, settings: HookSettings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.base_env = child_environment(os.environ if env is None else env)
        self._queue: deque[Run] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._skipped = 0
        self.runs = 0  # finished, for tests and status
        self.failures = 0

    def configure(self, settings: HookSettings) -> None:
        """A reload: runs queued before it keep the settings they were made with."""
        self.settings = settings

    @property
    def pending(self) -> int:
        return len(self._queue) + (self._worker is not None and not self._worker.done())

    def submit(self, notice: Notice) -> None:
        for run in runs_for(notice, self.settings):
            if len(self._queue) >= MAX_QUEUED:
                self._skipped += 1
                if self._skipped == 1:
                    log.error(
                        "hooks: %d runs are waiting; notice %d and later ones are not run "
                        "(hbctl events still has them): is a hook hanging until its timeout?",
                        MAX_QUEUED,
                        notice.seq,
                    )
                continue
            self._queue.append(run)
        if self._queue and (self._worker is None or self._worker.done()):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a test driving the daemon by hand): none run
                return
            self._worker = loop.create_task(self._work())

    async def _work(self) -> None:
        while self._queue:
            run = self._queue.popleft()
            await self._run(run)
            if not self._queue and self._skipped:
                log.error("hooks: %d runs were not made while the queue was full", self._skipped)
                self._skipped = 0

    async def _run(self, run: Run) -> None:
        shim = self.settings.shim_dir
        env = {**self.base_env, **dict(run.env)}
        if run.what.startswith("rc.d/"):
            env["PATH"] = f"{shim}:{env.get('PATH', os.defpath)}"
        timeout = self.settings.timeout
        with tempfile.TemporaryFile(prefix="hbd-hook-") as out:
            try:
                rc = await run_child(run.argv, env, timeout, out)
            except OSError as e:
                self.failures += 1
                log.error("%s for notice %d: cannot run %s: %s", run.what, run.seq, run.argv[0], e)
                return
            self.runs += 1
            if rc == 0:
                return
            self.failures += 1
            out.seek(0)
            text = out.read(OUTPUT_LIMIT).decode(errors="replace").strip()
            how = f"killed after {timeout:g} s" if rc is None else f"exit status {rc}"
            log.warning(
                "%s %s for notice %d: %s%s",
                run.what,
                " ".join(run.argv[1:]),
                run.seq,
                how,
                f": {text}" if text else "",
            )

    async def close(self) -> None:
        """Let the queued runs finish (each within its timeout), then stop."""
        if self._worker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker


SHIMS = {
    "mach_down": """#!/bin/sh
# hbd's stand-in for Heartbeat's mach_down: hbd takes a dead node's groups over by its own
# rules (docs/policy.md); a hook must not start them behind its back
echo "hbd: mach_down $*: nothing done: hbd takes over a dead node's groups itself" >&2
exit 0
""",
    "ResourceManager": """#!/bin/sh
# hbd's stand-in for Heartbeat's ResourceManager: groups move only by hbd's policy
echo "hbd: ResourceManager $*: refused: hbd runs the haresources groups itself;" \\
  "use hbctl standby / hbctl takeover" >&2
exit 1
""",
    "hb_takeover": """#!/bin/sh
# hbd's stand-in for Heartbeat's hb_takeover [all|foreign|local|failback]
exec @HBCTL@ --run-dir "@RUN_DIR@" takeover "${1:-all}"
""",
    "hb_standby": """#!/bin/sh
# hbd's stand-in for Heartbeat's hb_standby [all|foreign|local|failback]
exec @HBCTL@ --run-dir "@RUN_DIR@" release "${1:-all}"
""",
}


def hbctl_command() -> str:
    """How a shell script runs this installation's hbctl."""
    beside = os.path.join(os.path.dirname(sys.executable), "hbctl")
    found = shutil.which("hbctl") or (beside if os.access(beside, os.X_OK) else None)
    if found is not None:
        return shlex.quote(found)
    code = "import sys; from hbd.commands.cli import hbctl_main; sys.exit(hbctl_main())"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def write_shims(run_dir: str) -> str:
    """Write the stand-ins into RUN_DIR/heartbeat-bin (mode 0755) and return the directory."""
    where = os.path.join(run_dir, SHIM_DIR)
    os.makedirs(where, mode=0o755, exist_ok=True)
    hbctl = hbctl_command()
    for name, text in SHIMS.items():
        path = os.path.join(where, name)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(text.replace("@RUN_DIR@", run_dir).replace("@HBCTL@", hbctl))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return where
