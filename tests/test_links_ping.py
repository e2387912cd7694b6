"""Ping drivers between two namespaces: real kernels answering, and crafted replies."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hbd.config.model import PingGroup, PingNode
from hbd.links.base import LinkOpened
from hbd.links.ping import ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, PingLink, PingReply, echo_packet
from hbd.links.probe import AddressProber, _targets_of
from hbd.links.udp import with_scope

from netns import Netns, Veth, namespace, requires_root, veth_pair


@dataclass
class Hosts:
    a: Netns
    b: Netns
    veth: Veth


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    with namespace("a") as a, namespace("b") as b, veth_pair(a, b, "10.79.0.0/24") as veth:
        yield Hosts(a, b, veth)


@contextlib.contextmanager
def pinger(ns: Netns, target: PingNode | PingGroup) -> Iterator[PingLink]:
    with ns.entered():
        link = PingLink(target)
        link.open(time.monotonic())
    try:
        assert link.next_event() == LinkOpened(target.path_id)
        yield link
    finally:
        link.close()


def replies(link: PingLink, wait: float = 0.5, until: int | None = None) -> list[PingReply]:
    """Replies arriving within `wait` seconds (or until `until` of them came)."""
    out: list[PingReply] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0 and (until is None or len(out) < until):
        fd = link.fileno()
        assert fd is not None
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            out += link.on_readable(time.monotonic())
    return out


class Forger:
    """Sends hand-made ICMP packets from host b to host a."""

    def __init__(self, hosts: Hosts) -> None:
        with hosts.b.entered():
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.to = hosts.veth.addr_a

    def send(self, kind: int, identifier: int, sequence: int, payload: bytes) -> None:
        self.sock.sendto(echo_packet(kind, identifier, sequence, payload), (self.to, 0))

    def close(self) -> None:
        self.sock.close()


@requires_root
@pytest.mark.root
def test_a_live_ping_node_answers_every_round_with_its_rtt(hosts: Hosts) -> None:
    node = PingNode(hosts.veth.addr_b, source="ha.cf:20")
    with pinger(hosts.a, node) as link:
        got = []
        for _ in range(3):
            assert link.send_echo(time.monotonic()) == 1
            # each round's answer before the next round: on a loaded CI machine the first
            # one (ARP on a fresh veth) took longer than a fixed 0.3 s wait
            got += replies(link, 3.0, until=1)
        assert [(r.path_id, r.address, r.sequence) for r in got] == [
            ("ping:10.79.0.2", "10.79.0.2", 1),
            ("ping:10.79.0.2", "10.79.0.2", 2),
            ("ping:10.79.0.2", "10.79.0.2", 3),
        ]
        assert all(0 < r.rtt_s < 3.0 for r in got)
        assert link.outstanding == 0
        assert link.last_reply_at("10.79.0.2") is not None


@requires_root
@pytest.mark.root
def test_the_rtt_is_the_time_from_request_to_reply(hosts: Hosts) -> None:
    hosts.b.sysctl("net.ipv4.icmp_echo_ignore_all", "1")  # only our forged reply answers
    forger = Forger(hosts)
    node = PingNode(hosts.veth.addr_b, source="ha.cf:20")
    try:
        with pinger(hosts.a, node) as link:
            link.send_echo(time.monotonic())
            time.sleep(0.08)
            forger.send(ICMP_ECHO_REPLY, link.identifier, link.sequence, link.payload)
            [reply] = replies(link, 0.3)
            assert 0.08 <= reply.rtt_s < 0.4
    finally:
        forger.close()


@requires_root
@pytest.mark.root
def test_a_ping_node_that_does_not_answer_gives_no_reply(hosts: Hosts) -> None:
    hosts.b.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    node = PingNode(hosts.veth.addr_b, source="ha.cf:20")
    with pinger(hosts.a, node) as link:
        assert link.send_echo(time.monotonic()) == 1
        assert replies(link, 0.5) == []
        assert link.outstanding == 1
        assert link.last_reply_at(hosts.veth.addr_b) is None


@requires_root
@pytest.mark.root
def test_replies_with_the_wrong_identifier_sequence_or_payload_are_ignored(hosts: Hosts) -> None:
    hosts.b.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    forger = Forger(hosts)
    node = PingNode(hosts.veth.addr_b, source="ha.cf:20")
    try:
        with pinger(hosts.a, node) as link:
            link.send_echo(time.monotonic())
            ident, seq, payload = link.identifier, link.sequence, link.payload
            forger.send(ICMP_ECHO_REPLY, (ident + 1) & 0xFFFF, seq, payload)  # someone else's
            forger.send(ICMP_ECHO_REPLY, ident, seq + 1, payload)  # a round never sent
            forger.send(ICMP_ECHO_REPLY, ident, seq, b"not our payload")
            forger.send(ICMP_ECHO_REQUEST, ident, seq, payload)  # a request, not a reply
            assert replies(link, 0.3) == []
            assert link.outstanding == 1

            forger.send(ICMP_ECHO_REPLY, ident, seq, payload)  # the real answer
            forger.send(ICMP_ECHO_REPLY, ident, seq, payload)  # and a duplicate of it
            got = replies(link, 0.3)
            assert [(r.address, r.sequence) for r in got] == [(hosts.veth.addr_b, seq)]
            assert link.outstanding == 0
    finally:
        forger.close()


@requires_root
@pytest.mark.root
def test_a_ping_group_pings_every_member_and_hears_those_alive(hosts: Hosts) -> None:
    silent = "10.79.0.99"  # on the segment, but nobody has it
    group = PingGroup("routers", (hosts.veth.addr_b, silent), source="ha.cf:21")
    with pinger(hosts.a, group) as link:
        assert link.send_echo(time.monotonic()) == 2
        got = replies(link, 0.5)
        assert [(r.path_id, r.address) for r in got] == [("ping_group:routers", "10.79.0.2")]
        assert link.outstanding == 1  # the silent member's request
        assert link.last_reply_at(silent) is None


def test_a_ping_address_that_is_not_an_address_is_refused_naming_the_line() -> None:
    with pytest.raises(ValueError, match=r"ha\.cf:22: ping address 'gateway' is not an IP"):
        PingLink(PingGroup("g", ("10.0.0.1", "gateway"), source="ha.cf:22"))
    with pytest.raises(ValueError, match=r"ha\.cf:24: ping_group:g mixes IPv4 and IPv6"):
        PingLink(PingGroup("g", ("10.0.0.1", "fd00::1"), source="ha.cf:24"))


# -- ping6 -------------------------------------------------------------------------------


@pytest.fixture
def hosts6(hosts: Hosts) -> Hosts:
    """The veth pair with fd79::1 (a) and fd79::2 (b), no duplicate address detection, and
    link-local fe80::a (a) and fe80::b (b)."""
    for ns, n, ll in ((hosts.a, 1, "a"), (hosts.b, 2, "b")):
        ns.ip("-6", "addr", "add", f"fd79::{n}/64", "dev", "eth0", "nodad")
        ns.ip("-6", "addr", "add", f"fe80::{ll}/64", "dev", "eth0", "nodad")
    return hosts


@requires_root
@pytest.mark.root
def test_a_ping6_node_answers_over_icmpv6_global_and_link_local(hosts6: Hosts) -> None:
    with pinger(hosts6.a, PingNode("fd79::2", source="ha.cf:30")) as link:
        assert link.send_echo(time.monotonic()) == 1
        [reply] = replies(link, 0.3)
        assert (reply.path_id, reply.address, reply.sequence) == ("ping:fd79::2", "fd79::2", 1)
        assert 0 < reply.rtt_s < 0.3 and link.outstanding == 0
    # a link-local witness is reached on the interface its %scope names
    group = PingGroup("gw6", ("fe80::b%eth0", "fd79::99"), source="ha.cf:31")
    with pinger(hosts6.a, group) as link:
        assert link.send_echo(time.monotonic()) == 2
        got = replies(link, 0.5)
        assert [(r.path_id, r.address) for r in got] == [("ping_group:gw6", "fe80::b%eth0")]
        assert link.outstanding == 1  # fd79::99: nobody has it


@requires_root
@pytest.mark.root
def test_a_ping6_node_that_stops_answering_gives_no_reply(hosts6: Hosts) -> None:
    hosts6.b.sysctl("net.ipv6.icmp.echo_ignore_all", "1")
    with pinger(hosts6.a, PingNode("fd79::2", source="ha.cf:30")) as link:
        assert link.send_echo(time.monotonic()) == 1
        assert replies(link, 0.4) == []
        assert link.outstanding == 1


@requires_root
@pytest.mark.root
def test_the_prober_never_probes_this_hosts_own_ipv6_addresses(hosts6: Hosts) -> None:
    """A service address this node holds answers for this node: on IPv6 it would answer the
    node's own probe (from loopback) and make a dead peer look alive. Targets that are
    this host's addresses, global or link-local, are left out; the peer's are probed."""
    with hosts6.a.entered():
        hosts6.a.ip("-6", "addr", "add", "fd79::100/64", "dev", "eth0", "nodad")
        prober = AddressProber()
        try:
            prober.set_targets(("fd79::100", "fe80::a%eth0", "fd79::1", "fd79::2"), 0.0)
            assert {k: _targets_of(d) for k, d in prober.drivers.items()} == {
                "probe:ipv6": ("fd79::2",)
            }
        finally:
            prober.close()


def test_a_link_local_sender_is_named_with_the_interface_it_was_heard_on() -> None:
    assert with_scope("fe80::b", "eth1") == "fe80::b%eth1"
    assert with_scope("febf::1", "eth1") == "febf::1%eth1"  # fe80::/10
    assert with_scope("fe80::b%eth0", "eth1") == "fe80::b%eth0"
    for other in ("fd79::2", "10.0.0.2", "fec0::1", "/dev/ttyS0"):
        assert with_scope(other, "eth1") == other


def test_a_closed_pinger_counts_what_it_could_not_send() -> None:
    link = PingLink(PingGroup("g", ("10.0.0.1", "10.0.0.2"), source="ha.cf:23"))
    assert link.fileno() is None
    assert link.send_echo(5.0) == 0
    assert link.stats.dropped_down == 2
    assert link.on_readable(5.0) == []
