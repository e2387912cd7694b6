"""`hbctl check-config`: print what hbd understood from a configuration directory."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from hbd.config.model import Config, MediumKind
from hbd.core.model import AgentKind, Resource


def _ms(seconds: float) -> float | int:
    ms = round(seconds * 1000, 3)
    return int(ms) if ms == int(ms) else ms


TIMINGS = ("keepalive", "deadtime", "warntime", "initdead", "deadping", "max_rexmit_delay")


def describe(config: Config) -> dict[str, Any]:
    """The configuration as plain data: the `--json` output of check-config."""
    h = config.hacf
    paths: list[dict[str, Any]] = []
    for m in h.media:
        item: dict[str, Any] = {"id": m.path_id, "kind": m.kind.value, "device": m.device}
        if m.kind is MediumKind.SERIAL:
            item["baud"] = m.baud
        else:
            item["port"] = m.port
        if m.kind is MediumKind.MCAST:
            item.update(group=m.group, ttl=m.ttl, loop=m.loop)
        if m.kind is MediumKind.MCAST6:
            item.update(group=m.group, hops=m.ttl, loop=m.loop)
        if m.kind in (MediumKind.UCAST, MediumKind.UCAST6):
            item["peer"] = m.peer
        if m.kind in (MediumKind.MCAST6, MediumKind.UCAST6):
            item["family"] = "ipv6"
        elif m.kind is not MediumKind.SERIAL:
            item["family"] = "ipv4"
        item["source"] = m.source
        paths.append(item)
    out: dict[str, Any] = {
        "valid": True,
        "config_dir": config.directory,
        "node": config.node_name,
        "nodes": list(h.nodes),
        "cluster": h.cluster,
        "paths": paths,
    }
    for name in TIMINGS:
        out[f"{name}_ms"] = _ms(getattr(h, name))
    out.update(
        udpport=h.udpport,
        baud=h.baud,
        wire=h.wire.value,
        msgfmt=h.msgfmt,
        auto_failback=h.auto_failback.value,
        watchdog=h.watchdog,
        watchdog_timeout_ms=_ms(h.watchdog_timeout) if h.watchdog_timeout else None,
        adaptive_detector=h.adaptive_detector,
        qnetd=None
        if h.qnetd is None
        else {
            "host": h.qnetd,
            "port": h.qnetd_port,
            "algorithm": h.qnetd_algorithm,
            "tls": h.qnetd_tls,
            "tie_breaker": h.qnetd_tie_breaker,
            "node_ids": h.qnetd_node_ids(),
        },
        auth={
            "index": config.authkeys.active.index,
            "method": config.authkeys.active.method.value,
            "indexes": sorted(config.authkeys.entries),
        },
        ping_nodes=[
            {
                "id": p.path_id,
                "address": p.address,
                "family": "ipv6" if ":" in p.address else "ipv4",
            }
            for p in h.ping_nodes
        ],
        ping_groups=[
            {"id": g.path_id, "name": g.name, "addresses": list(g.addresses)} for g in h.ping_groups
        ],
        groups=[
            {
                "name": g.name,
                "preferred": g.preferred,
                "source": g.source,
                "resources": [_resource(config, r) for r in g.resources],
            }
            for g in config.groups
        ],
        logging={
            "logfile": h.logfile,
            "debugfile": h.debugfile,
            "logfacility": h.logfacility,
            "debug": h.debug,
        },
        respawn=[{"user": r.user, "argv": list(r.argv)} for r in h.respawn],
        warnings=[str(w) for w in config.warnings],
    )
    return out


def _resource(config: Config, r: Resource) -> dict[str, Any]:
    item: dict[str, Any] = {"spec": r.spec, "agent": r.agent.value, "path": r.agent_path}
    if r.agent is AgentKind.OCF:
        agent_type, instance = r.args
        item["instance_file"] = os.path.join(config.directory, "conf", "OCF", agent_type, instance)
        prefix = "OCF_RESKEY_"
        item["parameters"] = {k[len(prefix) :]: v for k, v in r.settings if k.startswith(prefix)}
        item["environment"] = {k: v for k, v in r.settings if not k.startswith(prefix)}
    return item


def _fmt_s(ms: float | int) -> str:
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


def render_text(d: dict[str, Any]) -> str:
    """A person's view of `describe()`."""
    lines = [
        f"Configuration {d['config_dir']} is valid for node {d['node']}.",
        f"  nodes:      {', '.join(d['nodes'])} (cluster '{d['cluster']}')",
        "  timings:    " + ", ".join(f"{n} {_fmt_s(d[f'{n}_ms'])}" for n in TIMINGS),
        f"  wire:       {d['wire']} (Heartbeat msgfmt {d['msgfmt']}); "
        f"auth {d['auth']['index']} {d['auth']['method']}",
        f"  failback:   auto_failback {d['auto_failback']}",
        "  watchdog:   "
        + (
            f"{d['watchdog']} timeout "
            + (_fmt_s(d["watchdog_timeout_ms"]) if d["watchdog_timeout_ms"] else "default")
            if d["watchdog"]
            else "none"
        ),
        "  arbiter:    "
        + (
            f"qnetd {d['qnetd']['host']} port {d['qnetd']['port']}, {d['qnetd']['algorithm']}, "
            f"tie-breaker {d['qnetd']['tie_breaker']}, TLS {'on' if d['qnetd']['tls'] else 'off'}"
            ", node ids " + ", ".join(f"{n} {i}" for n, i in d["qnetd"]["node_ids"].items())
            if d["qnetd"]
            else "none"
        ),
        "  paths:",
    ]
    for p in d["paths"]:
        extra = f"{p['baud']} baud" if "baud" in p else f"port {p['port']}"
        lines.append(f"    {p['id']:<32} {extra:<12} ({p['source']})")
    if d["ping_nodes"] or d["ping_groups"]:
        lines.append("  ping nodes:")
        lines.extend(
            f"    {p['id']}" + (" (ping6)" if p["family"] == "ipv6" else "")
            for p in d["ping_nodes"]
        )
        lines.extend(f"    {g['id']} ({', '.join(g['addresses'])})" for g in d["ping_groups"])
    lines.append("  groups:" if d["groups"] else "  groups:     none")
    for g in d["groups"]:
        lines.append(f"    {g['name']} (preferred {g['preferred']}, {g['source']})")
        for r in g["resources"]:
            lines.append(f"      {r['spec']:<40} {r['agent']}")
            if "instance_file" in r:
                params = " ".join(f"{k}={v}" for k, v in r["parameters"].items())
                lines.append(f"        {r['instance_file']}: {params or 'no parameters'}")
    if d["warnings"]:
        lines.append("  warnings:")
        lines.extend(f"    {w}" for w in d["warnings"])
    return "\n".join(lines)


def print_config(config: Config, as_json: bool) -> None:
    d = describe(config)
    if as_json:
        json.dump(d, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render_text(d))
