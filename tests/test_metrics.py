"""The Prometheus endpoint: `metrics ADDRESS:PORT` serves the cluster as hbd sees it,
built at the scrape from the same status `hbctl status` shows (docs/metrics.md)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hbd.config.hacf import parse_hacf
from hbd.core.errors import ConfigError
from hbd.shell.metrics import Counts, exposition

from netns import free_port
from test_daemon_inprocess import GROUP, FakeRunner, Harness, quiet_logs


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def get(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_a_scrape_shows_the_node_its_peer_paths_group_and_counts(tmp_path: Path) -> None:
    port = free_port()

    async def scenario() -> None:
        h = Harness(tmp_path, FakeRunner(), extra=f"metrics 127.0.0.1:{port}\n")
        await h.start()
        try:
            await h.until(lambda: h.group()["state"] == "started", 15)  # beta never answers
            await asyncio.sleep(0.05)  # the listener's task
            code, headers, body = await get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert code == 200
            assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
            got = samples(body.decode())
            assert got[("hbd_up", ())] == 1
            assert got[("hbd_peer_state", (("peer", "beta"), ("state", "dead")))] == 1
            assert got[("hbd_path_up", (("path", "ucast:lo:127.0.0.2"), ("peer", "beta")))] == 0
            assert got[("hbd_group_state", (("group", GROUP), ("state", "started")))] == 1
            assert got[("hbd_group_holder", (("group", GROUP), ("node", "alpha")))] == 1
            assert got[("hbd_group_acquisitions_total", (("group", GROUP),))] == 1
            assert got[("hbd_redundancy", (("level", "partitioned"),))] == 1
            assert got[("hbd_link_frames_sent_total", (("link", "ucast:lo:127.0.0.2"),))] > 0
            for request, want in (
                (b"GET /nowhere HTTP/1.1\r\n\r\n", 404),
                (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
                (b"hello\r\n\r\n", 400),
            ):
                assert (await get(port, request))[0] == want, request
        finally:
            h.close()
        with pytest.raises(OSError):  # closed with the daemon
            socket.create_connection(("127.0.0.1", port), 0.5).close()

    with quiet_logs():
        asyncio.run(scenario())


def test_a_port_that_cannot_be_had_is_one_error_and_hbd_runs_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]

    async def scenario() -> None:
        h = Harness(tmp_path, FakeRunner(), extra=f"metrics 127.0.0.1:{port}\n")
        await h.start()
        try:
            assert h.daemon.metrics is None
            await h.until(lambda: h.group()["state"] == "started", 15)
        finally:
            h.close()

    try:
        with quiet_logs():
            asyncio.run(scenario())
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert f"ERROR: metrics 127.0.0.1:{port}: cannot listen: Address already in use" in err


def test_counts_follow_the_policys_decision_lines() -> None:
    counts = Counts()
    counts.decided("acquire web", "its target is this node and every peer agreed")
    counts.decided("acquire web", "taking over from beta: budget passed, nothing answers")
    counts.decided("self-fence", "isolated")
    counts.decided("wait web", "taking over from nobody")
    assert counts.acquisitions == {"web": 2} and counts.failovers == {"web": 1}
    assert counts.fence_decisions == 1


def test_the_exposition_of_a_status_with_an_arbiter_and_a_watchdog() -> None:
    status = {
        "node": "alpha",
        "state": "active",
        "generation": 4,
        "redundancy": "degraded",
        "nodes": {},
        "watchdog": {"device": "/dev/watchdog", "timeout_s": 2, "time_left_s": 1.5},
        "qnetd": {"connected": True, "vote": "ACK"},
    }
    got = samples(exposition(lambda: status, Counts()).decode())
    assert got[("hbd_watchdog_timeout_seconds", ())] == 2
    assert got[("hbd_watchdog_time_left_seconds", ())] == 1.5
    assert got[("hbd_qnetd_connected", ())] == 1
    assert got[("hbd_qnetd_vote", (("vote", "ACK"),))] == 1
    assert got[("hbd_qnetd_vote", (("vote", "NACK"),))] == 0
    assert got[("hbd_info", (("generation", "4"), ("node", "alpha"), ("state", "active")))] == 1


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("metrics 127.0.0.1", "give the port too"),
        ("metrics 127.0.0.1:0", "the port must be a number from 1 to 65535"),
        ("metrics ::1:9700", "write an IPv6 address in brackets, as [::1:9700]:9700"),
    ],
)
def test_a_bad_metrics_line_is_named(line: str, error: str) -> None:
    with pytest.raises(ConfigError, match=r"ha\.cf:3: .*" + error.replace("[", r"\[")):
        parse_hacf(f"node a b\nbcast eth0\n{line}\n")
    assert parse_hacf("node a b\nbcast eth0\nmetrics [::1]:9700\n").metrics == ("::1", 9700)
