"""The control socket: one JSON request per connection, one JSON answer, over a Unix socket.

The daemon listens on `RUN_DIR/hbd.sock` (mode 0600: only root steers the cluster). A
request is one line of JSON, `{"cmd": "status", ...}`; the answer is one line of JSON,
`{"ok": true, ...}` or `{"ok": false, "error": "..."}`. The server never blocks the
daemon's loop: sockets are non-blocking and registered with the loop's selector.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from hbd.core.errors import HbdError

SOCKET_NAME = "hbd.sock"
MAX_REQUEST = 64 * 1024
CLIENT_TIMEOUT = 5.0
MAX_CONNECTIONS = 8  # hbctl opens one per request; more at once are told "busy"
IDLE_TIMEOUT = CLIENT_TIMEOUT  # from accept to the answer sent: then the server hangs up
ACCEPT_BACKOFF_INITIAL = 0.1  # seconds without accepting after EMFILE, doubling ...
ACCEPT_BACKOFF_MAX = 2.0  # ... up to this
EPISODE_QUIET = 10.0  # an EMFILE episode ends after this long without one (then one line)
# accept(2) errors that say "no resources now": wait instead of trying again at once
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Handler = Callable[[dict[str, Any]], dict[str, Any]]
log = logging.getLogger("hbd")


class Registry(Protocol):
    """Where sockets are watched: a `selectors` selector, or `hbd.shell.daemon.LoopRegistry`."""

    def register(self, fileobj: Any, events: int, data: Any = None) -> Any: ...

    def modify(self, fileobj: Any, events: int, data: Any = None) -> Any: ...

    def unregister(self, fileobj: Any) -> Any: ...


class ControlError(HbdError):
    """The daemon could not be reached or refused the request."""


def socket_path(run_dir: str) -> str:
    return os.path.join(run_dir, SOCKET_NAME)


def _line(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def _error(text: str) -> bytes:
    return _line({"ok": False, "error": text})


class _Conn:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.inbuf = b""
        self.outbuf = b""


class ControlServer:
    """Accepts control connections on the daemon's selector and answers them with `handler`.

    A local client cannot wedge or flood it: at most `MAX_CONNECTIONS` are open (one more is
    answered "busy" and closed at once); each must be answered within `IDLE_TIMEOUT` of its
    accept or is hung up on (`handle_timer`); out of descriptors (EMFILE), the listener is
    not watched for a growing pause instead of being retried in a busy loop, with one
    warning when an episode starts and one line when accepts have worked for
    `EPISODE_QUIET` seconds; any request that is not a JSON object with a string `cmd` -- bad
    JSON, too deep, too long, not UTF-8, cut short -- gets one JSON error line.
    """

    def __init__(
        self,
        run_dir: str,
        selector: Registry,
        handler: Handler,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = socket_path(run_dir)
        self._selector = selector
        self._handler = handler
        self._clock = clock
        os.makedirs(run_dir, mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            self._listener.bind(self.path)  # 0600: root alone steers the cluster
        finally:
            os.umask(old_umask)
        self._listener.listen(16)
        self._listener.setblocking(False)
        selector.register(self._listener, selectors.EVENT_READ, self._accept)
        self._listening = True
        self._conns: dict[int, _Conn] = {}
        self._backoff = ACCEPT_BACKOFF_INITIAL
        self._resume_at: float | None = None  # while accepts are paused
        self._paused_since: float | None = None  # the current EMFILE episode
        self._refused = 0  # accept attempts that failed in this episode
        self._last_refusal = 0.0

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- timers ----------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next time `handle_timer` has something to do, or None."""
        times = [c.deadline for c in self._conns.values()]
        if self._resume_at is not None:
            times.append(self._resume_at)
        elif self._paused_since is not None:
            times.append(self._last_refusal + EPISODE_QUIET)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            if not conn.outbuf:  # still no whole request: say why it is hung up on
                with contextlib.suppress(OSError):
                    conn.sock.send(_error(f"no complete request within {IDLE_TIMEOUT:g} s"))
            self._drop(conn)
        if self._resume_at is not None and now >= self._resume_at:
            self._resume_at = None
            self._listen()
            self._accept(selectors.EVENT_READ)
        if (
            self._resume_at is None
            and self._paused_since is not None
            and now >= self._last_refusal + EPISODE_QUIET
        ):
            self._end_episode(now)

    # -- accepting ---------------------------------------------------------------------

    def _listen(self) -> None:
        if not self._listening:
            self._selector.register(self._listener, selectors.EVENT_READ, self._accept)
            self._listening = True

    def _pause(self, now: float, error: OSError) -> None:
        if self._listening:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._listener)
            self._listening = False
        self._refused += 1
        self._last_refusal = now
        if self._paused_since is None:
            self._paused_since = now
            log.warning(
                "control socket: cannot accept a connection: %s; not accepting for %g s at a "
                "time until it works again (hbctl waits meanwhile)",
                error.strerror or error,
                ACCEPT_BACKOFF_MAX,
            )
        self._resume_at = now + self._backoff
        self._backoff = min(self._backoff * 2, ACCEPT_BACKOFF_MAX)

    def _end_episode(self, now: float) -> None:
        """Accepts have worked for EPISODE_QUIET seconds: say so, once."""
        assert self._paused_since is not None
        log.info(
            "control socket: accepting connections again (out of descriptors or memory "
            "for %.1f s, %d attempts refused)",
            self._last_refusal - self._paused_since,
            self._refused,
        )
        self._paused_since = None
        self._refused = 0
        self._backoff = ACCEPT_BACKOFF_INITIAL

    def _accept(self, _mask: int) -> None:
        now = self._clock()
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if e.errno in _RESOURCE_ERRORS:
                self._pause(now, e)
            return  # ECONNABORTED and the like: that client is gone, nothing to do
        sock.setblocking(False)
        if len(self._conns) >= MAX_CONNECTIONS:
            with contextlib.suppress(OSError):  # a short line always fits a fresh socket
                sock.send(_error(f"busy: {MAX_CONNECTIONS} control connections are open"))
            sock.close()
            return
        conn = _Conn(sock, now + IDLE_TIMEOUT)
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, lambda mask: self._service(conn, mask))

    # -- one connection ------------------------------------------------------------------

    def _service(self, conn: _Conn, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ and not conn.outbuf:
                chunk = conn.sock.recv(65536)
                if chunk:
                    conn.inbuf += chunk
                if not chunk or b"\n" in conn.inbuf or len(conn.inbuf) > MAX_REQUEST:
                    line = conn.inbuf.split(b"\n", 1)[0]  # the whole buffer at end of file
                    conn.outbuf = self._answer(line)
                    conn.inbuf = b""
                    self._selector.modify(
                        conn.sock, selectors.EVENT_WRITE, lambda m: self._service(conn, m)
                    )
            if mask & selectors.EVENT_WRITE and conn.outbuf:
                sent = conn.sock.send(conn.outbuf)
                conn.outbuf = conn.outbuf[sent:]
                if not conn.outbuf:
                    self._drop(conn)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)

    def _answer(self, line: bytes) -> bytes:
        """The one answer line to a request line: never raises."""
        if len(line) > MAX_REQUEST:
            return _error("request larger than 64 KiB")
        try:
            request = json.loads(line)
        except RecursionError:
            return _error("bad request: JSON nested too deeply")
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, too many digits
            return _error(f"bad request: {e}")
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return _error("bad request: a request is a JSON object with a string 'cmd'")
        try:
            return _line(self._handler(request))
        except HbdError as e:
            return _error(str(e))
        except Exception as e:  # a bug answers an error; it never takes the daemon down
            log.error("control socket: internal error answering %r: %r", request["cmd"], e)
            return _error(f"internal error: {type(e).__name__}")

    def _drop(self, conn: _Conn) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        self._conns.pop(conn.sock.fileno(), None)
        conn.sock.close()
        if self._resume_at is not None:  # a descriptor was just freed: accept again now
            self._resume_at = None
            self._listen()

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)
        if self._listening:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._listener)
            self._listening = False
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def request(
    run_dir: str, cmd: str, timeout: float = CLIENT_TIMEOUT, **params: Any
) -> dict[str, Any]:
    """Send one request to the daemon of `run_dir`; raises ControlError when it cannot."""
    path = socket_path(run_dir)
    payload = json.dumps({"cmd": cmd, **params}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(payload)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlError(f"{path}: no hbd is running here (no control socket)") from None
    except ConnectionRefusedError:
        raise ControlError(f"{path}: no hbd answers (stale control socket)") from None
    except TimeoutError:
        raise ControlError(f"{path}: hbd did not answer within {timeout:g} s") from None
    except OSError as e:
        raise ControlError(f"{path}: {e.strerror or e}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(f"{path}: hbd sent an answer that is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: hbd sent an answer that is not a JSON object")
    if not reply.get("ok", False):
        raise ControlError(f"hbd refused '{cmd}': {reply.get('error', 'no reason given')}")
    return reply
