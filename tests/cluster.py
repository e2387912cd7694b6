"""A real hbd cluster for integration tests: one `hbd` process per node, each in its own
network namespace, joined by networks (one NIC per network on every node) and serial lines.

    with cluster.build(tmp_path, ("alpha", "beta"),
                       networks=(Net("bcast", "eth0"), Net("ucast", "eth1")),
                       serial=(("alpha", "beta"),)) as c:
        c.start()
        c.wait_all_up()                                   # every path up, every node up
        net = c.network("eth0")
        net.cut("beta", "down")                           # or "loss" (netem 100 %)
        c.wait_path("alpha", "beta", net.path_id("alpha", "beta"), "dead")
        net.restore("beta")

Shape:

- `Net` describes a network: its kind (`bcast` or `ucast`), the device name every node
  sees, and a subnet. Two nodes are joined by a veth pair, more by a bridge in a hub
  namespace (tests/netns.py does the plumbing). A `ucast` network gives each node one
  `ucast DEV PEER` line per peer.
- A serial line joins two nodes with a socat pty pair (the bytes a null-modem cable
  carries); `unplug()` kills socat, `replug()` starts it again on the same link names.
- `HbdNode` is one daemon: its own config, state and run directories under the test's
  tmp directory, stderr captured to `hbd.log`, `status()` over the control socket,
  `hbctl(...)` as a user runs it, `stop()` with SIGTERM.
- `Cluster` writes every node's ha.cf and authkeys from the topology, the `Timing` and the
  wire format, starts and stops the daemons, and waits for states with bounded polls
  (never a fixed sleep), returning how long the wait took so tests can report timings.
- Resource groups: `build(..., haresources=TEXT, agents=("recorder",), directives={...})`
  writes the same haresources on every node, copies the named test agents (tests/agents/)
  into each node's `resource.d`, and sets ha.cf directives (e.g. `auto_failback off`);
  `node.env` adds environment variables for that node's daemon (and so its agents).
  `node.groups()`, `node.group(name)`, `node.decisions()` read `hbctl status`;
  `c.wait_holder(group, "beta")` waits until every running node agrees that beta holds
  it and beta reports it started; `c.vip_sampler(address)` watches a service address in
  every node's namespace (tests/sampler.py).

Everything is torn down on exit, even when the test fails: daemons (SIGTERM, then SIGKILL),
socat, veths, bridges and namespaces. The daemons' logs are printed when a test fails
(pytest shows captured stdout), which is usually the fastest diagnosis.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from hbd.shell.control import ControlError, request

import netns
from sampler import VipSampler

T = TypeVar("T")
Cut = Literal["down", "loss"]

POLL = 0.05  # seconds between status polls
MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def _script(name: str) -> str:
    """The console script next to this interpreter (skips pyenv shims), else from PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (pip install -e '.[test]')")
    return found


HBD = _script("hbd")
HBCTL = _script("hbctl")
AGENTS_DIR = Path(__file__).resolve().parent / "agents"

AUTHKEYS = {
    "sha256": "auth 3\n3 sha256 integration-test-key-sha256\n",
    "sha1": "auth 1\n1 sha1 integration-test-key-sha1\n",
    "md5": "auth 2\n2 md5 integration-test-key-md5\n",
}


@dataclass(frozen=True)
class Timing:
    """ha.cf timings, in milliseconds. The defaults make a path or node death visible in
    about a second, which keeps the suite fast while leaving the loop room on a busy CI."""

    keepalive: int = 200
    deadtime: int = 1000
    warntime: int = 600
    initdead: int = 3000

    def lines(self) -> list[str]:
        return [
            f"keepalive {self.keepalive}ms",
            f"deadtime {self.deadtime}ms",
            f"warntime {self.warntime}ms",
            f"initdead {self.initdead}ms",
        ]


def wait_for(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    on_timeout: Callable[[], str] = lambda: "",
) -> tuple[T, float]:
    """Poll `probe` until it returns something not None; (that value, seconds taken).

    Fails the test with `what` and `on_timeout()`'s text (e.g. the last status seen) when
    `timeout` seconds pass first."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        value = probe()
        if value is not None:
            return value, time.monotonic() - start
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{on_timeout()}")
        time.sleep(POLL)


# -- topology ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Net:
    """A network every node has a NIC on: `kind` is `bcast` or `ucast`."""

    kind: Literal["bcast", "ucast"]
    dev: str
    subnet: str | None = None  # default: a distinct 10.8x.0.0/24 per network


@dataclass
class Network:
    """A built `Net`: the nodes' addresses and how to cut and restore one node's NIC."""

    spec: Net
    nodes: dict[str, netns.Netns]
    addresses: dict[str, str]
    wire: netns.Veth | netns.Lan  # the plumbing: a veth pair (2 nodes) or a bridge
    _cuts: dict[str, Cut] = field(default_factory=dict)

    @property
    def dev(self) -> str:
        return self.spec.dev

    def path_id(self, local: str, peer: str) -> str:
        """The id `local` shows for its path to `peer` over this network."""
        if self.spec.kind == "ucast":
            return f"ucast:{self.dev}:{self.addresses[peer]}"
        return f"bcast:{self.dev}"

    def media_lines(self, local: str) -> list[str]:
        if self.spec.kind == "ucast":
            return [f"ucast {self.dev} {addr}" for n, addr in self.addresses.items() if n != local]
        return [f"bcast {self.dev}"]

    def cut(self, node: str, how: Cut) -> None:
        """Cut `node` off this network: its NIC `down`, or 100 % `loss` on its egress.

        `down` silences both directions (the peer loses carrier too); `loss` only what
        `node` sends, so the others stop hearing it while it still hears them."""
        if how == "down":
            self.nodes[node].ip("link", "set", self.dev, "down")
        elif isinstance(self.wire, netns.Veth):
            self.wire.drop_all("a" if self.nodes[node] is self.wire.a else "b")
        else:
            self.wire.drop_all(self.nodes[node])
        self._cuts[node] = how

    def restore(self, node: str) -> None:
        """Undo `cut(node, ...)`."""
        how = self._cuts.pop(node, None)
        if how == "down":
            self.nodes[node].ip("link", "set", self.dev, "up")
        elif how == "loss" and isinstance(self.wire, netns.Veth):
            self.wire.clear_netem("a" if self.nodes[node] is self.wire.a else "b")
        elif how == "loss" and isinstance(self.wire, netns.Lan):
            self.wire.clear_netem(self.nodes[node])


@dataclass
class SerialLine:
    """A null-modem cable between nodes `a` and `b`: a socat pty pair."""

    a: str
    b: str
    pair: netns.SocatPair

    def device(self, node: str) -> str:
        if node == self.a:
            return self.pair.link_a
        if node == self.b:
            return self.pair.link_b
        raise KeyError(f"{node} is not on the serial line {self.a}-{self.b}")

    def path_id(self, local: str, peer: str) -> str:
        del peer
        return f"serial:{self.device(local)}"

    def unplug(self) -> None:
        """Pull the cable: SIGKILL socat; both ends see EOF/EIO."""
        self.pair.kill()

    def replug(self) -> None:
        """Plug a cable back in: socat again, on the same link names (new ptys)."""
        self.pair.start()


# -- one daemon -----------------------------------------------------------------------


@dataclass
class HbdNode:
    """One hbd daemon in its namespace, with its own directories under `root`."""

    name: str
    ns: netns.Netns
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)  # added to the daemon's environment
    # the process `signal` sent SIGTERM to (`stop` then only waits for it)
    terminated: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_dir(self) -> Path:
        return self.root / "ha.d"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_path(self) -> Path:
        return self.root / "hbd.log"

    def argv(self, *extra: str) -> list[str]:
        return [
            HBD,
            "--config-dir",
            str(self.config_dir),
            "--state-dir",
            str(self.state_dir),
            "--run-dir",
            str(self.run_dir),
            "--node-name",
            self.name,
            *extra,
        ]

    def write_config(self, hacf: str, authkeys: str) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "ha.cf").write_text(hacf)
        keys = self.config_dir / "authkeys"
        keys.write_text(authkeys)
        os.chmod(keys, 0o600)

    def write_haresources(self, text: str) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "haresources").write_text(text)

    def install_agent(self, source: str | Path, name: str | None = None) -> Path:
        """Copy an agent script into this node's `resource.d` (a bare name: tests/agents/)."""
        src = Path(source)
        if not src.is_absolute() and src.parent == Path("."):
            src = AGENTS_DIR / src
        target = self.config_dir / "resource.d" / (name or src.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        os.chmod(target, 0o755)
        return target

    def start(self, *extra: str) -> None:
        """Start the daemon in the background (its stderr appended to `hbd.log`)."""
        if self.running:
            raise RuntimeError(f"hbd {self.name} is already running (pid {self.pid})")
        sock = self.run_dir / "hbd.sock"
        if len(str(sock).encode()) > MAX_UNIX_PATH:
            raise RuntimeError(f"{sock}: too long for a Unix socket; use a shorter --basetemp")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with open(self.log_path, "ab") as logf:
            logf.write(f"---- test harness: start #{self.starts} ----\n".encode())
            logf.flush()
            self.proc = self.ns.popen(
                *self.argv(*extra),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                env={**os.environ, **self.env} if self.env else None,
            )

    def run_foreground(
        self, *extra: str, timeout: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        """Run another `hbd` with this node's directories and wait for it to exit."""
        return netns.run(
            "ip", "netns", "exec", self.ns.name, *self.argv(*extra), check=False, timeout=timeout
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"hbd {self.name} was never started"
        return self.proc.pid

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)
        if signum == signal.SIGTERM:
            self.terminated = self.proc  # `stop` waits for this one; a second could kill it

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM (unless `signal` sent it already: a second one, arriving after the daemon
        let its handler go at the very end of a clean stop, would kill it) and wait; the exit
        status (SIGKILL and a failure if it hangs)."""
        proc = self.proc
        assert proc is not None, f"hbd {self.name} was never started"
        if proc.poll() is None:
            if self.terminated is not proc:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
                raise AssertionError(
                    f"hbd {self.name} ignored SIGTERM for {timeout:g} s; killed it"
                ) from None
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: the node dies without a word (a crash or a power cut)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def status(self) -> dict[str, Any] | None:
        """The daemon's status over its control socket, or None if it does not answer."""
        try:
            return request(str(self.run_dir), "status", timeout=2.0)
        except ControlError:
            return None

    def groups(self) -> list[dict[str, Any]] | None:
        """`hbctl status`'s `groups` (None if the daemon does not answer)."""
        status = self.status()
        return None if status is None else list(status.get("groups", []))

    def group(self, name: str) -> dict[str, Any] | None:
        """One group's entry in `hbctl status` (None if the daemon does not answer)."""
        groups = self.groups()
        if groups is None:
            return None
        found = [g for g in groups if g["name"] == name]
        if not found:
            raise KeyError(f"{self.name} has no group {name!r}: {[g['name'] for g in groups]}")
        return found[0]

    def decisions(self) -> list[dict[str, Any]]:
        """The policy's latest decisions ({at, decision, reason}); [] if no answer."""
        status = self.status()
        return [] if status is None else list(status.get("decisions", []))

    def hbctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`hbctl ARGS --run-dir RUN_DIR`, as an administrator types it."""
        return netns.run(HBCTL, *args, "--run-dir", str(self.run_dir), check=False)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        """A position in the log; `wait_log(..., since=mark)` looks only after it."""
        return len(self.log())

    def wait_log(self, text: str, timeout: float, since: int = 0) -> float:
        """Wait until `text` appears in the log (after `since`); seconds taken."""
        _, took = wait_for(
            lambda: True if text in self.log()[since:] else None,
            timeout,
            f"{text!r} in {self.name}'s log",
            lambda: f"\n---- {self.name} log ----\n{self.log()[since:][-3000:]}",
        )
        return took


# -- the cluster ----------------------------------------------------------------------


@dataclass
class Cluster:
    nodes: dict[str, HbdNode]
    networks: list[Network]
    serial_lines: list[SerialLine]
    timing: Timing
    wire: str | None  # None: no `wire` line, Heartbeat's format by default
    auth: str
    extra: list[str] = field(default_factory=list)
    directives: dict[str, str] = field(default_factory=dict)  # ha.cf directives to set
    haresources: str | None = None  # the same haresources for every node
    agents: list[str] = field(default_factory=list)  # test agents copied to resource.d

    def __getitem__(self, name: str) -> HbdNode:
        return self.nodes[name]

    def network(self, dev: str) -> Network:
        return next(n for n in self.networks if n.dev == dev)

    def serial(self, a: str, b: str) -> SerialLine:
        return next(s for s in self.serial_lines if {s.a, s.b} == {a, b})

    # -- configuration

    def hacf(self, node: str, **overrides: str) -> str:
        """ha.cf for `node`: the timings, the wire format, every medium, every node.

        `overrides` replace (or add) single directives, e.g. `warntime="700ms"`."""
        directives: dict[str, str] = {}
        for line in self.timing.lines():
            key, value = line.split(" ", 1)
            directives[key] = value
        if self.wire is not None:
            directives["wire"] = self.wire
        directives["auto_failback"] = "on"
        directives.update(self.directives)
        directives.update(overrides)
        lines = ["# written by tests/cluster.py", *(f"{k} {v}" for k, v in directives.items())]
        for net in self.networks:
            lines += net.media_lines(node)
        for cable in self.serial_lines:
            if node in (cable.a, cable.b):
                lines.append(f"serial {cable.device(node)}")
        lines += self.extra
        lines.append("node " + " ".join(self.nodes))
        return "\n".join(lines) + "\n"

    def write_configs(self) -> None:
        for name, node in self.nodes.items():
            node.write_config(self.hacf(name), AUTHKEYS[self.auth])
            if self.haresources is not None:
                node.write_haresources(self.haresources)
            for agent in self.agents:
                node.install_agent(agent)

    def paths(self, local: str, peer: str) -> list[str]:
        """Every path id `local` should show for `peer`."""
        ids = [net.path_id(local, peer) for net in self.networks]
        ids += [s.path_id(local, peer) for s in self.serial_lines if {s.a, s.b} == {local, peer}]
        return ids

    # -- running

    def start(self, *names: str) -> None:
        for name in names or tuple(self.nodes):
            self.nodes[name].start()

    def stop_all(self) -> None:
        """SIGTERM every running daemon, SIGKILL stragglers; never raises."""
        for node in self.nodes.values():
            if node.proc is not None:
                netns.stop_process(node.proc)

    def _dump(self) -> str:
        parts = []
        for node in self.nodes.values():
            parts.append(f"\n---- {node.name} status ----\n{node.status()}")
            parts.append(f"\n---- {node.name} log (tail) ----\n{node.log()[-2500:]}")
        for line in self.serial_lines:  # socat's own account of the cable (its -d -d log)
            with contextlib.suppress(OSError):
                tail = Path(line.pair.log).read_text(errors="replace")[-1500:]
                parts.append(f"\n---- socat {line.a}-{line.b} log (tail) ----\n{tail}")
        return "".join(parts)

    def wait(self, probe: Callable[[], T | None], what: str, timeout: float) -> tuple[T, float]:
        """`wait_for` that shows every node's status and log tail when it times out."""
        return wait_for(probe, timeout, what, self._dump)

    def peer_view(self, local: str, peer: str) -> dict[str, Any] | None:
        """`local`'s status entry for `peer` (None if the daemon does not answer)."""
        status = self.nodes[local].status()
        if status is None:
            return None
        view: dict[str, Any] | None = status["nodes"].get(peer)
        return view

    def wait_path(
        self, local: str, peer: str, path: str, state: str, timeout: float = 5.0
    ) -> float:
        """Wait until `local` shows `path` to `peer` in `state`; seconds taken."""

        def probe() -> bool | None:
            view = self.peer_view(local, peer)
            if view is None or path not in view["paths"]:
                return None
            return True if view["paths"][path]["status"] == state else None

        return self.wait(probe, f"{local}: path {path} to {peer} {state}", timeout)[1]

    def wait_node(
        self, local: str, peer: str, states: Sequence[str], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Wait until `local` shows `peer` in one of `states`; that status entry."""

        def probe() -> dict[str, Any] | None:
            view = self.peer_view(local, peer)
            return view if view is not None and view["status"] in states else None

        return self.wait(probe, f"{local}: node {peer} {'/'.join(states)}", timeout)[0]

    def fully_up(self, local: str) -> dict[str, Any] | None:
        """`local`'s status if it sees every peer alive with every expected path up."""
        status = self.nodes[local].status()
        if status is None:
            return None
        for peer in self.nodes:
            if peer == local:
                continue
            view = status["nodes"].get(peer)
            if view is None or view["status"] not in ("up", "active"):
                return None
            for pid in self.paths(local, peer):
                if view["paths"].get(pid, {}).get("status") != "up":
                    return None
        return status

    def running_nodes(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.running]

    def holder_seen(self, group: str, holder: str | None, nodes: Sequence[str] = ()) -> bool:
        """Whether every one of `nodes` (default: every running node) shows `holder` as
        the group's holder, and the holder itself reports the group started (with None:
        nobody holds it and every node reports it stopped or failed)."""
        for n in nodes or self.running_nodes():
            g = self.nodes[n].group(group)
            if g is None or g["holder"] != holder:
                return False
            if n == holder and g["state"] != "started":
                return False
            if holder is None and g["state"] not in ("stopped", "failed"):
                return False
        return True

    def wait_holder(
        self, group: str, holder: str | None, timeout: float = 10.0, nodes: Sequence[str] = ()
    ) -> float:
        """Wait until `holder_seen(group, holder, nodes)`; seconds taken."""
        return self.wait(
            lambda: True if self.holder_seen(group, holder, nodes) else None,
            f"{holder or 'no node'} to hold {group!r} as seen by "
            f"{', '.join(nodes or self.running_nodes())}",
            timeout,
        )[1]

    def vip_sampler(self, address: str, interval: float = 0.01) -> VipSampler:
        """A (not yet started) sampler of `address` over every node's namespace."""
        return VipSampler(address, {n: node.ns.name for n, node in self.nodes.items()}, interval)

    def wait_all_up(self, timeout: float = 10.0) -> float:
        """Wait until every node sees every peer alive over every path; seconds taken."""

        def probe() -> bool | None:
            return True if all(self.fully_up(n) for n in self.nodes) else None

        return self.wait(probe, "every node to see every peer over every path", timeout)[1]


DEFAULT_NETS = (Net("bcast", "eth0"), Net("ucast", "eth1"))


@contextlib.contextmanager
def build(
    tmp_path: Path,
    names: Sequence[str] = ("alpha", "beta"),
    networks: Sequence[Net] = DEFAULT_NETS,
    serial: Sequence[tuple[str, str]] = (("alpha", "beta"),),
    timing: Timing = Timing(),
    wire: str | None = None,
    auth: str = "sha1",
    extra: Sequence[str] = (),
    haresources: str | None = None,
    agents: Sequence[str] = (),
    directives: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """Namespaces, networks, serial lines and configuration for `names`; nothing started.

    Everything made here is removed on exit, daemons first; after a clean exit the
    harness checks that no namespace, daemon or socat of its own is left behind."""
    made: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        spaces = {n: stack.enter_context(netns.namespace(n[:6])) for n in names}
        made += [ns.name for ns in spaces.values()]
        built: list[Network] = []
        for i, spec in enumerate(networks):
            subnet = spec.subnet or f"10.{80 + i}.0.0/24"
            hosts = [spaces[n] for n in names]
            if len(names) == 2:
                veth = stack.enter_context(
                    netns.veth_pair(hosts[0], hosts[1], subnet, if_a=spec.dev, if_b=spec.dev)
                )
                addresses = {names[0]: veth.addr_a, names[1]: veth.addr_b}
                plumbing: netns.Veth | netns.Lan = veth
            else:
                plumbing = stack.enter_context(netns.lan(hosts, subnet, ifname=spec.dev))
                addresses = {n: plumbing.address(spaces[n]) for n in names}
            built.append(Network(spec, dict(spaces), addresses, plumbing))
        lines: list[SerialLine] = []
        tty_dir = tmp_path / "tty"
        tty_dir.mkdir(exist_ok=True)
        for a, b in serial:
            pair = stack.enter_context(
                netns.socat_pair(tty_dir / f"{a}-{b}.{a}", tty_dir / f"{a}-{b}.{b}")
            )
            lines.append(SerialLine(a, b, pair))
        nodes = {n: HbdNode(n, spaces[n], tmp_path / n) for n in names}
        c = Cluster(
            nodes,
            built,
            lines,
            timing,
            wire,
            auth,
            list(extra),
            dict(directives or {}),
            haresources,
            list(agents),
        )
        c.write_configs()
        try:
            yield c
        except BaseException:
            print(c._dump(), file=sys.stdout)
            raise
        finally:
            c.stop_all()
            procs += [ns_proc for ns in spaces.values() for ns_proc in ns.processes]
            procs += [s.pair.proc for s in lines if s.pair.proc is not None]
            made += [n.wire.hub.name for n in built if isinstance(n.wire, netns.Lan)]
    left = set(made) & set(netns.run("ip", "netns", "list").stdout.split())
    running = [p.args for p in procs if p.poll() is None]
    assert not left and not running, f"left behind: namespaces {left}, processes {running}"
