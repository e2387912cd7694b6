"""`hbctl cl-status` answers as Heartbeat 3.0.6's `cl_status` did.

The expected outputs are not written here: they are what the real cl_status printed
against two real Heartbeat daemons (tests/vectors/cl_status/, recorded by
tests/tools/capture_clstatus.py; its README lists the stages). The root test builds the
same cluster with hbd (two nodes, bcast eth0, ucast eth1, a serial line, the peer's eth0
address as a ping node), walks it through the same stages and asks hbd every question
that was asked of Heartbeat, with the names translated (hb1 -> alpha, hb2 -> beta).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hbd.commands.cli import hbctl_main
from hbd.commands.clstatus import (
    NORMAL_FAIL,
    OK,
    PARAMETER_ERROR,
    SIGNON_REASON,
    TIMEOUT,
    Reach,
    cl_status,
    declaration_order,
    fetch,
    link_name,
    split_hbctl_options,
)

from cluster import Cluster, build, wait_for
from netns import requires_root, requires_socat

VECTORS = Path(__file__).parent / "vectors" / "cl_status"
PREFIX = "<ts> <host> cl_status: [<pid>]: "
PING = "10.80.0.2"  # beta's eth0 address: tests/cluster.py gives the first network 10.80.0.0/24
_STAMP = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ cl_status: \[\d+\]: ", re.MULTILINE)


@dataclass(frozen=True)
class Record:
    stage: str
    node: str
    argv: list[str]
    stdout: str
    rc: int
    stderr: str


def recorded(run: str, stage: str, node: str = "hb1") -> list[Record]:
    with (VECTORS / f"{run}.jsonl").open() as f:
        records = [Record(**json.loads(line)) for line in f]
    found = [r for r in records if r.stage == stage and r.node == node]
    assert found, f"no {run} records for stage {stage} on {node}"
    return found


def words(record: Record) -> list[str]:
    assert record.argv[0] == "cl_status"
    return record.argv[1:]


# -- without a daemon ---------------------------------------------------------------


def test_with_hbd_stopped_every_subcommand_answers_as_cl_status_did() -> None:
    for record in recorded("nogroups", "stopped"):
        reply = cl_status(words(record), None, reach=Reach.STOPPED, log_prefix=PREFIX)
        assert (reply.stdout, reply.stderr, reply.rc) == (
            record.stdout,
            record.stderr,
            record.rc,
        ), record.argv


def test_an_unknown_subcommand_is_a_parameter_error_even_with_a_daemon() -> None:
    (record,) = [r for r in recorded("nogroups", "both") if words(r) == ["bogus"]]
    status = {"node": "hb1", "state": "active", "nodes": {}, "links": {}}
    reply = cl_status(["bogus"], status, log_prefix=PREFIX)
    assert (reply.stdout, reply.stderr, reply.rc) == (record.stdout, record.stderr, record.rc)
    assert reply.rc == PARAMETER_ERROR


def test_a_daemon_that_does_not_answer_in_time_ends_like_cl_status_alarm() -> None:
    reply = cl_status(["nodestatus", "beta"], None, reach=Reach.TIMED_OUT)
    assert reply == type(reply)("", "", TIMEOUT)


def test_a_daemon_that_refuses_us_is_apparently_running() -> None:
    reply = cl_status(["hbstatus"], None, reach=Reach.REFUSED, reason="permission denied")
    assert reply.stdout == (
        "Heartbeat is apparently running on this machine, but refuses my connection\n"
    )
    assert reply.rc == OK
    verbose = cl_status(["hbstatus", "-v"], None, reach=Reach.REFUSED, reason="EACCES")
    assert verbose.stdout.endswith("(EACCES)\n")
    other = cl_status(["listnodes"], None, reach=Reach.REFUSED, reason="EACCES", log_prefix="")
    assert other.stderr == "ERROR: Cannot signon with heartbeat\nERROR: REASON: EACCES\n"
    assert other.rc == NORMAL_FAIL


def test_no_arguments_or_dash_h_print_the_usage_and_succeed() -> None:
    for argv in ([], ["-h"]):
        reply = cl_status(argv, None, reach=Reach.STOPPED)
        assert reply.rc == OK
        assert reply.stdout.startswith("Usage: hbctl cl-status <sub-command>")
        assert "hblinkstatus <node-name> <link-name>" in reply.stdout


def hb_status(me: str, peer_state: str, groups: list[dict[str, str]]) -> dict[str, Any]:
    """A status as hbd reports it, for the recorded `groups` run's situations."""
    return {
        "node": me,
        "state": "active",
        "nodes": {"hb2" if me == "hb1" else "hb1": {"status": peer_state, "last_heard_ms": 9}},
        "links": {},
        "groups": groups,
    }


@pytest.mark.parametrize(
    ("stage", "holders"),
    [("both", {"alpha": "hb1", "beta": "hb2"}), ("peer-dead", {"alpha": "hb1", "beta": "hb1"})],
)
def test_rscstatus_from_groups_is_what_heartbeat_said_with_those_haresources(
    stage: str, holders: dict[str, str]
) -> None:
    """haresources `hb1 hbdtest::alpha` / `hb2 hbdtest::beta`: who holds what in each stage."""
    preferred = {"alpha": "hb1", "beta": "hb2"}
    groups = [
        {"name": g, "preferred": preferred[g], "holder": holders[g], "state": "running"}
        for g in preferred
    ]
    status = hb_status("hb1", "dead" if stage == "peer-dead" else "active", groups)
    for record in recorded("groups", stage):
        if words(record)[0] == "rscstatus":
            reply = cl_status(words(record), status)
            assert (reply.stdout, reply.rc) == (record.stdout, record.rc)


def test_rscstatus_says_none_or_foreign_when_this_node_holds_no_group_of_its_own() -> None:
    groups = [
        {"name": "alpha", "preferred": "hb1", "holder": "hb2", "state": "running"},
        {"name": "beta", "preferred": "hb2", "holder": "hb2", "state": "running"},
    ]
    assert cl_status(["rscstatus"], hb_status("hb1", "active", groups)).stdout == "none\n"
    assert cl_status(["rscstatus", "-m"], hb_status("hb2", "active", groups)).stdout == (
        "This node is holding all resources.\n"
    )
    groups[1]["holder"] = "hb1"
    assert cl_status(["rscstatus"], hb_status("hb1", "active", groups)).stdout == "foreign\n"


def test_heartbeat_names_links_by_interface_or_tty_and_nodes_in_ha_cf_line_order() -> None:
    assert link_name("bcast:eth0") == "eth0"
    assert link_name("ucast:eth1:10.0.0.2") == "eth1"
    assert link_name("mcast:eth2:239.0.0.1") == "eth2"
    assert link_name("serial:/dev/ttyS0") == "/dev/ttyS0"
    hacf = "keepalive 1\nping 10.0.0.254 # the router\nnode alpha\nNode beta gamma\n#node x\n"
    hacf += "ping_group gw 10.0.0.1 10.0.0.2\n"
    assert declaration_order(hacf) == ["10.0.0.254", "alpha", "beta", "gamma", "gw"]


def test_hbctl_own_directory_options_may_follow_the_cl_status_words() -> None:
    assert split_hbctl_options(["nodestatus", "-m", "beta", "--run-dir", "/r"]) == (
        ["nodestatus", "-m", "beta"],
        {"run_dir": "/r"},
    )
    assert split_hbctl_options(["--config-dir=/c", "listnodes"]) == (
        ["listnodes"],
        {"config_dir": "/c"},
    )


def test_hbctl_cl_status_without_a_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hbctl_main(["cl-status", "hbstatus", "--run-dir", str(tmp_path)]) == NORMAL_FAIL
    assert capsys.readouterr().out == "Heartbeat is stopped on this machine.\n"
    assert hbctl_main(["cl-status", "nodestatus", "beta", "--run-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert _STAMP.sub(PREFIX, err) == (
        f"{PREFIX}ERROR: Cannot signon with heartbeat\n{PREFIX}ERROR: REASON: {SIGNON_REASON}\n"
    )
    assert hbctl_main(["cl-status", "listnodes", "--run-dir"]) == 2
    assert "--run-dir needs a directory" in capsys.readouterr().err


# -- against running hbd daemons --------------------------------------------------------


def translate(text: str, c: Cluster) -> str:
    for old, new in (
        ("<tty-hb1>", c.serial("alpha", "beta").device("alpha")),
        ("<tty-hb2>", c.serial("alpha", "beta").device("beta")),
        ("10.214.0.2", PING),
        ("hb1", "alpha"),
        ("hb2", "beta"),
    ):
        text = text.replace(old, new)
    return text


def ask_like_heartbeat(c: Cluster, stage: str, hb_node: str) -> int:
    """Ask hbd every recorded question of this stage; compare; the number compared."""
    node = c["alpha" if hb_node == "hb1" else "beta"]
    status, reach, reason = fetch(str(node.run_dir))
    declared = declaration_order((node.config_dir / "ha.cf").read_text())
    wrong = []
    records = recorded("nogroups", stage, hb_node)
    for record in records:
        argv = [translate(w, c) for w in words(record)]
        reply = cl_status(
            argv, status, reach=reach, reason=reason, declared=declared, log_prefix=PREFIX
        )
        want = (translate(record.stdout, c), translate(record.stderr, c), record.rc)
        if (reply.stdout, reply.stderr, reply.rc) != want:
            wrong.append(f"{argv}: hbd {reply} but Heartbeat {want}")
    assert not wrong, f"stage {stage} on {node.name}:\n" + "\n".join(wrong) + f"\n{status}"
    # and once through the real command line, as a script runs it
    for record in records[:3]:
        argv = [translate(w, c) for w in words(record)]
        proc = node.hbctl("cl-status", *argv, "--config-dir", str(node.config_dir))
        got = (proc.stdout, _STAMP.sub(PREFIX, proc.stderr), proc.returncode)
        assert got == (translate(record.stdout, c), translate(record.stderr, c), record.rc)
    return len(records)


def witness_up(c: Cluster, name: str) -> dict[str, Any] | None:
    status = c[name].status()
    if status is None or status["ping_nodes"].get(f"ping:{PING}", {}).get("status") != "up":
        return None
    return status


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Cluster]:
    with build(tmp_path, extra=[f"ping {PING}"]) as c:
        assert c.network("eth0").addresses["beta"] == PING
        yield c


@pytest.mark.root
@pytest.mark.slow
@requires_root
@requires_socat
def test_a_running_hbd_pair_answers_like_heartbeat_at_every_stage(pair: Cluster) -> None:
    c = pair
    asked = ask_like_heartbeat(c, "stopped", "hb1")
    c.start("alpha")
    c.wait_node("alpha", "beta", ["dead"], timeout=10.0)  # initdead passed, beta never heard
    c.wait(lambda: witness_up(c, "alpha"), "alpha's ping node up", 10.0)
    asked += ask_like_heartbeat(c, "alone", "hb1")
    c.start("beta")
    c.wait_all_up(15.0)
    c.wait(lambda: witness_up(c, "alpha"), "alpha's ping node up", 10.0)
    c.wait(lambda: witness_up(c, "beta"), "beta's ping node up", 10.0)
    asked += ask_like_heartbeat(c, "both", "hb1")
    asked += ask_like_heartbeat(c, "both", "hb2")
    eth1 = c.network("eth1")
    eth1.cut("beta", "down")
    c.wait_path("alpha", "beta", eth1.path_id("alpha", "beta"), "dead")
    asked += ask_like_heartbeat(c, "cut", "hb1")
    eth1.restore("beta")
    c["beta"].kill()
    c.wait_node("alpha", "beta", ["dead"], timeout=5.0)
    wait_for(lambda: witness_up(c, "alpha"), 5.0, "alpha's ping node still up")
    asked += ask_like_heartbeat(c, "peer-dead", "hb1")
    print(f"cl-status: {asked} recorded cl_status answers matched by hbd")
