"""The control socket under a local client that misbehaves (docs/security.md, "On the
machine"): too many connections, clients that never finish, a process out of descriptors,
and requests that are not what `hbctl` sends.

Invariant of the fuzz (stated as h11's harness does): whatever bytes a client sends, with or
without a newline, closing its side or not, the server answers exactly one line, a JSON
object `{"ok": false, "error": TEXT}` (or a real answer), and nothing escapes the server.

The server runs on a plain `selectors` selector, pumped by the test, with an injected
clock; the fuzz talks to a real daemon's control socket, in-process (tests/
test_daemon_inprocess.py's harness).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import selectors
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbd.shell import control
from hbd.shell.control import IDLE_TIMEOUT, ControlServer
from hbd.testing.sim import FakeClock

from test_daemon_inprocess import FakeRunner, Harness, quiet_logs


def answer_ok(request: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "cmd": request["cmd"]}


class Pumped:
    """A ControlServer on a selector the test turns, at a clock the test moves."""

    def __init__(self, run_dir: Path) -> None:
        self.selector = selectors.DefaultSelector()
        self.clock = FakeClock(100.0)
        self.server = ControlServer(str(run_dir), self.selector, answer_ok, clock=self.clock)

    def pump(self, turns: int = 20) -> int:
        """Dispatch what is ready, `turns` times; returns how many callbacks ran."""
        ran = 0
        for _ in range(turns):
            for key, mask in self.selector.select(0):
                key.data(mask)
                ran += 1
        return ran

    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.server.handle_timer(self.clock())

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.server.path)
        s.setblocking(False)
        return s

    def reply(self, s: socket.socket) -> bytes:
        """Everything the server sent on `s` until it closed it (pumping meanwhile)."""
        data = b""
        for _ in range(200):
            self.pump(1)
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                return data
            data += chunk
        raise AssertionError(f"the server never closed the connection (got {data!r})")

    def close(self) -> None:
        self.server.close()
        self.selector.close()


@pytest.fixture
def pumped(tmp_path: Path) -> Iterator[Pumped]:
    p = Pumped(tmp_path / "run")
    yield p
    p.close()


def error_of(raw: bytes) -> str:
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw
    reply = json.loads(raw)
    assert reply["ok"] is False
    text = reply["error"]
    assert isinstance(text, str)
    return text


def test_the_socket_stays_root_only(pumped: Pumped) -> None:
    mode = os.stat(pumped.server.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_deeply_nested_json_gets_an_error_answer_not_a_traceback(pumped: Pumped) -> None:
    s = pumped.connect()
    s.sendall(b"[" * 50_000 + b"\n")
    assert "nested too deeply" in error_of(pumped.reply(s))
    s.close()


@pytest.mark.parametrize(
    ("request_bytes", "phrase"),
    [
        (b"{not json\n", "bad request"),
        (b"\xff\xfe\x00garbage\n", "bad request"),
        (b'["status"]\n', "a JSON object with a string 'cmd'"),
        (b'{"cmd": 5}\n', "a JSON object with a string 'cmd'"),
        (b"\n", "bad request"),
        (b"1" * 5000 + b"\n", "bad request"),  # an int too long to convert
        (b'{"cmd": "status"}' + b" " * (70 * 1024) + b"\n", "larger than 64 KiB"),
        (b"x" * (70 * 1024), "larger than 64 KiB"),  # no newline at all
    ],
    ids=["bad-json", "not-utf8", "not-an-object", "cmd-not-a-string", "empty", "huge-int",
         "oversize-line", "oversize-no-newline"],
)  # fmt: skip
def test_every_malformed_request_gets_one_json_error(
    pumped: Pumped, request_bytes: bytes, phrase: str
) -> None:
    s = pumped.connect()
    s.sendall(request_bytes)
    assert phrase in error_of(pumped.reply(s))
    s.close()


def test_a_request_ended_by_closing_the_sending_side_is_answered(pumped: Pumped) -> None:
    s = pumped.connect()
    s.sendall(b'{"cmd": "status"}')  # no newline: the client shut its side instead
    s.shutdown(socket.SHUT_WR)
    assert json.loads(pumped.reply(s)) == {"ok": True, "cmd": "status"}
    s.close()


def test_a_client_that_never_finishes_its_request_is_timed_out_by_the_server(
    pumped: Pumped,
) -> None:
    s = pumped.connect()
    s.sendall(b'{"cmd": "sta')
    pumped.pump()
    assert pumped.server.connections == 1
    assert pumped.server.get_timer() == pytest.approx(100.0 + control.IDLE_TIMEOUT)
    pumped.tick(control.IDLE_TIMEOUT - 0.1)
    assert pumped.server.connections == 1
    pumped.tick(0.2)
    assert pumped.server.connections == 0
    assert "no complete request within" in error_of(pumped.reply(s))
    assert pumped.server.get_timer() is None
    s.close()


def test_connections_beyond_the_cap_are_answered_busy_and_closed(pumped: Pumped) -> None:
    idle = [pumped.connect() for _ in range(control.MAX_CONNECTIONS)]
    pumped.pump()
    assert pumped.server.connections == control.MAX_CONNECTIONS
    extra = pumped.connect()
    assert "busy" in error_of(pumped.reply(extra))
    assert pumped.server.connections == control.MAX_CONNECTIONS  # the extra one holds nothing
    for s in idle:
        s.close()
    pumped.pump()
    assert pumped.server.connections == 0
    extra.close()
    again = pumped.connect()  # room again
    again.sendall(b'{"cmd": "status"}\n')
    assert json.loads(pumped.reply(again))["ok"] is True
    again.close()


def test_out_of_descriptors_the_server_backs_off_logs_once_and_recovers(
    pumped: Pumped, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_accept = socket.socket.accept
    calls = 0
    full = True

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        nonlocal calls
        calls += 1
        if full:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept)
    waiting = [pumped.connect() for _ in range(3)]
    with caplog.at_level(logging.INFO, logger="hbd"):
        pumped.pump(500)  # a level-triggered listener would be dispatched 500 times
        assert calls == 1, "the server spun on accept"
        for _ in range(5):  # retries while still out of descriptors: no new log line
            pumped.tick(control.ACCEPT_BACKOFF_MAX)
            pumped.pump(50)
        assert calls == 6
        full = False
        pumped.tick(control.ACCEPT_BACKOFF_MAX)
        waiting[0].sendall(b'{"cmd": "status"}\n')
        assert json.loads(pumped.reply(waiting[0]))["ok"] is True
        full = True  # one accept worked, then out of descriptors again: the same episode
        late = pumped.connect()
        pumped.pump(50)
        full = False
        pumped.tick(control.ACCEPT_BACKOFF_MAX)
        late.sendall(b'{"cmd": "status"}\n')
        assert json.loads(pumped.reply(late))["ok"] is True
        assert len(caplog.records) == 1
        pumped.tick(control.EPISODE_QUIET)  # accepts have worked that long: the episode ends
        assert pumped.server.get_timer() is None
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("hbd")]
    assert len(lines) == 2, lines
    assert lines[0].startswith("control socket: cannot accept a connection: Too many open files")
    assert lines[1] == (
        "control socket: accepting connections again (out of descriptors or memory for "
        f"{5 * control.ACCEPT_BACKOFF_MAX + control.ACCEPT_BACKOFF_MAX:.1f} s, 7 attempts "
        "refused)"
    )
    late.close()
    for s in waiting:
        s.close()


def test_a_real_daemon_hangs_up_on_an_idle_client_at_its_own_clock(tmp_path: Path) -> None:
    async def scenario() -> None:
        h = Harness(tmp_path, FakeRunner())
        await h.start()
        try:
            control = h.daemon.control
            assert control is not None
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            await asyncio.get_running_loop().sock_connect(s, control.path)
            await h.run(1.0)
            assert control.connections == 1
            await h.run(IDLE_TIMEOUT)
            assert control.connections == 0
            assert "no complete request within" in error_of(s.recv(4096))
            s.close()
        finally:
            h.close()

    with quiet_logs():
        asyncio.run(scenario())


# -- the fuzz: a real daemon's control socket ----------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
commands = st.sampled_from(["status", "reload", "standby", "takeover", "x", ""]) | st.text(
    max_size=10
)
requests = st.one_of(
    st.builds(
        lambda cmd, params: json.dumps({**params, "cmd": cmd}).encode(),
        commands | json_values,
        st.dictionaries(st.sampled_from(["mode", "cmd", "group", "x"]), json_values, max_size=3),
    ),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * (n % 7)),
    st.integers(1, 3000).map(lambda n: b'{"a":' * n),
)


def test_any_request_on_a_real_daemons_socket_gets_exactly_one_json_answer(
    tmp_path: Path,
) -> None:
    loop = asyncio.new_event_loop()
    h = Harness(tmp_path, FakeRunner())
    with quiet_logs():
        try:
            loop.run_until_complete(h.start())
            check_requests(loop, h)
        finally:
            asyncio.set_event_loop(loop)
            h.close()
            loop.close()
            asyncio.set_event_loop(None)


def check_requests(loop: asyncio.AbstractEventLoop, h: Harness) -> None:
    assert h.daemon.control is not None
    path = h.daemon.control.path

    async def exchange(data: bytes, end: str) -> bytes:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            await loop.sock_connect(s, path)
            await loop.sock_sendall(s, data + (b"\n" if end == "newline" else b""))
            if end == "shutdown":
                s.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := await asyncio.wait_for(loop.sock_recv(s, 65536), 5.0):
                reply += chunk
            return reply
        finally:
            s.close()

    @settings(
        max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )  # fmt: skip
    @given(requests, st.sampled_from(["newline", "shutdown"]))
    def one(data: bytes, end: str) -> None:
        seen.append(len(data))
        raw = loop.run_until_complete(exchange(data, end))
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw[:200]
        reply = json.loads(raw)
        assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
        if not reply["ok"]:
            assert isinstance(reply.get("error"), str) and reply["error"]

    seen: list[int] = []
    one()
    print(f"FUZZ control socket: {len(seen)} requests, up to {max(seen)} bytes, all answered")
    assert len(seen) >= 500
    assert h.daemon.control is not None and h.daemon.control.connections == 0


def test_a_descriptor_freed_by_a_finished_client_resumes_accepting_at_once(
    pumped: Pumped, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_accept = socket.socket.accept
    full = False

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        if full:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept)
    first = pumped.connect()
    pumped.pump()
    full = True  # the first client holds the last descriptor
    second = pumped.connect()
    pumped.pump()
    assert pumped.server.connections == 1
    full = False
    first.sendall(b'{"cmd": "status"}\n')
    assert json.loads(pumped.reply(first))["ok"] is True  # its descriptor is free again
    second.sendall(b'{"cmd": "status"}\n')
    assert json.loads(pumped.reply(second))["ok"] is True  # no clock moved: no backoff wait
    first.close()
    second.close()
