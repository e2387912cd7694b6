"""Ping nodes and ping groups: ICMP echo on a raw socket, replies matched, RTT measured.

IPv4 addresses (`ping`, `ping_group`) use ICMP, IPv6 ones (`ping6`, and the IPv6 service
addresses the group keeper probes) ICMPv6 echo on an ICMPv6 raw socket, whose checksum
the kernel computes and checks (RFC 3542); a link-local address is written `fe80::1%eth0`.
One link is one family: its addresses must all be IPv4 or all IPv6.

One `PingLink` per `ping` address or `ping_group`. `send_echo(now)` sends one echo
request to each address, all with this link's identifier and the round's sequence
number, and remembers when; `on_readable(now)` returns a `PingReply` for each echo
reply that matches an outstanding request by source address, identifier, sequence and
payload (a random token per link). Anything else on the raw socket (other programs'
pings, forged or duplicate replies) is ignored.

Whether a witness is alive (`deadping`) is the core's decision, from these replies;
`last_reply_at(address)` is only a convenience for status and tests. A ping group is
up while any member answers - again the core's call.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import socket
import struct
from dataclasses import dataclass

from hbd.config.model import PingGroup, PingNode

from .base import Backoff, ReopeningDriver, describe

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
SOL_RAW = 255
ICMP_FILTER = 1  # Linux raw ICMP socket option: bitmask of types to block
ICMP6_FILTER = 1  # level IPPROTO_ICMPV6: struct icmp6_filter, 256 bits, a set bit blocks
OUTSTANDING_ROUNDS = 64  # requests older than this many rounds are forgotten (never answered)
MAX_PACKETS_PER_CALL = 64

_instances = itertools.count()


@dataclass(frozen=True, slots=True)
class PingReply:
    """An echo reply from `address`, `rtt_s` seconds after its request."""

    path_id: str
    address: str
    rtt_s: float
    sequence: int


def icmp_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_packet(kind: int, identifier: int, sequence: int, payload: bytes) -> bytes:
    """An ICMP echo request (kind 8) or reply (kind 0) with a correct checksum."""
    header = struct.pack("!BBHHH", kind, 0, 0, identifier, sequence)
    checksum = icmp_checksum(header + payload)
    return struct.pack("!BBHHH", kind, 0, checksum, identifier, sequence) + payload


def _icmp6_filter(blocked: bytearray) -> bytes:
    """struct icmp6_filter: eight native uint32 words, bit (type & 31) of word (type >> 5)."""
    words = [0] * 8
    for t in range(256):
        if blocked[t >> 3] & (1 << (t & 7)):
            words[t >> 5] |= 1 << (t & 31)
    return struct.pack("8I", *words)


def _sockaddr(address: str) -> tuple[str, int, int, int]:
    """The sendto() address of an IPv6 address, with its scope id (`fe80::1%eth0`: eth0's
    index; OSError when there is no such interface)."""
    plain, _, scope = address.partition("%")
    return (plain, 0, 0, socket.if_nametoindex(scope) if scope else 0)


class PingLink(ReopeningDriver):
    """Echo requests to one ping node or to every member of a ping group."""

    def __init__(
        self,
        target: PingNode | PingGroup,
        *,
        identifier: int | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(target.path_id, backoff)
        addresses = (target.address,) if isinstance(target, PingNode) else target.addresses
        if not addresses:
            raise ValueError(f"{target.source}: ping group {target.path_id} has no addresses")
        parsed = []
        for address in addresses:
            try:
                parsed.append(ipaddress.ip_address(address))
            except ValueError:
                raise ValueError(
                    f"{target.source}: ping address {address!r} is not an IP address"
                ) from None
        if len({a.version for a in parsed}) != 1:
            raise ValueError(
                f"{target.source}: {target.path_id} mixes IPv4 and IPv6 addresses; "
                "one link pings one family"
            )
        self.ipv6 = parsed[0].version == 6
        addresses = tuple(str(a) for a in parsed)  # canonical, as replies name their source
        self.target = target
        self.addresses: tuple[str, ...] = tuple(addresses)
        if identifier is None:
            identifier = (os.getpid() * 31 + next(_instances) * 7919) & 0xFFFF
        self.identifier = identifier
        self.payload = b"hbd-ping" + os.urandom(8) + bytes(range(40))  # 56 bytes, like ping(8)
        self.sequence = 0  # of the last round sent
        self._sent: dict[tuple[str, int], float] = {}
        self._last_reply: dict[str, float] = {}
        self._sock: socket.socket | None = None
        self._sockaddrs: dict[str, tuple[str, int, int, int]] = {}

    def _do_open(self) -> None:
        if self.ipv6:
            # the scope ids of link-local addresses, in the namespace the link opens in
            self._sockaddrs = {a: _sockaddr(a) for a in self.addresses}
            sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            self._sock = sock
            sock.setblocking(False)
            blocked = bytearray(b"\xff" * 32)  # Let only echo replies wake us up.
            blocked[ICMPV6_ECHO_REPLY >> 3] &= ~(1 << (ICMPV6_ECHO_REPLY & 7)) & 0xFF
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp6_filter(blocked))
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self._sock = sock
        sock.setblocking(False)
        # Let only echo replies wake us up.
        only_replies = ~(1 << ICMP_ECHO_REPLY) & 0xFFFFFFFF
        sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", only_replies))

    def _do_close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _fd(self) -> int | None:
        return self._sock.fileno() if self._sock is not None else None

    def send_echo(self, now: float) -> int:
        """One echo request to each address; returns how many went out."""
        sock = self._sock if self.is_open else None
        if sock is None:
            self.stats.dropped_down += len(self.addresses)
            return 0
        self.sequence = (self.sequence + 1) & 0xFFFF
        forget = (self.sequence - OUTSTANDING_ROUNDS) & 0xFFFF
        for address in self.addresses:
            self._sent.pop((address, forget), None)
        if self.ipv6:  # the kernel fills in an ICMPv6 checksum
            packet = (
                struct.pack("!BBHHH", ICMPV6_ECHO_REQUEST, 0, 0, self.identifier, self.sequence)
                + self.payload
            )
        else:
            packet = echo_packet(ICMP_ECHO_REQUEST, self.identifier, self.sequence, self.payload)
        sent = 0
        for address in self.addresses:
            try:
                sock.sendto(packet, self._sockaddrs.get(address) or (address, 0))
            except (BlockingIOError, InterruptedError):
                self.stats.dropped_full += 1
                continue
            except OSError:
                self.stats.dropped_down += 1  # no route, network down: no reply will come
                continue
            self._sent[(address, self.sequence)] = now
            sent += 1
        self.stats.frames_sent += sent
        return sent

    def on_readable(self, now: float) -> list[PingReply]:
        """Matched echo replies waiting on the socket, with their round-trip times."""
        sock = self._sock if self.is_open else None
        replies: list[PingReply] = []
        for _ in range(MAX_PACKETS_PER_CALL):
            if sock is None:
                break
            try:
                packet, sender = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._lost(f"raw ICMP socket failed: {describe(e)}", now)
                break
            reply = self._match(packet, self._source(sender), now)
            if reply is not None:
                replies.append(reply)
        return replies

    def _source(self, sender: tuple[str, int] | tuple[str, int, int, int]) -> str:
        """The address a reply came from, as this link names it (`fe80::1%eth0`)."""
        if len(sender) == 4 and sender[3]:
            for name, sockaddr in self._sockaddrs.items():
                if (sockaddr[0], sockaddr[3]) == (sender[0], sender[3]):
                    return name
        return sender[0]

    def _match(self, packet: bytes, source: str, now: float) -> PingReply | None:
        if self.ipv6:  # no IP header on an ICMPv6 raw socket; the kernel checked the sum
            icmp, reply = packet, ICMPV6_ECHO_REPLY
            with contextlib.suppress(ValueError):
                source = str(ipaddress.IPv6Address(source))
        else:
            if len(packet) < 20:
                return None
            header_len = (packet[0] & 0x0F) * 4
            icmp, reply = packet[header_len:], ICMP_ECHO_REPLY
            if icmp_checksum(icmp) != 0:
                return None
        if len(icmp) < 8:
            return None
        kind, code, _checksum, identifier, sequence = struct.unpack("!BBHHH", icmp[:8])
        if kind != reply or code != 0 or identifier != self.identifier:
            return None
        if icmp[8:] != self.payload:
            return None
        sent_at = self._sent.pop((source, sequence), None)
        if sent_at is None:
            return None  # not ours, from another address, or a duplicate
        self._last_reply[source] = now
        self.stats.frames_received += 1
        return PingReply(self.path_id, source, now - sent_at, sequence)

    def last_reply_at(self, address: str) -> float | None:
        """When `address` last answered (this link's `now`), or None if never."""
        return self._last_reply.get(address)

    @property
    def outstanding(self) -> int:
        """Requests sent and not (yet) answered, within the remembered rounds."""
        return len(self._sent)
