"""The fault-matrix lab: two hbd nodes, three heartbeat paths, a service LAN, FUSE watchdogs.

Built on tests/cluster.py (namespaces, the heartbeat paths, the daemons) and tests/netns.py
(the LAN bridge), with tests/sampler.py watching where the group runs every 10 ms:

    alpha ==== eth0  bcast  (veth) ==== beta          heartbeat paths
          ==== eth1  ucast  (veth) ====
          ==== serial (socat ptys) ====
    alpha -- lan0 --+-- bridge (hub) --+-- lan0 -- beta   the service LAN, 10.91.0.0/24:
                    |                  |              alpha .1, beta .2, ping node .3,
                    +---- ping node ---+              the VIP 10.91.0.100

- haresources on both, one group preferring alpha, of either kind (`build(group=...)`):
  `vip`, `alpha IPaddr::10.91.0.100/24` (hbd's built-in IPaddr puts it on lan0), sampled
  by the VIP in each namespace; or `script`, `alpha fmsvc`, an address-less resource.d
  service (`SERVICE_SCRIPT`, written into each node's resource.d: a process whose pid file
  in the node's directory is its state), sampled by that pid file naming a live process
  (`StateFileSampler`). ha.cf: keepalive 200 ms, deadtime 1 s, `ping 10.91.0.3`, `auto_failback on`,
  `watchdog <a FUSE watchdog of its own>`, `wire hbd` (native frames carry the watchdog
  timeout; Heartbeat's format does not, see `run_scenario(wire=None)`). The watchdog
  timeout is then Heartbeat's default ceil(deadtime + 10 ms) = 2 s and the takeover budget
  1 + 0.2 + 2 + 0.25 = 3.45 s after the peer's last sign of life (docs/policy.md). A
  group is named as its first resource is written: `IPaddr::10.91.0.100/24`, `fmsvc`.
- Each node's watchdog is `hbd.testing.fusewatchdog.mounted_watchdog(netns=...)`: starved,
  it SIGKILLs every process of the node's namespace and flushes its IPv4 addresses (a
  reset). `Lab.reboot(node)` puts the addresses back and starts hbd again.
- Faults: a path cut by link down (`cut(path, "down")`), by nft dropping on arrival
  everything a node sends on it (`cut(path, "drop", sender)`: one direction only; the
  sender's sends still succeed, as over a cut fibre), or by unplugging the serial cable
  (its links removed first, so no daemon reopens a pty number another socat reuses); an
  uplink cut (`cut_uplink`); signals to a daemon. `partition()` cuts every heartbeat path
  with the LAN kept (the VIP group's wires down; the address-less group's heartbeat
  traffic only, so ARP to the nodes' own addresses still works: with those wires down
  too nothing of the peer could be probed, the residual case). `power_off(node)`: every
  process of its namespace SIGKILLed, its watchdog stopped (magic close: a machine
  without power resets nothing), its addresses flushed, nft dropping everything in and
  out of its NICs, its serial socat SIGSTOPped; `power_on(node)`: its addresses back (a
  link a cut took down stays down), a fresh socat, hbd started on the same state directory,
  partitioned or not. `filter_icmp()`: ICMP echo to every address of both nodes dropped
  (optionally ARP to the VIP too, nft's arp family). `reload(node, **changes)`: ha.cf
  rewritten, SIGHUP. `request(node, cmd)`: a control-socket command (`standby`).
- Loss and jitter (`impair`): this kernel has no sch_netem (and no sfq/fq/NFQUEUE), so loss
  is an nft rule (`numgen random mod 100 < 30 drop`) on the relay's way out (so hbd's own
  sends never fail; without jitter, on the way in), and jitter is a
  userspace UDP relay per node (`JitterRelay`): an nft DNAT rule in the node's namespace
  sends hbd's ucast frames to the relay (on the node's own address), which forwards each
  after an independent uniform 0..2xJ ms delay (J = 50 ms: 50 ms +- 50 ms, as netem's
  `delay 50ms 50ms`) from a socket whose SO_MARK exempts it from the DNAT rule. Only the
  ucast path can be jittered this way (broadcasts and the serial line are not relayed).
  The peer's incoming frames are left untracked (`notrack`), else their conntrack entry
  would swallow our outgoing flow as its reply and the DNAT would miss (seen: half the
  runs). Conntrack keeps the DNAT binding for the life of the flow, so after the
  impairment the relay stays in place with no delay and no loss until teardown.

- The arbiter (`build(arbiter=True)`, the `qnetd_*` scenarios): the real `corosync-qnetd -f
  -s off` runs in a third namespace beside the ping node, on the service LAN at
  10.91.0.4:5403 (`QnetdServer`: started, SIGKILLed as a crash, started again), both
  ha.cf name it (`qnetd`, `cluster faultlab`),
  and `cut_qnetd(node)` drops in `node`'s namespace what qnetd sends it (TCP from port
  5403): its connection times out as over a cut cable while the ping node still answers.

`run_scenario(name, workdir, group=...)` builds a lab, waits until alpha runs the group
with every path up, starts the sampler, runs the scenario (one of `SCENARIOS`) and returns
an `Outcome`: dual-active milliseconds, seconds from the fault until a single stable
holder, watchdog resets per node, and who runs the group at the end. Everything is torn
down on exit: daemons (SIGKILL, so a clean stop's hand-off does not slow teardown), the
processes they left in their namespaces (the address-less service), relays, nft tables,
watchdog mounts, the LAN, the ping node and the namespaces.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from hbd.core.policy import TAKEOVER_MARGIN
from hbd.shell.control import request as control_request
from hbd.testing.fusewatchdog import MountedWatchdog, mounted_watchdog

import cluster
import netns
from sampler import Sampler, StateFileSampler, VipSampler

T = TypeVar("T")

NODES = ("alpha", "beta")
HOME = "alpha"  # the group's preferred node (haresources)
LAN_SUBNET = "10.91.0.0/24"
LAN_DEV = "lan0"
PREFIX = 24
VIP = "10.91.0.100"
GROUP = f"IPaddr::{VIP}/{PREFIX}"  # a group is named after its first resource, as written
GroupKind = Literal["vip", "script"]
GROUP_KINDS: tuple[GroupKind, ...] = ("vip", "script")
SERVICE = "fmsvc"  # the address-less group: one resource.d script, the group named after it
SERVICE_SCRIPT = """#!/bin/sh
# The fault lab's address-less service (resource.d): fmsvc start|stop|status.
# It runs while its pid file names a live process (a sleep standing in for a daemon): a
# reset or a power loss kills every process of the node and so stops it, leaving a stale
# pid file, as a real service's. A stop waits as many seconds as the delay file says.
pidfile=@PIDFILE@
delayfile=@DELAYFILE@
eval op=\\${$#}
running() {
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  [ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)" != Z ]
}
case $op in
  start)
    if ! running; then
      sleep 1000000 </dev/null >/dev/null 2>&1 &
      echo $! > "$pidfile.new" && mv "$pidfile.new" "$pidfile"
    fi
    echo "fmsvc started";;
  stop)
    if delay=$(cat "$delayfile" 2>/dev/null); then sleep "$delay"; fi
    if running; then kill -9 "$(cat "$pidfile")"; fi
    rm -f "$pidfile"
    echo "fmsvc stopped";;
  status)
    if running; then echo "fmsvc is running"; else echo "fmsvc is stopped"; fi;;
  *) echo "usage: $0 start|stop|status" >&2; exit 1;;
esac
exit 0
"""


def group_name(kind: GroupKind) -> str:
    """The group's name (after its first resource, as written in haresources)."""
    return GROUP if kind == "vip" else SERVICE


def haresources_line(kind: GroupKind) -> str:
    return f"{HOME} {group_name(kind)}\n"


PathName = Literal["bcast", "ucast", "serial"]
CutKind = Literal["down", "drop", "unplug"]
PATHS: tuple[PathName, ...] = ("bcast", "ucast", "serial")
UDPPORT = 694
TIMING = cluster.Timing()  # keepalive 200 ms, deadtime 1 s, initdead 3 s
DEADTIME = TIMING.deadtime / 1000
WATCHDOG_S = 2  # ceil(deadtime + 10 ms): hbd's default for this deadtime
# the takeover budget after the peer's last sign of life (docs/policy.md)
BUDGET = DEADTIME + TIMING.keepalive / 1000 + WATCHDOG_S + TAKEOVER_MARGIN
MARGIN = 3.0  # seconds allowed past a deadline: polls, loop turns, a busy 2-core box
STARTUP = 20.0
RELAY_PORT = 7694
RELAY_MARK = 0x4B1D
SOAK_DEFAULT = 20.0
# Native frames: they carry each node's watchdog timeout, which the takeover budget is
# counted from (Heartbeat's wire format has no such field, so a peer speaking it counts as
# having no watchdog and is taken over after deadtime, with a warning).
WIRE = "hbd"
AUTH = "sha256"


def soak_seconds(default: float = SOAK_DEFAULT) -> float:
    """How long the loss-and-jitter scenario lasts: $HBD_SOAK_SECONDS, else `default`."""
    text = os.environ.get("HBD_SOAK_SECONDS")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"HBD_SOAK_SECONDS={text!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"HBD_SOAK_SECONDS={text!r} must be positive")
    return value


# -- nft in one namespace -----------------------------------------------------------------


class Nft:
    """The lab's own nft table in one node's namespace: drops on the way in or out of a
    NIC, and the relay's DNAT. The whole table is rewritten atomically (`nft -f`) on every
    change.

    A drop on the way in is what a cut cable looks like to the sender: its sends succeed.
    A drop on the way out makes the sender's `sendto` fail with EPERM, so it is used only
    for the relay's own frames (the loss rule), never for hbd's."""

    TABLE = "faultlab"

    def __init__(self, ns: netns.Netns, workdir: Path) -> None:
        self.ns = ns
        self.script = workdir / f"nft-{ns.name}.nft"
        self.ingress: dict[str, str] = {}  # key -> rule
        self.egress: dict[str, str] = {}
        self.dnat: dict[str, str] = {}
        self.untracked: dict[str, str] = {}
        self.arp_in: dict[str, str] = {}  # rules of the arp family's input hook
        self.made = False
        self._held = 0  # inside `batch()`: apply once at its end

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Several changes, one `nft -f` at the end."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held:
                self._apply()

    def _apply(self) -> None:
        if self._held:
            return

        def chain(name: str, hook: str, rules: dict[str, str]) -> str:
            body = "".join(f"    {rule}\n" for rule in rules.values())
            return f"  chain {name} {{\n    {hook}; policy accept;\n{body}  }}\n"

        self.script.write_text(
            f"table inet {self.TABLE} {{}}\n"
            f"flush table inet {self.TABLE}\n"
            f"table inet {self.TABLE} {{\n"
            + chain("ingress", "type filter hook input priority 0", self.ingress)
            + chain("egress", "type filter hook output priority 0", self.egress)
            + chain("relay", "type nat hook output priority -100", self.dnat)
            + chain("untracked", "type filter hook prerouting priority -300", self.untracked)
            + "}\n"
            f"table arp {self.TABLE} {{}}\n"
            f"flush table arp {self.TABLE}\n"
            f"table arp {self.TABLE} {{\n"
            + chain("ingress", "type filter hook input priority 0", self.arp_in)
            + "}\n"
        )
        self.made = True
        self.ns.exec("nft", "-f", str(self.script))

    def drop(self, key: str, dev: str, percent: int = 100, inbound: bool = True) -> None:
        """Drop `percent` % (all by default) of what arrives on `dev` (`inbound`), or of
        what this node sends out of it."""
        if not 0 < percent <= 100:
            raise ValueError(f"drop percent must be 1..100, not {percent}")
        chance = "" if percent == 100 else f"numgen random mod 100 < {percent} "
        if inbound:
            self.ingress[key] = f'iifname "{dev}" {chance}counter drop'
        else:
            self.egress[key] = f'oifname "{dev}" {chance}counter drop'
        self._apply()

    def drop_from(self, key: str, address: str, port: int) -> None:
        """Drop the TCP segments arriving from `address`:`port` (one service's replies)."""
        self.ingress[key] = f"ip saddr {address} tcp sport {port} counter drop"
        self._apply()

    def undrop(self, key: str) -> None:
        found = [rules.pop(key, None) for rules in (self.ingress, self.egress, self.arp_in)]
        if any(rule is not None for rule in found):
            self._apply()

    def filter_icmp(self, key: str) -> None:
        """Drop every ICMP echo request arriving for any address of this node (a firewall
        that "hides" it from ping)."""
        self.ingress[key] = "icmp type echo-request counter drop"
        self._apply()

    def filter_arp(self, key: str, address: str) -> None:
        """Drop the ARP requests for `address` arriving here (nft's arp family)."""
        self.arp_in[key] = f"arp operation request arp daddr ip {address} counter drop"
        self._apply()

    def redirect_udp(self, key: str, daddr: str, dport: int, to_addr: str, to_port: int) -> None:
        """DNAT this node's UDP to daddr:dport onto to_addr:to_port, except marked sockets.

        The peer's frames to `dport` arriving here are left untracked: hbd sends from and
        to the same port, so an incoming frame would otherwise open a conntrack entry whose
        reply direction is our own outgoing flow, and NAT rules are never consulted for
        a packet of an existing entry (the redirect then silently misses)."""
        self.untracked[key] = f"udp dport {dport} notrack"
        self.dnat[key] = (
            f"meta mark != {RELAY_MARK:#x} ip daddr {daddr} udp dport {dport} "
            f"counter dnat ip to {to_addr}:{to_port}"
        )
        self._apply()

    def counters(self) -> str:
        return self.ns.exec("nft", "list", "table", "inet", self.TABLE, check=False).stdout

    def close(self) -> None:
        if self.made:
            for family in ("inet", "arp"):
                self.ns.exec("nft", "delete", "table", family, self.TABLE, check=False)
            self.made = False


# -- the jitter relay ---------------------------------------------------------------------


@dataclass
class RelayStats:
    received: int = 0
    forwarded: int = 0
    dropped: int = 0  # sendto refused (EPERM): the nft loss rule dropped it on egress
    errors: dict[str, int] = field(default_factory=dict)  # errno name -> count
    delays: list[float] = field(default_factory=list)  # seconds, while jitter was on

    def summary(self) -> str:
        text = f"{self.received} received, {self.forwarded} forwarded, {self.dropped} dropped"
        if self.errors:
            text += f" ({', '.join(f'{k} {v}' for k, v in sorted(self.errors.items()))})"
        if not self.delays:
            return text
        d = sorted(self.delays)
        return (
            f"{text}; delay min {d[0] * 1000:.0f} / median {d[len(d) // 2] * 1000:.0f} / "
            f"max {d[-1] * 1000:.0f} ms"
        )


class JitterRelay:
    """Forwards the UDP frames DNATed to `local:RELAY_PORT` on to `peer:port`, each after a
    random delay in [0, 2 x jitter) seconds, from `local` out of `dev` with SO_MARK set.

    Its sockets are made by its own thread inside the node's namespace (setns on that thread
    only), so the relay is no process of the namespace and a watchdog reset leaves it be."""

    def __init__(
        self, ns: netns.Netns, dev: str, local: str, peer: str, port: int, jitter: float
    ) -> None:
        self.ns, self.dev, self.local, self.peer, self.port = ns, dev, local, peer, port
        self.jitter = jitter
        self.stats = RelayStats()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"relay {ns.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(5.0) or self._error is not None:
            self.stop()
            raise RuntimeError(f"jitter relay in {self.ns.name} did not start") from self._error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _sockets(self) -> tuple[socket.socket, socket.socket]:
        with self.ns.entered():
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((self.local, RELAY_PORT))
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, RELAY_MARK)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.dev.encode())
        tx.bind((self.local, 0))
        return rx, tx

    def _run(self) -> None:
        try:
            rx, tx = self._sockets()
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        queue: list[tuple[float, int, bytes]] = []
        seq = 0
        rng = random.Random()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                while queue and queue[0][0] <= now:
                    _, _, data = heapq.heappop(queue)
                    try:
                        tx.sendto(data, (self.peer, self.port))
                        self.stats.forwarded += 1
                    except OSError as e:
                        self.stats.dropped += 1
                        name = errno.errorcode.get(e.errno or 0, str(e.errno))
                        self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
                wait = min(0.05, max(0.0, queue[0][0] - now)) if queue else 0.05
                readable, _, _ = select.select([rx], [], [], wait)
                if readable:
                    data = rx.recv(65535)
                    self.stats.received += 1
                    delay = rng.uniform(0.0, 2 * self.jitter) if self.jitter > 0 else 0.0
                    if self.jitter > 0:
                        self.stats.delays.append(delay)
                    seq += 1
                    heapq.heappush(queue, (time.monotonic() + delay, seq, data))
        finally:
            rx.close()
            tx.close()


# -- the lab ------------------------------------------------------------------------------


QNETD_PORT = 5403
QNETD_HEARTBEAT = 1.0  # hbd's qdevice heartbeat at deadtime 1 s: max(1 s, 0.8 x deadtime)
DECISION = 2 * QNETD_HEARTBEAT  # qnetd's decision time D (hbd.core.qnetd.client)


class QnetdServer:
    """The real corosync-qnetd in its own namespace on the service LAN (plain TCP, `-s off`)."""

    def __init__(self, ns: netns.Netns, address: str, workdir: Path) -> None:
        self.ns, self.address, self.workdir = ns, address, workdir
        self.log = workdir / "qnetd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("corosync-qnetd")
        assert binary is not None, "corosync-qnetd is not installed (.ci/install)"
        settings = f"lock_file={self.workdir}/qnetd.pid,local_socket_file={self.workdir}/qnetd.sock"
        begin = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = self.ns.popen(
                binary, "-f", "-d", "-s", "off", "-l", self.address, "-p", str(QNETD_PORT),
                "-S", settings, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while b"QNetd ready" not in self.log.read_bytes()[begin:]:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, self.log.read_text()[-2000:]
            time.sleep(0.05)

    def crash(self) -> None:
        """SIGKILL: its kernel closes every connection (the clients see EOF)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    stop = crash


@dataclass
class Lab:
    """A built fault-matrix topology (see the module docstring)."""

    c: cluster.Cluster
    lan: netns.Lan
    ping: netns.Netns
    dogs: dict[str, MountedWatchdog]
    nft: dict[str, Nft]
    kind: GroupKind = "vip"
    sampler: Sampler | None = None
    relays: list[JitterRelay] = field(default_factory=list)
    fault_at: float | None = None  # sampler time of the first fault
    fault_logs: dict[str, int] | None = None  # where the daemons' logs ended at the fault
    notes: list[str] = field(default_factory=list)
    directives: dict[str, dict[str, str]] = field(default_factory=dict)  # ha.cf, per node
    powered_off: set[str] = field(default_factory=set)
    serial_frozen: bool = False  # socat SIGSTOPped by a power loss
    residual: bool = False  # the scenario is the residual case: both run by design
    qnetd: QnetdServer | None = None  # the arbiter, when the lab has one

    # -- names

    def ns(self, node: str) -> netns.Netns:
        return self.c[node].ns

    @staticmethod
    def other(node: str) -> str:
        return NODES[1] if node == NODES[0] else NODES[0]

    def path_id(self, path: PathName, local: str) -> str:
        peer = self.other(local)
        if path == "serial":
            return self.c.serial(*NODES).path_id(local, peer)
        return self.c.network(self._dev(path)).path_id(local, peer)

    @staticmethod
    def _dev(path: PathName) -> str:
        return {"bcast": "eth0", "ucast": "eth1"}[path]

    @property
    def ping_address(self) -> str:
        return self.lan.address(self.ping)

    @property
    def group(self) -> str:
        return group_name(self.kind)

    def pidfile(self, node: str) -> Path:
        """The address-less service's pid file on `node` (its running state)."""
        return self.c[node].root / f"{SERVICE}.pid"

    def stop_delay_file(self, node: str) -> Path:
        return self.c[node].root / f"{SERVICE}.stop-delay"

    def make_sampler(self) -> Sampler:
        """A (not started) sampler of where the group runs: the VIP in each namespace, or
        the service's pid file on each node."""
        if self.kind == "vip":
            return VipSampler(VIP, {n: self.ns(n).name for n in NODES})
        return StateFileSampler(f"service {SERVICE}", {n: self.pidfile(n) for n in NODES})

    # -- the timeline

    def mark(self, label: str, fault: bool = False) -> None:
        """Label the sampler's timeline; the first `fault=True` mark starts the clock."""
        assert self.sampler is not None, "the sampler is not running"
        at = self.sampler.mark(label)
        if fault and self.fault_at is None:
            self.fault_at = at
            self.fault_logs = self.log_marks()

    # -- faults

    def cut(self, path: PathName, how: CutKind = "down", sender: str | None = None) -> None:
        """Cut a heartbeat path: link `down` (both directions), nft `drop` of what
        `sender` sends on it (one direction), or `unplug` (serial only)."""
        if path == "serial":
            if how != "unplug":
                raise ValueError(
                    "the serial line can only be unplugged (socat cannot drop one way)"
                )
            line = self.c.serial(*NODES)
            # Remove the links first: killing socat frees its two ptys, and another socat
            # on this machine may get the same numbers at once; a daemon reopening a
            # dangling link would then be plugged into a stranger's cable (seen here).
            for link in (line.pair.link_a, line.pair.link_b):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)
            line.unplug()
        elif how == "down":
            self.c.network(self._dev(path)).cut(sender or NODES[1], "down")
        elif how == "drop":  # on arrival: the sender's sends still succeed
            senders = (sender,) if sender is not None else NODES
            for node in senders:
                self.nft[self.other(node)].drop(f"cut-{path}", self._dev(path))
        else:
            raise ValueError(f"a {path} path is cut by 'down' or 'drop', not {how!r}")

    def restore(self, path: PathName) -> None:
        """Undo every cut of `path`."""
        if path == "serial":
            line = self.c.serial(*NODES)
            if not line.pair.running:
                line.replug()
            return
        net = self.c.network(self._dev(path))
        for node in NODES:
            net.restore(node)
            self.nft[node].undrop(f"cut-{path}")

    def cut_uplink(self, node: str) -> None:
        """Unplug `node` from the service LAN (no ping node, no VIP probes)."""
        self.lan.set_down(self.ns(node))

    def restore_uplink(self, node: str) -> None:
        self.lan.set_up(self.ns(node))

    @contextlib.contextmanager
    def impair(self, path: PathName, loss: int, jitter: float) -> Iterator[list[JitterRelay]]:
        """`loss` % nft loss on `path` both ways and, on ucast, a `jitter` relay each way."""
        if jitter and path != "ucast":
            raise ValueError("jitter needs the UDP relay, which only the ucast path has")
        net = self.c.network(self._dev(path))
        made: list[JitterRelay] = []
        for node in NODES:
            peer = self.other(node)
            if jitter:
                relay = JitterRelay(
                    self.ns(node), net.dev, net.addresses[node], net.addresses[peer],
                    UDPPORT, jitter,
                )  # fmt: skip
                relay.start()
                self.relays.append(relay)
                made.append(relay)
                self.nft[node].redirect_udp(
                    "jitter", net.addresses[peer], UDPPORT, net.addresses[node], RELAY_PORT
                )
            if loss:
                # on the relay's way out (only its frames leave by eth1: hbd's go to it)
                self.nft[node].drop(f"loss-{path}", net.dev, loss, inbound=not jitter)
        try:
            yield made
        finally:
            for node in NODES:
                self.nft[node].undrop(f"loss-{path}")
            for relay in made:
                relay.jitter = 0.0  # conntrack keeps the DNAT: pass frames on undelayed

    def kill(self, node: str, signum: int = signal.SIGKILL) -> None:
        self.c[node].signal(signum)

    def cut_qnetd(self, node: str) -> None:
        """What qnetd sends `node` is dropped on arrival: its connection times out."""
        assert self.qnetd is not None, "this lab has no arbiter"
        self.nft[node].drop_from("cut-qnetd", self.qnetd.address, QNETD_PORT)

    def restore_qnetd(self, node: str) -> None:
        self.nft[node].undrop("cut-qnetd")

    def arbiter(self, node: str) -> dict[str, object] | None:
        """`node`'s status of its qnetd connection (connected, vote, degraded, reason)."""
        s = self.status(node)
        q = None if s is None else s.get("qnetd")
        return q if isinstance(q, dict) else None

    def wait_arbiter(self, node: str, what: str, ok: Callable[[dict[str, object]], bool]) -> None:
        def probe() -> bool | None:
            q = self.arbiter(node)
            return True if q is not None and ok(q) else None

        self.wait(probe, f"{node}: qnetd {what}", 5 * QNETD_HEARTBEAT + MARGIN)

    def partition(self, wire: bool | None = None) -> None:
        """Cut every heartbeat path between the nodes; the service LAN stays, so both still
        reach the ping node. `wire=True`: the heartbeat NICs' links go down (nothing
        crosses, not even ARP); `False`: nft drops every IP packet arriving on them, on
        both nodes (the wire stays: ARP still gets its answer). The serial line is
        unplugged either way. None: by the group kind. The VIP group's partition cuts the
        wire: its address on the service LAN is the evidence left (ARP over lan0). The
        address-less group has only the nodes' own addresses, which hbd learns from the
        heartbeat NICs; cutting those wires as well leaves nothing of the peer to probe,
        which is the residual case (docs/policy.md), so its partition leaves the wire."""
        how: CutKind = "down" if (self.kind == "vip" if wire is None else wire) else "drop"
        self.cut("bcast", how)
        self.cut("ucast", how)
        self.cut("serial", "unplug")

    def heal(self) -> None:
        """Undo every cut of every heartbeat path."""
        for path in PATHS:
            self.restore(path)

    def filter_icmp(self, arp_to_vip: bool = False) -> None:
        """On both nodes, drop every ICMP echo request arriving for any of their addresses
        (the VIP's too); with `arp_to_vip`, the ARP requests for the VIP as well."""
        for n in NODES:
            with self.nft[n].batch():
                self.nft[n].filter_icmp("icmp")
                if arp_to_vip:
                    self.nft[n].filter_arp("arp-vip", VIP)

    def pingable(self, address: str) -> bool:
        """Whether `address` answers a ping from the ping node (one echo, 300 ms)."""
        done = self.ping.exec("ping", "-n", "-q", "-c", "1", "-W", "0.3", address, check=False)
        return done.returncode == 0

    def power_off(self, node: str) -> None:
        """`node` loses power: every process of its namespace SIGKILLed (hbd, the service),
        its watchdog stopped (the machine is off: no reset will follow), its IPv4
        addresses flushed and nft dropping everything in and out of its NICs (a dead
        kernel answers nothing, not even ARP for an address it no longer has), the serial
        cable silent (socat SIGSTOPped: the peer's end stays open, as on a real port)."""
        ns = self.ns(node)
        pids = [int(p) for p in netns.run("ip", "netns", "pids", ns.name).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        daemon = self.c[node]
        if daemon.proc is not None:
            daemon.proc.wait(5)
        self._watchdog_off(node)
        devices = [net.dev for net in self.c.networks] + [LAN_DEV]
        for dev in devices:
            ns.ip("-4", "addr", "flush", "dev", dev)
        with self.nft[node].batch():
            for dev in devices:
                self.nft[node].drop(f"power-in-{dev}", dev)
                self.nft[node].drop(f"power-out-{dev}", dev, inbound=False)
        socat = self.c.serial(*NODES).pair.proc
        if socat is not None and socat.poll() is None:
            socat.send_signal(signal.SIGSTOP)
            self.serial_frozen = True
        self.powered_off.add(node)

    def _watchdog_off(self, node: str) -> None:
        """Stop `node`'s watchdog as a powered-off machine's stops: open it once its dead
        holder's handle is released, magic close."""
        deadline = time.monotonic() + 2.0
        while True:
            try:
                fd = os.open(self.dogs[node].path, os.O_WRONLY)
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        try:
            os.write(fd, b"V")
        finally:
            os.close(fd)

    def power_on(self, node: str) -> None:
        """Power back on: the NICs answer again with their addresses (a link a cut left
        down stays down: the cut is the cable's), the serial line carries bytes again (a
        fresh socat, on the same links), hbd starts with the same state directory."""
        ns = self.ns(node)
        devices = [net.dev for net in self.c.networks] + [LAN_DEV]
        with self.nft[node].batch():
            for dev in devices:
                self.nft[node].undrop(f"power-in-{dev}")
                self.nft[node].undrop(f"power-out-{dev}")
        for net in self.c.networks:
            self._readdress(ns, net.dev, net.addresses[node], link_up=False)
        self._readdress(ns, LAN_DEV, self.lan.address(ns), link_up=False)
        if self.serial_frozen:
            self.serial_frozen = False
            line = self.c.serial(*NODES)
            self.cut("serial", "unplug")  # SIGKILL ends a stopped socat too
            line.replug()
        self.powered_off.discard(node)
        self.c[node].start()

    def reload(self, node: str, **changes: str) -> None:
        """Rewrite `node`'s ha.cf with `changes` to its directives, then SIGHUP its hbd."""
        self.directives[node] |= changes
        daemon = self.c[node]
        daemon.write_config(
            self.c.hacf(node, **self.directives[node]), cluster.AUTHKEYS[self.c.auth]
        )
        daemon.signal(signal.SIGHUP)

    def request(self, node: str, cmd: str, **params: str) -> dict[str, object]:
        """One control-socket request to `node`'s hbd (what hbctl sends), in milliseconds
        rather than an hbctl start-up's hundreds."""
        answer = control_request(str(self.c[node].run_dir), cmd, **params)
        assert answer.get("ok"), f"{node}: {cmd} {params}: {answer}"
        return answer

    # -- readings

    def resets(self, node: str) -> int:
        return len(self.dogs[node].resets())

    def status(self, node: str) -> dict[str, object] | None:
        return self.c[node].status()

    def redundancy(self, node: str) -> str | None:
        s = self.status(node)
        return None if s is None else str(s["redundancy"])

    def path_state(self, local: str, path: PathName) -> str | None:
        view = self.c.peer_view(local, self.other(local))
        if view is None:
            return None
        entry = view["paths"].get(self.path_id(path, local))
        return None if entry is None else str(entry["status"])

    def peer_state(self, local: str) -> str | None:
        view = self.c.peer_view(local, self.other(local))
        return None if view is None else str(view["status"])

    def holder_seen_by(self, local: str) -> str | None:
        """Who `local`'s status says holds the group (None: nobody, or no answer)."""
        s = self.c[local].status()
        if s is None:
            return None
        for g in s.get("groups", []):
            if g["name"] == self.group:
                return None if g["holder"] is None else str(g["holder"])
        return None

    def group_state(self, node: str) -> str | None:
        """The group's state in `node`'s own resource manager (started, stopped, ...)."""
        s = self.c[node].status()
        if s is None:
            return None
        for g in s.get("groups", []):
            if g["name"] == self.group:
                return str(g["state"])
        return None

    def wait(self, probe: Callable[[], T | None], what: str, timeout: float) -> tuple[T, float]:
        """A bounded poll that shows the VIP timeline, both daemons and logs on timeout."""

        def dump() -> str:
            timeline = self.sampler.report() if self.sampler is not None else ""
            return f"\n{timeline}{self.c._dump()}"

        return cluster.wait_for(probe, timeout, what, dump)

    def wait_path_dead(
        self, node: str, path: PathName, left: int, timeout: float = DEADTIME + MARGIN
    ) -> float:
        """Wait until `node` shows `path` dead with `left` paths to its peer still up, and
        its redundancy as hbd defines it: `redundant` while two paths or more are left,
        `degraded` with one (docs/testing.md). Seconds taken."""
        want = "redundant" if left >= 2 else "degraded"

        def probe() -> bool | None:
            view = self.c.peer_view(node, self.other(node))
            if view is None:
                return None
            up = sum(1 for p in view["paths"].values() if p["status"] == "up")
            ok = self.path_state(node, path) == "dead" and up == left
            return True if ok and self.redundancy(node) == want else None

        return self.wait(probe, f"{node}: {path} dead, {left} path(s) left, {want}", timeout)[1]

    def wait_peer(self, node: str, states: tuple[str, ...], timeout: float) -> float:
        """Wait until `node` shows its peer in one of `states`; seconds taken."""

        def probe() -> bool | None:
            return True if self.peer_state(node) in states else None

        return self.wait(probe, f"{node}: peer {'/'.join(states)}", timeout)[1]

    def wait_redundant(self, timeout: float = 10.0) -> float:
        def probe() -> bool | None:
            ok = all(self.redundancy(n) == "redundant" for n in NODES)
            return True if ok else None

        return self.wait(probe, "both nodes redundant again", timeout)[1]

    def log_marks(self) -> dict[str, int]:
        """Where each daemon's log ends now (for `expect_logged(..., since=...)`)."""
        return {n: self.c[n].log_mark() for n in NODES}

    def expect_logged(self, node: str, text: str, since: dict[str, int] | None = None) -> None:
        """Fail unless `node`'s hbd logged `text` (after `since[node]`): the reason behind
        what the sampler saw, in hbd's own words."""
        log = self.c[node].log()[since[node] if since else 0 :]
        assert text in log, f"{node}'s hbd never logged {text!r}; its log:\n{log[-3000:]}"

    def watch(self, seconds: float) -> None:
        """Let `seconds` pass with the sampler running (the fault has its chance to bite)."""
        time.sleep(seconds)

    # -- a node coming back

    def reboot(self, node: str) -> None:
        """What a reset node does when it boots: addresses back, links up, hbd started."""
        ns = self.ns(node)
        for net in self.c.networks:
            self._readdress(ns, net.dev, net.addresses[node])
        self._readdress(ns, LAN_DEV, self.lan.address(ns))
        self.c[node].start()

    @staticmethod
    def _readdress(ns: netns.Netns, dev: str, addr: str, link_up: bool = True) -> None:
        have = ns.ip("-4", "-o", "addr", "show", "dev", dev).stdout
        if f" {addr}/" not in have:
            ns.ip("addr", "add", f"{addr}/{PREFIX}", "brd", "+", "dev", dev)
        if link_up:
            ns.ip("link", "set", dev, "up")


@contextlib.contextmanager
def build(
    workdir: Path,
    wire: str | None = WIRE,
    auth: str = AUTH,
    extra_hacf: dict[str, str] | None = None,
    group: GroupKind = "vip",
    arbiter: bool = False,
) -> Iterator[Lab]:
    """The whole topology with both daemons configured (not started). `wire`: hbd's
    native frames by default; None for Heartbeat's format (no `wire` line). `extra_hacf`:
    more ha.cf directives for both nodes (e.g. `{"adaptive_detector": "on"}`). `group`:
    the VIP group (`alpha IPaddr::10.91.0.100/24`) or the address-less one (`alpha
    fmsvc`, a resource.d script whose pid file in the node's directory is its state).
    `arbiter`: corosync-qnetd in the ping node's namespace, named by both ha.cf."""
    with contextlib.ExitStack() as stack:
        c = stack.enter_context(cluster.build(workdir, NODES, timing=TIMING, wire=wire, auth=auth))
        ping = stack.enter_context(netns.namespace("ping"))
        hosts = [c[n].ns for n in NODES] + [ping]
        if arbiter:  # a third machine beside the ping node: 10.91.0.4
            hosts.append(stack.enter_context(netns.namespace("qnetd")))
        lan = stack.enter_context(netns.lan(hosts, LAN_SUBNET, ifname=LAN_DEV))
        dogs: dict[str, MountedWatchdog] = {}
        for n in NODES:
            dogs[n] = stack.enter_context(
                mounted_watchdog(netns=c[n].ns.name, identity=f"{n} fault-lab watchdog")
            )
        nft = {n: Nft(c[n].ns, workdir) for n in NODES}
        lab = Lab(c, lan, ping, dogs, nft, kind=group)
        if arbiter:
            lab.qnetd = QnetdServer(hosts[-1], lan.address(hosts[-1]), workdir)
            stack.callback(lab.qnetd.stop)
            lab.qnetd.start()
        for n in NODES:
            node = c[n]
            directives = {"watchdog": str(dogs[n].path), "ping": lab.ping_address}
            if arbiter:
                directives |= {"qnetd": lab.qnetd.address, "cluster": "faultlab"}
            directives |= extra_hacf or {}
            lab.directives[n] = directives
            node.write_config(c.hacf(n, **directives), cluster.AUTHKEYS[c.auth])
            node.write_haresources(haresources_line(group))
            if group == "script":
                script = SERVICE_SCRIPT.replace("@PIDFILE@", str(lab.pidfile(n)))
                script = script.replace("@DELAYFILE@", str(lab.stop_delay_file(n)))
                agent = node.config_dir / "resource.d" / SERVICE
                agent.parent.mkdir(parents=True, exist_ok=True)
                agent.write_text(script)
                agent.chmod(0o755)
        try:
            yield lab
        finally:
            # daemons first (SIGKILL: a clean stop would hand the group over first), so the
            # watchdog mounts are no longer held open when they are unmounted; then what
            # they left in their namespaces (the address-less group's service)
            for n in NODES:
                c[n].kill()
            for n in NODES:
                left = netns.run("ip", "netns", "pids", c[n].ns.name, check=False).stdout
                for pid in left.split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            socat = c.serial(*NODES).pair.proc
            if lab.serial_frozen and socat is not None and socat.poll() is None:
                socat.send_signal(signal.SIGCONT)  # a stopped socat ignores SIGTERM
            for relay in lab.relays:
                relay.stop()
            for table in nft.values():
                table.close()
            if lab.sampler is not None:
                with contextlib.suppress(RuntimeError):
                    lab.sampler.stop()


def bring_up(lab: Lab) -> float:
    """Start both daemons; wait for every path up and the group on alpha alone, as both
    say."""
    start = time.monotonic()
    lab.c.start()
    lab.c.wait_all_up(STARTUP)

    def settled() -> bool | None:
        ok = (
            all(lab.holder_seen_by(n) == HOME for n in NODES)
            and lab.group_state(HOME) == "started"  # its start (and ARPs) finished
            and lab.group_state(lab.other(HOME)) == "stopped"
            and all(lab.redundancy(n) == "redundant" for n in NODES)
        )
        return True if ok else None

    lab.wait(settled, f"{HOME} to have started {lab.group}, both agreeing", STARTUP)
    return time.monotonic() - start


# -- outcomes -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one scenario did, as the summary table shows it."""

    scenario: str
    dual_active_ms: float
    stable_after: float | None  # seconds from the fault to the final single holder
    resets: dict[str, int]
    holder: tuple[str, ...]  # where the group runs at the end
    moved_after: float | None  # seconds from the fault until the group first ran on beta
    samples: int
    max_gap_ms: float
    timeline: str
    notes: list[str]
    group: GroupKind = "vip"
    residual: bool = False  # dual-active by design (docs/policy.md's residual case)

    def row(self) -> str:
        stable = "never" if self.stable_after is None else f"{self.stable_after:6.2f} s"
        resets = ", ".join(f"{n} {k}" for n, k in self.resets.items() if k) or "none"
        return (
            f"{self.scenario:<32} {self.group:<6} {self.dual_active_ms:8.0f} ms  {stable:>9}  "
            f"{'+'.join(self.holder) or '-':<10} {resets}"
            + ("  (residual case)" if self.residual else "")
        )


HEADER = (
    f"{'scenario':<32} {'group':<6} {'dual-act':>11}  {'stable':>9}  {'holder':<10} watchdog resets"
)


def _stable_after(vip: Sampler, fault_at: float) -> float | None:
    final = vip.holders()
    if len(final) != 1:
        return None
    last = max((ch.at for ch in vip.timeline), default=0.0)
    return max(0.0, last - fault_at)


def _first_on(vip: Sampler, node: str, fault_at: float) -> float | None:
    at = vip.first_on(node, after=fault_at)
    return None if at is None else at - fault_at


# -- the scenarios ------------------------------------------------------------------------
# Each runs on a lab whose daemons are up with alpha holding the VIP and the sampler on;
# each marks its first fault with `fault=True` and leaves the lab in its final state.


def one_path_cut(lab: Lab) -> None:
    """bcast goes down: a path fault, not a peer death; nothing moves."""
    lab.mark("bcast link down", fault=True)
    lab.cut("bcast", "down")
    for n in NODES:
        lab.wait_path_dead(n, "bcast", left=2)
    lab.mark("both see bcast dead (2 of 3 paths left: still redundant)")
    lab.watch(BUDGET + 1.0)


def each_path_in_turn(lab: Lab) -> None:
    """bcast (link down), ucast (nft drop both ways), serial (unplugged), one after another."""
    first = True
    cuts: tuple[tuple[PathName, CutKind], ...] = (
        ("bcast", "down"),
        ("ucast", "drop"),
        ("serial", "unplug"),
    )
    for path, how in cuts:
        lab.mark(f"{path} cut ({how})", fault=first)
        first = False
        lab.cut(path, how)
        for n in NODES:
            lab.wait_path_dead(n, path, left=2)
        lab.watch(2.0)
        lab.restore(path)
        lab.mark(f"{path} restored")
        lab.wait_redundant()
    lab.watch(1.0)


def all_paths_cut(lab: Lab) -> None:
    """Every heartbeat path cut, both nodes still see the ping node and the VIP answers.

    The address-less group has no address on the LAN, and the peer's own addresses are on
    the cut wires: nothing of alpha answers, which is the residual case (docs/policy.md):
    beta runs it too after the budget, until the partition heals and it goes home."""
    lab.mark("all paths cut", fault=True)
    lab.cut("bcast", "down")
    lab.cut("ucast", "down")
    lab.cut("serial", "unplug")
    for n in NODES:
        lab.wait_peer(n, ("dead",), DEADTIME + MARGIN)
    lab.mark("both declared the peer dead")
    if lab.kind == "script":
        lab.residual = True
        assert lab.sampler is not None
        sampler = lab.sampler
        lab.wait(
            lambda: True if sampler.holders() == NODES else None,
            "the residual case: beta running the group beside alpha",
            BUDGET + MARGIN,
        )
        lab.mark("residual case: both run it")
        lab.notes.append("residual case (docs/policy.md): nothing of alpha could be probed")
        lab.watch(1.0)
        lab.heal()
        lab.mark("partition healed")
        sampler.wait_on(HOME, timeout=STARTUP)
        lab.mark("alpha alone again")
        lab.watch(1.0)
        return
    lab.watch(BUDGET + 2.0)
    lab.expect_logged("beta", "answers: it is partitioned, not dead; nothing moves")


def isolated_holder(lab: Lab) -> None:
    """Every path cut and alpha's uplink too: alpha is isolated, releases and self-fences;
    its watchdog resets it; beta takes over after the budget."""
    lab.mark("all paths + alpha's uplink cut", fault=True)
    lab.cut_uplink(HOME)
    lab.cut("bcast", "down")
    lab.cut("ucast", "down")
    lab.cut("serial", "unplug")
    lab.dogs[HOME].wait_for_reset(timeout=DEADTIME + WATCHDOG_S + MARGIN)
    lab.mark(f"{HOME} reset by its watchdog")
    # released (the reason reads "isolated" or, once the fence is decided in the same
    # turn, "this node is fencing itself") and stopped petting
    lab.expect_logged(HOME, f"Releasing resource group: {lab.group} (", lab.fault_logs)
    lab.expect_logged(HOME, "self-fencing: isolated", lab.fault_logs)
    assert lab.sampler is not None
    lab.sampler.wait_on("beta", timeout=BUDGET + MARGIN)
    lab.mark("beta holds")
    lab.expect_logged("beta", "alpha may still run it: takeover in")
    lab.watch(2.0)


def sigkill_active(lab: Lab) -> None:
    """SIGKILL alpha's hbd: its watchdog stays armed and resets alpha; beta takes over."""
    lab.mark(f"SIGKILL {HOME}'s hbd", fault=True)
    lab.kill(HOME, signal.SIGKILL)
    lab.dogs[HOME].wait_for_reset(timeout=WATCHDOG_S + MARGIN)
    lab.mark(f"{HOME} reset by its watchdog")
    assert lab.sampler is not None
    lab.sampler.wait_on("beta", timeout=BUDGET + MARGIN)
    lab.mark("beta holds")
    lab.expect_logged("beta", "alpha may still run it: takeover in")
    lab.watch(2.0)


def sigstop_active(lab: Lab) -> None:
    """SIGSTOP alpha's hbd; its watchdog fires (a reset: the stopped daemon is SIGKILLed);
    then SIGCONT, which finds nothing to wake; beta holds."""
    lab.mark(f"SIGSTOP {HOME}'s hbd", fault=True)
    lab.kill(HOME, signal.SIGSTOP)
    lab.dogs[HOME].wait_for_reset(timeout=WATCHDOG_S + MARGIN)
    lab.mark(f"{HOME} reset by its watchdog")
    with contextlib.suppress(ProcessLookupError):
        os.kill(lab.c[HOME].pid, signal.SIGCONT)
    lab.mark(f"SIGCONT {HOME}'s hbd")
    assert lab.sampler is not None
    lab.sampler.wait_on("beta", timeout=BUDGET + MARGIN)
    lab.mark("beta holds")
    lab.expect_logged("beta", "alpha may still run it: takeover in")
    lab.watch(2.0)
    if lab.c[HOME].running:
        lab.notes.append(f"{HOME}'s hbd survived SIGSTOP + reset + SIGCONT")


def asymmetric_cut(lab: Lab) -> None:
    """alpha hears beta, beta hears nothing from alpha: nft drops what alpha sends on eth0
    and eth1; the serial line is unplugged (socat cannot cut one way)."""
    lab.mark("alpha's sends dropped on bcast+ucast, serial unplugged", fault=True)
    lab.cut("bcast", "drop", sender=HOME)
    lab.cut("ucast", "drop", sender=HOME)
    lab.cut("serial", "unplug")
    lab.wait_peer("beta", ("dead",), DEADTIME + MARGIN)
    lab.mark("beta declared alpha dead")
    lab.watch(BUDGET + 2.0)
    lab.expect_logged("beta", "answers: it is partitioned, not dead; nothing moves")


def loss_and_jitter(lab: Lab, seconds: float | None = None) -> None:
    """30 % loss and 50 ms (+- 50 ms) jitter on the ucast path for HBD_SOAK_SECONDS."""
    soak = soak_seconds() if seconds is None else seconds
    lab.mark(f"30% loss + 50 ms jitter on ucast for {soak:g} s", fault=True)
    with lab.impair("ucast", loss=30, jitter=0.05) as relays:
        lab.watch(soak)
        lab.notes += [f"relay {r.ns.name}: {r.stats.summary()}" for r in relays]
        received = sum(r.stats.received for r in relays)
        dropped = sum(r.stats.dropped for r in relays)
        delays = [d for r in relays for d in r.stats.delays]
        # the impairment was real: frames went through the relays, about 30 % were lost
        # and the delays spread over 0..100 ms
        assert received >= 4 * soak, f"the relays carried {received} frames in {soak:g} s"
        if received >= 100:
            assert 0.15 <= dropped / received <= 0.45, f"{dropped} of {received} dropped"
            assert min(delays) < 0.02 and max(delays) > 0.08, "delays not spread over 0..100 ms"
        for n in NODES:
            lab.notes.append(f"{n} saw ucast {lab.path_state(n, 'ucast')} at the end")
    lab.mark("impairment lifted (relay passes frames undelayed)")
    lab.wait_redundant()


def serial_replug_while_nics_down(lab: Lab) -> None:
    """Both NIC paths down; the serial line, the last path, unplugged and replugged."""
    lab.mark("bcast + ucast down", fault=True)
    lab.cut("bcast", "down")
    lab.cut("ucast", "down")
    for n in NODES:
        lab.wait_path_dead(n, "bcast", left=1)
        lab.wait_path_dead(n, "ucast", left=1)
    lab.mark("both degraded: serial is the last path")
    lab.mark("serial unplugged")
    lab.cut("serial", "unplug")
    lab.watch(1.5)
    lab.restore("serial")
    lab.mark("serial replugged")
    for n in NODES:
        lab.wait_peer(n, ("up", "active"), 10.0)
    lab.mark("peer back over serial")
    lab.watch(BUDGET)
    lab.restore("bcast")
    lab.restore("ucast")
    lab.wait_redundant()


def peer_returns(lab: Lab) -> None:
    """alpha isolated and reset; beta takes over; the partition heals and alpha boots: one
    holder throughout, and with auto_failback on the group goes home by hand-off."""
    isolated_holder(lab)
    lab.restore_uplink(HOME)
    for path in PATHS:
        lab.restore(path)
    lab.mark("partition healed; rebooting alpha")
    since = lab.log_marks()
    lab.reboot(HOME)
    lab.c.wait_all_up(STARTUP)
    lab.mark("alpha back on every path")
    assert lab.sampler is not None
    lab.sampler.wait_on(HOME, timeout=STARTUP)
    lab.mark("alpha holds again")
    # a hand-off: beta released first (its target is alpha again), alpha started only
    # when beta's advert said so
    lab.expect_logged("beta", f"Releasing resource group: {lab.group} (its target is alpha)", since)
    lab.expect_logged(
        HOME, f"Acquiring resource group: {lab.group} (its target is this node", since
    )
    lab.watch(2.0)


# -- issue 12 section 5: power, partitions, hand-offs, filters, reloads, for both kinds ------


def _wait_answers(lab: Lab, node: str) -> None:
    """Wait until `node`'s (re)started hbd answers on its control socket."""
    lab.wait(lambda: True if lab.status(node) is not None else None, f"{node}'s hbd", STARTUP)


def _assert_started_nothing(lab: Lab, node: str, since: dict[str, int] | None) -> None:
    log = lab.c[node].log()[since[node] if since else 0 :]
    assert f"Acquiring resource group: {lab.group}" not in log, (
        f"{node} started {lab.group}; its log:\n{log[-3000:]}"
    )


def standby_power_loss(lab: Lab) -> None:
    """beta, the standby, loses power, then comes back: alpha serves throughout, is not
    reset, and keeps the group when beta is back (it is the group's home)."""
    lab.mark("beta loses power", fault=True)
    lab.power_off("beta")
    lab.wait_peer(HOME, ("dead",), DEADTIME + MARGIN)
    lab.mark(f"{HOME} declared beta dead")
    lab.watch(BUDGET + 1.0)
    assert lab.group_state(HOME) == "started", lab.status(HOME)
    since = lab.log_marks()
    lab.mark("beta powered on")
    lab.power_on("beta")
    lab.c.wait_all_up(STARTUP)
    lab.mark("beta back on every path")
    lab.watch(2.0)
    _assert_started_nothing(lab, "beta", since)


def reboot_during_partition(lab: Lab) -> None:
    """Every heartbeat path cut (both still reach the ping node); beta is power-cycled
    while the cut lasts and comes back never having heard alpha: it must start nothing
    alpha runs, alpha keeps serving; then the partition heals."""
    lab.mark("all heartbeat paths cut", fault=True)
    lab.partition()
    for n in NODES:
        lab.wait_peer(n, ("dead",), DEADTIME + MARGIN)
    lab.mark("both declared the peer dead")
    lab.watch(1.0)
    lab.mark("beta loses power (still partitioned)")
    lab.power_off("beta")
    lab.watch(1.0)
    since = lab.log_marks()
    lab.mark("beta powered on (still partitioned)")
    lab.power_on("beta")
    _wait_answers(lab, "beta")
    # initdead, then the budget from its own start (peer_watchdog_timeout = its own W)
    lab.watch(TIMING.initdead / 1000 + BUDGET + 1.0)
    lab.expect_logged("beta", "answers: it is partitioned, not dead; nothing moves", since)
    _assert_started_nothing(lab, "beta", since)
    lab.mark("partition healed")
    lab.heal()
    lab.c.wait_all_up(STARTUP)
    lab.watch(2.0)


def cut_during_handoff(lab: Lab) -> None:
    """`hbctl standby` on alpha (a hand-off to beta) and every heartbeat path cut in the
    same breath; the hand-off is caught wherever it is (the address-less service takes
    0.5 s to stop, so there the cut lands in alpha's stop). Healed after the budget: the
    hand-off completes, beta holds."""
    if lab.kind == "script":
        lab.stop_delay_file(HOME).write_text("0.5\n")
    lab.mark(f"standby on {HOME} (hand-off to beta) + all paths cut", fault=True)
    lab.request(HOME, "standby", mode="all")
    lab.partition()
    lab.mark("cut")
    lab.watch(BUDGET + 2.0)
    assert lab.sampler is not None
    where = "+".join(lab.sampler.holders()) or "no node"
    lab.notes.append(f"during the cut the group ran on {where} after the budget")
    lab.mark(f"partition healed (group on {where})")
    healed = lab.sampler.mark("healing")
    lab.heal()
    lab.c.wait_all_up(STARTUP)
    lab.sampler.wait_on("beta", timeout=STARTUP)
    lab.mark("beta holds")
    lab.watch(2.0)
    if where == "beta":  # beta keeps it through the heal: alpha's last advert refused it
        flips = [c for c in lab.sampler.timeline if c.at >= healed]
        assert not flips, (
            f"beta stopped the group when the partition healed\n{lab.sampler.report()}"
        )


def icmp_filtered_service_address(lab: Lab) -> None:
    """ICMP echo to every address of both nodes dropped (the VIP's too: it does not
    answer a ping any more), then every heartbeat path cut: hbd probes by ARP, so the
    peer still answers and nothing moves."""
    target = VIP if lab.kind == "vip" else lab.lan.address(lab.ns(HOME))
    assert lab.pingable(target), f"{target} does not answer a ping before the filter"
    lab.mark("ICMP echo to every address filtered", fault=True)
    lab.filter_icmp()
    assert not lab.pingable(target), f"{target} still answers a ping: the filter is not on"
    lab.mark(f"{target} no longer answers a ping; all heartbeat paths cut")
    lab.partition()
    for n in NODES:
        lab.wait_peer(n, ("dead",), DEADTIME + MARGIN)
    lab.mark("both declared the peer dead")
    lab.watch(BUDGET + 2.0)
    lab.expect_logged("beta", "answers: it is partitioned, not dead; nothing moves")
    lab.mark("partition healed")
    lab.heal()
    lab.c.wait_all_up(STARTUP)
    lab.watch(1.0)


def reload_while_degraded(lab: Lab) -> None:
    """bcast down and the serial line unplugged: one path (ucast) left, both degraded;
    a changed ha.cf (warntime) reloaded by SIGHUP on alpha, then on beta: nothing moves."""
    lab.mark("bcast down + serial unplugged", fault=True)
    lab.cut("bcast", "down")
    lab.cut("serial", "unplug")
    for n in NODES:
        lab.wait_path_dead(n, "bcast", left=1)
    lab.mark("both degraded: ucast is the last path")
    for n in NODES:
        since = lab.c[n].log_mark()
        lab.mark(f"SIGHUP {n} (warntime 700ms)")
        lab.reload(n, warntime="700ms")
        lab.c[n].wait_log("configuration reloaded", 5.0, since)
        lab.watch(1.0)
    lab.watch(BUDGET)
    for n in NODES:
        assert lab.redundancy(n) == "degraded", lab.status(n)
    lab.heal()
    lab.wait_redundant()


# -- issue 14: the arbiter, the real corosync-qnetd beside the ping node --------------------


def _qnetd_ready(lab: Lab) -> None:
    for n in NODES:
        lab.wait_arbiter(n, "connected with a vote", lambda q: bool(q["connected"] and q["vote"]))


def _cut_every_wire(lab: Lab) -> None:
    """Every heartbeat path cut at the wire: nothing of the peer can be probed (for the
    address-less group, the residual case of two nodes alone), both reach the ping node
    and qnetd."""
    lab.cut("bcast", "down")
    lab.cut("ucast", "down")
    lab.cut("serial", "unplug")


def qnetd_all_paths_cut(lab: Lab) -> None:
    """Every path cut, both reach qnetd: qnetd's tie-breaker (the lowest node id: alpha)
    gives alpha, the holder, the vote; beta gets the NACK and starts nothing. One side
    serves, and it is the holder: no interruption."""
    _qnetd_ready(lab)
    since = lab.log_marks()
    lab.mark("every wire cut; both reach qnetd", fault=True)
    _cut_every_wire(lab)
    for n in NODES:
        lab.wait_peer(n, ("dead",), DEADTIME + MARGIN)
    lab.mark("both declared the peer dead")
    lab.wait_arbiter("beta", "NACK", lambda q: q["vote"] == "NACK")
    lab.mark("beta: NACK")
    lab.watch(BUDGET + DECISION + 1.0)
    _assert_started_nothing(lab, "beta", since)
    _heal_and_settle(lab)


def _heal_and_settle(lab: Lab) -> None:
    """End of a partition scenario: heal everything, both up again, a second watched."""
    lab.heal()
    lab.mark("partition healed")
    lab.c.wait_all_up(STARTUP)
    lab.watch(1.0)


def qnetd_all_paths_cut_holder_loses(lab: Lab) -> None:
    """The same cut with `qnetd_tie_breaker highest`: beta gets the vote; alpha, the holder,
    gets the NACK, releases and is reset by its watchdog; beta takes over after the budget
    plus the decision time, never beside alpha."""
    _qnetd_ready(lab)
    lab.mark("every wire cut; both reach qnetd (tie-breaker: highest)", fault=True)
    _cut_every_wire(lab)
    lab.dogs[HOME].wait_for_reset(timeout=DEADTIME + DECISION + WATCHDOG_S + MARGIN)
    lab.mark(f"{HOME} reset by its watchdog")
    lab.expect_logged(HOME, "qnetd gave the vote to the other side", lab.fault_logs)
    assert lab.sampler is not None
    lab.sampler.wait_on("beta", timeout=BUDGET + DECISION + 2 * QNETD_HEARTBEAT + MARGIN)
    lab.mark("beta holds")


def qnetd_standby_power_loss(lab: Lab) -> None:
    """With the arbiter: beta loses power; qnetd votes for alpha alone, which keeps the
    group uninterrupted and is not reset."""
    _qnetd_ready(lab)
    standby_power_loss(lab)


def qnetd_holder_power_loss(lab: Lab) -> None:
    """alpha, the holder, loses power: beta serves once the budget plus qnetd's decision
    time has passed (and it has held the vote long enough); moved_after is the figure."""
    _qnetd_ready(lab)
    lab.mark("alpha loses power", fault=True)
    lab.power_off(HOME)
    assert lab.sampler is not None
    lab.sampler.wait_on("beta", timeout=BUDGET + DECISION + 2 * QNETD_HEARTBEAT + MARGIN)
    lab.mark("beta holds")
    lab.expect_logged("beta", "qnetd gave this node the vote", lab.fault_logs)
    lab.watch(1.0)


def qnetd_dies_and_returns(lab: Lab) -> None:
    """qnetd crashes: nothing moves while the nodes hear each other, both say `degraded`
    (arbiter unreachable); it starts again: both reconnect and are redundant again."""
    _qnetd_ready(lab)
    assert lab.qnetd is not None
    lab.mark("qnetd killed", fault=True)
    lab.qnetd.crash()

    def degraded(node: str) -> bool | None:
        status = lab.status(node) or {}
        return True if status.get("degraded_by") == "arbiter unreachable" else None

    for n in NODES:
        lab.wait_arbiter(n, "lost", lambda q: not q["connected"])
        lab.wait(lambda n=n: degraded(n), f"{n}: degraded (arbiter unreachable)", MARGIN)
        assert lab.redundancy(n) == "degraded", lab.status(n)
    lab.mark("both degraded: arbiter unreachable")
    lab.watch(BUDGET)
    lab.qnetd.start()
    lab.mark("qnetd started again")
    _qnetd_ready(lab)
    lab.wait_redundant(5 * QNETD_HEARTBEAT + MARGIN)
    lab.mark("both redundant again")
    lab.watch(1.0)


def qnetd_down_then_partition(lab: Lab) -> None:
    """qnetd gone and both nodes know it, then every heartbeat path cut with the LAN whole
    (the peer's addresses answer): handled as without an arbiter, nothing moves."""
    _qnetd_ready(lab)
    assert lab.qnetd is not None
    lab.qnetd.crash()
    for n in NODES:
        lab.wait_arbiter(n, "lost", lambda q: not q["connected"])
    lab.watch(1.0)  # an advert each way: both know the other lost it too
    since = lab.log_marks()
    lab.mark("qnetd gone; every heartbeat path cut", fault=True)
    lab.partition()
    for n in NODES:
        lab.wait_peer(n, ("dead",), DEADTIME + MARGIN)
    lab.mark("both declared the peer dead")
    lab.watch(BUDGET + DECISION + 1.0)
    lab.expect_logged("beta", "as without an arbiter: qnetd was unreachable from both", since)
    _assert_started_nothing(lab, "beta", since)
    _heal_and_settle(lab)


def qnetd_holder_reaches_only_qnetd(lab: Lab) -> None:
    """beta's way from qnetd cut (it reaches neither qnetd nor, after the cut, alpha);
    then every wire cut: alpha, reaching qnetd, keeps; beta starts nothing."""
    _qnetd_ready(lab)
    lab.cut_qnetd("beta")
    lab.wait_arbiter("beta", "lost", lambda q: not q["connected"])
    lab.watch(1.0)
    since = lab.log_marks()
    lab.mark("beta cut from qnetd; every wire cut", fault=True)
    _cut_every_wire(lab)
    for n in NODES:
        lab.wait_peer(n, ("dead",), DEADTIME + MARGIN)
    lab.mark("both declared the peer dead")
    lab.watch(BUDGET + DECISION + 1.0)
    _assert_started_nothing(lab, "beta", since)
    lab.heal()
    lab.restore_qnetd("beta")
    lab.mark("partition healed, qnetd reachable")
    lab.c.wait_all_up(STARTUP)
    lab.watch(1.0)


SCENARIOS: dict[str, Callable[[Lab], None]] = {
    "one_path_cut": one_path_cut,
    "each_path_in_turn": each_path_in_turn,
    "all_paths_cut_ping_seen": all_paths_cut,
    "isolated_holder": isolated_holder,
    "sigkill_active": sigkill_active,
    "sigstop_active": sigstop_active,
    "asymmetric_cut": asymmetric_cut,
    "loss_and_jitter": loss_and_jitter,
    "serial_replug_nics_down": serial_replug_while_nics_down,
    "peer_returns": peer_returns,
    "standby_power_loss": standby_power_loss,
    "reboot_during_partition": reboot_during_partition,
    "cut_during_handoff": cut_during_handoff,
    "icmp_filtered_service_address": icmp_filtered_service_address,
    "reload_while_degraded": reload_while_degraded,
    "qnetd_all_paths_cut": qnetd_all_paths_cut,
    "qnetd_all_paths_cut_holder_loses": qnetd_all_paths_cut_holder_loses,
    "qnetd_standby_power_loss": qnetd_standby_power_loss,
    "qnetd_holder_power_loss": qnetd_holder_power_loss,
    "qnetd_dies_and_returns": qnetd_dies_and_returns,
    "qnetd_down_then_partition": qnetd_down_then_partition,
    "qnetd_holder_reaches_only_qnetd": qnetd_holder_reaches_only_qnetd,
}
# the scenarios that run with the arbiter (issue 14), and their extra ha.cf lines
ARBITER_HACF: dict[str, dict[str, str]] = {
    "qnetd_all_paths_cut": {},
    "qnetd_all_paths_cut_holder_loses": {"qnetd_tie_breaker": "highest"},
    "qnetd_standby_power_loss": {},
    "qnetd_holder_power_loss": {},
    "qnetd_dies_and_returns": {},
    "qnetd_down_then_partition": {},
    "qnetd_holder_reaches_only_qnetd": {},
}
# the scenarios run for both group kinds (issue 12, section 5)
BOTH_KINDS = (
    "standby_power_loss",
    "reboot_during_partition",
    "cut_during_handoff",
    "icmp_filtered_service_address",
    "reload_while_degraded",
)


def run_scenario(
    name: str,
    workdir: Path | None = None,
    wire: str | None = WIRE,
    auth: str = AUTH,
    group: GroupKind = "vip",
) -> Outcome:
    """Build a lab, bring it up, run scenario `name` under the sampler; its Outcome.
    With `wire=None` the daemons speak Heartbeat's wire format (sha1 keys suit it).
    `group`: the VIP group or the address-less one (see `build`).

    Waits inside the scenario raise AssertionError (with the VIP timeline and both
    daemons' logs) when hbd does not do what the scenario expects in time."""
    scenario = SCENARIOS[name]
    with contextlib.ExitStack() as stack:
        if workdir is None:  # a short path: the control socket lives under it
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fm-")))
        arbiter = name in ARBITER_HACF
        extra = ARBITER_HACF.get(name)
        with build(workdir, wire, auth, extra_hacf=extra, group=group, arbiter=arbiter) as lab:
            bring_up(lab)
            lab.sampler = lab.make_sampler()
            lab.sampler.start()
            scenario(lab)
            lab.sampler.stop()
            vip = lab.sampler
            fault_at = lab.fault_at if lab.fault_at is not None else 0.0
            return Outcome(
                scenario=name if wire == WIRE else f"{name} ({wire or 'heartbeat'} wire)",
                dual_active_ms=vip.dual_ms,
                stable_after=_stable_after(vip, fault_at),
                resets={n: lab.resets(n) for n in NODES},
                holder=vip.holders(),
                moved_after=_first_on(vip, "beta", fault_at),
                samples=vip.samples,
                max_gap_ms=vip.max_gap * 1000,
                timeline=vip.report(),
                notes=list(lab.notes),
                group=group,
                residual=lab.residual,
            )
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = [
    "ARBITER_HACF",
    "BOTH_KINDS",
    "BUDGET",
    "DECISION",
    "GROUP_KINDS",
    "HEADER",
    "SCENARIOS",
    "JitterRelay",
    "Lab",
    "Nft",
    "Outcome",
    "bring_up",
    "build",
    "run_scenario",
    "soak_seconds",
]
