"""The IPaddr/IPaddr2 argument, `ADDR[/PREFIX[/IFACE[:LABEL]][/BROADCAST]]`, parsed as
Heartbeat's resource.d wrappers parse it. Pure parsing: the address agents
(`hbd.effects.addresses`) and `hbctl export` both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network


class AddressError(Exception):
    """A built-in's argument is wrong, or the system refused an address change."""


@dataclass(frozen=True, slots=True)
class VirtualAddress:
    """One IPaddr argument, parsed. `iface`/`prefixlen` are None until resolved."""

    ip: IPv4Address
    prefixlen: int | None = None
    iface: str | None = None
    label: str | None = None  # the full label, e.g. "eth0:web"
    broadcast: IPv4Address | None = None

    @property
    def network(self) -> IPv4Network:
        return IPv4Network(f"{self.ip}/{self.prefixlen or 32}", strict=False)

    def resolved(self, iface: str, prefixlen: int) -> VirtualAddress:
        return VirtualAddress(self.ip, prefixlen, iface, self.label, self.broadcast)


def parse_ipaddr(arg: str) -> VirtualAddress:
    """Parse `ADDR[/PREFIX[/IFACE[:LABEL]][/BROADCAST]]` as Heartbeat's IPaddr2 wrapper does.

    PREFIX may be a bit count or a dotted netmask; a part after PREFIX starting with a
    digit is the broadcast address (no interface given).
    """
    parts = arg.split("/")
    try:
        ip = IPv4Address(parts[0])
    except ValueError:
        raise AddressError(f"{arg!r}: {parts[0]!r} is not an IPv4 address") from None
    prefixlen = iface = label = broadcast = None
    if len(parts) > 1 and parts[1]:
        prefixlen = _prefix(arg, parts[1])
    rest = parts[2:]
    if rest and rest[0] and rest[0][0].isdigit():
        broadcast, rest = parse_ipv4(arg, rest[0]), rest[1:]
    elif rest and rest[0]:
        iface = rest[0]
        if ":" in iface:
            label, iface = iface, iface.split(":", 1)[0]
        rest = rest[1:]
        if rest and rest[0]:
            broadcast, rest = parse_ipv4(arg, rest[0]), rest[1:]
    if rest:
        raise AddressError(f"{arg!r}: unexpected {'/'.join(rest)!r} after the address")
    if label is not None and len(label) > 15:
        raise AddressError(f"{arg!r}: label {label!r} is longer than 15 characters")
    return VirtualAddress(ip, prefixlen, iface, label, broadcast)


def _prefix(arg: str, text: str) -> int:
    if text.isdigit() and 0 <= int(text) <= 32:
        return int(text)
    try:
        return IPv4Network(f"0.0.0.0/{text}").prefixlen
    except ValueError:
        raise AddressError(f"{arg!r}: {text!r} is neither a prefix length nor a netmask") from None


def parse_ipv4(arg: str, text: str) -> IPv4Address:
    """`text` (a part of the argument `arg`) as an IPv4 address; AddressError names both."""
    try:
        return IPv4Address(text)
    except ValueError:
        raise AddressError(f"{arg!r}: {text!r} is not an IPv4 address") from None
