"""Built-in address agents: IPaddr, IPaddr2, IPv6addr and SendArp, via pyroute2 and raw
ARP and neighbour-advertisement frames.

`IPaddr::ADDR[/PREFIX[/IFACE[:LABEL]][/BROADCAST]]` (Heartbeat's IPaddr/IPaddr2
argument, parsed as its resource.d wrappers do): start adds the address and sends a
burst of gratuitous ARPs (Heartbeat's send_arp defaults: 5, 200 ms apart); stop removes
it; status says running (0) when it is on its interface, not running (7) otherwise -- OCF
exit codes. hbd touches only what it added, where it added it (`AddedAddresses`, kept in
STATE_DIR/addresses): stop never removes the address from another interface, and start
refuses (rc 1, naming the interface) an address already configured elsewhere on the node,
so it never announces an address that lives on another NIC. Without an interface, the
interface is the one whose configured network contains the address (longest prefix), as
IPaddr's findif does; the prefix then comes from that network too. `SendArp::ADDR/IFACE`
only sends the burst on start (and refuses an ADDR configured on another interface).

IPv6 (`IPaddr2::ADDR/PREFIX/IFACE` with an IPv6 ADDR, `IPv6addr::ADDR/PREFIX/IFACE`): start
adds the address and then, as the IPaddr2 agent does, waits while the kernel's duplicate
address detection holds it `tentative` (up to `DAD_WAIT`, then carries on with a warning);
if DAD fails (another host has the address) the address is removed and the start fails.
With DAD off on the interface (`net.ipv6.conf.IFACE.accept_dad=0`, IPaddr2's `nodad`) the
address is usable at once. Then a burst of unsolicited neighbour advertisements (to
ff02::1, Override set, the interface's MAC as target link-layer address, hop limit 255:
IPaddr2's send_ua) tells the neighbours the address moved. `IPaddr` is IPv4 only.

Every effect goes through an `AddressManager`; `PyrouteAddressManager` is the real one
and works in the current network namespace or, given `netns`, in a named one
(/run/netns/NAME): pyroute2's NetNS for netlink, and a raw socket opened by a short-lived
thread that joins the namespace (setns is per thread on Linux).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import logging
import socket
import struct
import sys
import threading
import time
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from types import ModuleType
from typing import Any, Protocol

from hbd.config.ipaddr import AddressError, VirtualAddress, parse_ipaddr, parse_ipv4
from hbd.core.model import Resource
from hbd.core.resources import OCF_ERR_CONFIGURED, OCF_ERR_GENERIC, OCF_NOT_RUNNING, Op
from hbd.effects.identity import write_durably
from hbd.links.ping import icmp_checksum

IPAddress = IPv4Address | IPv6Address

log = logging.getLogger("hbd.effects.addresses")

ARP_COUNT = 5  # Heartbeat's send_arp / IPaddr2 arp_count default
ARP_INTERVAL = 0.2  # seconds; IPaddr2 arp_interval default 200 ms
ADDRESSES_FILE = "addresses"  # in the state directory: where hbd added each address
DAD_WAIT = 10.0  # seconds a tentative IPv6 address is waited for (IPaddr2: 10 x 1 s)
_CLONE_NEWNET = 0x40000000
_ETH_P_ARP = 0x0806
_ETH_P_IPV6 = 0x86DD
_IFA_F_DADFAILED = 0x08
_IFA_F_TENTATIVE = 0x40


# The two announcements are built by hand (a few dozen bytes each, RFC 826 and RFC 4861):
# importing scapy for them cost a node ~30 MiB of resident memory for as long as it ran,
# locked with `realtime on` (bench/idle.py).
# tests/test_ipv6_addresses.py parse them with scapy and compare them with its own frames.
_BROADCAST = b"\xff" * 6
_ALL_NODES = IPv6Address("ff02::1")
_ALL_NODES_MAC = bytes.fromhex("333300000001")
_ND_NA, _ND_OPT_TARGET_LLADDR, _NA_OVERRIDE = 136, 2, 0x20000000
_ICMPV6 = 58


def _mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise AddressError(f"{mac!r} is not a MAC address")
    return raw


def gratuitous_arp(ip: IPv4Address, mac: str, *, reply: bool = False) -> bytes:
    """One gratuitous ARP frame announcing `ip` at `mac` (a request, or a reply)."""
    hw = _mac_bytes(mac)
    target_hw = _BROADCAST if reply else bytes(6)
    ether = _BROADCAST + hw + struct.pack("!H", _ETH_P_ARP)
    # Ethernet, IPv4, 6-byte hardware and 4-byte protocol addresses, request 1 / reply 2
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2 if reply else 1)
    return ether + arp + hw + ip.packed + target_hw + ip.packed


def unsolicited_na(ip: IPv6Address, mac: str) -> bytes:
    """One unsolicited neighbour advertisement of `ip` at `mac` to all nodes (RFC 4861
    7.2.6), as IPaddr2's send_ua sends it: Override set, Solicited and Router clear."""
    hw = _mac_bytes(mac)
    option = struct.pack("!BB", _ND_OPT_TARGET_LLADDR, 1) + hw
    body = struct.pack("!I", _NA_OVERRIDE) + ip.packed + option
    pseudo = ip.packed + _ALL_NODES.packed + struct.pack("!I3xB", 4 + len(body), _ICMPV6)
    header = struct.pack("!BBH", _ND_NA, 0, 0)
    icmp = struct.pack("!BBH", _ND_NA, 0, icmp_checksum(pseudo + header + body)) + body
    # version 6, traffic class and flow label 0; hop limit 255 (RFC 4861 requires it)
    ipv6 = struct.pack("!IHBB", 6 << 28, len(icmp), _ICMPV6, 255) + ip.packed + _ALL_NODES.packed
    ether = _ALL_NODES_MAC + hw + struct.pack("!H", _ETH_P_IPV6)
    return ether + ipv6 + icmp


class AddressManager(Protocol):
    """The OS effects the built-in agents need. Tests and the daemon may swap it."""

    def find_interface(self, ip: IPAddress) -> tuple[str, int] | None:
        """The interface (and its prefix length) whose network contains `ip`."""

    def address_interfaces(self, ip: IPAddress) -> tuple[str, ...]:
        """Every interface `ip` is configured on (none, one, or several)."""

    def add_address(self, addr: VirtualAddress) -> None: ...

    def remove_address(self, addr: VirtualAddress) -> None:
        """Remove `addr.ip` from `addr.iface` only (nothing if it is not there)."""

    def send_gratuitous_arp(
        self, ip: IPv4Address, iface: str, count: int, interval: float, reply: bool = False
    ) -> int:
        """Send `count` gratuitous ARPs `interval` seconds apart; return how many went."""

    def dad_state(self, ip: IPv6Address) -> str | None:
        """`tentative`, `dadfailed` or `ok` for a configured IPv6 address; None if absent."""

    def send_unsolicited_na(self, ip: IPv6Address, iface: str, count: int, interval: float) -> int:
        """Send `count` unsolicited neighbour advertisements `interval` s apart; how many went."""


def _run_in_netns(netns: str, fn: Any) -> Any:
    """Run `fn()` in a fresh thread that has joined network namespace `netns`."""
    result: list[Any] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{netns}", "rb") as f:
                if libc.setns(f.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns to network namespace {netns!r} failed")
            result.append(fn())
        except BaseException as e:  # handed to the caller's thread
            error.append(e)

    t = threading.Thread(target=body, name=f"netns-{netns}")
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


class AddressInUse(AddressError):
    """The address is configured on this node already, elsewhere than hbd would put it."""


def _family(ip: IPAddress) -> int:
    return socket.AF_INET6 if isinstance(ip, IPv6Address) else socket.AF_INET


_iproute_module: ModuleType | None = None
_iproute_lock = threading.Lock()


def pyroute2_iproute() -> ModuleType:
    """pyroute2's IPRoute and NetNS (`pyroute2.iproute.linux`), loaded without running
    pyroute2/__init__.py when nothing in the process has imported pyroute2 yet. That file
    imports every API pyroute2 has (NDB with sqlite3 and multiprocessing, IPDB, conntrack,
    nftables, ...): measured 8.1 MiB of memory for the daemon's whole life
    (locked, with mlockall) and 126 ms at its first address operation -- at a takeover if
    it is the first -- against 2.6 MiB and 80 ms for the one module used here. The bare
    package sits in sys.modules only while that module loads: a later `import pyroute2`
    (anyone's) runs the real __init__, which finds its submodules loaded."""
    global _iproute_module
    with _iproute_lock:
        if _iproute_module is not None:
            return _iproute_module
        if "pyroute2" in sys.modules:
            _iproute_module = importlib.import_module("pyroute2.iproute.linux")
            return _iproute_module
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.submodule_search_locations is None:
            raise AddressError("pyroute2 is not installed (pip install pyroute2)")
        sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)  # __init__ not run
        try:
            _iproute_module = importlib.import_module("pyroute2.iproute.linux")
        finally:
            del sys.modules["pyroute2"]
        return _iproute_module


class PyrouteAddressManager:
    """The real AddressManager: netlink via pyroute2, ARP via a raw packet socket."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def _ipr(self) -> Any:
        iproute = pyroute2_iproute()
        return iproute.IPRoute() if self.netns is None else iproute.NetNS(self.netns)

    def _index(self, ipr: Any, iface: str) -> int:
        found = ipr.link_lookup(ifname=iface)
        if not found:
            raise AddressError(f"no interface named {iface!r}")
        return int(found[0])

    def _addresses(self, ipr: Any, family: int) -> list[tuple[str, IPAddress, int, int]]:
        """(interface, address, prefix length, IFA flags) of every `family` address."""
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        out = []
        for a in ipr.get_addr(family=family):
            flags = a.get_attr("IFA_FLAGS")
            out.append(
                (
                    names.get(a["index"], "?"),
                    ip_address(a.get_attr("IFA_ADDRESS")),
                    a["prefixlen"],
                    a["flags"] if flags is None else flags,
                )
            )
        return out

    def find_interface(self, ip: IPAddress) -> tuple[str, int] | None:
        with self._ipr() as ipr:
            best: tuple[str, int] | None = None
            for iface, addr, plen, _ in self._addresses(ipr, _family(ip)):
                if addr == ip or plen == ip.max_prefixlen:
                    continue
                if ip in ip_network(f"{addr}/{plen}", strict=False) and (
                    best is None or plen > best[1]
                ):
                    best = (iface, plen)
            return best

    def address_interfaces(self, ip: IPAddress) -> tuple[str, ...]:
        with self._ipr() as ipr:
            return tuple(i for i, addr, _, _ in self._addresses(ipr, _family(ip)) if addr == ip)

    def dad_state(self, ip: IPv6Address) -> str | None:
        with self._ipr() as ipr:
            for _, addr, _, flags in self._addresses(ipr, socket.AF_INET6):
                if addr == ip:
                    if flags & _IFA_F_DADFAILED:
                        return "dadfailed"
                    return "tentative" if flags & _IFA_F_TENTATIVE else "ok"
        return None

    def add_address(self, addr: VirtualAddress) -> None:
        assert addr.iface is not None and addr.prefixlen is not None
        kw: dict[str, Any] = {}
        if addr.label:
            kw["label"] = addr.label
        brd = addr.broadcast
        if brd is None and addr.prefixlen < 31 and isinstance(addr.ip, IPv4Address):
            brd = IPv4Address(addr.network.broadcast_address)
        if brd is not None:
            kw["broadcast"] = str(brd)
        with self._ipr() as ipr:
            idx = self._index(ipr, addr.iface)
            ipr.addr("add", index=idx, address=str(addr.ip), prefixlen=addr.prefixlen, **kw)

    def remove_address(self, addr: VirtualAddress) -> None:
        assert addr.iface is not None
        with self._ipr() as ipr:
            found = ipr.link_lookup(ifname=addr.iface)
            if not found:
                return  # the interface is gone, and the address with it
            for a in ipr.get_addr(family=_family(addr.ip), address=str(addr.ip)):
                if a["index"] == found[0]:
                    ipr.addr(
                        "del", index=a["index"], address=str(addr.ip), prefixlen=a["prefixlen"]
                    )

    def _mac(self, iface: str) -> str:
        with self._ipr() as ipr:
            link = ipr.get_links(self._index(ipr, iface))[0]
            return str(link.get_attr("IFLA_ADDRESS"))

    def send_gratuitous_arp(
        self, ip: IPv4Address, iface: str, count: int, interval: float, reply: bool = False
    ) -> int:
        frame = gratuitous_arp(ip, self._mac(iface), reply=reply)
        return self._send_frames(iface, _ETH_P_ARP, frame, count, interval)

    def send_unsolicited_na(self, ip: IPv6Address, iface: str, count: int, interval: float) -> int:
        frame = unsolicited_na(ip, self._mac(iface))
        return self._send_frames(iface, _ETH_P_IPV6, frame, count, interval)

    def _send_frames(
        self, iface: str, proto: int, frame: bytes, count: int, interval: float
    ) -> int:
        """`count` copies of an Ethernet frame on `iface`, `interval` seconds apart."""

        def open_socket() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
            s.bind((iface, proto))
            return s

        s: socket.socket = (
            open_socket() if self.netns is None else _run_in_netns(self.netns, open_socket)
        )
        sent = 0
        with s:
            for i in range(count):
                s.send(frame)
                sent += 1
                if i + 1 < count:
                    time.sleep(interval)
        return sent


class AddedAddresses:
    """Where hbd added each service address (address -> interface and prefix length), so
    `stop` removes it from there alone, and a restarted hbd still knows. Given a `path`
    (the daemon's STATE_DIR/addresses), every change is written durably before the
    address is added, and after it is removed: the file never misses an address hbd
    added."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._added: dict[str, tuple[str, int | None]] = {}
        self._lock = threading.Lock()  # agents of several groups run in worker threads
        if path is not None:
            self._load(path)

    def _load(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            self._added = {
                str(ip): (str(v["iface"]), None if v["prefixlen"] is None else int(v["prefixlen"]))
                for ip, v in data.items()
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            log.error(
                "%s: cannot be read (%s): hbd does not know where it added its addresses; "
                "an address on its configured interface is taken as hbd's",
                path,
                e,
            )

    def where(self, ip: IPAddress) -> VirtualAddress | None:
        got = self._added.get(str(ip))
        return None if got is None else VirtualAddress(ip, got[1], got[0])

    def add(self, addr: VirtualAddress) -> None:
        assert addr.iface is not None
        with self._lock:
            self._added[str(addr.ip)] = (addr.iface, addr.prefixlen)
            self._save()

    def discard(self, ip: IPAddress) -> None:
        with self._lock:
            if self._added.pop(str(ip), None) is not None:
                self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        data = {ip: {"iface": i, "prefixlen": p} for ip, (i, p) in sorted(self._added.items())}
        write_durably(self.path, json.dumps(data, indent=1) + "\n")


def _check(cancelled: threading.Event | None, op: Op) -> None:
    """Stop here if the caller gave up on this operation (it timed out)."""
    if cancelled is not None and cancelled.is_set():
        raise AddressError(f"{op} had timed out: not carried on")


class BuiltinAgents:
    """IPaddr, IPaddr2, IPv6addr and SendArp over an AddressManager; `run` returns (OCF rc,
    output).

    `run` blocks (netlink calls, the ARP burst's pauses): call it from a worker thread,
    as `hbd.effects.agents.ScriptRunner` does.
    """

    NAMES = frozenset({"IPaddr", "IPaddr2", "IPv6addr", "SendArp"})

    def __init__(
        self,
        addresses: AddressManager,
        *,
        arp_count: int = ARP_COUNT,
        arp_interval: float = ARP_INTERVAL,
        arp_reply: bool = False,
        dad_wait: float = DAD_WAIT,
        added: AddedAddresses | None = None,
    ) -> None:
        self.addresses = addresses
        self.added = added or AddedAddresses()
        self.dad_wait = dad_wait
        self.arp_count = arp_count
        self.arp_interval = arp_interval
        self.arp_reply = arp_reply
        self._arps_sent: set[str] = set()  # SendArp resources started by this process

    def run(
        self, resource: Resource, op: Op, cancelled: threading.Event | None = None
    ) -> tuple[int, str]:
        """Carry out `op`. `cancelled` is set when the caller gave up waiting (a timeout):
        from then on nothing more is done -- no address added, no ARP sent."""
        try:
            if resource.name not in self.NAMES:
                return OCF_ERR_CONFIGURED, f"{resource.name!r} is not a built-in agent"
            if len(resource.args) != 1:
                return OCF_ERR_CONFIGURED, f"{resource.spec}: {resource.name} takes one argument"
            if resource.name == "SendArp":
                return self._sendarp(resource, op)
            family = "IPv6" if isinstance(parse_ipaddr(resource.args[0]).ip, IPv6Address) else ""
            if resource.name == "IPaddr" and family:
                raise AddressError("IPaddr is IPv4 only; write IPaddr2::ADDR or IPv6addr::ADDR")
            if resource.name == "IPv6addr" and not family:
                raise AddressError("IPv6addr takes an IPv6 address; write IPaddr2::ADDR for IPv4")
            return self._ipaddr(resource.args[0], op, cancelled)
        except AddressInUse as e:
            return OCF_ERR_GENERIC, f"{resource.spec}: {e}"
        except AddressError as e:
            return OCF_ERR_CONFIGURED, f"{resource.spec}: {e}"
        except OSError as e:  # includes pyroute2's NetlinkError
            return OCF_ERR_GENERIC, f"{resource.spec}: {op} failed: {e}"

    def resolve(self, arg: str) -> VirtualAddress:
        """Parse an IPaddr argument and fill in the interface and prefix (findif)."""
        addr = parse_ipaddr(arg)
        found = self.addresses.find_interface(addr.ip)
        if addr.iface is not None:
            fallback = found[1] if found else addr.ip.max_prefixlen
            return addr.resolved(addr.iface, addr.prefixlen or fallback)
        if found is None:
            raise AddressError(
                f"no interface has a network containing {addr.ip}: give one as ADDR/PREFIX/IFACE"
            )
        return addr.resolved(found[0], addr.prefixlen or found[1])

    def _home(self, arg: str) -> VirtualAddress | None:
        """Where this address is hbd's: where hbd added it (recorded), else where it would
        add it (the interface given, or findif's); None if no interface fits."""
        ip = parse_ipaddr(arg).ip
        recorded = self.added.where(ip)
        if recorded is not None:
            return recorded
        try:
            return self.resolve(arg)
        except AddressError:
            return None

    def _ipaddr(self, arg: str, op: Op, cancelled: threading.Event | None) -> tuple[int, str]:
        ip = parse_ipaddr(arg).ip
        on = self.addresses.address_interfaces(ip)
        home = self._home(arg) if op != "start" else None
        if op == "status":
            if home is not None and home.iface in on:
                return 0, f"{ip} is running on {home.iface}"
            if on:
                return (
                    OCF_NOT_RUNNING,
                    f"{ip} is stopped here: it is on {', '.join(on)}, which hbd did not add it to",
                )
            return OCF_NOT_RUNNING, f"{ip} is stopped"
        if op == "stop":
            others = [i for i in on if home is None or i != home.iface]
            left = f"; left alone on {', '.join(others)}" if others else ""
            if home is None or home.iface not in on:
                self.added.discard(ip)
                if others:
                    return 0, f"{ip} was not added by hbd{left}"
                return 0, f"{ip} was not configured"
            self.addresses.remove_address(home)
            self.added.discard(ip)
            return 0, f"{ip} removed from {home.iface}{left}"
        addr = self.resolve(arg)
        recorded = self.added.where(ip)
        if recorded is not None and recorded.iface in on:
            addr = addr.resolved(recorded.iface, recorded.prefixlen or addr.prefixlen or 0)
        assert addr.iface is not None
        foreign = [i for i in on if i != addr.iface]
        if foreign:
            where = ", ".join(foreign)
            raise AddressInUse(
                f"{ip} is already configured on {where}, not by hbd: hbd will neither add it "
                f"to {addr.iface} nor announce it; remove it from {where} or take it out of "
                "haresources"
            )
        _check(cancelled, op)
        if addr.iface not in on:
            self.added.add(addr)  # recorded first: a crash right after adding still knows
            try:
                self.addresses.add_address(addr)
            except BaseException:
                self.added.discard(ip)
                raise
        _check(cancelled, op)
        if isinstance(ip, IPv6Address):
            return self._announce6(ip, addr.prefixlen, addr.iface)
        sent = self.addresses.send_gratuitous_arp(
            ip, addr.iface, self.arp_count, self.arp_interval, self.arp_reply
        )
        return (
            0,
            f"{addr.ip}/{addr.prefixlen} on {addr.label or addr.iface}, {sent} gratuitous ARPs",
        )

    def _announce6(self, ip: IPv6Address, prefixlen: int | None, iface: str) -> tuple[int, str]:
        """After adding an IPv6 address: wait out DAD as IPaddr2 does, then the NA burst."""
        deadline = time.monotonic() + self.dad_wait
        note = ""
        while (state := self.addresses.dad_state(ip)) == "tentative":
            if time.monotonic() >= deadline:
                note = f", still tentative after {self.dad_wait:g} s (DAD)"
                log.warning("%s on %s: DAD still tentative after %g s", ip, iface, self.dad_wait)
                break
            time.sleep(0.05)
        if state == "dadfailed":
            self.addresses.remove_address(VirtualAddress(ip, prefixlen, iface))
            self.added.discard(ip)
            return (
                OCF_ERR_GENERIC,
                f"IPv6 address collision: another host on {iface} has {ip} (duplicate address "
                "detection failed); removed it again",
            )
        sent = self.addresses.send_unsolicited_na(ip, iface, self.arp_count, self.arp_interval)
        return 0, f"{ip}/{prefixlen} on {iface}{note}, {sent} unsolicited neighbour advertisements"

    def _sendarp(self, resource: Resource, op: Op) -> tuple[int, str]:
        ip_text, slash, iface = resource.args[0].partition("/")
        if not slash or not iface:
            raise AddressError("SendArp takes ADDR/IFACE")
        ip = parse_ipv4(resource.args[0], ip_text)
        key = resource.spec
        if op == "status":
            return (0, "running") if key in self._arps_sent else (OCF_NOT_RUNNING, "stopped")
        if op == "stop":
            self._arps_sent.discard(key)
            return 0, "stopped"
        on = self.addresses.address_interfaces(ip)
        if on and iface not in on:
            raise AddressInUse(
                f"{ip} is configured on {', '.join(on)}, not on {iface}: no gratuitous ARP "
                f"for it on {iface}"
            )
        sent = self.addresses.send_gratuitous_arp(
            ip, iface, self.arp_count, self.arp_interval, self.arp_reply
        )
        self._arps_sent.add(key)
        return 0, f"{sent} gratuitous ARPs for {ip} on {iface}"
