"""hbd's qdevice client against the real corosync-qnetd (Debian's 3.0.3).

Each test starts its own `corosync-qnetd -f -s off` on a free loopback port, with its
own lock file and local socket under tmp_path, and stops it (by its pid) afterwards.
Skipped when the binary is missing (`.ci/install` installs it).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hbd.core.qnetd.client import ClientSettings, Close, Connect, QnetdClient
from hbd.core.qnetd.msg import Algorithm, Heuristics, RingId, Vote

from netns import free_port, qnetd_process

QNETD = shutil.which("corosync-qnetd")
pytestmark = pytest.mark.skipif(QNETD is None, reason="needs corosync-qnetd (apt-get install)")


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def qnetd(tmp_path: Path) -> Iterator[Server]:
    assert QNETD is not None
    with qnetd_process(QNETD, tmp_path) as (port, proc, log):
        yield Server(port, proc, log)


class Live:
    """One client over a real socket, driven by hand (no daemon)."""

    def __init__(
        self,
        port: int,
        node_id: int,
        cluster: str = "hbdlive",
        algorithm: Algorithm = Algorithm.FFSPLIT,
    ) -> None:
        now = time.monotonic()
        settings = ClientSettings(
            "127.0.0.1", port, cluster, node_id, (1, 2), algorithm=algorithm, heartbeat=1.0
        )
        self.c = QnetdClient(settings, now)
        self.sock: socket.socket | None = None

    def members(self, ids: set[int], seq: int, h: Heuristics = Heuristics.PASS) -> None:
        self.c.set_membership(frozenset(ids), RingId(min(ids), seq), h, time.monotonic())

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = time.monotonic()
            t = self.c.get_timer()
            if t is not None and t <= now:
                self.c.handle_timer(now)
            while (a := self.c.next_action()) is not None:
                if isinstance(a, Connect):
                    self.sock = socket.create_connection((a.host, a.port), 2)
                    self.sock.setblocking(False)
                    self.c.connection_made(time.monotonic())
                elif isinstance(a, Close) and self.sock is not None:
                    self.sock.close()
                    self.sock = None
            data = self.c.data_to_send()
            if data and self.sock is not None:
                self.sock.sendall(data)
            if self.sock is None:
                time.sleep(0.01)
                continue
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if not chunk:
                self.c.connection_failed("EOF", time.monotonic())
                self.sock.close()
                self.sock = None
            else:
                self.c.data_received(chunk, time.monotonic())

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


@pytest.mark.parametrize("algorithm", [Algorithm.FFSPLIT, Algorithm.LMS], ids=["ffsplit", "lms"])
def test_a_split_gives_the_vote_to_the_lowest_node_id_and_nack_to_the_other(
    qnetd: Server, algorithm: Algorithm
) -> None:
    """Both algorithms (`qnetd_algorithm ffsplit|lms`) split two nodes by the tie-breaker."""
    a, b = Live(qnetd.port, 1, algorithm=algorithm), Live(qnetd.port, 2, algorithm=algorithm)
    try:
        for x in (a, b):
            x.members({1, 2}, 7)  # together: the same ring id on both
        for _ in range(10):
            a.pump(0.05)
            b.pump(0.05)
        assert a.c.view().vote is Vote.ACK and b.c.view().vote is Vote.ACK
        a.members({1}, 8)
        b.members({2}, 9)
        for _ in range(10):
            a.pump(0.05)
            b.pump(0.05)
        assert a.c.view().vote is Vote.ACK and a.c.view().members == frozenset({1})
        assert b.c.view().vote is Vote.NACK
    finally:
        a.close()
        b.close()


def test_heuristics_beat_the_tie_breaker(qnetd: Server) -> None:
    a, b = Live(qnetd.port, 1), Live(qnetd.port, 2)
    try:
        a.members({1}, 3, Heuristics.FAIL)  # node 1 is isolated from its ping nodes
        b.members({2}, 4, Heuristics.PASS)
        for _ in range(10):
            a.pump(0.05)
            b.pump(0.05)
        assert b.c.view().vote is Vote.ACK and a.c.view().vote is Vote.NACK
    finally:
        a.close()
        b.close()


def test_when_a_peer_disappears_qnetd_drops_it_and_the_survivor_gets_the_vote(
    qnetd: Server,
) -> None:
    """The standby's machine dies: its connection goes silent. qnetd's dead peer detection
    drops it after 1.5 heartbeats, and only then the survivor's partition is quorate."""
    a, b = Live(qnetd.port, 1), Live(qnetd.port, 2)
    try:
        for x in (a, b):
            x.members({1, 2}, 7)
        for _ in range(6):
            a.pump(0.05)
            b.pump(0.05)
        b.c.handle_timer = lambda now: None  # type: ignore[method-assign]  # b stops talking
        a.members({1}, 8)
        start = time.monotonic()
        a.pump(0.3)
        assert a.c.view().vote is None  # not stable: b still lists a, with its old ring
        while a.c.view().vote is None and time.monotonic() - start < 5:
            a.pump(0.05)
        took = time.monotonic() - start
        assert a.c.view().vote is Vote.ACK and a.c.view().members == frozenset({1})
        assert took <= 2.0, took  # decision_time(1 s) = 2 s is the bound the policy uses
    finally:
        a.close()
        b.close()


def test_a_duplicate_node_id_is_refused_with_the_servers_reason(qnetd: Server) -> None:
    a, b = Live(qnetd.port, 1), Live(qnetd.port, 1)
    try:
        a.members({1}, 1)
        b.members({1}, 2)
        for _ in range(10):
            a.pump(0.05)
            b.pump(0.05)
        assert "refused init: 17 (duplicate node id)" in b.c.view().reason
    finally:
        a.close()
        b.close()


def test_hbctl_qnetd_test_reports_the_server_and_the_round_trip(qnetd: Server) -> None:
    hbctl = shutil.which("hbctl")
    assert hbctl is not None
    run = subprocess.run(
        [hbctl, "qnetd-test", f"127.0.0.1:{qnetd.port}", "--json", "--count", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["handshake"] and report["vote"] == "ACK"
    assert report["server_said"]["tls"] == "unsupported"
    assert "ffsplit" in report["server_said"]["algorithms"]
    assert report["rtt_ms"]["count"] == 2 and report["rtt_ms"]["max"] < 100
    text = subprocess.run(
        [hbctl, "qnetd-test", f"127.0.0.1:{qnetd.port}", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    assert "echo round trip: 1 x" in text and "handshake: ok" in text


def test_hbctl_qnetd_test_exit_status_as_cable_test(qnetd: Server) -> None:
    hbctl = shutil.which("hbctl")
    assert hbctl is not None

    def status(*args: str) -> int:
        return subprocess.run(
            [hbctl, "qnetd-test", *args], capture_output=True, timeout=30, check=False
        ).returncode

    assert status(f"127.0.0.1:{free_port()}") == 2  # nothing listens
    assert status(f"127.0.0.1:{qnetd.port}", "--tls", "--count", "1") == 1  # no TLS there
    assert status("127.0.0.1:0") == 2  # a usage error
