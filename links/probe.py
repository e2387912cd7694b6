"""Probing a peer's addresses: ARP on a local link, ICMP echo otherwise.

The policy takes a silent peer's groups over only when nothing of the peer answers
(`hbd.core.policy`, rule 4). What answers must be hard to filter: an IPv4 address on a
link this node is on is asked with an ARP request on that interface (a firewall that
drops ICMP, or the heartbeat port, still lets ARP through, and every live kernel answers
it); any other address with an ICMP (ICMPv6) echo. Each answer is reported as the
address that answered; the core decides what it means.

An address of this machine's own (loopback, or on one of its interfaces: two nodes run
on one box in the demo and the tests) is never probed: its answer would say nothing of the
peer. `AddressProber.set_targets(addresses)` sorts the other addresses onto drivers: one `ArpProbe`
per interface holding on-link addresses, one `PingLink` per address family for the rest.
A raw packet socket that cannot be opened (no CAP_NET_RAW) falls back to ICMP for its
addresses, and says so in `fallback_reason`.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from hbd.config.model import PingGroup

from .base import Backoff, ReopeningDriver, describe
from .ping import PingLink
from .udp import SIOCGIFADDR, SIOCGIFNETMASK, _ifreq_address, local_ipv6_addresses

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST = b"\xff" * 6
MAX_FRAMES_PER_CALL = 64


def interface_networks() -> dict[str, ipaddress.IPv4Interface]:
    """Each interface's primary IPv4 address with its netmask (loopback left out), in this
    thread's network namespace."""
    out: dict[str, ipaddress.IPv4Interface] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            try:
                address = _ifreq_address(sock, SIOCGIFADDR, name)
                netmask = _ifreq_address(sock, SIOCGIFNETMASK, name)
            except OSError:
                continue  # down, or no IPv4 address
            iface = ipaddress.IPv4Interface(f"{address}/{netmask}")
            if not iface.ip.is_loopback:
                out[name] = iface
    return out


def arp_request(mac: bytes, sender: str, target: str) -> bytes:
    """An Ethernet broadcast frame asking who has `target`, from `sender` at `mac`."""
    arp = struct.pack(
        "!HHBBH6s4s6s4s",
        1,  # Ethernet
        ETH_P_IP,
        6,
        4,
        ARP_REQUEST,
        mac,
        socket.inet_aton(sender),
        b"\0" * 6,
        socket.inet_aton(target),
    )
    return BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp


def arp_sender(frame: bytes) -> str | None:
    """The sender address of an ARP request or reply frame, None for anything else."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4 or op not in (1, 2):
        return None
    return socket.inet_ntoa(frame[28:32])


class ArpProbe(ReopeningDriver):
    """ARP requests for on-link addresses on one interface; an ARP frame whose sender is
    one of them (a reply, or its own request or announcement) is its answer."""

    def __init__(self, device: str, targets: tuple[str, ...], backoff: Backoff | None = None):
        super().__init__(f"arp:{device}", backoff)
        self.device = device
        self.targets = targets
        self._target_set = frozenset(targets)
        self._sock: socket.socket | None = None
        self._mac = b""
        self._address = ""

    def _do_open(self) -> None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        try:
            sock.bind((self.device, ETH_P_ARP))
            sock.setblocking(False)
            self._mac = sock.getsockname()[4][:6]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                self._address = _ifreq_address(s, SIOCGIFADDR, self.device)
        except OSError:
            sock.close()
            raise
        self._sock = sock

    def _do_close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _fd(self) -> int | None:
        return self._sock.fileno() if self._sock is not None else None

    def send(self, now: float) -> int:
        sock = self._sock if self.is_open else None
        if sock is None:
            self.stats.dropped_down += len(self.targets)
            return 0
        sent = 0
        for target in self.targets:
            try:
                sock.send(arp_request(self._mac, self._address, target))
                sent += 1
            except (BlockingIOError, InterruptedError):
                self.stats.dropped_full += 1
            except OSError as e:
                self._lost(f"ARP on {self.device}: {describe(e)}", now)
                break
        self.stats.frames_sent += sent
        return sent

    def on_readable(self, now: float) -> list[str]:
        sock = self._sock if self.is_open else None
        answered: list[str] = []
        for _ in range(MAX_FRAMES_PER_CALL):
            if sock is None:
                break
            try:
                frame = sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._lost(f"ARP on {self.device}: {describe(e)}", now)
                break
            sender = arp_sender(frame)
            if sender is not None and sender in self._target_set and sender not in answered:
                answered.append(sender)
                self.stats.frames_received += 1
        return answered


ProbeDriver = ArpProbe | PingLink


class AddressProber:
    """Probes a set of addresses, each the hardest-to-filter way this node can."""

    def __init__(self, *, arp: bool = True) -> None:
        self.arp = arp
        self.drivers: dict[str, ProbeDriver] = {}
        self.fallback_reason: str | None = None
        self._targets: tuple[str, ...] = ()

    def set_targets(self, addresses: tuple[str, ...], now: float) -> None:
        """Probe these from now on (drivers opened and closed as needed)."""
        if tuple(addresses) == self._targets:
            return
        self._targets = tuple(addresses)
        wanted = self._plan(addresses)
        for key in list(self.drivers):
            old = self.drivers[key]
            if key not in wanted or _targets_of(old) != wanted[key][1]:
                old.close()
                del self.drivers[key]
        for key, (kind, targets) in wanted.items():
            if key in self.drivers:
                continue
            driver: ProbeDriver
            if kind == "arp":
                arp = ArpProbe(key.split(":", 1)[1], targets)
                arp.open(now)
                if arp.is_open:
                    self.drivers[key] = arp
                    continue
                self.fallback_reason = f"ARP on {arp.device} cannot be used; probing by ICMP"
                arp.close()
            driver = PingLink(PingGroup(key, targets, "probe"))
            driver.open(now)
            self.drivers[key] = driver

    def probe(self, now: float) -> None:
        for driver in self.drivers.values():
            if isinstance(driver, ArpProbe):
                driver.send(now)
            else:
                driver.send_echo(now)

    def on_readable(self, key: str, now: float) -> list[str]:
        driver = self.drivers.get(key)
        if driver is None:
            return []
        if isinstance(driver, ArpProbe):
            return driver.on_readable(now)
        return [reply.address for reply in driver.on_readable(now)]

    def close(self) -> None:
        for driver in self.drivers.values():
            driver.close()
        self.drivers.clear()
        self._targets = ()

    def _plan(self, addresses: tuple[str, ...]) -> dict[str, tuple[str, tuple[str, ...]]]:
        networks = interface_networks()
        own: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = {
            iface.ip for iface in networks.values()
        }
        own |= local_ipv6_addresses()
        on_link = networks if self.arp else {}
        plan: dict[str, list[str]] = {}
        kinds: dict[str, str] = {}
        for address in addresses:
            key, kind = "probe:ipv4", "icmp"
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                continue
            if ip.is_loopback or ip in own:
                continue  # this machine's own address answers for this machine, not a peer
            if ip.version == 6:
                key = "probe:ipv6"
            else:
                for name, iface in on_link.items():
                    if ip in iface.network:
                        key, kind = f"arp:{name}", "arp"
                        break
            plan.setdefault(key, []).append(address)
            kinds[key] = kind
        return {k: (kinds[k], tuple(v)) for k, v in plan.items()}


def _targets_of(driver: ProbeDriver) -> tuple[str, ...]:
    return driver.targets if isinstance(driver, ArpProbe) else driver.addresses
