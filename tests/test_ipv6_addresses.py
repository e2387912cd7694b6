"""IPv6 service addresses: `IPv6addr::ADDR/PREFIX/IFACE` and `IPaddr2` with an IPv6 address.

The root tests use two namespaces joined by a veth pair: the address is managed in
"node", and "peer" captures what the node announces (tcpdump) and pings it. Duplicate
address detection runs as on a real LAN (the namespaces keep the kernel's default
`accept_dad=1`), so a start waits while the address is tentative, and fails when the
peer already has it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from hbd.config.ipaddr import AddressError, VirtualAddress, parse_ipaddr, parse_ipv6addr
from hbd.core.model import AgentKind, Resource
from hbd.effects.addresses import (
    BuiltinAgents,
    PyrouteAddressManager,
    gratuitous_arp,
    unsolicited_na,
)

import netns

VIP6 = "fd77::100"


def builtin(name: str, arg: str) -> Resource:
    return Resource(name, (arg,), AgentKind.BUILTIN, None, "haresources:1")


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("fd00::5", VirtualAddress(IPv6Address("fd00::5"))),
        ("fd00::5/64", VirtualAddress(IPv6Address("fd00::5"), 64)),
        ("2001:db8:0:0:0:0:0:5/64/eth1", VirtualAddress(IPv6Address("2001:db8::5"), 64, "eth1")),
        ("fe80::5/64/eth0", VirtualAddress(IPv6Address("fe80::5"), 64, "eth0")),
    ],
)
def test_ipv6_arguments_parse_as_the_ipv6addr_wrapper_splits_them(
    arg: str, expected: VirtualAddress
) -> None:
    assert parse_ipv6addr(arg) == expected
    assert parse_ipaddr(arg) == expected  # IPaddr2's wrapper: the same for an IPv6 address


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("fd00::5/129", "from 0 to 128"),
        ("fd00::5/ffff::", "from 0 to 128"),
        ("fd00::5/64/eth0:web", "no labels"),
        ("fd00::5/64/eth0/fd00::ff", "no broadcast"),
        ("fe80::5/64", "link-local address needs its interface"),
        ("ff02::1", "not a unicast address"),
    ],
)
def test_bad_ipv6_arguments_are_named(arg: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        parse_ipv6addr(arg)


def test_the_unsolicited_advertisement_is_the_one_ipaddr2s_send_ua_sends() -> None:
    mac = "02:00:00:00:00:01"
    frame = Ether(unsolicited_na(IPv6Address(VIP6), mac))
    assert (frame.dst, frame.src) == ("33:33:00:00:00:01", mac)
    ip6 = frame[IPv6]
    assert (ip6.src, ip6.dst, ip6.hlim) == (VIP6, "ff02::1", 255)
    na = frame[ICMPv6ND_NA]
    assert (na.tgt, na.R, na.S, na.O) == (VIP6, 0, 0, 1)
    assert frame[ICMPv6NDOptDstLLAddr].lladdr == mac
    # the checksum in the frame is the one a receiver computes over it
    again = Ether(bytes(frame))
    del again[ICMPv6ND_NA].cksum
    assert Ether(bytes(again))[ICMPv6ND_NA].cksum == na.cksum


@dataclass
class Lan6:
    """An in-memory AddressManager: eth0 with fd00::1/64; DAD answers from `dad`."""

    dad: list[str] = field(default_factory=lambda: ["tentative", "tentative", "ok"])
    configured: dict[IPv6Address, VirtualAddress] = field(default_factory=dict)
    nas: list[tuple[IPv6Address, str, int, float]] = field(default_factory=list)

    def find_interface(self, ip: IPv4Address | IPv6Address) -> tuple[str, int] | None:
        return ("eth0", 64) if ip in VirtualAddress(IPv6Address("fd00::1"), 64).network else None

    def address_interfaces(self, ip: IPv4Address | IPv6Address) -> tuple[str, ...]:
        a = self.configured.get(ip)  # type: ignore[arg-type]
        return (a.iface,) if a and a.iface else ()

    def add_address(self, addr: VirtualAddress) -> None:
        assert isinstance(addr.ip, IPv6Address)
        self.configured[addr.ip] = addr

    def remove_address(self, addr: VirtualAddress) -> None:
        del self.configured[addr.ip]  # type: ignore[arg-type]

    def dad_state(self, ip: IPv6Address) -> str | None:
        return self.dad.pop(0) if len(self.dad) > 1 else self.dad[0]

    def send_unsolicited_na(self, ip: IPv6Address, iface: str, count: int, interval: float) -> int:
        self.nas.append((ip, iface, count, interval))
        return count


def test_ipv6addr_waits_out_dad_then_advertises_and_uses_ocf_exit_codes() -> None:
    lan = Lan6()
    agents = BuiltinAgents(lan)
    res = builtin("IPv6addr", "fd00::50")
    assert agents.run(res, "status") == (7, "fd00::50 is stopped")
    rc, out = agents.run(res, "start")
    assert (rc, out) == (0, "fd00::50/64 on eth0, 5 unsolicited neighbour advertisements")
    assert lan.dad == ["ok"]  # asked until DAD was done
    assert lan.nas == [(IPv6Address("fd00::50"), "eth0", 5, 0.2)]  # IPaddr2's send_ua burst
    assert agents.run(res, "status")[0] == 0
    assert agents.run(res, "stop") == (0, "fd00::50 removed from eth0")
    assert lan.configured == {}


def test_a_dad_collision_fails_the_start_and_removes_the_address() -> None:
    lan = Lan6(dad=["tentative", "dadfailed"])
    rc, out = BuiltinAgents(lan).run(builtin("IPaddr2", "fd00::50/64/eth0"), "start")
    assert rc == 1 and "IPv6 address collision: another host on eth0 has fd00::50" in out
    assert lan.configured == {} and lan.nas == []


def test_an_address_still_tentative_at_the_deadline_is_used_with_a_warning() -> None:
    lan = Lan6(dad=["tentative"])
    rc, out = BuiltinAgents(lan, dad_wait=0.2).run(builtin("IPv6addr", "fd00::50"), "start")
    assert rc == 0 and "still tentative after 0.2 s (DAD)" in out and len(lan.nas) == 1


def test_an_address_of_the_wrong_family_is_a_configuration_error() -> None:
    agents = BuiltinAgents(Lan6())
    assert agents.run(builtin("IPaddr", "fd00::50"), "start")[0] == 6
    rc, out = agents.run(builtin("IPv6addr", "10.0.0.5"), "start")
    assert rc == 6 and "write IPaddr2::ADDR for IPv4" in out


# ------------------------------------------------------------------ root


@dataclass
class Pair:
    node: netns.Netns
    peer: netns.Netns


@pytest.fixture
def pair() -> Iterator[Pair]:
    with (
        netns.namespace("node") as node,
        netns.namespace("peer") as peer,
        netns.veth_pair(node, peer, "10.77.0.0/24"),
    ):
        node.ip("-6", "addr", "add", "fd77::1/64", "dev", "eth0", "nodad")
        peer.ip("-6", "addr", "add", "fd77::2/64", "dev", "eth0", "nodad")
        yield Pair(node, peer)


def addresses6(ns: netns.Netns) -> str:
    return ns.ip("-6", "-o", "addr", "show", "dev", "eth0").stdout


def capture_nas(peer: netns.Netns, pcap: Path, count: int) -> subprocess.Popen[bytes]:
    """tcpdump in the peer until `count` neighbour advertisements; returns once listening."""
    proc = peer.popen(
        "tcpdump", "-i", "eth0", "-n", "-U", "-c", str(count), "-w", str(pcap),
        "icmp6 and ip6[40] == 136",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert "listening on" in line, line
    return proc


@pytest.mark.root
@netns.requires_root
def test_ipv6addr_in_a_namespace_waits_for_dad_announces_and_leaves(
    pair: Pair, tmp_path: Path
) -> None:
    agents = BuiltinAgents(PyrouteAddressManager(netns=pair.node.name))
    res = builtin("IPv6addr", f"{VIP6}/64/eth0")
    assert agents.run(res, "status")[0] == 7
    # the peer still has the address at the old holder's MAC, as after a takeover
    old_mac = "02:00:00:00:00:99"
    pair.peer.ip("-6", "neigh", "replace", VIP6, "lladdr", old_mac, "dev", "eth0", "nud", "stale")
    pcap = tmp_path / "na.pcap"
    proc = capture_nas(pair.peer, pcap, 5)
    started = time.monotonic()
    rc, out = agents.run(res, "start")
    took = time.monotonic() - started
    assert rc == 0, out
    assert f"{VIP6}/64 on eth0, 5 unsolicited neighbour advertisements" == out
    print(f"TIMING IPv6addr start with DAD: {took:.2f} s")
    assert took >= 0.9  # DAD: the kernel holds a new address tentative for about a second
    lines = addresses6(pair.node)
    assert f"inet6 {VIP6}/64 scope global" in lines and "tentative" not in lines
    proc.wait(timeout=10)
    assert proc.stderr is not None
    proc.stderr.close()
    mac = pair.node.ip("-o", "link", "show", "eth0").stdout.split("link/ether ")[1].split()[0]
    packets = rdpcap(str(pcap))
    assert len(packets) == 5
    for p in packets:
        na = p[ICMPv6ND_NA]
        assert (p[IPv6].src, p[IPv6].dst, na.tgt, na.O, na.S) == (VIP6, "ff02::1", VIP6, 1, 0)
        assert p[ICMPv6NDOptDstLLAddr].lladdr == mac == p.src
    # the advertisement moved the peer's neighbour entry to the new holder
    assert f"lladdr {mac}" in pair.peer.ip("-6", "neigh", "show", VIP6, "dev", "eth0").stdout
    assert pair.peer.exec("ping", "-6", "-c", "1", "-W", "2", VIP6, check=False).returncode == 0
    assert agents.run(res, "status") == (0, f"{VIP6} is running on eth0")
    assert agents.run(res, "stop")[0] == 0
    assert VIP6 not in addresses6(pair.node)


@pytest.mark.root
@netns.requires_root
def test_ipaddr2_refuses_an_ipv6_address_the_peer_already_has(pair: Pair) -> None:
    pair.peer.ip("-6", "addr", "add", f"{VIP6}/64", "dev", "eth0", "nodad")
    agents = BuiltinAgents(PyrouteAddressManager(netns=pair.node.name))
    rc, out = agents.run(builtin("IPaddr2", f"{VIP6}/64/eth0"), "start")
    assert rc == 1 and f"IPv6 address collision: another host on eth0 has {VIP6}" in out
    assert VIP6 not in addresses6(pair.node)


@pytest.mark.root
@netns.requires_root
def test_with_dad_off_on_the_interface_the_address_is_announced_at_once(pair: Pair) -> None:
    pair.node.sysctl("net.ipv6.conf.eth0.accept_dad", "0")  # IPaddr2's nodad, host-wide
    agents = BuiltinAgents(
        PyrouteAddressManager(netns=pair.node.name), arp_count=1, arp_interval=0.0
    )
    started = time.monotonic()
    rc, out = agents.run(builtin("IPaddr2", f"{VIP6}/64/eth0"), "start")
    assert rc == 0, out
    assert time.monotonic() - started < 0.5
    assert agents.run(builtin("IPaddr2", f"{VIP6}/64/eth0"), "stop")[0] == 0


@pytest.mark.root
@netns.requires_root
def test_an_ipv6_address_on_another_nic_is_neither_taken_nor_removed(pair: Pair) -> None:
    node = pair.node
    node.ip("link", "add", "dum0", "type", "veth", "peer", "name", "dum0p")
    node.ip("link", "set", "dum0", "up")
    node.ip("-6", "addr", "add", f"{VIP6}/128", "dev", "dum0", "nodad")
    agents = BuiltinAgents(PyrouteAddressManager(netns=node.name), dad_wait=0.2)
    res = builtin("IPv6addr", f"{VIP6}/64/eth0")
    rc, out = agents.run(res, "start")
    assert rc == 1 and f"{VIP6} is already configured on dum0, not by hbd" in out
    assert agents.run(res, "status")[0] == 7
    assert agents.run(res, "stop") == (0, f"{VIP6} was not added by hbd; left alone on dum0")
    assert VIP6 in node.ip("-6", "-o", "addr", "show", "dev", "dum0").stdout
    assert VIP6 not in addresses6(node)


@pytest.mark.parametrize("reply", [False, True])
def test_the_gratuitous_arp_is_byte_for_byte_the_one_scapy_builds(reply: bool) -> None:
    from scapy.layers.l2 import ARP

    mac, ip = "02:11:22:33:44:55", "10.91.0.100"
    expected = Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(
        op=2 if reply else 1,
        hwsrc=mac,
        psrc=ip,
        hwdst="ff:ff:ff:ff:ff:ff" if reply else "00:00:00:00:00:00",
        pdst=ip,
    )
    assert gratuitous_arp(IPv4Address(ip), mac, reply=reply) == bytes(expected)


def test_the_unsolicited_advertisement_is_byte_for_byte_the_one_scapy_builds() -> None:
    mac = "02:11:22:33:44:55"
    expected = (
        Ether(dst="33:33:00:00:00:01", src=mac)
        / IPv6(src=VIP6, dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(tgt=VIP6, R=0, S=0, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=mac)
    )
    assert unsolicited_na(IPv6Address(VIP6), mac) == bytes(expected)


def test_a_malformed_mac_is_refused_by_name() -> None:
    with pytest.raises(AddressError, match="not a MAC address"):
        gratuitous_arp(IPv4Address("10.91.0.100"), "02:11:22")
