"""`hbctl status`, `hbctl nodes`, `hbctl links`: the daemon's status for people and scripts."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

EXIT_FOR_REDUNDANCY = {"redundant": 0, "degraded": 1, "partitioned": 2}


def exit_code(status: dict[str, Any]) -> int:
    """0 redundant, 1 degraded, 2 partitioned or a peer with this node's uuid (a clone);
    3, no daemon answered, is the caller's."""
    if status.get("uuid_clash"):
        return 2
    return EXIT_FOR_REDUNDANCY.get(str(status.get("redundancy")), 2)


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


DECISIONS_SHOWN = 5


def _table(*columns: str) -> Table:
    """A table whose cells never wrap or cut (a path id, a group name must read whole),
    with light rules so that the paths table fits 80 columns."""
    table = Table(box=None, padding=(0, 2, 0, 0), pad_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, no_wrap=True)
    return table


def _line(console: Console, text: str) -> None:
    """One line, cut to the terminal's width (80 columns or wider): never wrapped."""
    console.print(text, overflow="ellipsis", no_wrap=True, crop=True, highlight=False)


def render_status(status: dict[str, Any], console: Console) -> None:
    """The cluster for a person, in 80 columns: this node, its peers and paths, ping
    nodes, the arbiter, the groups, who is in standby, and the latest decisions."""
    degraded_by = status.get("degraded_by")
    console.print(
        f"[bold]{status['node']}[/bold] {status['state']}  generation {status['generation']}  "
        f"redundancy [bold]{status['redundancy']}[/bold]"
        + (f" ({degraded_by})" if degraded_by else "")
    )
    clash = status.get("uuid_clash")
    if clash:
        for peer in sorted(clash["peers"]):
            console.print(
                f"[bold red]{peer} claims this node's uuid {clash['uuid']}[/bold red]: a cloned "
                f"machine; on the clone remove {clash['uuid_file']} (Heartbeat: "
                "/var/lib/heartbeat/hb_uuid) and restart it"
            )
    table = _table("node", "status", "path", "path status", "heard", "loss", "rtt", "every")
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
        pings = _table("ping node", "status", "rtt")
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
    policy = status.get("policy") or {}
    for peer, text in (policy.get("partition_rules") or {}).items():
        _line(console, f"partition from {peer}: {text}")
    if status.get("groups"):
        groups = _table("group", "preferred", "holder", "state")
        for g in status["groups"]:
            groups.add_row(g["name"], g["preferred"], g.get("holder") or "-", g["state"])
        console.print(groups)
    hb = status.get("heartbeat_peer")
    if hb:
        _line(
            console,
            f"{hb['peer']} is a Heartbeat node: groups move by its resource protocol "
            f"(this node {hb['state']}, holds {hb['holds']}; {hb['peer']} holds "
            f"{hb['peer_holds']}{'' if hb['peer_stable'] else ', moving'}; "
            f"hand-off: {hb['hand_off']})",
        )
    standby = {n: m for n, m in (policy.get("standby") or {}).items() if m != "none"}
    claims = policy.get("takeover") or {}
    for name in sorted(set(standby) | set(claims)):
        parts = []
        if name in standby:
            parts.append(f"standby {standby[name]} (until `hbctl standby off` there)")
        if name in claims:
            parts.append(f"takeover {claims[name]} (until the next membership change)")
        _line(console, f"{name}: {', '.join(parts)}")
    decisions = status.get("decisions") or []
    if decisions:
        console.print("latest decisions:")
        for d in decisions[-DECISIONS_SHOWN:]:
            ago = d.get("ago_s")
            when = f"{ago:7.1f} s ago" if ago is not None else ""
            _line(console, f"  {when}  {d['decision']}: {d['reason']}")


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
