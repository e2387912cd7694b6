"""Scenarios for the sans-I/O resource-group state machine (no processes, no sleeping).

A small simulated "machine" plays the resource scripts: it keeps which resources run,
answers status the way resource.d scripts do (text on stdout), and can be told to fail
a start, fail stops a number of times, or hang (the test then reports a timeout).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hbd.core.errors import LocalProtocolError
from hbd.core.model import AgentKind, Resource, ResourceGroup
from hbd.core.resources import (
    GroupFailed,
    GroupProbed,
    GroupStarted,
    GroupState,
    GroupStopped,
    OperationFinished,
    ProbeFinished,
    ResourceFailed,
    ResourceManager,
    ResourceState,
    ResourceStuck,
    ResourceWarning,
    RunAgent,
    SelfFence,
    StatusVerdict,
    StopRetrying,
    judge_status,
)


def res(name: str, *args: str, agent: AgentKind = AgentKind.RESOURCE_D) -> Resource:
    return Resource(name, args, agent, f"/etc/ha.d/resource.d/{name}", "haresources:1")


def group(preferred: str, *resources: Resource) -> ResourceGroup:
    return ResourceGroup(preferred, resources, "haresources:1")


WEB = group(
    "alpha",
    res("IPaddr", "10.0.0.10"),
    res("Filesystem", "/dev/sdb1", "/srv", "ext4"),
    res("apache"),
)
DB = group("beta", res("IPaddr", "10.0.0.20"), res("mysql"))


@dataclass
class Machine:
    """Plays the scripts. `calls` records (resource spec, op) in the order they ran."""

    running: set[str] = field(default_factory=set)
    fail_start: set[str] = field(default_factory=set)
    stop_failures: dict[str, int] = field(default_factory=dict)  # spec -> failures left
    stop_leaves_running: bool = True  # a failing stop leaves the resource running
    hang: set[tuple[str, str]] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def run(self, rm: ResourceManager, a: RunAgent, now: float) -> float:
        """Run `a` starting at `now`; report it; return when it finished."""
        end = now + self.took(a)
        self._run(rm, a, end)
        return end

    def took(self, a: RunAgent) -> float:
        if (a.resource.spec, a.op) in self.hang:
            return a.timeout
        return 0.05 if a.op == "status" else 0.1

    def _run(self, rm: ResourceManager, a: RunAgent, now: float) -> None:
        spec = a.resource.spec
        self.calls.append((spec, a.op))
        if (spec, a.op) in self.hang:
            rm.operation_timed_out(a.group, a.index, a.op, now)
            return
        if a.op == "status":
            text = f"{spec} is running" if spec in self.running else f"{spec} is stopped"
            rm.operation_done(a.group, a.index, "status", 0, text, now)
        elif a.op == "start":
            if spec in self.fail_start:
                rm.operation_done(a.group, a.index, "start", 1, "boom", now)
                return
            self.running.add(spec)
            rm.operation_done(a.group, a.index, "start", 0, "", now)
        else:
            left = self.stop_failures.get(spec, 0)
            if left:
                self.stop_failures[spec] = left - 1
                if not self.stop_leaves_running:
                    self.running.discard(spec)
                rm.operation_done(a.group, a.index, "stop", 1, "busy", now)
                return
            self.running.discard(spec)
            rm.operation_done(a.group, a.index, "stop", 0, "", now)


def drive(rm: ResourceManager, m: Machine, now: float = 0.0) -> tuple[list[object], float]:
    """Carry out actions (and stop-retry timers) until the core is idle; collect events."""
    actions: list[object] = []
    while True:
        a = rm.next_action()
        if isinstance(a, RunAgent):
            now = m.run(rm, a, now)
            continue
        if a is not None:
            actions.append(a)
            continue
        t = rm.get_timer()
        if t is None:
            break
        now = t
        rm.handle_timer(now)
    return actions, now


def events(rm: ResourceManager) -> list[object]:
    out: list[object] = []
    while (e := rm.next_event()) is not None:
        if not isinstance(e, OperationFinished):
            out.append(e)
    return out


def test_probe_then_start_left_to_right_and_stop_right_to_left() -> None:
    rm = ResourceManager([WEB, DB], node_name="alpha")
    m = Machine()
    rm.probe_all(0.0)
    drive(rm, m)
    assert m.calls == [
        ("IPaddr::10.0.0.10", "status"),
        ("IPaddr::10.0.0.20", "status"),
        ("Filesystem::/dev/sdb1::/srv::ext4", "status"),
        ("mysql", "status"),
        ("apache", "status"),
    ]  # both groups are probed side by side, each left to right
    evs = events(rm)
    assert GroupProbed(WEB.name, (), False) in evs
    assert evs[-1] == ProbeFinished(())
    assert rm.state(WEB.name) is GroupState.STOPPED

    m.calls.clear()
    rm.acquire(WEB.name, 10.0)
    drive(rm, m, 10.0)
    assert [c for c in m.calls if c[1] == "start"] == [
        ("IPaddr::10.0.0.10", "start"),
        ("Filesystem::/dev/sdb1::/srv::ext4", "start"),
        ("apache", "start"),
    ]
    # Heartbeat asks status before each start (we_own_resource || start)
    assert m.calls[0] == ("IPaddr::10.0.0.10", "status")
    assert events(rm) == [GroupStarted(WEB.name)]
    assert rm.state(WEB.name) is GroupState.STARTED
    assert m.running == {r.spec for r in WEB.resources}

    m.calls.clear()
    rm.release(WEB.name, 20.0)
    drive(rm, m, 20.0)
    assert m.calls == [
        ("apache", "stop"),
        ("Filesystem::/dev/sdb1::/srv::ext4", "stop"),
        ("IPaddr::10.0.0.10", "stop"),
    ]
    assert events(rm) == [GroupStopped(WEB.name)]
    assert rm.is_stopped(WEB.name)
    assert m.running == set()


def test_nothing_starts_before_the_probe_finishes_and_running_resources_are_not_restarted() -> None:
    rm = ResourceManager([WEB], node_name="alpha")
    m = Machine(running={"IPaddr::10.0.0.10"})  # left over from a previous life
    rm.probe_all(0.0)
    rm.acquire(WEB.name, 0.0)  # asked to start while the probe is under way
    first = rm.next_action()
    assert isinstance(first, RunAgent) and first.op == "status"
    assert rm.next_action() is None  # one operation at a time per group
    m.run(rm, first, 0.0)
    drive(rm, m, 1.0)
    starts = [c for c in m.calls if c[1] == "start"]
    assert ("IPaddr::10.0.0.10", "start") not in starts
    assert starts == [("Filesystem::/dev/sdb1::/srv::ext4", "start"), ("apache", "start")]
    probe_end = m.calls.index(("apache", "status"))
    assert all(op == "status" for _, op in m.calls[: probe_end + 1])
    evs = events(rm)
    assert GroupProbed(WEB.name, (0,), False) in evs
    assert ProbeFinished((WEB.name,)) in evs
    assert evs[-1] == GroupStarted(WEB.name)


def test_partly_running_group_found_at_start_up_is_reported_failed_not_stopped() -> None:
    rm = ResourceManager([WEB], node_name="alpha")
    m = Machine(running={"apache"})
    rm.probe_all(0.0)
    drive(rm, m)
    assert rm.state(WEB.name) is GroupState.FAILED
    assert not rm.is_stopped(WEB.name)
    assert rm.snapshot()[0]["holder"] == "alpha"


def test_a_failed_start_stops_what_may_run_in_reverse_and_reports_failed_then_stopped() -> None:
    rm = ResourceManager([WEB], node_name="alpha")
    m = Machine(fail_start={"Filesystem::/dev/sdb1::/srv::ext4"})
    rm.probe_all(0.0)
    drive(rm, m)
    events(rm)
    m.calls.clear()
    rm.acquire(WEB.name, 5.0)
    drive(rm, m, 5.0)
    assert [c for c in m.calls if c[1] != "status"] == [
        ("IPaddr::10.0.0.10", "start"),
        ("Filesystem::/dev/sdb1::/srv::ext4", "start"),
        ("Filesystem::/dev/sdb1::/srv::ext4", "stop"),  # a failed start may be half up
        ("IPaddr::10.0.0.10", "stop"),
    ]  # apache was known stopped and never started: it is not stopped
    evs = events(rm)
    assert isinstance(evs[0], ResourceFailed) and evs[0].op == "start" and evs[0].rc == 1
    failed = [e for e in evs if isinstance(e, GroupFailed)]
    assert len(failed) == 1 and not failed[0].may_be_running
    assert "Filesystem" in failed[0].reason
    assert evs[-1] == GroupStopped(WEB.name)
    assert rm.state(WEB.name) is GroupState.FAILED
    assert rm.is_stopped(WEB.name)
    snap = rm.snapshot()[0]
    assert snap["state"] == "failed" and snap["holder"] is None
    fs = snap["resources"][1]
    assert fs["last_op"] == "stop" and fs["rc"] == 0 and fs["state"] == "stopped"


def test_a_hanging_start_counts_as_a_failure_and_the_group_is_given_up() -> None:
    rm = ResourceManager([DB], node_name="beta")
    m = Machine(hang={("mysql", "start")})
    rm.probe_all(0.0)
    drive(rm, m)
    events(rm)
    rm.acquire(DB.name, 1.0)
    drive(rm, m, 1.0)
    evs = events(rm)
    rf = next(e for e in evs if isinstance(e, ResourceFailed))
    assert rf.rc is None and "timed out after 60 s" in rf.reason
    assert evs[-1] == GroupStopped(DB.name)
    assert ("mysql", "stop") in m.calls  # it may have half started: stopped anyway
    snap = rm.snapshot()[0]["resources"][1]
    assert snap["last_op"] == "stop"


def test_stop_failures_are_retried_every_second_then_the_stop_succeeds() -> None:
    rm = ResourceManager([DB], node_name="beta")
    m = Machine(running={"IPaddr::10.0.0.20", "mysql"}, stop_failures={"mysql": 3})
    rm.probe_all(0.0)
    drive(rm, m)
    events(rm)
    rm.release(DB.name, 100.0)
    a = rm.next_action()
    assert isinstance(a, RunAgent) and (a.resource.spec, a.op) == ("mysql", "stop")
    m.run(rm, a, 100.0)
    assert rm.get_timer() == pytest.approx(101.1)  # 1 s after the failed stop ended
    assert rm.next_action() is None  # nothing until the retry is due
    assert rm.state(DB.name) is GroupState.STOPPING
    rm.handle_timer(100.5)  # early: nothing
    assert rm.next_action() is None
    _, end = drive(rm, m, 100.2)
    assert m.calls.count(("mysql", "stop")) == 4
    evs = events(rm)
    retries = [e for e in evs if isinstance(e, StopRetrying)]
    assert [r.attempt for r in retries] == [1, 2, 3]
    assert not any(isinstance(e, GroupStopped) for e in evs[:-1])
    assert evs[-1] == GroupStopped(DB.name)
    assert end >= 103.0


def test_a_stop_that_never_succeeds_self_fences_when_a_watchdog_is_armed() -> None:
    rm = ResourceManager([DB], node_name="beta", watchdog_armed=True)
    m = Machine(running={"IPaddr::10.0.0.20", "mysql"}, stop_failures={"mysql": 99})
    rm.probe_all(0.0)
    drive(rm, m)
    events(rm)
    rm.release(DB.name, 0.0)
    actions, _ = drive(rm, m, 0.0)
    assert m.calls.count(("mysql", "stop")) == 11  # first try + HA_STOPRETRYMAX (10)
    assert m.calls[-1] == ("mysql", "status")  # asked whether it still runs
    assert len(actions) == 1 and isinstance(actions[0], SelfFence)
    assert "mysql" in actions[0].reason
    evs = events(rm)
    stuck = next(e for e in evs if isinstance(e, ResourceStuck))
    assert stuck.fencing
    assert GroupFailed(DB.name, stuck.reason, may_be_running=True) in evs
    assert not any(isinstance(e, GroupStopped) for e in evs)
    assert ("IPaddr::10.0.0.20", "stop") not in m.calls  # the group stays as it is
    assert not rm.is_stopped(DB.name)
    assert rm.state(DB.name) is GroupState.FAILED
    assert rm.resource_states(DB.name)[1] is ResourceState.STUCK


def test_a_stuck_stop_without_watchdog_stays_put_and_is_critical_then_release_retries() -> None:
    rm = ResourceManager([DB], node_name="beta", stop_retry_max=2)
    m = Machine(running={"IPaddr::10.0.0.20", "mysql"}, stop_failures={"mysql": 3})
    rm.probe_all(0.0)
    drive(rm, m)
    events(rm)
    rm.release(DB.name, 0.0)
    actions, now = drive(rm, m, 0.0)
    assert actions == []
    evs = events(rm)
    stuck = next(e for e in evs if isinstance(e, ResourceStuck))
    assert not stuck.fencing
    assert rm.snapshot()[0]["holder"] == "beta"
    # an operator fixes it and asks again: the stop is tried afresh
    rm.release(DB.name, now + 60)
    drive(rm, m, now + 60)
    assert events(rm)[-1] == GroupStopped(DB.name)
    assert rm.is_stopped(DB.name)


def test_a_non_lsb_stop_failure_on_a_stopped_resource_carries_on() -> None:
    rm = ResourceManager([DB], node_name="beta", stop_retry_max=1, watchdog_armed=True)
    m = Machine(
        running={"IPaddr::10.0.0.20", "mysql"},
        stop_failures={"mysql": 5},
        stop_leaves_running=False,
    )
    rm.probe_all(0.0)
    drive(rm, m)
    events(rm)
    rm.release(DB.name, 0.0)
    actions, _ = drive(rm, m, 0.0)
    assert actions == []  # no reboot: "Machine reboot narrowly avoided!"
    evs = events(rm)
    assert any(isinstance(e, ResourceWarning) and "LSB" in e.message for e in evs)
    assert evs[-1] == GroupStopped(DB.name)
    assert m.calls[-1] == ("IPaddr::10.0.0.20", "stop")


def test_release_during_start_finishes_the_current_step_then_unwinds() -> None:
    rm = ResourceManager([WEB], node_name="alpha")
    m = Machine()
    rm.probe_all(0.0)
    drive(rm, m)
    events(rm)
    m.calls.clear()
    rm.acquire(WEB.name, 1.0)
    t = 1.0
    for _ in range(3):  # status+start of IPaddr, then status of Filesystem
        a = rm.next_action()
        assert isinstance(a, RunAgent)
        t = m.run(rm, a, t)
    a = rm.next_action()
    assert isinstance(a, RunAgent) and a.op == "start" and a.index == 1
    rm.release(WEB.name, t + 0.01)  # while the Filesystem start is in flight
    assert rm.state(WEB.name) is GroupState.STOPPING
    assert not rm.is_stopped(WEB.name)
    t = m.run(rm, a, t)
    drive(rm, m, t)
    assert [c for c in m.calls if c[1] == "stop"] == [
        ("Filesystem::/dev/sdb1::/srv::ext4", "stop"),
        ("IPaddr::10.0.0.10", "stop"),
    ]
    evs = events(rm)
    assert GroupStarted(WEB.name) not in evs
    assert evs[-1] == GroupStopped(WEB.name)


def test_release_of_a_stopped_group_answers_stopped_at_once_for_the_hand_off() -> None:
    rm = ResourceManager([WEB], node_name="alpha")
    m = Machine()
    rm.probe_all(0.0)
    drive(rm, m)
    events(rm)
    rm.release(WEB.name, 1.0)
    assert rm.next_action() is None
    assert events(rm) == [GroupStopped(WEB.name)]


def test_release_before_any_probe_stops_everything_since_anything_may_run() -> None:
    rm = ResourceManager([DB], node_name="beta")
    assert rm.state(DB.name) is GroupState.UNKNOWN
    assert not rm.is_stopped(DB.name)
    m = Machine()
    rm.release(DB.name, 0.0)
    drive(rm, m)
    assert m.calls == [("mysql", "stop"), ("IPaddr::10.0.0.20", "stop")]
    assert rm.is_stopped(DB.name)


def test_status_that_times_out_during_the_probe_leaves_the_resource_maybe_running() -> None:
    rm = ResourceManager([DB], node_name="beta")
    m = Machine(hang={("mysql", "status")})
    rm.probe_all(0.0)
    drive(rm, m)
    evs = events(rm)
    assert GroupProbed(DB.name, (1,), False) in evs
    assert rm.resource_states(DB.name)[1] is ResourceState.UNKNOWN
    assert not rm.is_stopped(DB.name)
    snap = rm.snapshot()[0]["resources"][1]
    assert snap == {
        "name": "mysql",
        "state": "unknown",
        "last_op": "status",
        "rc": None,
        "duration_ms": 20000,
    }


def test_snapshot_shape_and_holder_from_the_policy_layer() -> None:
    rm = ResourceManager([WEB, DB], node_name="alpha")
    m = Machine()
    rm.probe_all(0.0)
    drive(rm, m)
    rm.acquire(WEB.name, 1.0)
    drive(rm, m, 1.0)
    snap = rm.snapshot(holders={DB.name: "beta"})
    assert [g["name"] for g in snap] == [WEB.name, DB.name]
    web, db = snap
    assert (web["preferred"], web["holder"], web["state"]) == ("alpha", "alpha", "started")
    assert (db["preferred"], db["holder"], db["state"]) == ("beta", "beta", "stopped")
    assert [r["name"] for r in web["resources"]] == [r.spec for r in WEB.resources]
    assert all(r["last_op"] == "start" and r["rc"] == 0 for r in web["resources"])
    assert all(r["duration_ms"] == 100 for r in web["resources"])


def test_callers_misuse_raises_local_protocol_error() -> None:
    rm = ResourceManager([WEB], node_name="alpha")
    with pytest.raises(LocalProtocolError, match="no resource group named 'nope'"):
        rm.acquire("nope", 0.0)
    with pytest.raises(LocalProtocolError, match="not running"):
        rm.operation_done(WEB.name, 0, "start", 0, "", 0.0)
    with pytest.raises(LocalProtocolError, match="appears twice"):
        ResourceManager([WEB, WEB], node_name="alpha")


@pytest.mark.parametrize(
    ("agent", "rc", "output", "verdict"),
    [
        (AgentKind.RESOURCE_D, 0, "apache is running (pid 12)", StatusVerdict.RUNNING),
        (AgentKind.RESOURCE_D, 3, "OK", StatusVerdict.RUNNING),  # rc ignored, as Heartbeat
        (AgentKind.RESOURCE_D, 0, "apache is not running", StatusVerdict.NOT_RUNNING),
        (AgentKind.INIT_D, 0, "Apache is NOT running.", StatusVerdict.NOT_RUNNING),
        (AgentKind.INIT_D, 0, "stopped", StatusVerdict.NOT_RUNNING),
        (AgentKind.INIT_D, 0, "", StatusVerdict.NOT_RUNNING),
        (AgentKind.OCF, 0, "", StatusVerdict.RUNNING),
        (AgentKind.OCF, 7, "running?", StatusVerdict.NOT_RUNNING),
        (AgentKind.OCF, 1, "", StatusVerdict.UNKNOWN),
        (AgentKind.BUILTIN, 7, "", StatusVerdict.NOT_RUNNING),
    ],
)
def test_status_is_judged_as_heartbeat_judges_it(
    agent: AgentKind, rc: int, output: str, verdict: StatusVerdict
) -> None:
    assert judge_status(agent, rc, output) is verdict


def test_ocf_status_error_before_start_fails_the_group_instead_of_starting() -> None:
    g = group("alpha", res("Dummy", "state=/tmp/x", agent=AgentKind.OCF))
    rm = ResourceManager([g], node_name="alpha")
    rm.acquire(g.name, 0.0)
    a = rm.next_action()
    assert isinstance(a, RunAgent) and a.op == "status" and a.timeout == 20.0
    rm.operation_done(g.name, 0, "status", 6, "not configured", 0.1)
    a = rm.next_action()
    assert isinstance(a, RunAgent) and a.op == "stop"  # status error: may be running
    rm.operation_done(g.name, 0, "stop", 7, "", 0.2)  # OCF: stop of a stopped resource
    evs = events(rm)
    assert isinstance(evs[0], ResourceFailed) and evs[0].op == "status" and evs[0].rc == 6
    assert evs[-1] == GroupStopped(g.name)
    assert rm.state(g.name) is GroupState.FAILED
