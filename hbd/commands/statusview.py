"""`hbctl status`, `hbctl nodes`, `hbctl links`: the daemon's status for people and scripts."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

EXIT_FOR_REDUNDANCY = {"redundant": 0, "degraded": 1, "partitioned": 2}


def exit_code(status: dict[str, Any]) -> int:
    """0 redundant, 1 degraded, 2 partitioned (3, no daemon answered, is the caller's)."""
    return EXIT_FOR_REDUNDANCY.get(str(status.get("redundancy")), 2)


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def render_status(status: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]{status['node']}[/bold] {status['state']}  generation {status['generation']}  "
        f"redundancy [bold]{status['redundancy']}[/bold]"
    )
    table = Table("node", "status", "path", "path status", "last heard", "loss", "rtt", "interval")
    for name, node in status["nodes"].items():
        first = True
        for pid, p in node["paths"].items() or {"-": None}.items():
            table.add_row(
                name if first else "",
                node["status"] if first else "",
                pid,
                p["status"] if p else "-",
                _ms(p["last_heard_ms"]) if p else "-",
                f"{p['loss'] * 100:.1f} %" if p else "-",
                _ms(p.get("rtt_ms")) if p else "-",
                _ms(p["interval_ms"]) if p else "-",
            )
            first = False
    console.print(table)
    if status.get("ping_nodes"):
        pings = Table("ping node", "status", "rtt")
        for wid, w in status["ping_nodes"].items():
            pings.add_row(wid, w["status"], _ms(w["rtt_ms"]))
        console.print(pings)
    q = status.get("qnetd")
    if q:
        ago = q.get("last_change_ms_ago")
        console.print(
            f"qnetd {q['server']}: {'connected' if q['connected'] else 'NOT connected'}, "
            f"vote {q['vote'] or 'none'}"
            + (f" for {{{', '.join(q['members'])}}}" if q.get("members") else "")
            + (f", last change {ago / 1000:.1f} s ago" if ago is not None else "")
            + f" ({q['reason']})"
            + (" [bold]degraded: arbiter unreachable[/bold]" if q.get("degraded") else "")
        )
    rules = (status.get("policy") or {}).get("partition_rules") or {}
    for peer, text in rules.items():
        console.print(f"partition from {peer}: {text}")
    if status.get("groups"):
        groups = Table("group", "preferred", "holder", "state")
        for g in status["groups"]:
            groups.add_row(g["name"], g["preferred"], g.get("holder") or "-", g["state"])
        console.print(groups)


def nodes_lines(status: dict[str, Any]) -> list[str]:
    lines = [f"{status['node']} {status['state']} (local)"]
    for name, node in status["nodes"].items():
        up = sum(p["status"] == "up" for p in node["paths"].values())
        lines.append(f"{name} {node['status']} paths {up}/{len(node['paths'])}")
    return lines


def links_lines(status: dict[str, Any]) -> list[str]:
    lines = []
    for name, node in status["nodes"].items():
        for pid, p in node["paths"].items():
            lines.append(
                f"{name} {pid} {p['status']} last_heard {_ms(p['last_heard_ms'])} "
                f"loss {p['loss'] * 100:.1f}% rtt {_ms(p.get('rtt_ms'))}"
            )
    for wid, w in status.get("ping_nodes", {}).items():
        lines.append(f"{wid} {w['status']} rtt {_ms(w['rtt_ms'])}")
    for lid, link in status.get("links", {}).items():
        if not link.get("open", True) and link.get("error"):
            lines.append(f"{lid} cannot be opened: {link['error']}")
    return lines


def dump_json(status: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in status.items() if k != "ok"}, indent=2)
