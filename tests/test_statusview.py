"""`hbctl status`'s text view says how a partition from each peer is being decided."""

from __future__ import annotations

import io

from rich.console import Console

from hbd.commands.statusview import exit_code, render_status
from hbd.core.membership import NodeStatus, PathStatus
from hbd.core.policy import Rules
from hbd.core.states import NodeState, PathState
from hbd.shell.daemon import degraded_by, redundancy


def rendered(status: dict[str, object]) -> str:
    out = io.StringIO()
    render_status(status, Console(file=out, width=200, color_system=None))
    return out.getvalue()


def test_status_names_the_partition_rules_in_force_and_the_arbiter_state() -> None:
    status: dict[str, object] = {
        "node": "alpha",
        "state": "active",
        "generation": 3,
        "redundancy": "partitioned",
        "nodes": {"beta": {"status": "dead", "paths": {}}},
        "qnetd": {
            "server": "10.0.0.9:5403",
            "connected": False,
            "vote": None,
            "members": [],
            "last_change_ms_ago": 4200,
            "reason": "connection refused",
            "degraded": True,
        },
        "policy": {"partition_rules": {"beta": Rules.WITHOUT.value}},
    }
    text = rendered(status)
    assert "qnetd 10.0.0.9:5403: NOT connected, vote none" in text
    assert "degraded: arbiter unreachable" in text
    assert (
        "partition from beta: as without an arbiter: qnetd was unreachable from both nodes" in text
    )


def a_busy_status() -> dict[str, object]:
    path = {"status": "up", "last_heard_ms": 12.5, "loss": 0.0, "rtt_ms": 0.8, "interval_ms": 200}
    return {
        "node": "alpha",
        "state": "active",
        "generation": 12,
        "redundancy": "degraded",
        "degraded_by": "arbiter unreachable",
        "nodes": {
            "beta": {
                "status": "active",
                "paths": {
                    "serial:/dev/ttyS0": path,
                    "bcast:eth0": path,
                    "ucast:eth1:10.0.0.2": dict(path, status="dead", rtt_ms=None),
                },
            }
        },
        "ping_nodes": {"ping:10.91.0.3": {"status": "up", "rtt_ms": 0.3}},
        "groups": [
            {
                "name": "IPaddr::10.91.0.100/24",
                "preferred": "alpha",
                "holder": "alpha",
                "state": "started",
            },
        ],
        "policy": {
            "standby": {"alpha": "none", "beta": "all"},
            "takeover": {"alpha": "all"},
            "partition_rules": {},
        },
        "decisions": [
            {"at": 1.0, "ago_s": 61.2, "decision": f"wait g{i}", "reason": "x" * 200}
            for i in range(8)
        ]
        + [
            {
                "at": 9.0,
                "ago_s": 0.4,
                "decision": "acquire IPaddr::10.91.0.100/24",
                "reason": "its target is this node and every peer agreed",
            }
        ],
    }


def test_the_text_view_fits_80_columns_and_says_why_who_is_in_standby_and_what_was_decided() -> (
    None
):
    out = io.StringIO()
    render_status(a_busy_status(), Console(file=out, width=80, color_system=None))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "redundancy degraded (arbiter unreachable)" in text
    assert "ucast:eth1:10.0.0.2  dead" in text and "…" not in text.split("latest")[0]
    assert "beta: standby all (until `hbctl standby off` there)" in text
    assert "alpha: takeover all (until the next membership change)" in text
    assert "alpha: standby" not in text  # "none" is no standby
    assert "latest decisions:" in text
    shown = [line for line in text.splitlines() if " s ago  " in line]
    assert len(shown) == 5  # the latest five, each on one line, cut to the width
    assert shown[-1].strip().startswith("0.4 s ago  acquire IPaddr::10.91.0.100/24: its target")


def node_status(name: str, state: NodeState, paths: dict[str, PathState]) -> NodeStatus:
    return NodeStatus(
        name, state, None, 1, 0.0, 0.1, 1.0, None,
        tuple(PathStatus(p, s, 0.0, 0.1, 0.2, 0.0, 0.0, 5, 0, 1.0) for p, s in paths.items()),
    )  # fmt: skip


def test_redundancy_and_why_it_is_degraded_in_words() -> None:
    me = node_status("alpha", NodeState.ACTIVE, {})
    beta = node_status(
        "beta",
        NodeState.ACTIVE,
        {"serial:/dev/ttyS0": PathState.UP, "bcast:eth0": PathState.DEAD},
    )
    assert redundancy((me, beta), "alpha") == "degraded"
    assert (
        degraded_by((me, beta), "alpha", frozenset()) == "beta: 1 of 2 paths up (bcast:eth0 down)"
    )
    gone = node_status("beta", NodeState.DEAD, {"bcast:eth0": PathState.DEAD})
    assert redundancy((me, gone), "alpha") == "partitioned"
    stopped = frozenset({"beta"})
    assert redundancy((me, gone), "alpha", stopped) == "degraded"  # said goodbye: no partition
    assert degraded_by((me, gone), "alpha", stopped) == "beta stopped cleanly"


def test_a_clone_of_this_node_is_shown_first_and_exits_2_until_it_has_its_own_uuid() -> None:
    status = a_busy_status()
    assert exit_code(status) == 1
    status["uuid_clash"] = {
        "uuid": "0707-clone",
        "uuid_file": "/var/lib/hbd/uuid",
        "peers": {"beta": "name=beta uuid=07.. generation=3 via bcast:eth0 from 10.0.0.2"},
    }
    assert exit_code(status) == 2
    out = io.StringIO()
    render_status(status, Console(file=out, width=80, color_system=None))
    assert "beta claims this node's uuid 0707-clone" in out.getvalue()


def test_two_daemons_with_one_uuid_both_say_so_in_status() -> None:
    import dataclasses

    from hbd.core.events import UuidClash
    from hbd.core.model import WireFormat
    from hbd.testing.sim import SimCluster

    clone = b"\x07" * 16
    sim = SimCluster(
        ("alpha", "beta"),
        keepalive=0.2,
        deadtime=1.0,
        wire=WireFormat.HEARTBEAT,  # Heartbeat's frames carry the uuid (srcuuid)
        tweak=lambda s: dataclasses.replace(s, uuid=clone),
    )
    sim.run_for(3)
    for n, peer in (("alpha", "beta"), ("beta", "alpha")):
        assert list(sim.node(n).engine.membership.uuid_clashes()) == [peer]
        assert [e.node for _, e in sim.events_of(n, UuidClash)] == [peer]


def test_a_heartbeat_peer_is_named_with_where_its_resource_protocol_stands() -> None:
    status: dict[str, object] = {
        "node": "alpha",
        "state": "active",
        "generation": 2,
        "redundancy": "redundant",
        "nodes": {"hb": {"status": "active", "paths": {}}},
        "heartbeat_peer": {
            "peer": "hb",
            "state": "stable",
            "holds": "none",
            "peer_holds": "all",
            "peer_stable": False,
            "hand_off": "this node takes over",
        },
    }
    text = rendered(status)
    assert "hb is a Heartbeat node: groups move by its resource protocol" in text
    assert "hb holds all, moving; hand-off: this node takes over" in text
