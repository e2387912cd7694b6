"""The resource-agent runner: resource.d and init.d scripts, OCF agents, built-ins.

Invocation follows Heartbeat 3.0.6's ResourceManager (`doscript`):

- resource.d and init.d: ``SCRIPT [ARG ...] start|stop|status`` (the `::` arguments of
  the haresources item, then the operation). Status is judged from the output, by
  `hbd.core.resources.judge_status`.
- OCF (``OCF::TYPE::INSTANCE``): ``AGENT start|stop|monitor`` (status is OCF's
  `monitor`) with the variables of ``conf/OCF/TYPE/INSTANCE`` (the ``OCF_RESKEY_*``
  parameters) and the OCF environment, as Heartbeat's resource.d/OCF wrapper runs it
  (`ocf_environment`). Judged by OCF exit codes.
- Built-ins (IPaddr, IPaddr2, SendArp) go to an `hbd.effects.addresses.BuiltinAgents`, run in a
  worker thread so the event loop never blocks.

Every script runs in its own session (process group) with stdout and stderr going to an
anonymous temporary file, not a pipe: a service the script leaves behind keeps that file
instead of a pipe we would have to hold open (Heartbeat sends them to its debug log).
A script that outlives its timeout gets SIGKILL on its whole process group. Its output
is logged line by line with the resource and operation named. Scripts do not inherit hbd's
OOM protection, umask or service-manager variables (`hbd.effects.children`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

from hbd.core.model import AgentKind, Resource
from hbd.core.resources import (
    OCF_ERR_CONFIGURED,
    OCF_ERR_GENERIC,
    OCF_ERR_INSTALLED,
    Op,
    ResourceManager,
    RunAgent,
)
from hbd.effects.children import child_environment, run_child

if TYPE_CHECKING:
    from hbd.effects.addresses import BuiltinAgents

log = logging.getLogger("hbd.effects.agents")

HA_DIR = "/etc/ha.d"
OCF_ROOT = "/usr/lib/ocf"
MAX_OUTPUT = 64 * 1024  # bytes of a script's output kept for status judging and the log


@dataclass(frozen=True, slots=True)
class OpResult:
    """How one agent operation ended. `rc` is None when it timed out and was killed."""

    rc: int | None
    output: str
    duration_ms: int

    @property
    def timed_out(self) -> bool:
        return self.rc is None


class Runner(Protocol):
    """Runs one agent operation to its end (or its timeout) without blocking the loop."""

    async def run(self, resource: Resource, op: Op, timeout: float) -> OpResult: ...


def ocf_environment(resource: Resource, ocf_root: str = OCF_ROOT) -> dict[str, str]:
    """The environment of `OCF::TYPE::INSTANCE`, as Heartbeat's resource.d/OCF wrapper sets it.

    The wrapper sources `conf/OCF/TYPE/INSTANCE` and exports what it assigns (the
    `OCF_RESKEY_*` parameters); hbd read that file at load time into `resource.settings`.
    Around it, the OCF 1.0 environment: OCF_ROOT, OCF_RA_VERSION_MAJOR/MINOR,
    OCF_RESOURCE_INSTANCE (the instance name), OCF_RESOURCE_TYPE, OCF_RESOURCE_PROVIDER
    (the directory the agent was found in), and the wrapper's own OCF_RES_NAME.
    """
    if resource.agent is not AgentKind.OCF or len(resource.args) != 2:
        raise ValueError(f"{resource.spec}: not an OCF::type::instance resource")
    agent_type, instance = resource.args
    env = {
        "OCF_ROOT": ocf_root,
        "OCF_RA_VERSION_MAJOR": "1",
        "OCF_RA_VERSION_MINOR": "0",
        "OCF_RESOURCE_TYPE": agent_type,
        "OCF_RESOURCE_INSTANCE": instance,
        "OCF_RES_NAME": instance,
    }
    provider = _provider(resource.agent_path)
    if provider is not None:
        env["OCF_RESOURCE_PROVIDER"] = provider
    env.update(resource.settings)
    return env


def _provider(agent_path: str | None) -> str | None:
    """`heartbeat` for /usr/lib/ocf/resource.d/heartbeat/Dummy."""
    if agent_path is None:
        return None
    parts = agent_path.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 3 and parts[-3] == "resource.d" else None


def agent_command(
    resource: Resource, op: Op, *, ha_dir: str = HA_DIR, ocf_root: str = OCF_ROOT
) -> tuple[list[str], dict[str, str]]:
    """The argv and the extra environment for running `op` on a script-backed resource."""
    if resource.agent_path is None:
        raise ValueError(f"{resource.spec}: {resource.agent.value} agent has no script path")
    env = {
        "HA_DIR": ha_dir,
        "HA_FUNCS": f"{ha_dir}/shellfuncs",
        "HA_RESOURCEDIR": f"{ha_dir}/resource.d",
    }
    if resource.agent is AgentKind.OCF:
        env.update(ocf_environment(resource, ocf_root))
        return [resource.agent_path, "monitor" if op == "status" else op], env
    if resource.agent in (AgentKind.RESOURCE_D, AgentKind.INIT_D):
        return [resource.agent_path, *resource.args, op], env
    raise ValueError(f"{resource.spec}: a built-in agent is not run as a script")


class ScriptRunner:
    """The production `Runner`: subprocesses for scripts, `builtins` for built-in agents."""

    def __init__(
        self,
        builtins: BuiltinAgents | None = None,
        *,
        ha_dir: str = HA_DIR,
        ocf_root: str = OCF_ROOT,
        env: Mapping[str, str] | None = None,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.builtins = builtins
        self.clock = clock
        # a built-in's thread cannot be killed: one operation a resource at a time, so the
        # stop after a timed-out start waits until that start's thread has finished
        self._builtin_locks: dict[str, threading.Lock] = {}
        self.ha_dir = ha_dir
        self.ocf_root = ocf_root
        self.base_env = child_environment(os.environ if env is None else env)
        # as ResourceManager: "Make ifconfig work in France"
        self.base_env.pop("LC_ALL", None)
        self.base_env.pop("LANGUAGE", None)
        self.log = logger

    async def run(self, resource: Resource, op: Op, timeout: float) -> OpResult:
        started = self.clock()
        if resource.agent is AgentKind.BUILTIN:
            result = await self._run_builtin(resource, op, timeout, started)
        else:
            result = await self._run_script(resource, op, timeout, started)
        self._log_result(resource, op, result, timeout)
        return result

    async def _run_builtin(
        self, resource: Resource, op: Op, timeout: float, started: float
    ) -> OpResult:
        if self.builtins is None:
            return OpResult(OCF_ERR_INSTALLED, "no built-in agents configured", 0)
        builtins = self.builtins
        lock = self._builtin_locks.setdefault(resource.spec, threading.Lock())
        cancelled = threading.Event()

        def work() -> tuple[int, str]:
            with lock:
                if cancelled.is_set():
                    return OCF_ERR_GENERIC, "not run: it had timed out while waiting its turn"
                return builtins.run(resource, op, cancelled)

        try:
            rc, output = await asyncio.wait_for(asyncio.to_thread(work), timeout)
        except TimeoutError:
            cancelled.set()  # the thread runs on; it must not act from now on
            return OpResult(None, "", self._ms_since(started))
        return OpResult(rc, output, self._ms_since(started))

    async def _run_script(
        self, resource: Resource, op: Op, timeout: float, started: float
    ) -> OpResult:
        try:
            argv, extra = agent_command(resource, op, ha_dir=self.ha_dir, ocf_root=self.ocf_root)
        except ValueError as e:
            return OpResult(OCF_ERR_CONFIGURED, str(e), 0)
        env = {**self.base_env, **extra}
        with tempfile.TemporaryFile(prefix="hbd-agent-") as out:
            try:
                rc = await run_child(argv, env, timeout, out)
            except OSError as e:
                return OpResult(OCF_ERR_INSTALLED, f"cannot run {argv[0]}: {e}", 0)
            duration = self._ms_since(started)
            output = _read_tail(out)
        if rc is not None and rc < 0:
            rc = 128 - rc  # killed by a signal: as a shell reports it
        return OpResult(rc, output, duration)

    def _ms_since(self, started: float) -> int:
        return max(0, round((self.clock() - started) * 1000))

    def _log_result(self, resource: Resource, op: Op, result: OpResult, timeout: float) -> None:
        name = resource.spec
        for line in result.output.splitlines():
            self.log.info("%s %s: %s", name, op, line)
        if result.timed_out:
            self.log.error(
                "%s %s: timed out after %g s, killed (%d ms)", name, op, timeout, result.duration_ms
            )
        else:
            level = logging.INFO if result.rc == 0 or op == "status" else logging.ERROR
            self.log.log(level, "%s %s: rc=%s (%d ms)", name, op, result.rc, result.duration_ms)


def _read_tail(f: IO[bytes]) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - MAX_OUTPUT))
    return f.read().decode("utf-8", "replace")


async def carry_out(
    runner: Runner,
    rm: ResourceManager,
    action: RunAgent,
    clock: Callable[[], float] = time.monotonic,
) -> OpResult:
    """Run `action` and feed its result back into `rm` (the daemon feeds a whole Node
    instead; this is for tests and tools driving a ResourceManager alone)."""
    result = await runner.run(action.resource, action.op, action.timeout)
    now = clock()
    if result.rc is None:
        rm.operation_timed_out(action.group, action.index, action.op, now, result.duration_ms)
    else:
        rm.operation_done(
            action.group, action.index, action.op, result.rc, result.output, now, result.duration_ms
        )
    return result
