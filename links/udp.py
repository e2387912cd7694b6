"""UDP paths: `bcast`, `mcast`, `ucast` (IPv4) and `mcast6`, `ucast6` (IPv6), one
non-blocking socket each, bound to its NIC.

Every socket is tied to its device with SO_BINDTODEVICE, so a path is the NIC it names
even when routes would say otherwise. Several media may share a device and port (e.g.
`bcast eth0` and `ucast eth0 10.0.0.2` on udpport 694); each socket keeps only its own
kind of traffic:

- bcast binds the port on the interface's broadcast address (found with ioctl
  SIOCGIFBRDADDR, or computed from address and netmask) and sends there with
  SO_BROADCAST. The kernel loops every broadcast back to its sender; a socket filter
  (`OWN_BROADCASTS_DROPPED`) drops those copies before they wake the daemon, so an idle
  node is not woken, and does not verify a signature, for each frame it sent itself.
  (Where the filter cannot be attached, they still come back, with `source` equal to
  `local_address`, and the engine drops them as from-self.)
- mcast binds the group and port, joins the group on the device, sends with the
  configured TTL and loop (as Heartbeat's mcast plugin).
- ucast binds the port on any address and sends to the peer; it receives from anyone
  but keeps only datagrams addressed to a unicast address (IP_PKTINFO), so the
  broadcasts of a bcast path on the same port are not counted twice; a socket filter
  (`ONLY_UNICAST_KEPT`) drops the others in the kernel, so they do not wake it either.

- mcast6 binds the group and port on the device, joins the group there, sends with the
  configured hop limit and loop (Heartbeat's mcast6 plugin, which binds `[::]`).
- ucast6 binds `[::]` and the port on the device (IPv6 only), sends to the peer (a
  link-local peer on the device's scope), and like ucast keeps only datagrams addressed
  to a unicast address (IPV6_PKTINFO).

`Received.source` is the sender's IP address (for IPv6 compressed, without a `%scope`,
as ha.cf names peers). A device that vanishes (ENODEV) is
reported lost and reopened with backoff like a serial line; a device that is merely
down drops frames (counted in `stats.dropped_down`) and the socket stays.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import socket
import struct

from hbd.config.model import Medium, MediumKind

from .base import Backoff, LinkUnavailable, Received, ReopeningDriver, describe

SIOCGIFADDR = 0x8915
SIOCGIFBRDADDR = 0x8919
SIOCGIFNETMASK = 0x891B
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
IPV6_MULTICAST_ALL = 29  # Linux >= 4.20: only the groups this socket joined
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
ANCILLARY_SPACE = socket.CMSG_SPACE(20)  # room for in6_pktinfo, the larger of the two
_ALL_ONES = b"\xff\xff\xff\xff"  # 255.255.255.255
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)

MAX_DATAGRAM = 65535
MAX_DATAGRAMS_PER_CALL = 64  # drained per on_readable, so one socket cannot starve the loop

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)

# Classic BPF socket filters (`struct sock_filter`: code, jt, jf, k), run by the kernel on
# every datagram before it is queued on the socket. They read the packet type the kernel
# gave the datagram (the ancillary load SKF_AD_OFF + SKF_AD_PKTTYPE) and keep it (return
# all of it) or drop it (return 0).
_LD_PKTTYPE = (0x30, 0, 0, (-0x1000 + 4) & 0xFFFFFFFF)  # BPF_LD|BPF_B|BPF_ABS, pkt_type
_KEEP, _DROP = (0x06, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 0)  # BPF_RET|BPF_K
PACKET_HOST, PACKET_LOOPBACK = 0, 5  # linux/if_packet.h
OWN_BROADCASTS_DROPPED = (_LD_PKTTYPE, (0x15, 1, 0, PACKET_LOOPBACK), _KEEP, _DROP)
ONLY_UNICAST_KEPT = (_LD_PKTTYPE, (0x15, 0, 1, PACKET_HOST), _KEEP, _DROP)


def attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> bool:
    """Attach a classic BPF `program` to `sock` (SO_ATTACH_FILTER); False where the kernel
    refuses it (then the datagrams it would drop still arrive, and are dropped in Python)."""
    code = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it
    except OSError:
        return False
    return True


_FULL = {errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS}
_GONE = {errno.ENODEV, errno.ENXIO}


def _ifreq_address(sock: socket.socket, request: int, device: str) -> str:
    ifreq = struct.pack("16s16s", device.encode()[:15], b"")
    result = fcntl.ioctl(sock.fileno(), request, ifreq)
    return socket.inet_ntoa(result[20:24])


def interface_ipv4(device: str) -> tuple[str, str]:
    """(address, broadcast) of `device`'s primary IPv4 address, in this thread's netns.

    The broadcast comes from SIOCGIFBRDADDR, or from address|~netmask when none is set.
    Raises OSError (ENODEV, EADDRNOTAVAIL) when the device or its address is missing.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        address = _ifreq_address(sock, SIOCGIFADDR, device)
        try:
            broadcast = _ifreq_address(sock, SIOCGIFBRDADDR, device)
        except OSError:
            broadcast = "0.0.0.0"
        if broadcast == "0.0.0.0":
            netmask = _ifreq_address(sock, SIOCGIFNETMASK, device)
            net = ipaddress.IPv4Network(f"{address}/{netmask}", strict=False)
            broadcast = str(net.broadcast_address)
    return address, broadcast


class UdpLink(ReopeningDriver):
    """What bcast, mcast and ucast share: the socket, reading, sending, counting."""

    kind: MediumKind

    def __init__(self, medium: Medium, *, backoff: Backoff | None = None) -> None:
        if medium.kind is not self.kind:
            raise ValueError(
                f"{medium.source}: {type(self).__name__} needs a {self.kind.value} medium, "
                f"not {medium.kind.value}"
            )
        if not 0 < medium.port < 65536:
            raise ValueError(f"{medium.source}: UDP port {medium.port} out of range")
        super().__init__(medium.path_id, backoff)
        self.medium = medium
        self.device = medium.device
        self.port = medium.port
        self.local_address: str | None = None  # the device's IPv4 address while open
        self.destination: tuple[str, int] | None = None
        self._broadcast = "255.255.255.255"  # the device's broadcast address, set at open
        self._broadcast_packed = _ALL_ONES  # the same, as the 4 bytes of an IP header
        self._sock: socket.socket | None = None
        self._sendto: tuple[str, int, int, int] | None = None  # IPv6: with the scope id
        self.filtered = False  # a socket filter drops what this path must not see, in-kernel

    # -- subclass hooks --------------------------------------------------------------

    def _setup(self, sock: socket.socket) -> tuple[str, int]:
        """Configure and bind `sock`; return the destination to send to."""
        raise NotImplementedError

    # whether `_accept` looks at where a datagram was sent (else it is not worked out)
    checks_destination = False

    def _accept(self, destination: bytes) -> bool:
        """Keep a datagram whose IP header's destination address was `destination` (4 or
        16 bytes; empty when the kernel gave no IP_PKTINFO / IPV6_PKTINFO)?"""
        return True

    # -- open / close ----------------------------------------------------------------

    def _do_open(self) -> None:
        try:
            self.local_address, self._broadcast = interface_ipv4(self.device)
            self._broadcast_packed = socket.inet_aton(self._broadcast)
        except OSError as e:
            raise LinkUnavailable(f"{self.device}: no IPv4 address ({describe(e)})") from e
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock = sock
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.device.encode())
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.destination = self._setup(sock)

    def _do_close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _fd(self) -> int | None:
        return self._sock.fileno() if self._sock is not None else None

    # -- input -----------------------------------------------------------------------

    def on_readable(self, now: float) -> list[Received]:
        """Every datagram waiting (up to a fair share), each with its sender's address."""
        sock = self._sock if self._is_open else None
        out: list[Received] = []
        checks, stats, path_id = self.checks_destination, self.stats, self.path_id
        while sock is not None and len(out) < MAX_DATAGRAMS_PER_CALL:
            try:
                data, ancdata, _flags, sender = sock.recvmsg(MAX_DATAGRAM, ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno in _GONE:
                    self._lost(f"{self.device} vanished: {describe(e)}", now)
                    break
                continue  # an ICMP error queued on the socket; the next datagram may be fine
            if checks and not self._accept(_pktinfo_destination(ancdata)):
                continue
            stats.frames_received += 1
            stats.bytes_received += len(data)
            source: str = sender[0]
            if "%" in source:  # an IPv6 scope: the device says it
                source = source.split("%", 1)[0]
            out.append(Received(path_id, data, source))
        return out

    # -- output ----------------------------------------------------------------------

    def send(self, frame: bytes, now: float) -> bool:
        """Send one datagram without blocking; False (counted) if it was dropped."""
        sock = self._sock if self.is_open else None
        if sock is None or self.destination is None:
            self.stats.dropped_down += 1
            return False
        try:
            sock.sendto(frame, self._sendto or self.destination)
        except InterruptedError:
            return self.send(frame, now)
        except OSError as e:
            if e.errno in _FULL:
                self.stats.dropped_full += 1
            else:
                self.stats.dropped_down += 1
                if e.errno in _GONE:
                    self._lost(f"{self.device} vanished: {describe(e)}", now)
            return False
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(frame)
        return True

    def is_own(self, source: str) -> bool:
        """Did a datagram from `source` come from this host's own address on the device?"""
        return source == self.local_address


def _pktinfo_destination(ancdata: list[tuple[int, int, bytes]]) -> bytes:
    """The destination address of the datagram's IP header, as its 4 or 16 bytes (empty:
    the kernel gave none)."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return data[8:12]  # struct in_pktinfo: ifindex, spec_dst, addr
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 16:
            return data[:16]  # struct in6_pktinfo: addr, ifindex
    return b""


class BcastLink(UdpLink):
    """`bcast DEV`: to DEV's broadcast address on `udpport`."""

    kind = MediumKind.BCAST

    def _setup(self, sock: socket.socket) -> tuple[str, int]:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.filtered = attach_filter(sock, OWN_BROADCASTS_DROPPED)
        sock.bind((self._broadcast, self.port))  # only broadcasts reach this socket
        return (self._broadcast, self.port)

    @property
    def broadcast_address(self) -> str | None:
        return self._broadcast if self.is_open else None


class McastLink(UdpLink):
    """`mcast DEV GROUP PORT TTL LOOP`: join GROUP on DEV, send there with TTL and LOOP."""

    kind = MediumKind.MCAST

    def __init__(self, medium: Medium, *, backoff: Backoff | None = None) -> None:
        super().__init__(medium, backoff=backoff)
        try:
            group = ipaddress.IPv4Address(medium.group or "")
        except ValueError:
            group = None
        if group is None or not group.is_multicast:
            raise ValueError(f"{medium.source}: mcast group {medium.group!r} is not IPv4 multicast")
        if not 0 <= medium.ttl <= 255:
            raise ValueError(f"{medium.source}: mcast ttl {medium.ttl} not in 0..255")
        self.group = str(group)

    def _setup(self, sock: socket.socket) -> tuple[str, int]:
        ifindex = socket.if_nametoindex(self.device)
        mreqn = (
            socket.inet_aton(self.group) + socket.inet_aton("0.0.0.0") + struct.pack("i", ifindex)
        )
        sock.bind((self.group, self.port))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, bytes(8) + mreqn[8:])
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.medium.ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(self.medium.loop))
        return (self.group, self.port)


class UcastLink(UdpLink):
    """`ucast DEV PEER`: send to PEER; receive unicasts from anyone on DEV's port.

    Several ucast lines on one device and port share that port: the kernel hands each
    datagram to one of their sockets, so the daemon should attribute a ucast frame by
    `Received.source` (the peer that sent it) rather than by the receiving driver.
    """

    kind = MediumKind.UCAST

    def __init__(self, medium: Medium, *, backoff: Backoff | None = None) -> None:
        super().__init__(medium, backoff=backoff)
        try:
            peer = ipaddress.IPv4Address(medium.peer or "")
        except ValueError:
            raise ValueError(
                f"{medium.source}: ucast peer {medium.peer!r} is not an IPv4 address"
            ) from None
        self.peer = str(peer)

    def _setup(self, sock: socket.socket) -> tuple[str, int]:
        if self.medium.bind is not None:
            self.local_address = self.medium.bind  # hbd's `ucast DEV PEER LOCAL`
        self.filtered = attach_filter(sock, ONLY_UNICAST_KEPT)
        sock.bind((self.medium.bind or "", self.port))
        return (self.peer, self.port)

    checks_destination = True

    def _accept(self, destination: bytes) -> bool:
        """Unicast only: not to a multicast group (224.0.0.0/4), nor to the device's
        broadcast address or 255.255.255.255 (no destination given: kept)."""
        if len(destination) != 4:
            return True
        multicast = 0xE0 <= destination[0] <= 0xEF
        return not (multicast or destination in (_ALL_ONES, self._broadcast_packed))


_LINK_LOCAL_STARTS = frozenset(("fe8", "fe9", "fea", "feb"))  # fe80::/10


def with_scope(address: str, device: str) -> str:
    """`address` as a prober can reach it: a link-local IPv6 one with the interface it was
    heard on (`fe80::1%eth0`), any other unchanged. Cheap: it runs for every datagram."""
    if address[:3] in _LINK_LOCAL_STARTS and "%" not in address:
        return f"{address}%{device}"
    return address


def interface_ipv6(device: str) -> tuple[int, frozenset[str]]:
    """(ifindex, IPv6 addresses) of `device` in this thread's network namespace.

    Raises OSError (ENODEV) when the device is missing; the addresses come from
    /proc/thread-self/net/if_inet6 (empty when the device has none, or IPv6 is off).
    """
    index = socket.if_nametoindex(device)
    return index, frozenset(a for a, d in _ipv6_addresses() if d == device)


def local_ipv6_addresses() -> frozenset[ipaddress.IPv6Address]:
    """Every IPv6 address of this thread's network namespace, on any interface."""
    return frozenset(ipaddress.IPv6Address(a) for a, _device in _ipv6_addresses())


def _ipv6_addresses() -> list[tuple[str, str]]:
    """(address, device) pairs from /proc/thread-self/net/if_inet6 (none when IPv6 is off)."""
    found: list[tuple[str, str]] = []
    try:
        with open("/proc/thread-self/net/if_inet6") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6:
                    found.append((str(ipaddress.IPv6Address(int(fields[0], 16))), fields[5]))
    except FileNotFoundError:
        pass  # no IPv6 in this kernel: sends will fail and be counted
    return found


class Udp6Link(UdpLink):
    """What mcast6 and ucast6 share: an IPv6-only socket on the device."""

    def __init__(self, medium: Medium, *, backoff: Backoff | None = None) -> None:
        super().__init__(medium, backoff=backoff)
        self.ifindex = 0
        self.local_addresses: frozenset[str] = frozenset()

    def _do_open(self) -> None:
        try:
            self.ifindex, self.local_addresses = interface_ipv6(self.device)
        except OSError as e:
            raise LinkUnavailable(f"{self.device}: {describe(e)}") from e
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self._sock = sock
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.device.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        self.destination = self._setup(sock)

    def is_own(self, source: str) -> bool:
        return source in self.local_addresses

    def _scope(self, address: ipaddress.IPv6Address) -> int:
        """The scope id a sockaddr for `address` needs on this device (0: none)."""
        link_scope = address.is_link_local or (
            address.is_multicast and address.packed[1] & 0x0F == 0x2
        )
        return self.ifindex if link_scope else 0


class Mcast6Link(Udp6Link):
    """`mcast6 DEV GROUP PORT HOPS LOOP`: join GROUP on DEV, send there with HOPS and LOOP."""

    kind = MediumKind.MCAST6

    def __init__(self, medium: Medium, *, backoff: Backoff | None = None) -> None:
        super().__init__(medium, backoff=backoff)
        try:
            group = ipaddress.IPv6Address(medium.group or "")
        except ValueError:
            group = None
        if group is None or not group.is_multicast:
            raise ValueError(
                f"{medium.source}: mcast6 group {medium.group!r} is not IPv6 multicast"
            )
        self.group = group

    def _setup(self, sock: socket.socket) -> tuple[str, int]:
        with contextlib.suppress(OSError):  # kernels before 4.20: every joined group
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
        sock.bind((str(self.group), self.port, 0, self._scope(self.group)))
        mreq = self.group.packed + struct.pack("@I", self.ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, self.medium.ttl)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, int(self.medium.loop))
        self._sendto: tuple[str, int, int, int] = (
            str(self.group),
            self.port,
            0,
            self._scope(self.group),
        )
        return (str(self.group), self.port)


class Ucast6Link(Udp6Link):
    """`ucast6 DEV PEER`: send to PEER; receive unicasts from anyone on DEV's port."""

    kind = MediumKind.UCAST6

    def __init__(self, medium: Medium, *, backoff: Backoff | None = None) -> None:
        super().__init__(medium, backoff=backoff)
        try:
            peer = ipaddress.IPv6Address(medium.peer or "")
        except ValueError:
            raise ValueError(
                f"{medium.source}: ucast6 peer {medium.peer!r} is not an IPv6 address"
            ) from None
        self.peer = peer

    def _setup(self, sock: socket.socket) -> tuple[str, int]:
        sock.bind(("::", self.port))
        self._sendto = (str(self.peer), self.port, 0, self._scope(self.peer))
        return (str(self.peer), self.port)

    checks_destination = True

    def _accept(self, destination: bytes) -> bool:
        """Unicast only: not to a multicast group (ff00::/8); no destination: refused."""
        return len(destination) == 16 and destination[0] != 0xFF


def udp_link(medium: Medium, *, backoff: Backoff | None = None) -> UdpLink:
    """The UDP driver for a bcast, mcast, ucast, mcast6 or ucast6 medium."""
    cls: type[UdpLink] = {
        MediumKind.BCAST: BcastLink,
        MediumKind.MCAST: McastLink,
        MediumKind.UCAST: UcastLink,
        MediumKind.MCAST6: Mcast6Link,
        MediumKind.UCAST6: Ucast6Link,
    }.get(medium.kind, UdpLink)
    if cls is UdpLink:
        raise ValueError(f"{medium.source}: {medium.kind.value} is not a UDP medium")
    return cls(medium, backoff=backoff)
