"""The IPaddr/IPaddr2 argument, `ADDR[/PREFIX[/IFACE[:LABEL]][/BROADCAST]]`, parsed as
Heartbeat's resource.d wrappers parse it, and the IPv6 forms: `IPaddr2` with an IPv6
address and `IPv6addr`, both `ADDR[/PREFIX[/IFACE]]`. Pure parsing: the address agents
(`hbd.effects.addresses`) and `hbctl export` both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network


class AddressError(Exception):
    """A built-in's argument is wrong, or the system refused an address change."""


@dataclass(frozen=True, slots=True)
class VirtualAddress:
    """One IPaddr argument, parsed. `iface`/`prefixlen` are None until resolved."""

    ip: IPv4Address | IPv6Address
    prefixlen: int | None = None
    iface: str | None = None
    label: str | None = None  # the full label, e.g. "eth0:web" (IPv4 only)
    broadcast: IPv4Address | None = None  # IPv4 only

    @property
    def network(self) -> IPv4Network | IPv6Network:
        if isinstance(self.ip, IPv6Address):
            return IPv6Network(f"{self.ip}/{self.prefixlen or 128}", strict=False)
        return IPv4Network(f"{self.ip}/{self.prefixlen or 32}", strict=False)

    def resolved(self, iface: str, prefixlen: int) -> VirtualAddress:
        return VirtualAddress(self.ip, prefixlen, iface, self.label, self.broadcast)


def parse_ipaddr(arg: str) -> VirtualAddress:
    """Parse `ADDR[/PREFIX[/IFACE[:LABEL]][/BROADCAST]]` as Heartbeat's IPaddr2 wrapper does.

    PREFIX may be a bit count or a dotted netmask; a part after PREFIX starting with a
    digit is the broadcast address (no interface given).
    """
    parts = arg.split("/")
    if is_ipv6(parts[0]):
        return parse_ipv6addr(arg)
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


def is_ipv6(text: str) -> bool:
    """Whether `text` is an IPv6 address (without a `%scope`)."""
    try:
        IPv6Address(text)
    except ValueError:
        return False
    return "%" not in text


def parse_ipv6addr(arg: str) -> VirtualAddress:
    """Parse `ADDR[/PREFIX[/IFACE]]` with an IPv6 ADDR, as Heartbeat's IPv6addr wrapper
    (and IPaddr2's, for an IPv6 address) splits it. PREFIX is a bit count, 0 to 128."""
    parts = arg.split("/")
    if not is_ipv6(parts[0]):
        raise AddressError(f"{arg!r}: {parts[0]!r} is not an IPv6 address")
    ip = IPv6Address(parts[0])
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        raise AddressError(f"{arg!r}: {ip} cannot be a service address (not a unicast address)")
    prefixlen = iface = None
    if len(parts) > 1 and parts[1]:
        if not (parts[1].isascii() and parts[1].isdigit() and 0 <= int(parts[1]) <= 128):
            raise AddressError(f"{arg!r}: IPv6 prefix {parts[1]!r} must be a number from 0 to 128")
        prefixlen = int(parts[1])
    if len(parts) > 2 and parts[2]:
        iface = parts[2]
        if ":" in iface:
            raise AddressError(f"{arg!r}: IPv6 addresses have no labels; write the interface alone")
    if len(parts) > 3:
        raise AddressError(
            f"{arg!r}: unexpected {'/'.join(parts[3:])!r}: an IPv6 address is ADDR/PREFIX/IFACE "
            "(no broadcast)"
        )
    if ip.is_link_local and iface is None:
        raise AddressError(f"{arg!r}: a link-local address needs its interface: {ip}/64/eth0")
    return VirtualAddress(ip, prefixlen, iface)
