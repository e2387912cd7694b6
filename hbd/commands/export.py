"""`hbctl export pacemaker`: the haresources groups as a Pacemaker configuration.

Two formats: crm shell (`crm configure load update FILE`) and pcs commands (a shell
script). The mapping is documented in docs/resources.md:

- each haresources line -> a group, its resources in the same order (Pacemaker groups
  start left to right and stop right to left, as Heartbeat does);
- IPaddr/IPaddr2/bare address -> ocf:heartbeat:IPaddr2 (ip, cidr_netmask, nic, iflabel,
  broadcast; IPv6 too); IPv6addr -> ocf:heartbeat:IPv6addr (ipv6addr, cidr_netmask, nic);
  resource.d scripts with a known OCF twin (Filesystem, SendArp, IPsrcaddr, MailTo, Delay,
  apache, Raid1, LVM, Xinetd, portblock, ...) -> that agent with named parameters;
  OCF::TYPE::INSTANCE -> ocf:PROVIDER:TYPE with the OCF_RESKEY_ parameters of its instance
  file; init.d scripts -> lsb:NAME; anything else -> lsb:NAME with a comment saying it
  needs a wrapper;
- the preferred node -> a location constraint of score 100;
- auto_failback on/legacy -> resource-stickiness 0 (groups go home), off -> 1000
  (greater than the location score, so groups stay; still finite so an operator's
  `crm resource move` wins);
- two-node properties: stonith-enabled=false (with a warning: configure sbd or a fence
  device), and a comment about corosync's `two_node: 1` quorum option.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hbd.core.model import AgentKind, AutoFailback, Resource, ResourceGroup

LOCATION_SCORE = 100
STICKY_SCORE = 1000  # auto_failback off: above LOCATION_SCORE
START_TIMEOUT = "60s"
STOP_TIMEOUT = "60s"
MONITOR = ("10s", "20s")  # interval, timeout

# resource.d NAME -> (OCF type, parameter names for the positional `::` arguments)
_OCF_TWINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Filesystem": ("Filesystem", ("device", "directory", "fstype", "options")),
    "SendArp": ("SendArp", ()),  # ip/nic, split below
    "IPsrcaddr": ("IPsrcaddr", ("ipaddress",)),
    "MailTo": ("MailTo", ("email", "subject")),
    "Delay": ("Delay", ("startdelay", "stopdelay", "mondelay")),
    "apache": ("apache", ("configfile",)),
    "Raid1": ("Raid1", ("raidconf", "raiddev")),
    "LVM": ("LVM-activate", ("vgname",)),
    "Xinetd": ("Xinetd", ("service",)),
    "portblock": ("portblock", ("protocol", "portno", "action")),
    "LinuxSCSI": ("LinuxSCSI", ("scsi",)),
    "ICP": ("ICP", ("driveid", "device")),
    "WAS": ("WAS", ("config",)),
    "db2": ("db2", ("instance",)),
    "IPv6addr": ("IPv6addr", ("ipv6addr",)),
    "AudibleAlarm": ("AudibleAlarm", ("nodelist",)),
    "WinPopup": ("WinPopup", ("hostfile",)),
}
_IP_AGENTS = frozenset({"IPaddr", "IPaddr2"})


class ExportError(ValueError):
    """A resource cannot be expressed; names its haresources line."""


@dataclass(frozen=True, slots=True)
class Primitive:
    id: str
    agent: str  # class:provider:type or lsb:NAME
    params: tuple[tuple[str, str], ...]
    note: str | None  # a comment for the user, when the mapping is not exact
    source: str


def _sanitize(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    s = re.sub(r"_+", "_", s).strip("_.-")
    if not s or not (s[0].isalpha() or s[0] == "_"):
        s = f"r_{s}"
    return s


class _Ids:
    def __init__(self) -> None:
        self.used: set[str] = set()

    def make(self, base: str) -> str:
        base = _sanitize(base)
        candidate, n = base, 1
        while candidate in self.used:
            n += 1
            candidate = f"{base}-{n}"
        self.used.add(candidate)
        return candidate


def _ipaddr_params(r: Resource) -> tuple[tuple[str, str], ...]:
    from hbd.config.ipaddr import AddressError, parse_ipaddr

    if len(r.args) != 1:
        raise ExportError(f"{r.source}: {r.spec}: {r.name} takes one argument")
    try:
        a = parse_ipaddr(r.args[0])
    except AddressError as e:
        raise ExportError(f"{r.source}: {r.spec}: {e}") from None
    params: list[tuple[str, str]] = [("ip", str(a.ip))]
    if a.prefixlen is not None:
        params.append(("cidr_netmask", str(a.prefixlen)))
    if a.iface is not None:
        params.append(("nic", a.iface))
    if a.label is not None:
        params.append(("iflabel", a.label.split(":", 1)[1]))
    if a.broadcast is not None:
        params.append(("broadcast", str(a.broadcast)))
    return tuple(params)


def _ocf_provider(r: Resource) -> str:
    if r.agent_path:
        parts = r.agent_path.rstrip("/").split("/")
        if len(parts) >= 3 and parts[-3] == "resource.d":
            return parts[-2]
    return "heartbeat"


def primitive_for(r: Resource, ids: _Ids) -> Primitive:
    """How one haresources resource becomes one Pacemaker primitive."""
    if r.name in _IP_AGENTS:
        params = _ipaddr_params(r)
        return Primitive(
            ids.make(f"ip_{params[0][1]}"), "ocf:heartbeat:IPaddr2", params, None, r.source
        )
    if r.name == "IPv6addr" and r.agent is AgentKind.BUILTIN:
        params = tuple(("ipv6addr" if k == "ip" else k, v) for k, v in _ipaddr_params(r))
        return Primitive(
            ids.make(f"ip_{params[0][1]}"), "ocf:heartbeat:IPv6addr", params, None, r.source
        )
    if r.agent is AgentKind.OCF:
        agent_type, instance = r.args
        prefix = "OCF_RESKEY_"
        params_kv = tuple((k[len(prefix) :], v) for k, v in r.settings if k.startswith(prefix))
        agent = f"ocf:{_ocf_provider(r)}:{agent_type}"
        return Primitive(ids.make(instance), agent, params_kv, None, r.source)
    if r.name == "SendArp":
        ip, _, nic = (r.args[0] if r.args else "").partition("/")
        params = (("ip", ip), ("nic", nic)) if nic else (("ip", ip),)
        return Primitive(ids.make(f"arp_{ip}"), "ocf:heartbeat:SendArp", params, None, r.source)
    if r.name in _OCF_TWINS and r.agent is not AgentKind.INIT_D:
        ocf_type, names = _OCF_TWINS[r.name]
        if len(r.args) > len(names):
            raise ExportError(
                f"{r.source}: {r.spec}: {r.name} takes at most {len(names)} arguments"
            )
        params = tuple(zip(names, r.args, strict=False))
        base = f"fs_{r.args[1]}" if r.name == "Filesystem" and len(r.args) > 1 else r.name
        return Primitive(ids.make(base), f"ocf:heartbeat:{ocf_type}", params, None, r.source)
    note = None
    if r.agent is AgentKind.RESOURCE_D:
        note = (
            f"{r.spec} was a Heartbeat resource.d script with no OCF twin: install it as an "
            f"LSB init script named {r.name}, or write an OCF agent"
        )
    elif r.args:
        note = f"{r.spec}: LSB scripts take no arguments; {'::'.join(r.args)} is dropped"
    return Primitive(ids.make(r.name), f"lsb:{r.name}", (), note, r.source)


@dataclass(frozen=True, slots=True)
class _Plan:
    groups: tuple[tuple[str, str, tuple[Primitive, ...]], ...]  # id, preferred, members
    stickiness: int
    failback_note: str | None


def _plan(groups: Iterable[ResourceGroup], auto_failback: AutoFailback) -> _Plan:
    ids = _Ids()
    out = []
    for g in groups:
        prims = tuple(primitive_for(r, ids) for r in g.resources)
        out.append((ids.make(f"grp_{prims[0].id}"), g.preferred, prims))
    stick = STICKY_SCORE if auto_failback is AutoFailback.OFF else 0
    note = None
    if auto_failback is AutoFailback.LEGACY:
        note = "auto_failback legacy is exported as on (groups return to their preferred node)"
    return _Plan(tuple(out), stick, note)


def _header(fmt: str, plan: _Plan, comment: str) -> list[str]:
    lines = [
        f"{comment} Pacemaker configuration exported by hbd from haresources ({fmt} format).",
        f"{comment} Fencing is DISABLED below, as it was under Heartbeat's haresources mode:",
        f"{comment} configure sbd (it can use the same watchdog) or a fence device, then set",
        f"{comment} stonith-enabled=true. For two nodes, set corosync.conf's quorum two_node: 1.",
    ]
    if plan.failback_note:
        lines.append(f"{comment} {plan.failback_note}")
    return lines


def _crm(plan: _Plan) -> str:
    lines = _header("crm", plan, "#")
    for gid, preferred, prims in plan.groups:
        lines.append("")
        for p in prims:
            if p.note:
                lines.append(f"# {p.note}")
            text = f"primitive {p.id} {p.agent}"
            if p.params:
                text += " params " + " ".join(f"{k}={_crm_quote(v)}" for k, v in p.params)
            text += (
                f" op start timeout={START_TIMEOUT} interval=0s"
                f" op stop timeout={STOP_TIMEOUT} interval=0s"
                f" op monitor interval={MONITOR[0]} timeout={MONITOR[1]}"
            )
            lines.append(f"# from {p.source}")
            lines.append(text)
        lines.append(f"group {gid} {' '.join(p.id for p in prims)}")
        lines.append(f"location loc_{gid} {gid} {LOCATION_SCORE}: {preferred}")
    lines.append("")
    lines.append(f"rsc_defaults resource-stickiness={plan.stickiness}")
    lines.append("property stonith-enabled=false")
    return "\n".join(lines) + "\n"


def _crm_quote(v: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:@,+-]+", v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pcs(plan: _Plan) -> str:
    lines = ["#!/bin/sh", *_header("pcs", plan, "#"), "set -e"]
    for gid, preferred, prims in plan.groups:
        lines.append("")
        for p in prims:
            if p.note:
                lines.append(f"# {p.note}")
            lines.append(f"# from {p.source}")
            argv: list[str] = ["pcs", "resource", "create", p.id, p.agent]
            argv += [f"{k}={v}" for k, v in p.params]
            argv += ["op", "start", f"timeout={START_TIMEOUT}", "interval=0s"]
            argv += ["op", "stop", f"timeout={STOP_TIMEOUT}", "interval=0s"]
            argv += ["op", "monitor", f"interval={MONITOR[0]}", f"timeout={MONITOR[1]}"]
            argv += ["--group", gid]
            lines.append(shlex.join(argv))
        lines.append(
            shlex.join(
                ["pcs", "constraint", "location", gid, "prefers", f"{preferred}={LOCATION_SCORE}"]
            )
        )
    lines.append("")
    lines.append(
        shlex.join(
            ["pcs", "resource", "defaults", "update", f"resource-stickiness={plan.stickiness}"]
        )
    )
    lines.append("pcs property set stonith-enabled=false")
    return "\n".join(lines) + "\n"


def export_pacemaker(
    groups: Sequence[ResourceGroup], auto_failback: AutoFailback, fmt: str = "crm"
) -> str:
    """The groups as crm shell configuration (`fmt="crm"`) or pcs commands (`"pcs"`)."""
    if fmt not in ("crm", "pcs"):
        raise ValueError(f"unknown export format {fmt!r}: use crm or pcs")
    plan = _plan(groups, auto_failback)
    return _crm(plan) if fmt == "crm" else _pcs(plan)
