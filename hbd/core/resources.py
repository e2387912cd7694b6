"""Resource groups on one node: start them, stop them, and never lie about them.

Theory of operation
-------------------
This module decides, for the haresources groups of ONE node, which resource-agent
operation to run next, and what the outcome of each operation means. It does not
decide WHO should hold a group (that is the policy layer's job: failover,
auto_failback, standby/takeover hand-offs); it is told `acquire(group)` or
`release(group)` and carries that out safely, reporting what it did.

Inputs (one method per input, `now` always a parameter, monotonic seconds):
  probe_all(now)            status of every resource, before anything is acquired
  acquire(group, now)       bring the group up, left to right
  release(group, now)       bring the group down, right to left
  operation_done(group, index, op, rc, output, now)   a RunAgent finished
  operation_timed_out(group, index, op, now)          a RunAgent was killed at its timeout
  handle_timer(now)         the stop-retry delay (`get_timer()` says when)
  set_watchdog_armed(armed) whether a failed stop may escalate to a self-fence
Outputs: `next_action()` (RunAgent, SelfFence) and `next_event()` (GroupStarted,
GroupStopped, GroupFailed, ResourceFailed, ...), and `snapshot()` for `hbctl status`.

Rules, following Heartbeat 3.0.6's ResourceManager (acquireresourcegroup,
giveupresourcegroup, we_own_resource) where it has one:
  * A group's operations run one at a time; different groups are independent.
  * Start: left to right. Before starting a resource its status is asked (Heartbeat's
    `we_own_resource || doscript start`), so an already running resource is never
    started twice. Until the start-up probe has finished, nothing is started at all.
  * A start that fails (or times out): the group is stopped right to left, but only the
    resources that may be running (started ones, the failed one, any whose status is
    unknown), then reported failed -- and stopped, since nothing is left running.
  * A stop that fails is retried after `stop_retry_delay` (1 s), up to
    `stop_retry_max` (Heartbeat's HA_STOPRETRYMAX, 10) more times. When the retries are
    used up, the resource's status is asked: if it says not running, the script was
    just not LSB compliant (Heartbeat: "Machine reboot narrowly avoided!") and the stop
    carries on; if it is running or its status is unknown, the resource is stuck.
    Heartbeat then reboots the machine; hbd emits `SelfFence` when a watchdog is armed,
    otherwise it stays, reports the group failed with `may_be_running=True` and a
    critical `ResourceStuck` event, and does nothing more with that group until it is
    told again (a new `release` retries the stop from scratch).
  * A group is reported stopped (`GroupStopped`, `is_stopped`) only when every one of its
    resources is known stopped and no operation is in flight. This is the primitive a
    hand-off relies on: the other node starts a group only after this node said stopped.
  * A resource whose state is unknown (not probed yet, status timed out, an OCF status
    error) counts as possibly running.
Why this is safe: the only way to "stopped" is a successful stop or a status that says
not running; every doubt keeps a resource in a may-be-running state, which blocks
`GroupStopped`, and a stop that cannot be completed either fences the node or is left
for a human, loudly.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hbd.core.errors import LocalProtocolError
from hbd.core.model import AgentKind, Resource, ResourceGroup

Op = Literal["start", "stop", "status"]

# OCF exit codes (OCF resource agent API 1.0).
OCF_SUCCESS = 0
OCF_ERR_GENERIC = 1
OCF_ERR_ARGS = 2
OCF_ERR_UNIMPLEMENTED = 3
OCF_ERR_PERM = 4
OCF_ERR_INSTALLED = 5
OCF_ERR_CONFIGURED = 6
OCF_NOT_RUNNING = 7
OCF_RUNNING_PROMOTED = 8
OCF_FAILED_PROMOTED = 9


class ResourceState(enum.Enum):
    UNKNOWN = "unknown"  # not probed, or status could not be judged: may be running
    STOPPED = "stopped"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    FAILED = "failed"  # a start failed: may be half running until stopped
    STUCK = "stuck"  # a stop failed for good and status says it may still run


class GroupState(enum.Enum):
    UNKNOWN = "unknown"  # not probed yet (or being probed)
    STOPPED = "stopped"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    FAILED = "failed"


class StatusVerdict(enum.Enum):
    RUNNING = "running"
    NOT_RUNNING = "not-running"
    UNKNOWN = "unknown"  # an error: treat as possibly running


_NOT_RUNNING_RE = re.compile(r"[Nn][Oo][Tt] .*[Rr]unning", re.DOTALL)
_RUNNING_RE = re.compile(r"[Rr]unning|OK")


def judge_status(agent: AgentKind, rc: int, output: str) -> StatusVerdict:
    """What a status/monitor result means, as Heartbeat judges it.

    resource.d and init.d: the exit code is ignored and the output decides, as in
    ResourceManager's `we_own_resource`: "... not running" -> not running, else
    "running" or "OK" anywhere -> running, else not running. OCF agents and the
    built-ins: OCF exit codes (0 running, 7 not running, anything else an error).
    """
    if agent in (AgentKind.RESOURCE_D, AgentKind.INIT_D):
        if _NOT_RUNNING_RE.search(output):
            return StatusVerdict.NOT_RUNNING
        if _RUNNING_RE.search(output):
            return StatusVerdict.RUNNING
        return StatusVerdict.NOT_RUNNING
    if rc == OCF_SUCCESS:
        return StatusVerdict.RUNNING
    if rc == OCF_NOT_RUNNING:
        return StatusVerdict.NOT_RUNNING
    return StatusVerdict.UNKNOWN


def judge_success(agent: AgentKind, op: Op, rc: int) -> bool:
    """Whether a start or stop succeeded: exit code 0 (an OCF stop may also say 7)."""
    if rc == 0:
        return True
    return agent in (AgentKind.OCF, AgentKind.BUILTIN) and op == "stop" and rc == OCF_NOT_RUNNING


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds each kind of operation may run before it is killed."""

    start: float = 60.0
    stop: float = 60.0
    status: float = 20.0

    def for_op(self, op: Op) -> float:
        return {"start": self.start, "stop": self.stop, "status": self.status}[op]


# ----------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class RunAgent:
    """Run `op` on resource `index` of `group`; report with operation_done/_timed_out."""

    group: str
    index: int
    op: Op
    resource: Resource
    timeout: float


@dataclass(frozen=True, slots=True)
class SelfFence:
    """Reset this node now (stop petting the watchdog and let it fire)."""

    reason: str


Action = RunAgent | SelfFence

# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class OperationFinished:
    """Every agent operation's result, for the log."""

    group: str
    index: int
    resource: str
    op: Op
    rc: int | None  # None: timed out and killed
    duration_ms: int
    outcome: str  # "ok", "failed", "timed out", "running", "not running", "unknown"


@dataclass(frozen=True, slots=True)
class GroupProbed:
    """The start-up probe of a group finished. `running`: indexes that may be running."""

    group: str
    running: tuple[int, ...]
    all_running: bool


@dataclass(frozen=True, slots=True)
class ProbeFinished:
    """Every group has been probed; `active` names groups with anything running."""

    active: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupStarted:
    group: str


@dataclass(frozen=True, slots=True)
class GroupStopped:
    """Every resource of the group is known stopped: the peer may now start it."""

    group: str


@dataclass(frozen=True, slots=True)
class GroupFailed:
    group: str
    reason: str
    may_be_running: bool


@dataclass(frozen=True, slots=True)
class ResourceFailed:
    group: str
    index: int
    resource: str
    op: Op
    rc: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class StopRetrying:
    """A stop failed; it is tried again at `at` (attempt `attempt` of `of`)."""

    group: str
    resource: str
    attempt: int
    of: int
    at: float


@dataclass(frozen=True, slots=True)
class ResourceWarning:
    group: str
    resource: str
    message: str


@dataclass(frozen=True, slots=True)
class ResourceStuck:
    """Critical: a resource could not be stopped and may still be running."""

    group: str
    resource: str
    reason: str
    fencing: bool  # True: a SelfFence action follows; False: no watchdog, a human must act


Event = (
    OperationFinished
    | GroupProbed
    | ProbeFinished
    | GroupStarted
    | GroupStopped
    | GroupFailed
    | ResourceFailed
    | StopRetrying
    | ResourceWarning
    | ResourceStuck
)


# ------------------------------------------------------------------- state


class _Desire(enum.Enum):
    NONE = "none"
    STARTED = "started"
    STOPPED = "stopped"


@dataclass(slots=True)
class _Res:
    spec: Resource
    state: ResourceState = ResourceState.UNKNOWN
    probed: bool = False
    checked: bool = False  # status asked during this acquisition
    last_op: Op | None = None
    rc: int | None = None
    duration_ms: int | None = None
    stop_failures: int = 0
    verifying_stop: bool = False


@dataclass(slots=True)
class _Group:
    spec: ResourceGroup
    resources: list[_Res]
    desire: _Desire = _Desire.NONE
    probing: bool = False
    inflight: tuple[int, Op, float] | None = None  # index, op, issued at
    retry_at: float | None = None
    failed_reason: str | None = None
    stuck: bool = False
    failure_announced: bool = False
    announced: GroupState | None = None  # last GroupStarted/GroupStopped sent
    reply_pending: bool = False  # acquire/release asked: answer even if nothing changes


@dataclass(slots=True)
class ResourceManager:
    """The resource groups of this node. See the module docstring."""

    groups: Iterable[ResourceGroup]
    node_name: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    watchdog_armed: bool = False
    stop_retry_max: int = 10
    stop_retry_delay: float = 1.0
    _groups: dict[str, _Group] = field(init=False)
    _actions: deque[Action] = field(init=False, default_factory=deque)
    _events: deque[Event] = field(init=False, default_factory=deque)
    _probe_pending: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._groups = {}
        for g in self.groups:
            if g.name in self._groups:
                raise LocalProtocolError(f"{g.source}: group {g.name!r} appears twice")
            self._groups[g.name] = _Group(g, [_Res(r) for r in g.resources])
        self.groups = tuple(self.groups)

    # ---------------------------------------------------------------- inputs

    def probe_all(self, now: float) -> None:
        """Ask the status of every resource. Nothing starts until this finishes."""
        self._probe_pending = True
        for g in self._groups.values():
            g.probing = True
            for r in g.resources:
                r.probed = False
            self._advance(g, now)

    def acquire(self, group: str, now: float) -> None:
        """Start `group` (left to right); GroupStarted or GroupFailed will follow."""
        g = self._group(group)
        g.desire = _Desire.STARTED
        g.failed_reason = None
        g.failure_announced = False
        g.stuck = False
        g.reply_pending = True
        for r in g.resources:
            r.checked = False
            r.stop_failures = 0
        self._advance(g, now)

    def release(self, group: str, now: float) -> None:
        """Stop `group` (right to left); GroupStopped follows once nothing may run."""
        g = self._group(group)
        g.desire = _Desire.STOPPED
        g.stuck = False
        g.reply_pending = True
        for r in g.resources:
            r.stop_failures = 0
            r.verifying_stop = False
        if g.retry_at is not None:
            g.retry_at = None
        self._advance(g, now)

    def set_watchdog_armed(self, armed: bool) -> None:
        self.watchdog_armed = armed

    def operation_done(
        self,
        group: str,
        index: int,
        op: Op,
        rc: int,
        output: str,
        now: float,
        duration_ms: int | None = None,
    ) -> None:
        """A RunAgent finished with exit code `rc` and combined `output`."""
        g, r, issued = self._complete(group, index, op)
        dur = duration_ms if duration_ms is not None else round((now - issued) * 1000)
        r.last_op, r.rc, r.duration_ms = op, rc, dur
        agent = r.spec.agent
        if op == "status":
            verdict = judge_status(agent, rc, output)
            self._log_op(g, index, op, rc, dur, verdict.value.replace("-", " "))
            self._status_result(g, index, verdict, rc, now)
        else:
            ok = judge_success(agent, op, rc)
            self._log_op(g, index, op, rc, dur, "ok" if ok else "failed")
            if op == "start":
                self._start_result(g, index, ok, rc, f"start exited {rc}", now)
            else:
                self._stop_result(g, index, ok, rc, f"stop exited {rc}", now)
        self._advance(g, now)

    def operation_timed_out(
        self, group: str, index: int, op: Op, now: float, duration_ms: int | None = None
    ) -> None:
        """A RunAgent ran past its timeout and was killed."""
        g, r, issued = self._complete(group, index, op)
        dur = duration_ms if duration_ms is not None else round((now - issued) * 1000)
        r.last_op, r.rc, r.duration_ms = op, None, dur
        self._log_op(g, index, op, None, dur, "timed out")
        why = f"{op} timed out after {self.timeouts.for_op(op):g} s"
        if op == "status":
            self._status_result(g, index, StatusVerdict.UNKNOWN, None, now)
        elif op == "start":
            self._start_result(g, index, False, None, why, now)
        else:
            self._stop_result(g, index, False, None, why, now)
        self._advance(g, now)

    def get_timer(self) -> float | None:
        """When handle_timer wants to be called next (a stop retry), or None."""
        times = [g.retry_at for g in self._groups.values() if g.retry_at is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for g in self._groups.values():
            if g.retry_at is not None and now >= g.retry_at:
                g.retry_at = None
                self._advance(g, now)

    # --------------------------------------------------------------- outputs

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def group_names(self) -> tuple[str, ...]:
        return tuple(self._groups)

    def state(self, group: str) -> GroupState:
        return self._group_state(self._group(group))

    def resource_states(self, group: str) -> tuple[ResourceState, ...]:
        return tuple(r.state for r in self._group(group).resources)

    def is_stopped(self, group: str) -> bool:
        """True only when nothing of `group` may be running and nothing is in flight."""
        g = self._group(group)
        return g.inflight is None and all(r.state is ResourceState.STOPPED for r in g.resources)

    def may_be_running(self, group: str) -> bool:
        return not self.is_stopped(group)

    def snapshot(self, holders: Mapping[str, str | None] | None = None) -> list[dict[str, Any]]:
        """`hbctl status` groups: name, preferred, holder, state, resources.

        `holders` maps a group to the node the policy layer says holds it; without it,
        this node is shown as holder of every group that may be running here.
        """
        out: list[dict[str, Any]] = []
        for name, g in self._groups.items():
            if holders is not None and name in holders:
                holder = holders[name]
            else:
                holder = self.node_name if self.may_be_running(name) else None
            out.append(
                {
                    "name": name,
                    "preferred": g.spec.preferred,
                    "holder": holder,
                    "state": self._group_state(g).value,
                    "resources": [
                        {
                            "name": r.spec.spec,
                            "state": r.state.value,
                            "last_op": r.last_op,
                            "rc": r.rc,
                            "duration_ms": r.duration_ms,
                        }
                        for r in g.resources
                    ],
                }
            )
        return out

    # -------------------------------------------------------------- internals

    def _group(self, name: str) -> _Group:
        try:
            return self._groups[name]
        except KeyError:
            raise LocalProtocolError(f"no resource group named {name!r}") from None

    def _complete(self, group: str, index: int, op: Op) -> tuple[_Group, _Res, float]:
        g = self._group(group)
        if g.inflight is None or g.inflight[:2] != (index, op):
            raise LocalProtocolError(
                f"result for {op} of resource {index} of {group!r}, which is not running"
            )
        issued = g.inflight[2]
        g.inflight = None
        return g, g.resources[index], issued

    def _log_op(
        self, g: _Group, index: int, op: Op, rc: int | None, dur: int, outcome: str
    ) -> None:
        name = g.resources[index].spec.spec
        self._events.append(OperationFinished(g.spec.name, index, name, op, rc, dur, outcome))

    def _run(self, g: _Group, index: int, op: Op, now: float) -> None:
        r = g.resources[index]
        if op == "start":
            r.state = ResourceState.STARTING  # FROM stopped -> TO starting
        elif op == "stop":
            r.state = ResourceState.STOPPING  # FROM started/failed/unknown/stuck -> TO stopping
        g.inflight = (index, op, now)
        self._actions.append(RunAgent(g.spec.name, index, op, r.spec, self.timeouts.for_op(op)))

    def _status_result(
        self, g: _Group, index: int, verdict: StatusVerdict, rc: int | None, now: float
    ) -> None:
        r = g.resources[index]
        if r.verifying_stop:
            r.verifying_stop = False
            if verdict is StatusVerdict.NOT_RUNNING:
                # FROM stopping -> TO stopped (the script was not LSB compliant)
                r.state = ResourceState.STOPPED
                self._events.append(
                    ResourceWarning(
                        g.spec.name,
                        r.spec.spec,
                        "stop failed but status says not running: the script is probably "
                        "not LSB compliant (a stop must succeed when already stopped)",
                    )
                )
            else:
                self._stuck(g, index, verdict)
            return
        if verdict is StatusVerdict.RUNNING:
            r.state = ResourceState.STARTED  # FROM unknown/stopped -> TO started (found running)
        elif verdict is StatusVerdict.NOT_RUNNING:
            r.state = ResourceState.STOPPED  # FROM unknown/stopped -> TO stopped
        else:
            r.state = ResourceState.UNKNOWN  # FROM any -> TO unknown: may be running
        if g.probing and not r.probed:
            r.probed = True
        elif g.desire is _Desire.STARTED:
            r.checked = True
            if verdict is StatusVerdict.UNKNOWN:
                why = "status before start failed" + (f" with {rc}" if rc is not None else "")
                self._start_result(g, index, False, rc, why, now, op="status")

    def _start_result(
        self,
        g: _Group,
        index: int,
        ok: bool,
        rc: int | None,
        why: str,
        now: float,
        op: Op = "start",
    ) -> None:
        r = g.resources[index]
        if ok:
            r.state = ResourceState.STARTED  # FROM starting -> TO started
            return
        if op == "start":
            r.state = ResourceState.FAILED  # FROM starting -> TO failed (may be half up)
        self._events.append(ResourceFailed(g.spec.name, index, r.spec.spec, op, rc, why))
        g.failed_reason = f"{r.spec.spec}: {why}"
        g.desire = _Desire.STOPPED  # give the group up, right to left

    def _stop_result(
        self, g: _Group, index: int, ok: bool, rc: int | None, why: str, now: float
    ) -> None:
        r = g.resources[index]
        if ok:
            r.state = ResourceState.STOPPED  # FROM stopping -> TO stopped
            r.stop_failures = 0
            return
        r.stop_failures += 1
        self._events.append(ResourceFailed(g.spec.name, index, r.spec.spec, "stop", rc, why))
        if r.stop_failures <= self.stop_retry_max:
            g.retry_at = now + self.stop_retry_delay
            self._events.append(
                StopRetrying(
                    g.spec.name, r.spec.spec, r.stop_failures, self.stop_retry_max, g.retry_at
                )
            )
        else:
            r.verifying_stop = True  # ask status: really running, or just not LSB?

    def _stuck(self, g: _Group, index: int, verdict: StatusVerdict) -> None:
        r = g.resources[index]
        r.state = ResourceState.STUCK  # FROM stopping -> TO stuck
        g.stuck = True
        reason = (
            f"{r.spec.spec}: stop failed {r.stop_failures} times and status says "
            f"{'running' if verdict is StatusVerdict.RUNNING else 'unknown'}"
        )
        g.failed_reason = reason
        g.failure_announced = True
        fencing = self.watchdog_armed
        self._events.append(ResourceStuck(g.spec.name, r.spec.spec, reason, fencing))
        self._events.append(GroupFailed(g.spec.name, reason, may_be_running=True))
        if fencing:
            self._actions.append(
                SelfFence(f"resource stop failure in group {g.spec.name}: {reason}")
            )

    def _advance(self, g: _Group, now: float) -> None:
        """Issue the group's next operation, or announce where it has arrived."""
        if g.inflight is not None or g.retry_at is not None or g.stuck:
            return
        if g.probing:
            for i, r in enumerate(g.resources):
                if not r.probed:
                    self._run(g, i, "status", now)
                    return
            g.probing = False
            running = tuple(
                i for i, r in enumerate(g.resources) if r.state is not ResourceState.STOPPED
            )
            self._events.append(GroupProbed(g.spec.name, running, len(running) == len(g.resources)))
            if g.announced is None and not running:
                g.announced = GroupState.STOPPED
            self._maybe_probe_finished(g, now)
        if self._probe_pending and g.desire is _Desire.STARTED:
            return  # never start anything anywhere before every group has been probed
        if g.desire is _Desire.STARTED:
            for i, r in enumerate(g.resources):
                if r.state is ResourceState.STARTED:
                    continue
                if not r.checked:
                    self._run(g, i, "status", now)  # Heartbeat: we_own_resource || start
                else:
                    self._run(g, i, "start", now)
                return
            if g.announced is not GroupState.STARTED or g.reply_pending:
                g.announced = GroupState.STARTED
                self._events.append(GroupStarted(g.spec.name))
            g.reply_pending = False
        elif g.desire is _Desire.STOPPED:
            for i in reversed(range(len(g.resources))):
                r = g.resources[i]
                if r.verifying_stop:
                    self._run(g, i, "status", now)
                    return
                if r.state is not ResourceState.STOPPED:
                    self._run(g, i, "stop", now)
                    return
            if g.announced is not GroupState.STOPPED or g.reply_pending:
                if g.failed_reason is not None and not g.failure_announced:
                    g.failure_announced = True
                    self._events.append(GroupFailed(g.spec.name, g.failed_reason, False))
                g.announced = GroupState.STOPPED
                self._events.append(GroupStopped(g.spec.name))
            g.reply_pending = False

    def _maybe_probe_finished(self, current: _Group, now: float) -> None:
        if not self._probe_pending or any(g.probing for g in self._groups.values()):
            return
        self._probe_pending = False
        active = tuple(name for name, g in self._groups.items() if self.may_be_running(name))
        self._events.append(ProbeFinished(active))
        for g in self._groups.values():  # groups told to start during the probe may go now
            if g is not current and g.desire is _Desire.STARTED:
                self._advance(g, now)

    def _group_state(self, g: _Group) -> GroupState:
        if g.stuck:
            return GroupState.FAILED
        busy = g.inflight is not None or g.retry_at is not None
        if g.probing:
            return GroupState.UNKNOWN
        states = [r.state for r in g.resources]
        all_started = all(s is ResourceState.STARTED for s in states)
        all_stopped = all(s is ResourceState.STOPPED for s in states)
        if g.desire is _Desire.STARTED and (busy or not all_started):
            return GroupState.STARTING
        if g.desire is _Desire.STOPPED and (busy or not all_stopped):
            return GroupState.STOPPING
        if g.failed_reason is not None:
            return GroupState.FAILED
        if all_started:
            return GroupState.STARTED
        if all_stopped:
            return GroupState.STOPPED
        if any(s is ResourceState.UNKNOWN for s in states) and not any(
            s is ResourceState.STARTED for s in states
        ):
            return GroupState.UNKNOWN
        return GroupState.FAILED  # partly running and nobody asked for it
