"""Parse Heartbeat 3.0.6's ha.cf, with Heartbeat's syntax, defaults and checks.

Syntax (as Heartbeat): one directive per line, `#` starts a comment anywhere, values split
on blanks and commas, directive names case-insensitive. Times are `10`, `1.5` (seconds),
`1500ms`, `200us`, rounded to whole milliseconds as Heartbeat's `cl_get_msec` does.

Defaults and derived values were read off Heartbeat 3.0.6 itself (`cl_status
hbparameter`): keepalive 1 s, deadtime 30 s, warntime deadtime/2, deadping deadtime,
initdead deadtime when deadtime > 10 s, 12 s when deadtime < 6 s, else 2 x deadtime.

Every mistake raises `ConfigError` naming FILE:LINE and the fix; every directive hbd
recognises but does not carry out gives a warning saying what hbd does instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from hbd.config.model import (
    ApiAuth,
    ConfigWarning,
    HaCf,
    Medium,
    MediumKind,
    PingGroup,
    PingNode,
    Respawn,
)
from hbd.config.syntax import digits as _digits
from hbd.config.syntax import lines as _lines
from hbd.core.errors import ConfigError
from hbd.core.model import AutoFailback, WireFormat

BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800)
DEFAULT_UDPPORT = 694
SYSLOG_FACILITIES = frozenset(
    ["auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog"]
    + ["user", "uucp", "none"]
    + [f"local{i}" for i in range(8)]
)
_TIME_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|msec|us|usec)?\s*$", re.IGNORECASE)
_TRUE = frozenset(["true", "on", "yes", "y", "1"])
_FALSE = frozenset(["false", "off", "no", "n", "0"])


def parse_time_ms(text: str) -> int | None:
    """Heartbeat's time syntax to whole milliseconds (None when it is not a time)."""
    m = _TIME_RE.match(text)
    if m is None:
        return None
    value = float(m.group(1))
    unit = (m.group(2) or "").lower()
    if unit in ("ms", "msec"):
        ms = value
    elif unit in ("us", "usec"):
        ms = value / 1000.0
    else:
        ms = value * 1000.0
    if not math.isfinite(ms):
        return None  # more digits than a double holds: not a time anyone means
    return int(ms + 0.5)


def parse_bool(text: str) -> bool | None:
    """Heartbeat's booleans (cl_str_to_boolean), None when it is neither."""
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return None


@dataclass
class _Builder:
    """Mutable state while reading ha.cf top to bottom (order matters, as in Heartbeat)."""

    path: str
    values: dict[str, object] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    media: list[Medium] = field(default_factory=list)
    ping_nodes: list[PingNode] = field(default_factory=list)
    ping_groups: list[PingGroup] = field(default_factory=list)
    respawn: list[Respawn] = field(default_factory=list)
    apiauth: list[ApiAuth] = field(default_factory=list)
    warnings: list[ConfigWarning] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)  # directive -> first line
    udpport: int = DEFAULT_UDPPORT
    baud: int = 19200
    line: int = 0

    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def fail(self, message: str) -> ConfigError:
        return ConfigError(self.path, self.line, message)

    def warn(self, message: str) -> None:
        self.warnings.append(ConfigWarning(self.where(), message))


Handler = Callable[[_Builder, str, list[str]], None]


def _one(b: _Builder, name: str, args: list[str], what: str) -> str:
    if len(args) != 1:
        raise b.fail(f"'{name}' takes exactly one value ({what}), got {len(args)}")
    return args[0]


def _once(b: _Builder, name: str) -> None:
    if name in b.seen and b.seen[name] != b.line:
        raise b.fail(f"'{name}' given twice (first on line {b.seen[name]}); keep one")


def _time(name: str) -> Handler:
    def handle(b: _Builder, _: str, args: list[str]) -> None:
        _once(b, name)
        text = _one(b, name, args, "a time such as 10, 1.5, 1500ms or 200us")
        ms = parse_time_ms(text)
        if ms is None:
            raise b.fail(
                f"'{name}' needs a time such as 10, 1.5, 1500ms or 200us (seconds by default); "
                f"got '{text}'"
            )
        if ms <= 0:
            raise b.fail(f"'{name}' must be more than 0 ms; got '{text}'")
        b.values[name] = ms / 1000.0

    return handle


def _bool(name: str) -> Handler:
    def handle(b: _Builder, _: str, args: list[str]) -> None:
        text = _one(b, name, args, "on or off")
        value = parse_bool(text)
        if value is None:
            raise b.fail(f"'{name}' takes on/off (true/false, yes/no, y/n, 1/0); got '{text}'")
        b.values[name] = value

    return handle


def _int(name: str, low: int, high: int) -> Handler:
    def handle(b: _Builder, _: str, args: list[str]) -> None:
        text = _one(b, name, args, f"a number from {low} to {high}")
        if not _digits(text) or not low <= int(text) <= high:
            raise b.fail(f"'{name}' takes a whole number from {low} to {high}; got '{text}'")
        b.values[name] = int(text)

    return handle


def _choice(name: str, choices: tuple[str, ...], key: str | None = None) -> Handler:
    def handle(b: _Builder, _: str, args: list[str]) -> None:
        text = _one(b, name, args, "|".join(choices)).lower()
        if text not in choices:
            raise b.fail(f"'{name}' takes one of {', '.join(choices)}; got '{args[0]}'")
        b.values[key or name] = text

    return handle


def _path(name: str) -> Handler:
    def handle(b: _Builder, _: str, args: list[str]) -> None:
        b.values[name] = _one(b, name, args, "a file name")

    return handle


def _node(b: _Builder, _: str, args: list[str]) -> None:
    if not args:
        raise b.fail("'node' needs at least one node name (as `uname -n` prints it)")
    for raw in args:
        name = raw.lower()
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
            raise b.fail(f"'{raw}' is not a valid node name (letters, digits, '.', '_', '-')")
        if name in b.nodes:
            raise b.fail(f"node '{name}' is listed twice")
        b.nodes.append(name)


def _udpport(b: _Builder, name: str, args: list[str]) -> None:
    text = _one(b, name, args, "a UDP port")
    if not _digits(text) or not 1 <= int(text) <= 65535:
        raise b.fail(f"'udpport' takes a port from 1 to 65535; got '{text}'")
    if any(m.kind in (MediumKind.BCAST, MediumKind.UCAST, MediumKind.UCAST6) for m in b.media):
        b.warn(
            "udpport comes after bcast/ucast/ucast6 lines, which keep the previous port "
            f"{b.udpport}; move udpport above the media lines (as Heartbeat requires)"
        )
    b.udpport = int(text)
    b.values["udpport"] = b.udpport


def _baud(b: _Builder, name: str, args: list[str]) -> None:
    _once(b, name)
    text = _one(b, name, args, "a baud rate")
    if not _digits(text) or int(text) not in BAUD_RATES:
        raise b.fail(f"invalid baud rate '{text}'; use one of {', '.join(map(str, BAUD_RATES))}")
    if any(m.kind is MediumKind.SERIAL for m in b.media):
        b.warn(
            f"baud comes after serial lines, which keep the previous speed {b.baud}; "
            "move baud above the serial lines (as Heartbeat requires)"
        )
    b.baud = int(text)
    b.values["baud"] = b.baud


def _add_medium(b: _Builder, medium: Medium) -> None:
    for other in b.media:
        if other.path_id == medium.path_id:
            raise b.fail(f"path {medium.path_id} is already defined at {other.source}")
    b.media.append(medium)


def _check_iface(b: _Builder, name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", name):
        raise b.fail(f"'{name}' is not a network interface name")
    return name


def _ipv4(b: _Builder, text: str, what: str, ipv6: str | None = None) -> ipaddress.IPv4Address:
    """`text` as an IPv4 address; `ipv6` names the directive to use for an IPv6 one."""
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        pass
    if ipv6 is not None and _is_ipv6(text):
        raise b.fail(f"{what} '{text}' is an IPv6 address, and this directive is IPv4 only: {ipv6}")
    raise b.fail(f"{what} '{text}' is not an IPv4 address") from None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _ipv6(b: _Builder, text: str, what: str, ipv4: str) -> ipaddress.IPv6Address:
    """`text` (`ADDR` or `ADDR%IFACE`) as an IPv6 address; `ipv4` names the IPv4 directive."""
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        pass
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise b.fail(f"{what} '{text}' is not an IPv6 address") from None
    raise b.fail(f"{what} '{text}' is an IPv4 address, and this directive is IPv6 only: {ipv4}")


def _unicast6(b: _Builder, addr: ipaddress.IPv6Address, what: str) -> None:
    """Heartbeat's plausibility check of a peer or ping6 address."""
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback:
        kind = (
            "multicast"
            if addr.is_multicast
            else "unspecified"
            if addr.is_unspecified
            else "loopback"
        )
        raise b.fail(f"{what} '{addr}' is a {kind} address; give a unicast address")


def _serial(b: _Builder, _: str, args: list[str]) -> None:
    if not args:
        raise b.fail("'serial' needs at least one device, e.g. serial /dev/ttyS0")
    for dev in args:
        if not dev.startswith("/"):
            raise b.fail(f"serial device '{dev}' must be a full path such as /dev/ttyS0")
        _add_medium(b, Medium(MediumKind.SERIAL, dev, b.where(), port=b.udpport, baud=b.baud))


def _bcast(b: _Builder, name: str, args: list[str]) -> None:
    if name == "udp":
        b.warn("directive 'udp' is the old name of 'bcast'; write 'bcast'")
    if not args:
        raise b.fail("'bcast' needs at least one interface, e.g. bcast eth0")
    for dev in args:
        _add_medium(b, Medium(MediumKind.BCAST, _check_iface(b, dev), b.where(), port=b.udpport))


def _mcast(b: _Builder, _: str, args: list[str]) -> None:
    if len(args) != 5:
        raise b.fail(
            "'mcast' takes: device group port ttl loop, e.g. mcast eth0 239.192.0.42 694 1 0"
        )
    dev, group, port, ttl, loop = args
    addr = _ipv4(b, group, "multicast group", f"write mcast6 {dev} {group} {port} {ttl} {loop}")
    if not addr.is_multicast:
        raise b.fail(f"'{group}' is not a multicast group (224.0.0.0 - 239.255.255.255)")
    if not _digits(port) or not 1 <= int(port) <= 65535:
        raise b.fail(f"mcast port '{port}' must be from 1 to 65535")
    if not _digits(ttl) or not 1 <= int(ttl) <= 255:
        raise b.fail(f"mcast ttl '{ttl}' must be from 1 to 255")
    if loop not in ("0", "1"):
        raise b.fail(f"mcast loop '{loop}' must be 0 or 1")
    _add_medium(
        b,
        Medium(
            MediumKind.MCAST,
            _check_iface(b, dev),
            b.where(),
            port=int(port),
            group=str(addr),
            ttl=int(ttl),
            loop=loop == "1",
        ),
    )


def _ucast(b: _Builder, _: str, args: list[str]) -> None:
    if len(args) not in (2, 3):
        raise b.fail("'ucast' takes: device peer-address [local-address], e.g. ucast eth1 10.0.0.7")
    dev, peer = args[:2]
    addr = _ipv4(b, peer, "ucast peer", f"write ucast6 {dev} {peer}")
    # hbd's extension: a third word binds the socket to that local address, so several
    # nodes can share one host (the demo runs two on loopback: 127.0.0.1 and 127.0.0.2)
    bind = str(_ipv4(b, args[2], "ucast local address")) if len(args) == 3 else None
    _add_medium(
        b,
        Medium(
            MediumKind.UCAST,
            _check_iface(b, dev),
            b.where(),
            port=b.udpport,
            peer=str(addr),
            bind=bind,
        ),
    )


def _ucast6(b: _Builder, _: str, args: list[str]) -> None:
    if len(args) != 2:
        raise b.fail("'ucast6' takes: device peer-address, e.g. ucast6 eth1 fd00::7")
    dev, peer = _check_iface(b, args[0]), args[1]
    addr = _ipv6(b, peer, "ucast6 peer", f"write ucast {dev} {peer}")
    _unicast6(b, addr, "ucast6 peer")
    if addr.scope_id is not None and addr.scope_id != dev:
        raise b.fail(
            f"ucast6 peer '{peer}' names interface {addr.scope_id}, but the line's device is "
            f"{dev}; write ucast6 {dev} {str(addr).split('%')[0]}"
        )
    plain = ipaddress.IPv6Address(str(addr).split("%")[0])
    _add_medium(b, Medium(MediumKind.UCAST6, dev, b.where(), port=b.udpport, peer=str(plain)))


# Heartbeat's mcast6 accepts only these scopes (RFC 4291 2.7): link, admin, site, organization
_MCAST6_SCOPES = {0x2: "link-local", 0x4: "admin-local", 0x5: "site-local", 0x8: "organization"}


def _mcast6(b: _Builder, _: str, args: list[str]) -> None:
    if len(args) != 5:
        raise b.fail(
            "'mcast6' takes: device group port hops loop, e.g. mcast6 eth0 ff12::1:694 694 1 0"
        )
    dev, group, port, hops, loop = args
    _check_iface(b, dev)
    addr = _ipv6(b, group, "mcast6 group", f"write mcast {dev} {group} {port} {hops} {loop}")
    packed = addr.packed
    if not addr.is_multicast:
        raise b.fail(f"'{group}' is not an IPv6 multicast group (ff00::/8), e.g. ff12::1:694")
    scope = packed[1] & 0x0F
    if packed[1] & 0xE0 or scope not in _MCAST6_SCOPES or not any(packed[2:]):
        raise b.fail(
            f"mcast6 group '{group}' is refused, as Heartbeat refuses it: use a link-local "
            "(ff02::/ff12::), admin-local (ff14::), site-local (ff15::) or organization "
            "(ff18::) group with a group id, e.g. ff12::1:694"
        )
    if addr.scope_id is not None:
        raise b.fail(f"mcast6 group '{group}': drop the %{addr.scope_id}; the device says where")
    if not _digits(port) or not 1 <= int(port) <= 65535:
        raise b.fail(f"mcast6 port '{port}' must be from 1 to 65535")
    if not _digits(hops) or not 0 <= int(hops) <= 4:
        raise b.fail(f"mcast6 hops '{hops}' must be from 0 to 4 (Heartbeat's limit)")
    if loop not in ("0", "1"):
        raise b.fail(f"mcast6 loop '{loop}' must be 0 or 1")
    _add_medium(
        b,
        Medium(
            MediumKind.MCAST6,
            dev,
            b.where(),
            port=int(port),
            group=str(addr),
            ttl=int(hops),
            loop=loop == "1",
        ),
    )


def _ping6(b: _Builder, _: str, args: list[str]) -> None:
    if not args:
        raise b.fail("'ping6' needs at least one address, e.g. ping6 fd00::fe")
    for text in args:
        addr = _ipv6(b, text, "ping6 node", f"write ping {text}")
        _unicast6(b, addr, "ping6 node")
        if addr.is_link_local and addr.scope_id is None:
            raise b.fail(
                f"ping6 node '{text}' is link-local: name its interface, e.g. ping6 {text}%eth0"
            )
        if addr.scope_id is not None:
            _check_iface(b, addr.scope_id)
        name = str(addr) if addr.is_link_local else str(addr).split("%")[0]
        if any(p.address == name for p in b.ping_nodes):
            raise b.fail(f"ping node {name} is listed twice")
        b.ping_nodes.append(PingNode(name, b.where()))


def _ping(b: _Builder, _: str, args: list[str]) -> None:
    if not args:
        raise b.fail("'ping' needs at least one address, e.g. ping 192.168.0.254")
    for text in args:
        addr = str(_ipv4(b, text, "ping node", f"write ping6 {text}"))
        if any(p.address == addr for p in b.ping_nodes):
            raise b.fail(f"ping node {addr} is listed twice")
        b.ping_nodes.append(PingNode(addr, b.where()))


def _ping_group(b: _Builder, _: str, args: list[str]) -> None:
    if len(args) < 2:
        raise b.fail("'ping_group' takes a name and addresses, e.g. ping_group gw 10.0.0.1")
    name, *addrs = args
    if any(g.name == name for g in b.ping_groups):
        raise b.fail(f"ping_group '{name}' is defined twice")
    hint = "ping_group (as Heartbeat's) takes IPv4 members; give IPv6 witnesses one ping6 line each"
    members = tuple(str(_ipv4(b, a, f"ping_group {name} member", hint)) for a in addrs)
    b.ping_groups.append(PingGroup(name, members, b.where()))


def _auto_failback(b: _Builder, name: str, args: list[str]) -> None:
    text = _one(b, name, args, "on, off or legacy").lower()
    if "nice_failback" in b.seen:
        raise b.fail("give either auto_failback or the obsolete nice_failback, not both")
    if text == "legacy":
        b.warn("auto_failback legacy is deprecated (as in Heartbeat); use 'auto_failback on'")
        b.values["auto_failback"] = AutoFailback.LEGACY
        return
    value = parse_bool(text)
    if value is None:
        raise b.fail(f"'auto_failback' takes on, off or legacy; got '{args[0]}'")
    b.values["auto_failback"] = AutoFailback.ON if value else AutoFailback.OFF


def _nice_failback(b: _Builder, name: str, args: list[str]) -> None:
    text = _one(b, name, args, "on or off")
    if "auto_failback" in b.seen:
        raise b.fail("give either auto_failback or the obsolete nice_failback, not both")
    value = parse_bool(text)
    if value is None:
        raise b.fail(f"'nice_failback' takes on or off; got '{text}'")
    if value:
        b.warn("nice_failback is obsolete; 'nice_failback on' is read as 'auto_failback off'")
        b.values["auto_failback"] = AutoFailback.OFF
    else:
        b.warn("nice_failback is obsolete; 'nice_failback off' is read as 'auto_failback legacy'")
        b.values["auto_failback"] = AutoFailback.LEGACY


def _watchdog(b: _Builder, name: str, args: list[str]) -> None:
    _once(b, name)
    dev = _one(b, name, args, "a device such as /dev/watchdog")
    if not dev.startswith("/"):
        raise b.fail(f"watchdog device '{dev}' must be a full path such as /dev/watchdog")
    b.values["watchdog"] = dev
    b.values["watchdog_line"] = b.line


def _watchdog_timeout(b: _Builder, name: str, args: list[str]) -> None:
    text = _one(b, name, args, "whole seconds")
    ms = parse_time_ms(text)
    if ms is None or ms < 1000 or ms % 1000:
        raise b.fail(
            "'watchdog_timeout' takes whole seconds (the watchdog API counts seconds); "
            f"got '{text}'"
        )
    b.values["watchdog_timeout"] = ms / 1000.0


def _peer_watchdog_timeout(b: _Builder, name: str, args: list[str]) -> None:
    _once(b, name)
    text = _one(b, name, args, "whole seconds, or 0 for a peer without a watchdog")
    ms = parse_time_ms(text)
    if ms is None or ms % 1000 or ms > 3_600_000:
        raise b.fail(
            "'peer_watchdog_timeout' takes whole seconds (0: the peer arms no watchdog), "
            f"at most 3600; got '{text}'"
        )
    b.values["peer_watchdog_timeout"] = ms / 1000.0


def _logfacility(b: _Builder, name: str, args: list[str]) -> None:
    text = _one(b, name, args, "a syslog facility").lower()
    if text not in SYSLOG_FACILITIES:
        raise b.fail(
            f"'{text}' is not a syslog facility; use one of daemon, local0-local7, none, ..."
        )
    b.values["logfacility"] = None if text == "none" else text


def _rtprio(b: _Builder, name: str, args: list[str]) -> None:
    text = _one(b, name, args, "a priority")
    if not _digits(text) or not 1 <= int(text) <= 99:
        raise b.fail(f"'rtprio' takes a realtime priority from 1 to 99; got '{text}'")
    b.values["rtprio"] = int(text)


def _max_rexmit_delay(b: _Builder, name: str, args: list[str]) -> None:
    text = _one(b, name, args, "milliseconds")
    # Heartbeat reads a bare number here as milliseconds (its default is "250").
    ms = int(text) if _digits(text) else None
    if ms is None and re.search(r"(ms|msec|us|usec)$", text, re.IGNORECASE):
        ms = parse_time_ms(text)
    if ms is None:
        raise b.fail(f"'max_rexmit_delay' takes milliseconds such as 250 or 250ms; got '{text}'")
    b.values["max_rexmit_delay"] = ms / 1000.0


def _autojoin(b: _Builder, name: str, args: list[str]) -> None:
    text = _one(b, name, args, "none").lower()
    if text not in ("none", "other", "any"):
        raise b.fail(f"'autojoin' takes none, other or any; got '{args[0]}'")
    if text != "none":
        raise b.fail(
            f"hbd does not do 'autojoin {text}': every node must be listed with 'node' so "
            "that a stranger with the key can never join; use 'autojoin none'"
        )
    b.values["autojoin"] = "none"


def _respawn(b: _Builder, name: str, args: list[str]) -> None:
    if len(args) < 2:
        raise b.fail("'respawn' takes a user and a program, e.g. respawn hacluster /usr/bin/prog")
    user, *argv = args
    if not argv[0].startswith("/"):
        raise b.fail(f"respawn program '{argv[0]}' is not a full path name")
    if argv[0].endswith("/ipfail"):
        b.warn(
            "ipfail talks to Heartbeat's API, which hbd does not have; hbd's link-redundancy "
            "policy and ping nodes do ipfail's job, so hbd does not start it"
        )
    b.respawn.append(Respawn(user, tuple(argv), b.where()))


def _apiauth(b: _Builder, name: str, args: list[str]) -> None:
    if len(args) < 2:
        raise b.fail("'apiauth' takes: group [uid=uid1,uid2] [gid=gid1,gid2]")
    group, *rest = args
    uids: list[str] = []
    gids: list[str] = []
    current: list[str] | None = None  # values split on commas: `uid=a,b` arrives as two words
    for item in rest:
        if item.startswith("uid="):
            current, item = uids, item[4:]
        elif item.startswith("gid="):
            current, item = gids, item[4:]
        elif current is None:
            raise b.fail(f"apiauth item '{item}' must be uid=... or gid=...")
        if item:
            current.append(item)
    if not uids and not gids:
        raise b.fail("'apiauth' needs a uid= list or a gid= list; one or the other must be given")
    b.apiauth.append(ApiAuth(group, tuple(uids), tuple(gids), b.where()))


def _wire(b: _Builder, name: str, args: list[str]) -> None:
    text = _one(b, name, args, "heartbeat or hbd").lower()
    try:
        b.values["wire"] = WireFormat(text)
    except ValueError:
        raise b.fail(f"'wire' takes heartbeat or hbd; got '{args[0]}'") from None


def _accept_keys(b: _Builder, name: str, args: list[str]) -> None:
    _once(b, name)
    if not args or not all(_digits(a) for a in args):
        raise b.fail(
            "'accept_keys' takes the authkeys indexes (0-15) accepted besides 'auth N' while "
            f"keys are rotated, e.g. accept_keys 1; got '{' '.join(args)}'"
        )
    indexes = [int(a) for a in args]
    if any(not 0 <= i <= 15 for i in indexes):
        raise b.fail(f"accept_keys: an authkeys index is 0 to 15; got '{' '.join(args)}'")
    b.values["accept_keys"] = tuple(dict.fromkeys(indexes))
    b.values["accept_keys_line"] = b.line


def _wire_accept(b: _Builder, name: str, args: list[str]) -> None:
    _once(b, name)
    formats = []
    for arg in args:
        try:
            formats.append(WireFormat(arg.lower()))
        except ValueError:
            raise b.fail(f"'wire_accept' takes heartbeat and/or hbd; got '{arg}'") from None
    if not formats:
        raise b.fail("'wire_accept' takes heartbeat and/or hbd, e.g. 'wire_accept hbd heartbeat'")
    if WireFormat.HBD not in formats:
        raise b.fail(
            "wire_accept must list hbd: hbd's own frames are always accepted (they are always "
            "signed with a key); the directive only says whether Heartbeat's are"
        )
    b.values["wire_accept"] = tuple(dict.fromkeys(formats))


def _resource_timeout(b: _Builder, name: str, args: list[str]) -> None:
    if len(args) != 2 or args[0].lower() not in ("start", "stop", "status"):
        raise b.fail(
            "'resource_timeout' takes an operation and a time, e.g. resource_timeout stop 90"
        )
    ms = parse_time_ms(args[1])
    if ms is None or ms <= 0:
        raise b.fail(f"resource_timeout {args[0]}: '{args[1]}' is not a time such as 60 or 1500ms")
    b.values[f"resource_timeout_{args[0].lower()}"] = ms / 1000.0


def _host_port(b: _Builder, name: str, text: str, port: str | None) -> tuple[str, int]:
    """`HOST`, `HOST:PORT` or `[IPV6]:PORT` of a `name` line; `port` None: it is required."""
    host = text
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or (close + 1 < len(text) and text[close + 1] != ":"):
            raise b.fail(f"'{name} {text}': an IPv6 address goes in brackets, as [fd00::9]:5403")
        host = text[1:close]
        if close + 1 < len(text):
            port = text[close + 2 :]
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif text.count(":") > 1:
        raise b.fail(
            f"'{name} {text}': write an IPv6 address in brackets, as [{text}]:{port or 9700}"
        )
    if not host or not re.fullmatch(r"[A-Za-z0-9._:%-]+", host):
        raise b.fail(f"'{name} {text}': '{host}' is no host name or address")
    if port is None:
        raise b.fail(f"'{name} {text}': give the port too, as {host}:9700")
    if not _digits(port) or not 1 <= int(port) <= 65535:
        raise b.fail(f"'{name} {text}': the port must be a number from 1 to 65535, got '{port}'")
    return host, int(port)


def _qnetd(b: _Builder, name: str, args: list[str]) -> None:
    _once(b, name)
    text = _one(b, name, args, "HOST or HOST:PORT, e.g. qnetd 10.0.0.9 or qnetd [fd00::9]:5403")
    host, port = _host_port(b, name, text, "5403")
    b.values["qnetd"] = host
    b.values["qnetd_port"] = port
    b.values["qnetd_line"] = b.line


def _metrics(b: _Builder, name: str, args: list[str]) -> None:
    _once(b, name)
    text = _one(b, name, args, "ADDRESS:PORT, e.g. metrics 127.0.0.1:9700 or metrics [::1]:9700")
    host, port = _host_port(b, name, text, None)
    b.values["metrics"] = (host, port)


def _notify(b: _Builder, name: str, args: list[str]) -> None:
    _once(b, name)
    text = _one(b, name, args, "a script's absolute path, e.g. notify /etc/hbd/notify.sh")
    if not text.startswith("/"):
        raise b.fail(f"'notify {text}': give the script's absolute path, e.g. /etc/hbd/notify.sh")
    b.values["notify"] = text


def _qnetd_tie_breaker(b: _Builder, name: str, args: list[str]) -> None:
    _once(b, name)
    text = _one(b, name, args, "lowest, highest or a node id").lower()
    if text not in ("lowest", "highest") and not (_digits(text) and 0 < int(text) < 1 << 32):
        raise b.fail(
            f"'qnetd_tie_breaker' takes lowest, highest or a node id (1 to 4294967295); "
            f"got '{args[0]}'"
        )
    b.values[name] = str(int(text)) if _digits(text) else text


def _qnetd_nodeid(b: _Builder, name: str, args: list[str]) -> None:
    if len(args) != 2 or not _digits(args[1]) or not 0 < int(args[1]) < 1 << 32:
        raise b.fail(
            "'qnetd_nodeid' takes a node name and its id (1 to 4294967295), e.g. "
            "qnetd_nodeid alpha 1"
        )
    ids = b.values.setdefault("qnetd_nodeids", [])
    assert isinstance(ids, list)
    if any(n == args[0] for n, _, _ in ids):
        raise b.fail(f"'qnetd_nodeid {args[0]}' given twice")
    ids.append((args[0], int(args[1]), b.line))


def _cluster(b: _Builder, name: str, args: list[str]) -> None:
    b.values["cluster"] = _one(b, name, args, "a cluster name")


def _pacemaker(b: _Builder, name: str, args: list[str]) -> None:
    text = _one(b, name, args, "off")
    if parse_bool(text) is False:
        return
    raise b.fail(
        f"'{name} {text}': hbd runs the haresources groups itself and does not start "
        "Pacemaker; use 'crm off' (or remove the line), or move this cluster to Pacemaker "
        "with 'hbctl export pacemaker'"
    )


def _stonith(b: _Builder, name: str, args: list[str]) -> None:
    b.warn(
        f"'{name}' is not carried out: hbd does not drive STONITH devices, it fences through "
        "the watchdog ('watchdog /dev/watchdog') and its link-redundancy policy; see docs/policy.md"
    )


def _hbaping(b: _Builder, name: str, args: list[str]) -> None:
    raise b.fail(
        "'hbaping' (fibre-channel ping nodes) was never fully supported by Heartbeat and hbd "
        "does not do it; use 'ping' or 'ping_group' witnesses"
    )


def _use_logd(b: _Builder, name: str, args: list[str]) -> None:
    _bool(name)(b, name, args)
    if b.values[name]:
        b.warn(
            "hbd has no logging daemon: it writes logfile/debugfile/syslog itself (and the "
            "journal under systemd); 'use_logd on' changes nothing"
        )


def _no_effect(reason: str) -> Handler:
    def handle(b: _Builder, name: str, args: list[str]) -> None:
        b.warn(f"'{name}' has no effect in hbd: {reason}")

    return handle


_NOT_PACEMAKER = "it only matters with Pacemaker, which hbd does not run"
_SMALL = "hbd's messages are a few hundred bytes at most and are never compressed"

DIRECTIVES: dict[str, Handler] = {
    "node": _node,
    "keepalive": _time("keepalive"),
    "deadtime": _time("deadtime"),
    "warntime": _time("warntime"),
    "initdead": _time("initdead"),
    "deadping": _time("deadping"),
    "udpport": _udpport,
    "baud": _baud,
    "serial": _serial,
    "bcast": _bcast,
    "udp": _bcast,
    "mcast": _mcast,
    "ucast": _ucast,
    "mcast6": _mcast6,
    "ucast6": _ucast6,
    "ping": _ping,
    "ping6": _ping6,
    "ping_group": _ping_group,
    "autojoin": _autojoin,
    "auto_failback": _auto_failback,
    "nice_failback": _nice_failback,
    "watchdog": _watchdog,
    "logfile": _path("logfile"),
    "debugfile": _path("debugfile"),
    "logfacility": _logfacility,
    "use_logd": _use_logd,
    "debug": _int("debug", 0, 255),
    "realtime": _bool("realtime"),
    "rtprio": _rtprio,
    "uuidfrom": _choice("uuidfrom", ("file", "nodename")),
    "hbgenmethod": _choice("hbgenmethod", ("file", "time")),
    "msgfmt": _choice("msgfmt", ("classic", "netstring")),
    "max_rexmit_delay": _max_rexmit_delay,
    "hopfudge": _int("hopfudge", 0, 255),
    "respawn": _respawn,
    "apiauth": _apiauth,
    "coredumps": _bool("coredumps"),
    "cluster": _cluster,
    # hbd's own directives (documented in docs/directives.md)
    "wire": _wire,
    "wire_accept": _wire_accept,
    "accept_keys": _accept_keys,
    "watchdog_timeout": _watchdog_timeout,
    "peer_watchdog_timeout": _peer_watchdog_timeout,
    "adaptive_detector": _bool("adaptive_detector"),
    "resource_timeout": _resource_timeout,
    "qnetd": _qnetd,
    "metrics": _metrics,
    "notify": _notify,
    "notify_timeout": _time("notify_timeout"),
    "rc_hooks": _bool("rc_hooks"),
    "qnetd_algorithm": _choice("qnetd_algorithm", ("ffsplit", "lms")),
    "qnetd_tls": _bool("qnetd_tls"),
    "qnetd_tie_breaker": _qnetd_tie_breaker,
    "qnetd_nodeid": _qnetd_nodeid,
    # recognised, not carried out: each says what hbd does instead
    "crm": _pacemaker,
    "pacemaker": _pacemaker,
    "stonith": _stonith,
    "stonith_host": _stonith,
    "hbaping": _hbaping,
    "compression": _no_effect(_SMALL),
    "compression_threshold": _no_effect(_SMALL),
    "traditional_compression": _no_effect(_SMALL),
    "crm_daemon_dir": _no_effect(_NOT_PACEMAKER),
    "crmd_spawns_pengine": _no_effect(_NOT_PACEMAKER),
    "record_config_changes": _no_effect(_NOT_PACEMAKER),
    "record_pengine_inputs": _no_effect(_NOT_PACEMAKER),
    "enable_config_writes": _no_effect(_NOT_PACEMAKER),
    "quorum_server": _no_effect(
        "Heartbeat's quorumd is not spoken; hbd's arbiter is corosync-qnetd ('qnetd HOST')"
    ),
    "conn_logd_time": _no_effect("hbd has no logging daemon to reconnect to"),
    "log_badpack": _no_effect("hbd always counts and logs dropped frames with their reason"),
    "syslogmsgfmt": _no_effect("hbd writes its own log line format"),
    "coreroot": _no_effect("Python daemons do not dump core"),
    "memreserve": _no_effect("hbd does not preallocate memory"),
    "normalpoll": _no_effect("hbd always uses the kernel's poll"),
    "use_apphbd": _no_effect("hbd is watched by systemd's watchdog and the hardware watchdog"),
    "env": _no_effect("hbd does not run Pacemaker's respawned clients"),
}


def _split(line: str) -> list[str]:
    return [tok for tok in re.split(r"[\s,]+", line.split("#", 1)[0].strip()) if tok]


def parse_hacf(text: str, path: str = "ha.cf") -> HaCf:
    """Parse ha.cf text. Raises ConfigError (FILE:LINE: message) on the first mistake."""
    b = _Builder(path)
    for number, raw in enumerate(_lines(text), start=1):
        b.line = number
        if "\x00" in raw:
            raise b.fail("line contains a NUL byte; ha.cf must be plain text")
        words = _split(raw)
        if not words:
            continue
        name, args = words[0].lower(), words[1:]
        handler = DIRECTIVES.get(name)
        if handler is None:
            close = difflib.get_close_matches(name, DIRECTIVES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise b.fail(f"unknown directive '{words[0]}'{hint}")
        handler(b, name, args)
        b.seen.setdefault(name, number)
    b.line = 0
    return _finish(b)


@dataclass(frozen=True, slots=True)
class _Timing:
    keepalive: float
    deadtime: float
    warntime: float
    initdead: float
    deadping: float


def _finish(b: _Builder) -> HaCf:
    """Check what only the whole file can tell, fill in Heartbeat's defaults, build HaCf."""
    if not b.nodes:
        raise ConfigError(b.path, None, "no nodes defined; add 'node NAME' for every cluster node")
    if not b.media:
        raise ConfigError(
            b.path,
            None,
            "no heartbeat media defined; add serial, bcast, mcast, ucast, mcast6 or ucast6",
        )
    timing = _timing(b)
    _check_watchdog(b, timing.deadtime)
    _check_wire_accept(b)
    _check_qnetd(b)
    if "auto_failback" not in b.values:
        b.warnings.append(
            ConfigWarning(
                b.path,
                "no auto_failback given: the deprecated 'legacy' behaviour is selected (as in "
                "Heartbeat); add 'auto_failback on' or 'auto_failback off'",
            )
        )
    known = {f.name for f in dataclasses.fields(HaCf)}
    extra = {k: val for k, val in b.values.items() if k in known}
    extra.update(dataclasses.asdict(timing))
    return HaCf(
        path=b.path,
        nodes=tuple(b.nodes),
        media=tuple(b.media),
        ping_nodes=tuple(b.ping_nodes),
        ping_groups=tuple(b.ping_groups),
        respawn=tuple(b.respawn),
        apiauth=tuple(b.apiauth),
        warnings=tuple(b.warnings),
        **extra,  # type: ignore[arg-type]
    )


def _fail(b: _Builder, name: str, message: str) -> ConfigError:
    """An error about directive `name`, at the line it was given on (or the file)."""
    return ConfigError(b.path, b.seen.get(name), message)


def _warn(b: _Builder, name: str, message: str) -> None:
    b.warnings.append(ConfigWarning(f"{b.path}:{b.seen.get(name)}", message))


def _timing(b: _Builder) -> _Timing:
    """keepalive, deadtime, warntime, initdead and deadping, with Heartbeat's defaults (read
    off the real 3.0.6 with `cl_status hbparameter`) and the checks Heartbeat makes."""
    v = b.values
    keepalive = float(v.get("keepalive", 1.0))  # type: ignore[arg-type]
    deadtime = float(v.get("deadtime", 30.0))  # type: ignore[arg-type]
    if deadtime <= 2 * keepalive:
        raise _fail(
            b,
            "deadtime",
            f"deadtime {deadtime:g}s is too small compared to keepalive {keepalive:g}s; "
            "deadtime must be more than twice keepalive",
        )
    warntime = float(v.get("warntime", _ms(deadtime / 2)))  # type: ignore[arg-type]
    if warntime >= deadtime:
        raise _fail(
            b, "warntime", f"warntime {warntime:g}s must be less than deadtime {deadtime:g}s"
        )
    if warntime <= keepalive:
        _warn(
            b,
            "warntime",
            f"warntime {warntime:g}s is not more than keepalive {keepalive:g}s: every "
            "heartbeat will be reported late",
        )
    if "initdead" in v:
        initdead = float(v["initdead"])  # type: ignore[arg-type]
    elif deadtime > 10.0:
        initdead = deadtime
    elif deadtime < 6.0:
        initdead = 12.0
    else:
        initdead = 2 * deadtime
    if initdead < deadtime:
        raise _fail(
            b,
            "initdead",
            f"initdead {initdead:g}s is smaller than deadtime {deadtime:g}s; "
            "it must be at least deadtime",
        )
    if initdead < 10.0:
        _warn(
            b,
            "initdead",
            f"initdead {initdead:g}s may be too small: it accounts for slow network "
            "start-up and should be >= deadtime and >= 10 seconds",
        )
    deadping = float(v.get("deadping", deadtime))  # type: ignore[arg-type]
    if deadping <= 2 * keepalive:
        raise _fail(
            b,
            "deadping",
            f"deadping {deadping:g}s is too small compared to keepalive {keepalive:g}s; "
            "it must be more than twice keepalive",
        )
    return _Timing(keepalive, deadtime, warntime, initdead, deadping)


def _check_watchdog(b: _Builder, deadtime: float) -> None:
    timeout = b.values.get("watchdog_timeout")
    if timeout is not None and "watchdog" not in b.values:
        raise _fail(b, "watchdog_timeout", "watchdog_timeout needs a 'watchdog DEVICE' line")
    if isinstance(timeout, float) and timeout < deadtime:
        raise _fail(
            b,
            "watchdog_timeout",
            f"watchdog_timeout {timeout:g}s is shorter than deadtime {deadtime:g}s: the node "
            "would reset itself before its peer could declare it dead",
        )


def _check_wire_accept(b: _Builder) -> None:
    accepted = b.values.get("wire_accept")
    wire = b.values.get("wire", WireFormat.HEARTBEAT)
    if isinstance(accepted, tuple) and wire not in accepted:
        assert isinstance(wire, WireFormat)
        raise _fail(
            b,
            "wire_accept",
            f"wire_accept leaves out '{wire.value}', the format this node sends ('wire "
            f"{wire.value}'): the peers, which share this ha.cf, would not be heard; add it",
        )


def _check_qnetd(b: _Builder) -> None:
    """The qnetd_* lines need a `qnetd` line; node ids must be unique and name nodes; a
    tie-breaker node id must be one of them."""
    v = b.values
    if "qnetd" not in v:
        for name in ("qnetd_algorithm", "qnetd_tls", "qnetd_tie_breaker", "qnetd_nodeid"):
            if name in b.seen:
                raise _fail(b, name, f"'{name}' needs a 'qnetd HOST[:PORT]' line")
        return
    raw = v.pop("qnetd_nodeids", [])
    assert isinstance(raw, list)
    ids = {n: i + 1 for i, n in enumerate(b.nodes)}
    for name, node_id, line in raw:
        if name not in b.nodes:
            raise ConfigError(b.path, line, f"'qnetd_nodeid {name}': {name} is no 'node' here")
        ids[name] = node_id
    v["qnetd_nodeids"] = tuple((n, i) for n, i, _ in raw)
    seen: dict[int, str] = {}
    for name in b.nodes:
        other = seen.get(ids[name])
        if other is not None:
            raise _fail(
                b,
                "qnetd_nodeid",
                f"{name} and {other} have the same qnetd node id {ids[name]}; give each its own "
                "with 'qnetd_nodeid NAME ID'",
            )
        seen[ids[name]] = name
    tie = v.get("qnetd_tie_breaker")
    if isinstance(tie, str) and tie.isdigit() and int(tie) not in seen:
        raise _fail(
            b,
            "qnetd_tie_breaker",
            f"qnetd_tie_breaker {tie} is no node's id (the ids are "
            + ", ".join(f"{n} {i}" for i, n in sorted(seen.items()))
            + ")",
        )


def _ms(seconds: float) -> float:
    """Round to whole milliseconds, as Heartbeat keeps every time."""
    return int(seconds * 1000) / 1000.0
