"""The ordered stream of notices (`hbctl events`) and the hooks run for it: the `notify`
script and Heartbeat's rc.d scripts, one at a time, in order, each within its timeout.

Unit scenarios for the stream and the hooks, then the daemon in-process (no root): alpha
alone, its peer never heard, takes its group; every step is a notice, in order, each one
run through the notify script and rc.d/status, and a reload keeps the stream.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from hbd.commands.events import show, text_line
from hbd.core import events as ev
from hbd.core import resources as rs
from hbd.core.node import Decided
from hbd.core.notices import Notice, Notices
from hbd.core.policy import Decision
from hbd.core.witness import WitnessDead
from hbd.shell.control import ControlError
from hbd.shell.hooks import Hooks, HookSettings, runs_for, write_shims

from test_daemon_inprocess import FakeRunner, Harness, quiet_logs

T = 1_800_000_000.0


def decided(line: str, reason: str = "why") -> Decided:
    return Decided(Decision(0.0, line, reason))


def test_each_change_is_one_notice_in_order_and_repeats_are_no_news() -> None:
    n = Notices("alpha")
    names = {"bcast:eth0": "eth0"}
    for i, event in enumerate(
        (
            ev.NodeUp("beta", "up", 7, "bcast:eth0"),
            ev.NodeActive("beta"),
            ev.PathDown("beta", "bcast:eth0", 1.2),
            ev.NodeDead("beta", 10.0, 1.0),
            ev.NodeDead("beta", 10.0, 1.0),  # no news: already dead
            WitnessDead("ping:10.0.0.254", 2.0),
            decided("acquire svc", "its target is this node"),
            rs.GroupStarted("svc"),
            decided("wait svc"),  # a countdown, not a notice
            decided("qnetd ACK for {alpha}", "qnetd voted"),
            decided("self-fence", "isolated"),
        )
    ):
        n.observe(T + i, event, names)
    got = [(x.kind, x.subject, x.state, x.old) for x in n.since(0).notices]
    assert got == [
        ("node", "beta", "up", None),
        ("node", "beta", "active", "up"),
        ("path", "beta eth0", "dead", None),
        ("node", "beta", "dead", "active"),
        ("ping", "10.0.0.254", "dead", None),
        ("group", "svc", "acquiring", None),
        ("group", "svc", "started", "acquiring"),
        ("vote", "qnetd", "ack", None),
        ("fence", "self", "going", None),
    ]
    assert [x.seq for x in n.since(0).notices] == list(range(1, 10))
    assert n.since(0).notices[3].reason == "silent on every path for 1 s"


def test_a_reader_that_fell_behind_is_told_how_many_it_missed() -> None:
    n = Notices("alpha", capacity=3)
    for i in range(5):
        n.add(T + i, "ping", "10.0.0.254", "up" if i % 2 else "dead", "flap")
    page = n.since(0)
    assert [x.seq for x in page.notices] == [3, 4, 5] and page.missed == 2 and page.next == 5
    assert n.since(5).notices == () and n.since(5).missed == 0 and n.since(5).next == 5
    assert [x.seq for x in n.since(3, limit=1).notices] == [4]
    with pytest.raises(ValueError, match="unknown notice kind"):
        n.add(T, "weather", "x", "y", "z")


def test_commands_are_each_news_even_when_repeated() -> None:
    n = Notices("alpha")
    n.observe(T, decided("standby all", "operator request"), {})
    n.observe(T, decided("standby all", "operator request"), {})
    n.observe(T, decided("hand over local", "operator request"), {})
    got = [(x.subject, x.state) for x in n.since(0).notices]
    assert got == [("standby", "all"), ("standby", "all"), ("release", "local")]


def settings(tmp_path: Path, **kw: Any) -> HookSettings:
    base: dict[str, Any] = {
        "node": "alpha",
        "notify": None,
        "timeout": 5.0,
        "rc_dir": None,
        "ha_dir": str(tmp_path),
        "shim_dir": str(tmp_path / "shims"),
    }
    base.update(kw)
    return HookSettings(**base)


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_notify_gets_the_change_as_arguments_and_the_reason_in_its_environment(
    tmp_path: Path,
) -> None:
    notice = Notice(4, T, "alpha", "node", "beta", "dead", "silent for 1 s", "active")
    [run] = runs_for(notice, settings(tmp_path, notify="/etc/hbd/notify.sh"))
    assert run.argv == ("/etc/hbd/notify.sh", "node", "beta", "dead", "active")
    env = dict(run.env)
    assert env["HBD_REASON"] == "silent for 1 s" and env["HBD_SEQ"] == "4"


def test_rc_d_runs_as_heartbeat_runs_it_for_status_and_ifstat(tmp_path: Path) -> None:
    rc = tmp_path / "rc.d"
    rc.mkdir()
    script(rc / "status", "exit 0\n")
    script(rc / "ifstat", "exit 0\n")
    s = settings(tmp_path, rc_dir=str(rc))
    dead = Notice(1, T, "alpha", "node", "beta", "dead", "silent", "active")
    [run] = runs_for(dead, s)
    env = dict(run.env)
    assert run.argv == (str(rc / "status"), "status")
    assert (env["HA_t"], env["HA_src"], env["HA_st"], env["HA_OSTATUS"]) == (
        "status",
        "beta",
        "dead",
        "active",
    )
    assert env["HA_CURHOST"] == "alpha" and env["HA_NOARCHBIN"] == s.shim_dir
    path = Notice(2, T, "alpha", "path", "beta /dev/ttyS0", "dead", "silent")
    [run] = runs_for(path, s)
    env = dict(run.env)
    assert run.argv[1] == "ifstat"
    assert (env["HA_node"], env["HA_ifname"], env["HA_st"]) == ("beta", "/dev/ttyS0", "dead")
    ping = Notice(3, T, "alpha", "ping", "10.0.0.254", "dead", "silent", "up")
    env = dict(runs_for(ping, s)[0].env)
    assert (env["HA_st"], env["HA_comment"], env["HA_OSTATUS"]) == ("dead", "ping", "ping")
    group = Notice(4, T, "alpha", "group", "svc", "started", "")
    assert runs_for(group, s) == []  # Heartbeat has no rc.d script for it
    (rc / "ifstat").chmod(0o644)  # not executable: Heartbeat's harc refuses it too
    assert runs_for(path, s) == []


def test_hooks_run_one_at_a_time_in_order_and_a_hung_one_is_killed_at_its_timeout(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    notify = script(
        tmp_path / "notify",
        f'[ "$3" = hang ] && sleep 30\necho "$HBD_SEQ $1 $2 $3" >> {out}\n',
    )
    hooks = Hooks(settings(tmp_path, notify=notify, timeout=0.5))

    async def scenario() -> None:
        for i, state in enumerate(("dead", "hang", "up", "active")):
            hooks.submit(Notice(i + 1, T, "alpha", "node", "beta", state, ""))
        started = time.monotonic()
        await hooks.close()
        assert time.monotonic() - started < 5

    asyncio.run(scenario())
    assert out.read_text().splitlines() == [
        "1 node beta dead",
        "3 node beta up",
        "4 node beta active",
    ]
    assert hooks.runs == 4 and hooks.failures == 1


def test_the_stand_ins_keep_heartbeats_own_rc_d_scripts_from_moving_groups(tmp_path: Path) -> None:
    shims = write_shims(str(tmp_path / "run"))
    assert {p.name for p in Path(shims).iterdir()} == {
        "mach_down",
        "ResourceManager",
        "hb_takeover",
        "hb_standby",
    }
    assert os.access(os.path.join(shims, "mach_down"), os.X_OK)
    rc = tmp_path / "rc.d"
    rc.mkdir()
    log = tmp_path / "log"
    # what Debian's heartbeat package ships as rc.d/status, plus a trace
    script(
        rc / "status",
        f"case $HA_st in dead) $HA_NOARCHBIN/mach_down $HA_src 2>> {log};; esac\n"
        f"ResourceManager takegroup svc 2>> {log}; echo rc=$? >> {log}\n",
    )
    hooks = Hooks(settings(tmp_path, rc_dir=str(rc), shim_dir=shims))

    async def scenario() -> None:
        hooks.submit(Notice(1, T, "alpha", "node", "beta", "dead", "", "active"))
        await hooks.close()

    asyncio.run(scenario())
    text = log.read_text()
    assert "mach_down beta: nothing done" in text
    assert "ResourceManager takegroup svc: refused" in text and "rc=1" in text


def test_the_daemon_keeps_the_stream_runs_the_hooks_and_a_reload_keeps_both(
    tmp_path: Path,
) -> None:
    out = tmp_path / "notify.out"
    status_out = tmp_path / "status.out"

    async def scenario() -> None:
        h = Harness(tmp_path, FakeRunner(), extra="notify /placeholder\n")
        notify = script(tmp_path / "notify.sh", f'echo "$HBD_SEQ $*" >> {out}\n')
        (h.config / "ha.cf").write_text(
            (h.config / "ha.cf").read_text().replace("/placeholder", notify)
        )
        (h.config / "rc.d").mkdir()
        script(h.config / "rc.d" / "status", f'echo "$HA_CURHOST $HA_src $HA_st" >> {status_out}\n')
        await h.start()
        try:
            await h.until(lambda: h.group()["state"] == "started", 10)
            await h.run(0.5)
            d = h.daemon
            reply = d._handle_request({"cmd": "events"})
            got = [(e["kind"], e["subject"], e["state"]) for e in reply["events"]]
            assert got[0] == ("node", "beta", "dead")
            assert ("redundancy", "alpha", "partitioned") in got
            assert got.index(("group", "svc", "acquiring")) < got.index(("group", "svc", "started"))
            assert [e["seq"] for e in reply["events"]] == list(range(1, len(got) + 1))
            assert d.status(h.clock())["events"]["last"] == reply["last"]
            last = reply["last"]
            d.reload()  # the same configuration: nothing to apply, the stream stays
            (h.config / "ha.cf").write_text((h.config / "ha.cf").read_text() + "debug 1\n")
            d.reload()
            await h.run(0.2)
            again = d._handle_request({"cmd": "events", "after": 0})
            assert again["events"][: len(got)] == reply["events"] and again["last"] >= last
            assert d._handle_request({"cmd": "events", "after": -1})["ok"] is False
            refused = d._handle_request({"cmd": "release", "mode": "all"})
            assert refused == {
                "ok": False,
                "error": "release: no peer is heard, so none can take the groups",
            }
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                not out.exists() or len(out.read_text().splitlines()) < len(got)
            ):
                await asyncio.sleep(0.05)
            assert (tmp_path / "run" / "heartbeat-bin" / "mach_down").exists()
        finally:
            h.close()
        assert not (tmp_path / "run" / "heartbeat-bin").exists()  # the stop removes them
        lines = out.read_text().splitlines()
        assert lines[0] == "1 node beta dead "
        assert [int(line.split()[0]) for line in lines] == sorted(int(x.split()[0]) for x in lines)
        assert status_out.read_text().splitlines()[0] == "alpha beta dead"

    with quiet_logs():
        asyncio.run(scenario())


def page(
    stream: int, events: list[dict[str, Any]], missed: int = 0, last: int = 0
) -> dict[str, Any]:
    last = events[-1]["seq"] if events else last
    return {
        "ok": True,
        "stream": stream,
        "events": events,
        "missed": missed,
        "next": last,
        "last": last,
    }


def event(seq: int, state: str = "dead") -> dict[str, Any]:
    return {
        "seq": seq,
        "time": T,
        "node": "alpha",
        "kind": "node",
        "subject": "beta",
        "state": state,
        "old": "active",
        "reason": "silent",
    }


def test_hbctl_events_follows_across_a_restart_and_says_what_it_missed() -> None:
    answers: list[Any] = [
        page(5, [event(1), event(2, "up")], missed=3),
        page(5, [], last=2),
        ControlError("no hbd is running here"),
        page(6, []),  # a new generation: the stream begins again
        page(6, [event(1, "up")]),
    ]
    asked: list[int] = []

    def ask(after: int) -> dict[str, Any]:
        asked.append(after)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    out = io.StringIO()
    show(ask, out, as_json=False, follow=True, sleep=lambda s: None, stop=lambda: not answers)
    lines = out.getvalue().splitlines()
    assert lines[0] == "-- 3 older notices are no longer kept --"
    assert lines[1].endswith("#1 node beta dead (was active): silent")
    assert "no daemon answers" in lines[3] and lines[4] == "-- the daemon answers again --"
    assert "hbd restarted (generation 5 -> 6)" in lines[5]
    assert lines[6].endswith("#1 node beta up (was active): silent")
    assert asked == [0, 2, 2, 2, 0]
    out = io.StringIO()
    answers[:] = [page(5, [event(1)])]
    assert show(ask, out, as_json=True) == 0
    assert json.loads(out.getvalue())["seq"] == 1
    answers[:] = [ControlError("no hbd is running here")]
    assert show(ask, io.StringIO(), as_json=False) == 3
    assert text_line(event(9)).split(" ", 2)[2] == "#9 node beta dead (was active): silent"


def test_hbctl_events_without_a_daemon_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hbd.commands.cli import hbctl_main

    assert hbctl_main(["--run-dir", str(tmp_path), "events"]) == 3
    assert "no hbd is running here" in capsys.readouterr().err
    assert hbctl_main(["--run-dir", str(tmp_path), "events", "--after", "-1"]) == 2
