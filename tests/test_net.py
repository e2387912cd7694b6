"""Built-in IPaddr/IPaddr2/SendArp: argument parsing, and the real thing in namespaces.

The root tests make two namespaces joined by a veth pair; the address is managed in
one ("node"), and tcpdump in the other ("peer") captures the gratuitous ARPs.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from scapy.layers.l2 import ARP, Ether
from scapy.utils import rdpcap

from hbd.config.ipaddr import AddressError, VirtualAddress, parse_ipaddr
from hbd.core.model import AgentKind, Resource
from hbd.effects.addresses import (
    AddedAddresses,
    BuiltinAgents,
    PyrouteAddressManager,
    gratuitous_arp,
)

import netns

VIP = "10.77.0.100"


def builtin(name: str, arg: str) -> Resource:
    return Resource(name, (arg,), AgentKind.BUILTIN, None, "haresources:1")


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("10.0.0.5", VirtualAddress(IPv4Address("10.0.0.5"))),
        ("10.0.0.5/24", VirtualAddress(IPv4Address("10.0.0.5"), 24)),
        ("10.0.0.5/255.255.0.0", VirtualAddress(IPv4Address("10.0.0.5"), 16)),
        ("10.0.0.5/24/eth1", VirtualAddress(IPv4Address("10.0.0.5"), 24, "eth1")),
        (
            "10.0.0.5/24/eth1:web",
            VirtualAddress(IPv4Address("10.0.0.5"), 24, "eth1", "eth1:web"),
        ),
        (
            "10.0.0.5/24/eth1/10.0.0.255",
            VirtualAddress(IPv4Address("10.0.0.5"), 24, "eth1", None, IPv4Address("10.0.0.255")),
        ),
        (
            "10.0.0.5/24/10.0.0.127",  # a digit after the prefix: a broadcast, no interface
            VirtualAddress(IPv4Address("10.0.0.5"), 24, None, None, IPv4Address("10.0.0.127")),
        ),
    ],
)
def test_ipaddr_arguments_parse_as_heartbeats_wrapper_does(
    arg: str, expected: VirtualAddress
) -> None:
    assert parse_ipaddr(arg) == expected


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("10.0.0", "is not an IPv4 address"),
        ("10.0.0.5/33", "neither a prefix length nor a netmask"),
        ("10.0.0.5/24/eth0/10.0.0.255/extra", "unexpected 'extra'"),
        ("10.0.0.5/24/eth0:averyverylonglabel", "longer than 15"),
    ],
)
def test_bad_ipaddr_arguments_are_named(arg: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        parse_ipaddr(arg)


def test_gratuitous_arp_frame_announces_the_address() -> None:
    frame = Ether(gratuitous_arp(IPv4Address(VIP), "02:00:00:00:00:01"))
    assert frame.dst == "ff:ff:ff:ff:ff:ff" and frame.src == "02:00:00:00:00:01"
    arp = frame[ARP]
    assert (arp.op, arp.psrc, arp.pdst, arp.hwsrc) == (1, VIP, VIP, "02:00:00:00:00:01")
    assert Ether(gratuitous_arp(IPv4Address(VIP), "02:00:00:00:00:01", reply=True))[ARP].op == 2


@dataclass
class RecordingAddresses:
    """An in-memory AddressManager: one interface eth0 with 192.168.1.1/24."""

    configured: dict[IPv4Address, VirtualAddress] = field(default_factory=dict)
    arps: list[tuple[IPv4Address, str, int, float]] = field(default_factory=list)

    def find_interface(self, ip: IPv4Address) -> tuple[str, int] | None:
        return (
            ("eth0", 24) if ip in VirtualAddress(IPv4Address("192.168.1.1"), 24).network else None
        )

    def address_interfaces(self, ip: IPv4Address) -> tuple[str, ...]:
        a = self.configured.get(ip)
        return (a.iface,) if a and a.iface else ()

    def add_address(self, addr: VirtualAddress) -> None:
        self.configured[addr.ip] = addr

    def remove_address(self, addr: VirtualAddress) -> None:
        del self.configured[addr.ip]

    def send_gratuitous_arp(
        self, ip: IPv4Address, iface: str, count: int, interval: float, reply: bool = False
    ) -> int:
        self.arps.append((ip, iface, count, interval))
        return count


def test_builtin_ipaddr_finds_the_interface_and_uses_ocf_exit_codes() -> None:
    world = RecordingAddresses()
    agents = BuiltinAgents(world)
    res = builtin("IPaddr", "192.168.1.50")
    assert agents.run(res, "status") == (7, "192.168.1.50 is stopped")
    rc, out = agents.run(res, "start")
    assert rc == 0 and "192.168.1.50/24 on eth0, 5 gratuitous ARPs" in out
    assert world.configured[IPv4Address("192.168.1.50")].prefixlen == 24
    assert world.arps == [(IPv4Address("192.168.1.50"), "eth0", 5, 0.2)]  # send_arp defaults
    assert agents.run(res, "status")[0] == 0
    assert agents.run(res, "stop")[0] == 0
    assert world.configured == {}
    assert agents.run(res, "stop")[0] == 0  # stopping a stopped address succeeds


def test_builtin_errors_are_results_not_exceptions() -> None:
    agents = BuiltinAgents(RecordingAddresses())
    rc, out = agents.run(builtin("IPaddr2", "10.9.9.9"), "start")
    assert rc == 6 and "no interface has a network containing 10.9.9.9" in out
    rc, out = agents.run(builtin("IPaddr", "nonsense"), "status")
    assert rc == 6 and "'nonsense' is not an IPv4 address" in out
    rc, out = agents.run(builtin("SendArp", "10.0.0.1"), "start")
    assert rc == 6 and "SendArp takes ADDR/IFACE" in out


def test_sendarp_sends_on_start_and_is_running_until_stopped() -> None:
    world = RecordingAddresses()
    agents = BuiltinAgents(world, arp_count=3, arp_interval=0.5)
    res = builtin("SendArp", "10.0.0.1/eth2")
    assert agents.run(res, "status")[0] == 7
    assert agents.run(res, "start")[0] == 0
    assert world.arps == [(IPv4Address("10.0.0.1"), "eth2", 3, 0.5)]
    assert agents.run(res, "status")[0] == 0
    assert agents.run(res, "stop")[0] == 0
    assert agents.run(res, "status")[0] == 7


# ------------------------------------------------------------------ root


@dataclass
class Pair:
    node: netns.Netns
    peer: netns.Netns
    veth: netns.Veth


@pytest.fixture
def pair() -> Iterator[Pair]:
    with (
        netns.namespace("node") as node,
        netns.namespace("peer") as peer,
        netns.veth_pair(node, peer, "10.77.0.0/24") as veth,
    ):
        yield Pair(node, peer, veth)


def node_addresses(ns: netns.Netns) -> str:
    return ns.ip("-4", "-o", "addr", "show").stdout


def capture_arps(peer: netns.Netns, pcap: Path, count: int) -> subprocess.Popen[bytes]:
    """tcpdump in the peer namespace until `count` ARPs about VIP; returns once listening."""
    proc = peer.popen(
        "tcpdump", "-i", "eth0", "-n", "-U", "-c", str(count), "-w", str(pcap),
        f"arp and host {VIP}",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert "listening on" in line, line
    return proc


def mac_of(ns: netns.Netns, iface: str) -> str:
    return ns.ip("-o", "link", "show", iface).stdout.split("link/ether ")[1].split()[0]


def check_capture(proc: subprocess.Popen[bytes], pcap: Path, mac: str, count: int) -> None:
    proc.wait(timeout=10)
    assert proc.stderr is not None
    proc.stderr.close()
    packets = rdpcap(str(pcap))
    assert len(packets) == count
    for p in packets:
        arp = p[ARP]
        assert (arp.op, arp.psrc, arp.pdst, arp.hwsrc, p.src) == (1, VIP, VIP, mac, mac)
    gaps = [float(b.time) - float(a.time) for a, b in itertools.pairwise(packets)]
    assert all(0.15 <= g <= 0.6 for g in gaps), gaps


@pytest.mark.root
@netns.requires_root
def test_ipaddr_in_a_named_namespace_appears_announces_and_leaves(
    pair: Pair, tmp_path: Path
) -> None:
    agents = BuiltinAgents(PyrouteAddressManager(netns=pair.node.name))
    res = builtin("IPaddr2", f"{VIP}/24/eth0:vip")
    assert agents.run(res, "status")[0] == 7
    pcap = tmp_path / "arps.pcap"
    proc = capture_arps(pair.peer, pcap, 5)
    started = time.monotonic()
    rc, out = agents.run(res, "start")
    took = time.monotonic() - started
    assert rc == 0, out
    assert 0.7 <= took < 3.0  # five ARPs, 200 ms apart
    lines = node_addresses(pair.node)
    assert f"inet {VIP}/24 brd 10.77.0.255 scope global secondary eth0:vip" in lines
    check_capture(proc, pcap, mac_of(pair.node, "eth0"), 5)
    assert agents.run(res, "status") == (0, f"{VIP} is running on eth0")
    # the peer can reach the new address
    assert pair.peer.exec("ping", "-c", "1", "-W", "2", VIP, check=False).returncode == 0
    assert agents.run(res, "stop")[0] == 0
    assert VIP not in node_addresses(pair.node)
    assert agents.run(res, "status")[0] == 7


@pytest.mark.root
@netns.requires_root
def test_ipaddr_in_the_current_namespace_finds_the_interface_by_network(
    pair: Pair, tmp_path: Path
) -> None:
    pcap = tmp_path / "arps.pcap"
    proc = capture_arps(pair.peer, pcap, 3)
    res = builtin("IPaddr", VIP)
    with pair.node.entered():  # as the daemon runs: inside the namespace already
        agents = BuiltinAgents(PyrouteAddressManager(), arp_count=3, arp_interval=0.25)
        rc, out = agents.run(res, "start")
    assert rc == 0, out
    assert f"{VIP}/24 on eth0, 3 gratuitous ARPs" in out
    assert f"inet {VIP}/24 brd 10.77.0.255 scope global secondary eth0" in node_addresses(pair.node)
    check_capture(proc, pcap, mac_of(pair.node, "eth0"), 3)
    with pair.node.entered():
        assert agents.run(res, "stop")[0] == 0
    assert VIP not in node_addresses(pair.node)


@pytest.mark.root
@netns.requires_root
def test_a_missing_interface_is_a_generic_error_naming_it(pair: Pair) -> None:
    agents = BuiltinAgents(PyrouteAddressManager(netns=pair.node.name))
    rc, out = agents.run(builtin("IPaddr2", f"{VIP}/24/nosuch0"), "start")
    assert rc == 6 and "no interface named 'nosuch0'" in out
    assert VIP not in node_addresses(pair.node)


@pytest.mark.root
@netns.requires_root
def test_a_group_with_a_virtual_ip_runs_through_the_core_and_the_runner(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from hbd.core.model import ResourceGroup
    from hbd.core.resources import GroupStarted, GroupStopped, ResourceManager, RunAgent
    from hbd.effects.agents import ScriptRunner, carry_out

    monkeypatch.setenv("HBD_TEST_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("HBD_TEST_STATE", str(tmp_path))
    web = Resource(
        "recorder", ("web",), AgentKind.RESOURCE_D,
        str(Path(__file__).parent / "agents" / "recorder"), "haresources:1",
    )  # fmt: skip
    group = ResourceGroup("node", (builtin("IPaddr", f"{VIP}/24/eth0"), web), "haresources:1")
    runner = ScriptRunner(BuiltinAgents(PyrouteAddressManager(netns=pair.node.name)))

    async def settle(rm: ResourceManager) -> list[object]:
        while (a := rm.next_action()) is not None:
            assert isinstance(a, RunAgent)
            await carry_out(runner, rm, a)
        return list(iter(rm.next_event, None))

    async def scenario() -> None:
        rm = ResourceManager([group], node_name="node")
        rm.probe_all(time.monotonic())
        await settle(rm)
        rm.acquire(group.name, time.monotonic())
        assert GroupStarted(group.name) in await settle(rm)
        assert VIP in node_addresses(pair.node)
        snap = rm.snapshot()[0]
        assert snap["state"] == "started" and snap["resources"][0]["last_op"] == "start"
        assert snap["resources"][0]["duration_ms"] >= 800  # the ARP burst
        rm.release(group.name, time.monotonic())
        assert GroupStopped(group.name) in await settle(rm)
        assert VIP not in node_addresses(pair.node)

    asyncio.run(scenario())
    assert (tmp_path / "calls.log").read_text().split("\n")[-3:-1] == ["web start", "web stop"]


class CountingAddresses(PyrouteAddressManager):
    """The real manager, counting the gratuitous ARP bursts it is asked for."""

    def __init__(self, netns: str) -> None:
        super().__init__(netns)
        self.bursts: list[str] = []

    def send_gratuitous_arp(
        self, ip: IPv4Address, iface: str, count: int, interval: float, reply: bool = False
    ) -> int:
        self.bursts.append(iface)
        return super().send_gratuitous_arp(ip, iface, count, interval, reply)


def static_copy(ns: netns.Netns, iface: str = "dum0") -> None:
    """VIP configured by hand on another interface of the node (not by hbd)."""
    ns.ip("link", "add", iface, "type", "veth", "peer", "name", f"{iface}p")  # no dummy module
    ns.ip("link", "set", iface, "up")
    ns.ip("addr", "add", f"{VIP}/32", "dev", iface)


@pytest.mark.root
@netns.requires_root
def test_stop_leaves_a_static_copy_of_the_address_on_another_nic_alone(pair: Pair) -> None:
    static_copy(pair.node)
    agents = BuiltinAgents(PyrouteAddressManager(netns=pair.node.name))
    res = builtin("IPaddr2", f"{VIP}/24/eth0")
    assert agents.run(res, "status") == (
        7,
        f"{VIP} is stopped here: it is on dum0, which hbd did not add it to",
    )
    assert agents.run(res, "stop") == (0, f"{VIP} was not added by hbd; left alone on dum0")
    assert f"inet {VIP}/32 scope global dum0" in node_addresses(pair.node)


@pytest.mark.root
@netns.requires_root
def test_start_refuses_an_address_already_on_another_nic_naming_it_and_announces_nothing(
    pair: Pair,
) -> None:
    static_copy(pair.node)
    addresses = CountingAddresses(pair.node.name)
    agents = BuiltinAgents(addresses, arp_count=1)
    rc, out = agents.run(builtin("IPaddr2", f"{VIP}/24/eth0"), "start")
    assert (rc, out) == (
        1,
        f"IPaddr2::{VIP}/24/eth0: {VIP} is already configured on dum0, not by hbd: hbd "
        f"will neither add it to eth0 nor announce it; remove it from dum0 or take it out "
        "of haresources",
    )
    assert addresses.bursts == []
    lines = node_addresses(pair.node)
    assert f"{VIP}/24" not in lines and f"inet {VIP}/32 scope global dum0" in lines


@pytest.mark.root
@netns.requires_root
def test_stop_removes_the_address_only_where_hbd_added_it(pair: Pair) -> None:
    agents = BuiltinAgents(PyrouteAddressManager(netns=pair.node.name), arp_count=1)
    res = builtin("IPaddr2", f"{VIP}/24/eth0")
    assert agents.run(res, "start")[0] == 0
    static_copy(pair.node)  # someone adds it by hand elsewhere meanwhile
    assert agents.run(res, "stop") == (0, f"{VIP} removed from eth0; left alone on dum0")
    lines = node_addresses(pair.node)
    assert f"{VIP}/24" not in lines and f"inet {VIP}/32 scope global dum0" in lines


def test_a_restarted_hbd_removes_the_address_from_where_the_last_run_added_it(
    tmp_path: Path,
) -> None:
    world = RecordingAddresses()
    record = tmp_path / "addresses"
    res = builtin("IPaddr", "192.168.1.50")
    assert BuiltinAgents(world, added=AddedAddresses(str(record))).run(res, "start")[0] == 0
    assert json.loads(record.read_text()) == {"192.168.1.50": {"iface": "eth0", "prefixlen": 24}}
    # hbd restarts, and findif would now pick another interface: the record says eth0
    world.find_interface = lambda ip: ("eth9", 24)  # type: ignore[method-assign]
    again = BuiltinAgents(world, added=AddedAddresses(str(record)))
    assert again.run(res, "status") == (0, "192.168.1.50 is running on eth0")
    assert again.run(res, "stop") == (0, "192.168.1.50 removed from eth0")
    assert world.configured == {} and json.loads(record.read_text()) == {}


def test_sendarp_announces_no_address_that_lives_on_another_nic() -> None:
    world = RecordingAddresses()
    world.configured[IPv4Address("10.0.0.1")] = VirtualAddress(IPv4Address("10.0.0.1"), 24, "eth1")
    rc, out = BuiltinAgents(world).run(builtin("SendArp", "10.0.0.1/eth2"), "start")
    assert (rc, out) == (
        1,
        "SendArp::10.0.0.1/eth2: 10.0.0.1 is configured on eth1, not on eth2: no gratuitous "
        "ARP for it on eth2",
    )
    assert world.arps == []
