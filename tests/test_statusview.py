"""`hbctl status`'s text view says how a partition from each peer is being decided."""

from __future__ import annotations

import io

from rich.console import Console

from hbd.commands.statusview import render_status
from hbd.core.policy import Rules


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
