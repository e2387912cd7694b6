"""UDP drivers between two hosts in network namespaces joined by a veth pair."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hbd.config.model import Medium, MediumKind
from hbd.links.base import Link, LinkLost, LinkOpened, LinkOpenFailed, Received
from hbd.links.factory import make_link
from hbd.links.serial import SerialLink
from hbd.links.udp import (
    BcastLink,
    Mcast6Link,
    McastLink,
    Ucast6Link,
    UcastLink,
    UdpLink,
    udp_link,
)

from netns import Netns, Veth, lan, namespace, requires_root, veth_pair

PORT = 16940
SO_DETACH_FILTER = 27  # linux/socket.h
GROUP = "239.77.0.1"


@dataclass
class Hosts:
    a: Netns
    b: Netns
    veth: Veth


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    with namespace("a") as a, namespace("b") as b, veth_pair(a, b, "10.77.0.0/24") as veth:
        yield Hosts(a, b, veth)


@contextlib.contextmanager
def opened(ns: Netns, kind: MediumKind, **fields: Any) -> Iterator[UdpLink]:
    """A driver for `kind` on eth0 in `ns`, open for the body."""
    medium = Medium(kind, "eth0", source="ha.cf:9", port=PORT, **fields)
    with ns.entered():
        link = udp_link(medium)
        link.open(time.monotonic())
    try:
        assert link.next_event() == LinkOpened(medium.path_id)
        yield link
    finally:
        link.close()


def collect(link: UdpLink, quiet: float = 0.2, first: float | None = None) -> list[Received]:
    """Everything that arrives until `quiet` seconds pass with nothing (bounded); `first`:
    how long to wait for the first datagram when one is expected (a loaded machine)."""
    out: list[Received] = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        fd = link.fileno()
        assert fd is not None
        wait = first if first is not None and not out else quiet
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            break
        out += link.on_readable(time.monotonic())
    return out


def pairs(received: list[Received]) -> set[tuple[bytes, str]]:
    return {(r.data, r.source) for r in received}


@requires_root
@pytest.mark.root
def test_bcast_delivers_both_ways_and_our_own_broadcasts_never_wake_us(hosts: Hosts) -> None:
    with (
        opened(hosts.a, MediumKind.BCAST) as a,
        opened(hosts.b, MediumKind.BCAST) as b,
    ):
        assert isinstance(a, BcastLink)
        assert a.broadcast_address == "10.77.0.255"
        assert a.local_address == hosts.veth.addr_a
        assert a.filtered and b.filtered
        assert a.send(b"alpha here", time.monotonic())
        assert b.send(b"beta here", time.monotonic())

        got_a, got_b = collect(a, first=1.0), collect(b, first=1.0)
        assert pairs(got_b) == {(b"alpha here", "10.77.0.1")}
        assert pairs(got_a) == {(b"beta here", "10.77.0.2")}  # its own copy: dropped in-kernel
        assert all(r.path_id == "bcast:eth0" for r in got_a + got_b)
        assert not any(a.is_own(r.source) for r in got_a)
        assert a.stats.frames_sent == 1 and a.stats.frames_received == 1


@requires_root
@pytest.mark.root
def test_without_the_socket_filter_our_own_broadcasts_come_back_as_from_self(
    hosts: Hosts,
) -> None:
    with (
        opened(hosts.a, MediumKind.BCAST) as a,
        opened(hosts.b, MediumKind.BCAST) as b,
    ):
        sock = a._sock
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)  # a kernel that refused it
        assert a.send(b"alpha here", time.monotonic())
        assert b.send(b"beta here", time.monotonic())
        got_a = collect(a, first=1.0)
        assert pairs(got_a) == {(b"alpha here", "10.77.0.1"), (b"beta here", "10.77.0.2")}
        own = [r for r in got_a if a.is_own(r.source)]
        assert [r.data for r in own] == [b"alpha here"]  # the engine drops these as from-self


@requires_root
@pytest.mark.root
def test_mcast_delivers_both_ways_with_loop_as_configured(hosts: Hosts) -> None:
    with (
        opened(hosts.a, MediumKind.MCAST, group=GROUP, ttl=1, loop=True) as a,
        opened(hosts.b, MediumKind.MCAST, group=GROUP, ttl=1, loop=False) as b,
    ):
        assert isinstance(a, McastLink) and a.destination == (GROUP, PORT)
        assert a.send(b"alpha via group", time.monotonic())
        assert b.send(b"beta via group", time.monotonic())
        assert pairs(collect(b)) == {(b"alpha via group", "10.77.0.1")}  # no loop: not its own
        assert pairs(collect(a)) == {
            (b"alpha via group", "10.77.0.1"),  # loop on: its own copy comes back
            (b"beta via group", "10.77.0.2"),
        }


@requires_root
@pytest.mark.root
def test_mcast_ignores_other_groups_on_the_same_port(hosts: Hosts) -> None:
    with (
        opened(hosts.a, MediumKind.MCAST, group=GROUP) as a,
        opened(hosts.b, MediumKind.MCAST, group=GROUP) as b,
        opened(hosts.b, MediumKind.MCAST, group="239.77.0.2") as b_other,
    ):
        assert a.send(b"for group one", time.monotonic())
        assert pairs(collect(b, first=2.0)) == {(b"for group one", "10.77.0.1")}
        assert collect(b_other) == []


@requires_root
@pytest.mark.root
def test_ucast_delivers_both_ways_to_the_peer(hosts: Hosts) -> None:
    with (
        opened(hosts.a, MediumKind.UCAST, peer=hosts.veth.addr_b) as a,
        opened(hosts.b, MediumKind.UCAST, peer=hosts.veth.addr_a) as b,
    ):
        assert isinstance(a, UcastLink)
        assert a.send(b"to beta", time.monotonic())
        assert b.send(b"to alpha", time.monotonic())
        assert collect(b) == [Received("ucast:eth0:10.77.0.1", b"to beta", "10.77.0.1")]
        assert collect(a) == [Received("ucast:eth0:10.77.0.2", b"to alpha", "10.77.0.2")]


@requires_root
@pytest.mark.root
def test_bcast_and_ucast_sharing_a_port_each_keep_only_their_own_traffic(hosts: Hosts) -> None:
    with (
        opened(hosts.a, MediumKind.BCAST) as a_bcast,
        opened(hosts.a, MediumKind.UCAST, peer=hosts.veth.addr_b) as a_ucast,
        opened(hosts.b, MediumKind.BCAST) as b_bcast,
        opened(hosts.b, MediumKind.UCAST, peer=hosts.veth.addr_a) as b_ucast,
    ):
        assert a_bcast.send(b"broadcast", time.monotonic())
        assert a_ucast.send(b"unicast", time.monotonic())
        assert pairs(collect(b_bcast)) == {(b"broadcast", "10.77.0.1")}
        assert pairs(collect(b_ucast)) == {(b"unicast", "10.77.0.1")}
        assert pairs(collect(a_ucast)) == set()  # its own broadcast is not a unicast


@requires_root
@pytest.mark.root
def test_a_broadcast_never_wakes_a_ucast_socket_on_its_port(hosts: Hosts) -> None:
    with (
        opened(hosts.a, MediumKind.BCAST) as a_bcast,
        opened(hosts.b, MediumKind.BCAST) as b_bcast,
        opened(hosts.b, MediumKind.UCAST, peer=hosts.veth.addr_a) as b_ucast,
    ):
        assert isinstance(b_ucast, UcastLink) and b_ucast.filtered
        fd = b_ucast.fileno()
        assert a_bcast.send(b"broadcast", time.monotonic())
        assert pairs(collect(b_bcast, first=1.0)) == {(b"broadcast", "10.77.0.1")}
        assert select.select([fd], [], [], 0.3)[0] == []  # dropped by the kernel's filter

        sock = b_ucast._sock
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)  # a kernel that refused it
        assert a_bcast.send(b"broadcast", time.monotonic())
        assert pairs(collect(b_bcast, first=1.0)) == {(b"broadcast", "10.77.0.1")}
        assert select.select([fd], [], [], 1.0)[0] == [fd]  # it wakes the socket now...
        assert b_ucast.on_readable(time.monotonic()) == []  # ...and is dropped in Python


@requires_root
@pytest.mark.root
@pytest.mark.parametrize("kind", [MediumKind.BCAST, MediumKind.MCAST, MediumKind.UCAST])
def test_link_down_stops_delivery_and_link_up_restores_it(hosts: Hosts, kind: MediumKind) -> None:
    extra_a: dict[str, Any] = {"group": GROUP, "peer": hosts.veth.addr_b}
    extra_b: dict[str, Any] = {"group": GROUP, "peer": hosts.veth.addr_a}
    if kind is not MediumKind.MCAST:
        extra_a.pop("group"), extra_b.pop("group")
    if kind is not MediumKind.UCAST:
        extra_a.pop("peer"), extra_b.pop("peer")
    with opened(hosts.a, kind, **extra_a) as a, opened(hosts.b, kind, **extra_b) as b:
        hosts.veth.set_down("a")
        sent = a.send(b"while down", time.monotonic())
        assert sent is False and a.stats.dropped_down == 1
        assert collect(b) == []
        assert a.fileno() is not None  # a down NIC is not a lost socket

        hosts.veth.set_up("a")
        deadline = time.monotonic() + 5.0  # the veth needs a moment to carry again
        got: list[Received] = []
        while not got and time.monotonic() < deadline:
            a.send(b"back up", time.monotonic())
            got = [r for r in collect(b, 0.1) if r.data == b"back up"]
        assert got and got[0].source == hosts.veth.addr_a


@requires_root
@pytest.mark.root
def test_total_loss_on_the_wire_is_invisible_to_the_sender(hosts: Hosts) -> None:
    with opened(hosts.a, MediumKind.BCAST) as a, opened(hosts.b, MediumKind.BCAST) as b:
        hosts.veth.drop_all("a")
        assert a.send(b"lost on the wire", time.monotonic())
        assert collect(b) == []
        hosts.veth.clear_netem("a")
        assert a.send(b"through", time.monotonic())
        assert pairs(collect(b)) == {(b"through", "10.77.0.1")}


@requires_root
@pytest.mark.root
def test_a_nic_without_an_address_is_retried_and_a_vanished_nic_is_lost(hosts: Hosts) -> None:
    hosts.a.ip("link", "add", "hb1", "type", "veth", "peer", "name", "hb1p")
    hosts.a.ip("link", "set", "hb1", "up")
    medium = Medium(MediumKind.BCAST, "hb1", source="ha.cf:12", port=PORT)
    with hosts.a.entered():
        link = udp_link(medium)
        link.open(100.0)
        failed = link.next_event()
        assert isinstance(failed, LinkOpenFailed) and "hb1: no IPv4 address" in failed.reason
        assert link.get_timer() == 100.5 and link.fileno() is None

        hosts.a.ip("addr", "add", "10.88.0.1/24", "dev", "hb1")  # no brd: computed
        link.handle_timer(100.5)
        assert link.next_event() == LinkOpened("bcast:hb1")
        assert isinstance(link, BcastLink) and link.broadcast_address == "10.88.0.255"

        hosts.a.ip("link", "del", "hb1")
        assert not link.send(b"nowhere", 101.0)
        lost = link.next_event()
        assert isinstance(lost, LinkLost) and "hb1 vanished" in lost.reason
        assert link.fileno() is None and link.get_timer() == 101.5
        link.close()


def test_media_that_cannot_work_are_refused_naming_the_line() -> None:
    bad_group = Medium(MediumKind.MCAST, "eth0", source="ha.cf:3", group="10.0.0.1")
    with pytest.raises(ValueError, match=r"ha\.cf:3: mcast group '10\.0\.0\.1' is not IPv4"):
        udp_link(bad_group)
    bad_peer = Medium(MediumKind.UCAST, "eth0", source="ha.cf:4", peer="beta")
    with pytest.raises(ValueError, match=r"ha\.cf:4: ucast peer 'beta' is not an IPv4"):
        udp_link(bad_peer)
    bad_group6 = Medium(MediumKind.MCAST6, "eth0", source="ha.cf:6", group="fd00::1")
    with pytest.raises(ValueError, match=r"ha\.cf:6: mcast6 group 'fd00::1' is not IPv6 mult"):
        udp_link(bad_group6)
    bad_peer6 = Medium(MediumKind.UCAST6, "eth0", source="ha.cf:7", peer="10.0.0.2")
    with pytest.raises(ValueError, match=r"ha\.cf:7: ucast6 peer '10\.0\.0\.2' is not an IPv6"):
        udp_link(bad_peer6)
    serial = Medium(MediumKind.SERIAL, "/dev/ttyS0", source="ha.cf:5")
    with pytest.raises(ValueError, match=r"ha\.cf:5: serial is not a UDP medium"):
        udp_link(serial)


def test_make_link_picks_the_driver_for_each_medium(tmp_path: Path) -> None:
    media = {
        SerialLink: Medium(MediumKind.SERIAL, str(tmp_path / "ttyS0"), source="ha.cf:1"),
        BcastLink: Medium(MediumKind.BCAST, "eth0", source="ha.cf:2"),
        McastLink: Medium(MediumKind.MCAST, "eth0", source="ha.cf:3", group=GROUP),
        UcastLink: Medium(MediumKind.UCAST, "eth0", source="ha.cf:4", peer="10.0.0.2"),
        Mcast6Link: Medium(MediumKind.MCAST6, "eth0", source="ha.cf:5", group="ff12::1:694"),
        Ucast6Link: Medium(MediumKind.UCAST6, "eth0", source="ha.cf:6", peer="fe80::2"),
    }
    for cls, medium in media.items():
        link = make_link(medium, lock_dir=str(tmp_path))
        assert type(link) is cls and isinstance(link, Link)
        assert link.path_id == medium.path_id and link.fileno() is None
    serial = make_link(media[SerialLink], lock_dir=str(tmp_path))
    assert isinstance(serial, SerialLink) and serial.lock.lock_dir == str(tmp_path)


@requires_root
@pytest.mark.root
def test_bcast_on_a_three_host_lan_reaches_everyone_until_one_host_is_cut() -> None:
    with (
        namespace("a") as a,
        namespace("b") as b,
        namespace("c") as c,
        lan([a, b, c], "10.78.0.0/24") as segment,
        opened(a, MediumKind.BCAST) as link_a,
        opened(b, MediumKind.BCAST) as link_b,
        opened(c, MediumKind.BCAST) as link_c,
    ):
        for link, name in ((link_a, b"a"), (link_b, b"b"), (link_c, b"c")):
            assert link.send(b"hello from " + name, time.monotonic())
        everyone = {(b"hello from a", "10.78.0.1"), (b"hello from b", "10.78.0.2")}
        everyone.add((b"hello from c", "10.78.0.3"))
        for link in (link_a, link_b, link_c):  # everyone but itself (its own copy: filtered)
            assert pairs(collect(link)) == {p for p in everyone if not link.is_own(p[1])}

        segment.drop_all(c)
        assert link_c.send(b"c into the void", time.monotonic())
        assert link_a.send(b"a still here", time.monotonic())
        assert pairs(collect(link_b)) == {(b"a still here", "10.78.0.1")}
        assert pairs(collect(link_c)) == {(b"a still here", "10.78.0.1")}  # only egress is cut


# -- IPv6: mcast6 and ucast6 ---------------------------------------------------------------

GROUP6 = "ff12::1:694"  # Heartbeat's kind of group: transient, link-local scope


@pytest.fixture
def hosts6(hosts: Hosts) -> Hosts:
    """The veth pair with fd77::1 (a), fd77::2 (b) and link-local fe80::a, fe80::b, all
    without duplicate address detection (nothing else could have them here)."""
    for ns, n, ll in ((hosts.a, 1, "a"), (hosts.b, 2, "b")):
        ns.ip("-6", "addr", "add", f"fd77::{n}/64", "dev", "eth0", "nodad")
        ns.ip("-6", "addr", "add", f"fe80::{ll}/64", "dev", "eth0", "nodad")
    return hosts


@requires_root
@pytest.mark.root
def test_ucast6_delivers_both_ways_to_global_and_link_local_peers(hosts6: Hosts) -> None:
    with (
        opened(hosts6.a, MediumKind.UCAST6, peer="fd77::2") as a,
        opened(hosts6.b, MediumKind.UCAST6, peer="fe80::a") as b,
    ):
        assert isinstance(a, Ucast6Link) and a.destination == ("fd77::2", PORT)
        assert a.send(b"to beta", time.monotonic())
        assert b.send(b"to alpha over link-local", time.monotonic())
        assert collect(b) == [Received("ucast6:eth0:fe80::a", b"to beta", "fd77::1")]
        # the sender's address comes without its %scope, as ha.cf names the peer
        got = collect(a)
        assert got == [Received("ucast6:eth0:fd77::2", b"to alpha over link-local", "fe80::b")]
        assert b.is_own("fe80::b") and not b.is_own("fe80::a")


@requires_root
@pytest.mark.root
def test_mcast6_delivers_with_loop_as_configured_and_keeps_to_its_group(hosts6: Hosts) -> None:
    with (
        opened(hosts6.a, MediumKind.MCAST6, group=GROUP6, ttl=1, loop=True) as a,
        opened(hosts6.b, MediumKind.MCAST6, group=GROUP6, ttl=1, loop=False) as b,
        opened(hosts6.b, MediumKind.MCAST6, group="ff12::1:695") as b_other,
    ):
        assert isinstance(a, Mcast6Link) and a.destination == (GROUP6, PORT)
        assert a.send(b"alpha via group", time.monotonic())
        assert b.send(b"beta via group", time.monotonic())
        got_b = collect(b)
        assert [r.data for r in got_b] == [b"alpha via group"]  # no loop: not its own
        assert got_b[0].source in ("fe80::a", "fd77::1") and not b.is_own(got_b[0].source)
        got_a = collect(a)
        assert sorted(r.data for r in got_a) == [b"alpha via group", b"beta via group"]
        assert [a.is_own(r.source) for r in got_a if r.data == b"alpha via group"] == [True]
        assert collect(b_other) == []


@requires_root
@pytest.mark.root
def test_ucast6_and_mcast6_sharing_a_port_each_keep_only_their_own_traffic(
    hosts6: Hosts,
) -> None:
    with (
        opened(hosts6.a, MediumKind.MCAST6, group=GROUP6) as a_m,
        opened(hosts6.a, MediumKind.UCAST6, peer="fd77::2") as a_u,
        opened(hosts6.b, MediumKind.MCAST6, group=GROUP6) as b_m,
        opened(hosts6.b, MediumKind.UCAST6, peer="fd77::1") as b_u,
        opened(hosts6.b, MediumKind.UCAST, peer="10.77.0.1") as b_u4,
        opened(hosts6.a, MediumKind.UCAST, peer="10.77.0.2") as a_u4,
    ):
        assert a_m.send(b"multicast", time.monotonic())
        assert a_u.send(b"unicast6", time.monotonic())
        assert a_u4.send(b"unicast4", time.monotonic())
        assert [r.data for r in collect(b_m)] == [b"multicast"]
        assert pairs(collect(b_u)) == {(b"unicast6", "fd77::1")}  # not the IPv4 one either
        assert pairs(collect(b_u4)) == {(b"unicast4", "10.77.0.1")}


@requires_root
@pytest.mark.root
def test_an_ipv6_path_on_a_missing_nic_is_retried() -> None:
    with namespace("a") as a:
        medium = Medium(MediumKind.UCAST6, "nosuch0", source="ha.cf:7", port=PORT, peer="fd00::2")
        with a.entered():
            link = udp_link(medium)
            link.open(100.0)
        failed = link.next_event()
        assert isinstance(failed, LinkOpenFailed) and failed.reason.startswith("nosuch0: ")
        assert link.get_timer() == 100.5 and link.fileno() is None
        link.close()
