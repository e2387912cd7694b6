"""Real network and serial plumbing for tests: namespaces, veth pairs, a LAN, socat ptys.

Everything here is a context manager that removes exactly what it made, even when the
test fails, and every name is unique (pid + counter) so parallel runs never collide.

    with netns.namespace("a") as a, netns.namespace("b") as b:
        with netns.veth_pair(a, b, "10.77.0.0/24") as veth:   # a: 10.77.0.1, b: 10.77.0.2
            with a.entered():                                  # sockets made here live in a
                sock = socket.socket(...)
            veth.set_down("a"); veth.drop_all("a"); veth.clear_netem("a")

    with netns.socat_pair(tmp_path / "ttyA", tmp_path / "ttyB") as pty:
        ...; pty.kill(); pty.start()

Needs root (mark such tests `@pytest.mark.root`); `requires_root` skips them otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CLONE_NEWNET = 0x40000000
_counter = itertools.count()
_libc = ctypes.CDLL(None, use_errno=True)

requires_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)
requires_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")


def unique_name(prefix: str, limit: int = 15) -> str:
    """`prefix` + pid + counter, at most `limit` characters (15 fits an interface name)."""
    suffix = f"{os.getpid() % 100000}x{next(_counter)}"
    return (prefix[: max(1, limit - len(suffix))] + suffix)[:limit]


def run(*argv: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run a command, fail with its stderr if it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@dataclass
class Netns:
    """A network namespace made by `namespace()`."""

    name: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it."""
        return run("ip", "netns", "exec", self.name, *argv, check=check)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "-n", self.name, *args, check=check)

    def sysctl(self, key: str, value: str) -> None:
        self.exec("sysctl", "-q", "-w", f"{key}={value}")

    def popen(self, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a process inside the namespace; it is killed when the namespace goes."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            ["ip", "netns", "exec", self.name, *argv], **kwargs
        )
        self.processes.append(proc)
        return proc

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the body with this thread inside the namespace (sockets made there stay)."""
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(self.path, os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(original)
        finally:
            os.close(original)


@contextlib.contextmanager
def namespace(prefix: str = "hbd") -> Iterator[Netns]:
    """A fresh network namespace with `lo` up; removed (and its processes killed) on exit."""
    ns = Netns(unique_name(f"hbdt-{prefix}-", limit=40))
    run("ip", "netns", "add", ns.name)
    try:
        ns.ip("link", "set", "lo", "up")
        yield ns
    finally:
        for proc in ns.processes:
            stop_process(proc)
        run("ip", "netns", "del", ns.name, check=False)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; always reaped, its pipes closed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


class NetemUnavailable(RuntimeError):
    """This kernel has no sch_netem: loss/delay specs cannot be applied (`drop_all` still works)."""


_netem_ok: bool | None = None


def netem_available() -> bool:
    """Whether `tc qdisc ... netem` works here (probed once in a scratch namespace)."""
    global _netem_ok
    if _netem_ok is None:
        with namespace("probe") as ns:
            _netem_ok = (
                ns.exec("tc", "qdisc", "add", "dev", "lo", "root", "netem", check=False).returncode
                == 0
            )
    return _netem_ok


def _netem(ns: Netns, ifname: str, spec: str) -> None:
    proc = ns.exec(
        "tc", "qdisc", "replace", "dev", ifname, "root", "netem", *spec.split(), check=False
    )
    if proc.returncode != 0:
        if "unknown" in proc.stderr.lower():
            raise NetemUnavailable(f"tc netem not in this kernel (wanted {spec!r} on {ifname})")
        raise RuntimeError(f"tc netem {spec} on {ifname} in {ns.name}: {proc.stderr.strip()}")


def _drop_all(ns: Netns, ifname: str) -> None:
    """100 % egress loss: netem when the kernel has it, else a zero-length pfifo queue."""
    if netem_available():
        _netem(ns, ifname, "loss 100%")
    else:
        ns.exec("tc", "qdisc", "replace", "dev", ifname, "root", "pfifo", "limit", "0")


def _clear(ns: Netns, ifname: str) -> None:
    ns.exec("tc", "qdisc", "del", "dev", ifname, "root", check=False)


@dataclass
class Veth:
    """A veth pair joining host `a` and host `b`, each end with one address in `subnet`."""

    a: Netns
    b: Netns
    if_a: str
    if_b: str
    addr_a: str
    addr_b: str
    prefixlen: int

    def _end(self, side: str) -> tuple[Netns, str]:
        if side == "a":
            return self.a, self.if_a
        if side == "b":
            return self.b, self.if_b
        raise ValueError(f"side must be 'a' or 'b', not {side!r}")

    def set_down(self, side: str = "a") -> None:
        ns, ifname = self._end(side)
        ns.ip("link", "set", ifname, "down")

    def set_up(self, side: str = "a") -> None:
        ns, ifname = self._end(side)
        ns.ip("link", "set", ifname, "up")

    def netem(self, side: str, spec: str) -> None:
        """Impair egress of one end, e.g. `netem("a", "delay 20ms")`; NetemUnavailable if
        the kernel lacks netem (check `netem_available()`)."""
        _netem(*self._end(side), spec)

    def drop_all(self, side: str) -> None:
        """Lose everything one end sends (netem loss 100 %, or a zero-length queue)."""
        _drop_all(*self._end(side))

    def clear_netem(self, side: str) -> None:
        """Remove any impairment from one end."""
        _clear(*self._end(side))


@contextlib.contextmanager
def veth_pair(
    a: Netns,
    b: Netns,
    subnet: str = "10.77.0.0/24",
    if_a: str = "eth0",
    if_b: str = "eth0",
) -> Iterator[Veth]:
    """Join `a` and `b` by a veth pair; `a` gets the subnet's first host, `b` the second.

    Both ends are up with a broadcast address set (`brd +`). The pair vanishes when
    either namespace is deleted; it is also deleted explicitly on exit.
    """
    net = ipaddress.ip_network(subnet)
    hosts = itertools.islice(net.hosts(), 2)
    addr_a, addr_b = (str(h) for h in hosts)
    tmp_a, tmp_b = unique_name("hva"), unique_name("hvb")
    run("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
    try:
        run("ip", "link", "set", tmp_a, "netns", a.name, "name", if_a)
        run("ip", "link", "set", tmp_b, "netns", b.name, "name", if_b)
        for ns, ifname, addr in ((a, if_a, addr_a), (b, if_b, addr_b)):
            ns.ip("addr", "add", f"{addr}/{net.prefixlen}", "brd", "+", "dev", ifname)
            ns.ip("link", "set", ifname, "up")
        yield Veth(a, b, if_a, if_b, addr_a, addr_b, net.prefixlen)
    finally:
        run("ip", "link", "del", tmp_a, check=False)
        a.ip("link", "del", if_a, check=False)


@dataclass
class Lan:
    """Several hosts on one broadcast segment (a bridge in a hub namespace)."""

    hub: Netns
    bridge: str
    ifname: str
    members: dict[str, tuple[Netns, str, str]]  # host ns name -> (ns, hub-side port, address)

    def address(self, host: Netns) -> str:
        return self.members[host.name][2]

    def set_down(self, host: Netns) -> None:
        """Cut `host` off the segment (its own interface goes down)."""
        host.ip("link", "set", self.ifname, "down")

    def set_up(self, host: Netns) -> None:
        host.ip("link", "set", self.ifname, "up")

    def netem(self, host: Netns, spec: str) -> None:
        """Impair what `host` sends, e.g. `"delay 20ms"` (needs netem in the kernel)."""
        _netem(host, self.ifname, spec)

    def drop_all(self, host: Netns) -> None:
        """Lose everything `host` sends."""
        _drop_all(host, self.ifname)

    def clear_netem(self, host: Netns) -> None:
        _clear(host, self.ifname)


@contextlib.contextmanager
def lan(
    hosts: Sequence[Netns], subnet: str = "10.78.0.0/24", ifname: str = "eth0"
) -> Iterator[Lan]:
    """Put `hosts` on one segment; host i gets the subnet's (i+1)-th address on `ifname`."""
    net = ipaddress.ip_network(subnet)
    with namespace("hub") as hub:
        bridge = "br0"
        hub.ip("link", "add", bridge, "type", "bridge")
        hub.ip("link", "set", bridge, "up")
        members: dict[str, tuple[Netns, str, str]] = {}
        made: list[str] = []
        try:
            for host, addr in zip(hosts, net.hosts(), strict=False):
                port, tmp = unique_name("hp"), unique_name("hl")
                run("ip", "link", "add", tmp, "type", "veth", "peer", "name", port)
                made.append(tmp)
                run("ip", "link", "set", port, "netns", hub.name)
                run("ip", "link", "set", tmp, "netns", host.name, "name", ifname)
                members[host.name] = (host, port, str(addr))
                hub.ip("link", "set", port, "master", bridge, "up")
                host.ip("addr", "add", f"{addr}/{net.prefixlen}", "brd", "+", "dev", ifname)
                host.ip("link", "set", ifname, "up")
            yield Lan(hub, bridge, ifname, members)
        finally:
            for tmp in made:  # any end still in the root namespace after a failure
                run("ip", "link", "del", tmp, check=False)
            for host, _port, _addr in members.values():
                host.ip("link", "del", ifname, check=False)


class SocatPair:
    """A null-modem cable: two ptys joined by `socat`, reachable through two symlinks."""

    def __init__(self, link_a: str | Path, link_b: str | Path, log: str | Path | None = None):
        self.link_a = str(link_a)
        self.link_b = str(link_b)
        self.log = str(log) if log is not None else f"{self.link_a}.socat.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 5.0) -> None:
        """Start socat (replacing stale links) and wait until both links exist."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("socat pair already running")
        for link in (self.link_a, self.link_b):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "socat",
                    "-d",
                    "-d",
                    f"pty,raw,echo=0,link={self.link_a}",
                    f"pty,raw,echo=0,link={self.link_b}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while not (os.path.exists(self.link_a) and os.path.exists(self.link_b)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"socat did not make {self.link_a}, {self.link_b}; see {self.log}"
                )
            time.sleep(0.01)

    def kill(self) -> None:
        """Pull the cable: SIGKILL socat, leaving its links dangling like a dead line."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
            self.proc = None

    def stop(self) -> None:
        """Stop socat cleanly and remove the links."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        for link in (self.link_a, self.link_b):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def start_socat(
    *addresses: str, links: Sequence[Path], timeout: float = 5.0
) -> subprocess.Popen[bytes]:
    """socat joining `addresses`, once every path of `links` (its pty symlinks) exists."""
    proc = subprocess.Popen(["socat", *addresses], stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not all(link.exists() for link in links):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            raise RuntimeError(f"socat did not create {list(map(str, links))}: {err.decode()}")
        time.sleep(0.01)
    return proc


@contextlib.contextmanager
def socat_pair(link_a: str | Path, link_b: str | Path) -> Iterator[SocatPair]:
    """A running socat pty pair for the body; stopped and unlinked on exit."""
    pair = SocatPair(link_a, link_b)
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()


def sleeper() -> subprocess.Popen[bytes]:
    """A live process that has no serial port open, once it runs `sleep`."""
    proc = subprocess.Popen(["sleep", "30"])
    for _ in range(200):
        with open(f"/proc/{proc.pid}/comm") as f:
            if f.read().strip() == "sleep":
                return proc
        time.sleep(0.01)
    return proc


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A loopback port free at this moment (TCP by default, SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def qnetd_process(
    qnetd: str, tmp_path: Path, *, tls: str = "off", nss_db: Path | None = None
) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    """corosync-qnetd in the foreground on 127.0.0.1 and a free port, its lock, socket and
    (with `nss_db`) certificate database under `tmp_path`, until it says it is ready:
    (port, process, log). Stopped on exit."""
    port = free_port()
    log = tmp_path / "qnetd.log"
    settings = f"lock_file={tmp_path}/qnetd.pid,local_socket_file={tmp_path}/qnetd.sock"
    if nss_db is not None:
        settings += f",nss_db_dir={nss_db}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [qnetd, "-f", "-d", "-s", tls, "-l", "127.0.0.1", "-p", str(port), "-S", settings],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 5
        while b"QNetd ready" not in log.read_bytes():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"qnetd did not start: {log.read_text()}")
            time.sleep(0.05)
        yield port, proc, log
    finally:
        stop_process(proc)
