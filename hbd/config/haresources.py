"""Parse Heartbeat's haresources: one resource group per line, `node resource...`.

Lines continue with a trailing backslash; `#` starts a comment. A resource is
`name::arg1::arg2`; a bare IPv4 address (optionally `ip/prefix/iface/broadcast`) means
`IPaddr::address`. IPv6 service addresses are `IPv6addr::ADDR/PREFIX/IFACE` or
`IPaddr2::ADDR/PREFIX/IFACE`; the `::` inside such an address is kept (Heartbeat's
ResourceManager would split the argument there). Each resource is resolved at load time in
Heartbeat's order: built-in (IPaddr, IPaddr2, IPv6addr, SendArp), then `resource.d/NAME`
in the configuration directory, then
`/etc/init.d/NAME`; `OCF::type::instance` runs the OCF agent `type` with the settings in
`conf/OCF/type/instance`, as Heartbeat's OCF wrapper does. An unresolvable resource is an
error naming its line.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from hbd.config.ipaddr import AddressError, is_ipv6, parse_ipv6addr
from hbd.config.model import ConfigWarning
from hbd.config.ocf import parse_instance
from hbd.config.syntax import digits as _digits
from hbd.config.syntax import lines as _lines
from hbd.core.errors import ConfigError
from hbd.core.model import AgentKind, Resource, ResourceGroup

BUILTINS = ("IPaddr", "IPaddr2", "IPv6addr", "SendArp")
_ADDRESS_AGENTS = ("IPaddr", "IPaddr2", "IPv6addr")
_BARE_IP = re.compile(r"^\d{1,3}(\.\d{1,3}){3}(/.*)?$")


@dataclass(frozen=True, slots=True)
class AgentDirs:
    """Where agents are looked up; tests point these at their own directories."""

    config_dir: str
    initd_dir: str = "/etc/init.d"
    ocf_root: str = "/usr/lib/ocf"


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; drop comments. Returns (first line number, text)."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(_lines(text), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(pending).strip()
        pending = []
        if joined:
            out.append((start, joined))
    if pending and " ".join(pending).strip():
        out.append((start, " ".join(pending).strip()))
    return out


def check_ipaddr_arg(spec: str, agent: str = "IPaddr2") -> str | None:
    """Why an address argument of `agent` is wrong, or None if fine: IPv4
    `ip[/prefix[/iface[/broadcast]]]` (IPaddr, IPaddr2), IPv6 `ip[/prefix[/iface]]`
    (IPaddr2, IPv6addr)."""
    parts = spec.split("/")
    if is_ipv6(parts[0]):
        if agent == "IPaddr":
            return (
                f"'{parts[0]}' is an IPv6 address and IPaddr is IPv4 only; write "
                f"IPv6addr::{spec} or IPaddr2::{spec}"
            )
        try:
            parse_ipv6addr(spec)
        except AddressError as e:
            return str(e)
        return None
    if agent == "IPv6addr":
        return f"IPv6addr takes an IPv6 address, not '{parts[0]}'; write IPaddr2::{spec}"
    if len(parts) > 4:
        return f"'{spec}' has too many parts; use ip/prefix/iface/broadcast"
    try:
        ipaddress.IPv4Address(parts[0])
    except ValueError:
        return f"'{parts[0]}' is not an IPv4 address"
    if len(parts) > 1 and parts[1] and not (_digits(parts[1]) and 0 <= int(parts[1]) <= 32):
        return f"prefix '{parts[1]}' must be a number from 0 to 32"
    if len(parts) > 2 and parts[2] and not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", parts[2]):
        return f"'{parts[2]}' is not an interface name"
    if len(parts) > 3 and parts[3]:
        try:
            ipaddress.IPv4Address(parts[3])
        except ValueError:
            return f"broadcast '{parts[3]}' is not an IPv4 address"
    return None


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _instance_settings(
    settings: str, where: tuple[str, int], warnings: list[ConfigWarning]
) -> tuple[tuple[str, str], ...]:
    """The assignments of an OCF instance file (errors name the file's own line)."""
    path, line = where
    try:
        with open(settings, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(
            path,
            line,
            f"OCF instance settings {settings} not found; create it with one "
            "OCF_RESKEY_name=value per line (the agent's parameters, as Heartbeat's OCF "
            "wrapper reads them)",
        ) from None
    except OSError as e:
        raise ConfigError(settings, None, f"cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(settings, data[: e.start].count(b"\n") + 1, "not UTF-8 text") from None
    parsed = parse_instance(text, settings)
    warnings.extend(parsed.warnings)
    return parsed.assignments


def _resolve(
    word: str, where: tuple[str, int], dirs: AgentDirs, warnings: list[ConfigWarning]
) -> Resource:
    path, line = where
    source = f"{path}:{line}"
    args: tuple[str, ...]
    if _BARE_IP.match(word):
        name, args = "IPaddr", (word,)
    elif is_ipv6(word.split("/", 1)[0]):
        raise ConfigError(
            path,
            line,
            f"'{word}': a bare address in haresources is IPv4 (as in Heartbeat); write "
            f"IPv6addr::{word} (or IPaddr2::{word}) for an IPv6 service address",
        )
    else:
        name, *rest = word.split("::")
        args = tuple(rest)
        joined = "::".join(rest)
        if name in _ADDRESS_AGENTS and len(rest) > 1 and is_ipv6(joined.split("/", 1)[0]):
            args = (joined,)  # IPv6addr::fd00::5/64/eth0: one argument, its '::' kept
    if not name or any(not a for a in args):
        raise ConfigError(path, line, f"resource '{word}' has an empty part; write name::arg::arg")
    if name in BUILTINS:
        if name in _ADDRESS_AGENTS:
            if len(args) != 1:
                form = "ip/prefix/iface" if name == "IPv6addr" else "ip/prefix/iface/broadcast"
                raise ConfigError(path, line, f"{name} takes one argument {form}: '{word}'")
            why = check_ipaddr_arg(args[0], name)
            if why:
                raise ConfigError(path, line, f"{name}: {why}")
        elif len(args) < 1:
            raise ConfigError(path, line, "SendArp needs ip/iface, e.g. SendArp::10.0.0.5/eth0")
        return Resource(name, args, AgentKind.BUILTIN, None, source)
    if name == "OCF":
        if len(args) != 2:
            raise ConfigError(
                path, line, f"'{word}': OCF resources are written OCF::agent-type::instance-name"
            )
        agent_type, instance = args
        agent = _find_ocf(dirs.ocf_root, agent_type)
        if agent is None:
            raise ConfigError(
                path,
                line,
                f"OCF agent '{agent_type}' not found under {dirs.ocf_root}/resource.d/*/",
            )
        if "/" in instance or instance in (".", ".."):
            raise ConfigError(path, line, f"OCF instance name '{instance}' must not contain '/'")
        settings = _instance_settings(
            os.path.join(dirs.config_dir, "conf", "OCF", agent_type, instance), where, warnings
        )
        return Resource(name, args, AgentKind.OCF, agent, source, settings)
    if "/" in name or name in (".", ".."):
        raise ConfigError(path, line, f"resource name '{name}' must not contain '/'")
    script = os.path.join(dirs.config_dir, "resource.d", name)
    if _executable(script):
        return Resource(name, args, AgentKind.RESOURCE_D, script, source)
    script = os.path.join(dirs.initd_dir, name)
    if _executable(script):
        return Resource(name, args, AgentKind.INIT_D, script, source)
    raise ConfigError(
        path,
        line,
        f"resource '{name}' not found: it is not built in ({', '.join(BUILTINS)}) and there is "
        f"no executable {os.path.join(dirs.config_dir, 'resource.d', name)} or "
        f"{os.path.join(dirs.initd_dir, name)}",
    )


def _find_ocf(ocf_root: str, agent_type: str) -> str | None:
    if "/" in agent_type:
        return None
    base = os.path.join(ocf_root, "resource.d")
    try:
        providers = sorted(os.listdir(base), key=lambda p: (p != "heartbeat", p))
    except OSError:
        return None
    for provider in providers:
        candidate = os.path.join(base, provider, agent_type)
        if _executable(candidate):
            return candidate
    return None


def parse_haresources(
    text: str,
    nodes: tuple[str, ...],
    dirs: AgentDirs,
    path: str = "haresources",
    warnings: list[ConfigWarning] | None = None,
) -> tuple[ResourceGroup, ...]:
    """Parse haresources text into resolved groups; nodes are ha.cf's node names.

    Warnings (from OCF instance files) are appended to `warnings` when it is given."""
    found: list[ConfigWarning] = [] if warnings is None else warnings
    groups: list[ResourceGroup] = []
    seen: dict[str, str] = {}
    for line, content in _logical_lines(text):
        if "\x00" in content:
            raise ConfigError(path, line, "line contains a NUL byte; haresources must be text")
        node, *words = content.split()
        node = node.lower()
        if node not in nodes:
            raise ConfigError(
                path,
                line,
                f"'{node}' is not a node of this cluster (ha.cf lists {', '.join(nodes)}); "
                "each line starts with the group's preferred node",
            )
        if not words:
            raise ConfigError(path, line, f"group for node '{node}' lists no resources")
        resources = tuple(_resolve(w, (path, line), dirs, found) for w in words)
        for res in resources:
            if res.spec in seen:
                raise ConfigError(
                    path, line, f"resource '{res.spec}' is already in a group at {seen[res.spec]}"
                )
            seen[res.spec] = res.source
        groups.append(ResourceGroup(node, resources, f"{path}:{line}"))
    return tuple(groups)
