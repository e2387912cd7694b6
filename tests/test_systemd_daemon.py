"""The real `hbd` under a fake systemd: the test binds the `$NOTIFY_SOCKET` datagram socket,
sets `$WATCHDOG_USEC`, and listens to what the daemon says through its life.

Two nodes, alpha and beta, in network namespaces joined by `bcast eth0`
(tests/cluster.py); only alpha runs "under systemd". The scenario: alpha starts (READY=1
only once its control socket exists), beta starts (a STATUS= line says beta is alive),
beta is killed (a STATUS= line says beta is dead), alpha gets SIGTERM (STOPPING=1, then a
clean exit). All the while alpha must pet the watchdog at least every WATCHDOG_USEC/2 (from
WATCHDOG_USEC/4 on, in a turn its heartbeats wake anyway).
"""

from __future__ import annotations

import itertools
import os
import socket
import statistics
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hbd.shell.control import socket_path

from cluster import Cluster, HbdNode, Net, build, wait_for
from netns import requires_root

pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root]

WATCHDOG_USEC = 1_000_000  # WatchdogSec=1s: hbd pets every 0.25-0.5 s
PET = WATCHDOG_USEC / 2e6
UCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True)
class Note:
    """One sd_notify datagram: its assignments, the sender's pid, when it arrived."""

    fields: dict[str, str]
    pid: int
    at: float
    control_socket_existed: bool  # checked the moment the datagram was read


class FakeSystemd:
    """The service manager's end of $NOTIFY_SOCKET, read by a thread into `notes`."""

    def __init__(self, path: str, watch: str) -> None:
        self.path = path
        self.watch = watch  # the control socket whose existence READY=1 promises
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.notes: list[Note] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.done.is_set():
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.monotonic()
            existed = os.path.exists(self.watch)
            pid = -1
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = UCRED.unpack(payload[: UCRED.size])[0]
            text = data.decode()
            fields = dict(line.split("=", 1) for line in text.split("\n") if line)
            with self.lock:
                self.notes.append(Note(fields, pid, at, existed))

    def seen(self) -> list[Note]:
        with self.lock:
            return list(self.notes)

    def wait(self, what: str, match: object, timeout: float) -> Note:
        """The first note (from the start) for which `match(note)` is true."""

        def probe() -> Note | None:
            return next((n for n in self.seen() if match(n)), None)  # type: ignore[operator]

        note, _ = wait_for(probe, timeout, what, lambda: f"\nnotes so far: {self.seen()}")
        return note

    def close(self) -> None:
        self.done.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Cluster]:
    with build(tmp_path, networks=(Net("bcast", "eth0"),), serial=()) as c:
        yield c


@pytest.fixture
def systemd(pair: Cluster) -> Iterator[FakeSystemd]:
    short = tempfile.mkdtemp(prefix="hbdsd")  # sun_path is short; tmp_path may not be
    manager = FakeSystemd(os.path.join(short, "notify"), socket_path(str(pair["alpha"].run_dir)))
    try:
        yield manager
    finally:
        manager.close()
        os.unlink(manager.path)
        os.rmdir(short)


def start_under_systemd(node: HbdNode, notify_socket: str) -> None:
    """Start `node` as systemd starts a Type=notify service with WatchdogSec=."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env |= {"NOTIFY_SOCKET": notify_socket, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    node.state_dir.mkdir(parents=True, exist_ok=True)
    with open(node.log_path, "ab") as log:
        node.proc = node.ns.popen(
            *node.argv(), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )


def peer_word(note: Note, peer: str) -> str | None:
    """What a STATUS= line says about `peer` ("alpha active, ...; beta up (1/1 paths)")."""
    status = note.fields.get("STATUS", "")
    _, _, peers = status.partition("; ")
    for part in peers.split(", "):
        words = part.split()
        if len(words) >= 2 and words[0] == peer:
            return words[1]
    return None


def test_hbd_tells_systemd_ready_status_watchdog_and_stopping(
    pair: Cluster, systemd: FakeSystemd
) -> None:
    alpha = pair["alpha"]
    started = time.monotonic()
    start_under_systemd(alpha, systemd.path)

    ready = systemd.wait("READY=1", lambda n: n.fields.get("READY") == "1", 10.0)
    print(f"TIMING READY=1 {ready.at - started:.2f} s after exec")
    assert ready.pid == alpha.pid, "NotifyAccess=main: only hbd's main process may notify"
    assert ready.control_socket_existed, "READY=1 came before the control socket existed"
    assert alpha.status() is not None, "READY=1 but hbctl gets no answer"
    assert peer_word(ready, "beta") in ("init", "dead"), ready.fields

    pair.start("beta")
    up = systemd.wait(
        "a STATUS= line with beta alive", lambda n: peer_word(n, "beta") in ("up", "active"), 10.0
    )
    view = pair.peer_view("alpha", "beta")
    assert view is not None and view["status"] in ("up", "active")
    assert up.fields["STATUS"].startswith("alpha ")

    pair["beta"].kill()
    dead = systemd.wait(
        "a STATUS= line with beta dead",
        lambda n: peer_word(n, "beta") == "dead" and n.at > up.at,
        10.0,
    )
    print(f"TIMING STATUS beta dead {dead.at - up.at:.2f} s after beta was seen alive")
    assert "partitioned" in dead.fields["STATUS"], dead.fields

    sigterm = time.monotonic()
    assert alpha.stop() == 0
    exited = time.monotonic()
    stopping = systemd.wait("STOPPING=1", lambda n: n.fields.get("STOPPING") == "1", 5.0)
    assert sigterm <= stopping.at <= exited, "STOPPING=1 must come between SIGTERM and exit"
    notes = systemd.seen()
    assert {n.pid for n in notes} == {alpha.pid}
    assert not any("READY" in n.fields for n in notes if n.at > ready.at)

    # STATUS= only when the line changes, at most about once a second
    updates = [n for n in notes if "STATUS" in n.fields and len(n.fields) == 1]
    texts = [n.fields["STATUS"] for n in updates]
    assert all(a != b for a, b in itertools.pairwise(texts)), texts
    gaps = [b.at - a.at for a, b in itertools.pairwise(updates)]
    assert all(gap > 0.8 for gap in gaps), gaps

    # WATCHDOG=1 every WATCHDOG_USEC/4..WATCHDOG_USEC/2 from READY to STOPPING (in the first
    # turn after a quarter: the heartbeats' turns carry it), never close to the timeout
    pets = [n.at for n in notes if n.fields.get("WATCHDOG") == "1"]
    running = stopping.at - ready.at
    assert len(pets) >= running / PET * 0.6, (len(pets), running)
    intervals = [b - a for a, b in itertools.pairwise(pets)]
    print(
        f"TIMING WATCHDOG=1 every {statistics.median(intervals):.3f} s (median), "
        f"{min(intervals):.3f}..{max(intervals):.3f} s, {len(pets)} pets in {running:.1f} s"
    )
    assert pets[0] - ready.at < PET * 1.5
    assert 0.5 * PET <= statistics.median(intervals) <= 1.1 * PET
    assert max(intervals) < WATCHDOG_USEC / 1e6, "systemd would have killed hbd"
    assert min(intervals) > PET * 0.45, "petting much faster than asked"
