"""The control socket: one JSON request per connection, one JSON answer, over a Unix socket.

The daemon listens on `RUN_DIR/hbd.sock` (mode 0600: only root steers the cluster). A
request is one line of JSON, `{"cmd": "status", ...}`; the answer is one line of JSON,
`{"ok": true, ...}` or `{"ok": false, "error": "..."}`. The server never blocks the
daemon's loop: sockets are non-blocking and registered with the loop's selector.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
from collections.abc import Callable
from typing import Any, Protocol

from hbd.core.errors import HbdError

SOCKET_NAME = "hbd.sock"
MAX_REQUEST = 64 * 1024
CLIENT_TIMEOUT = 5.0

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class Registry(Protocol):
    """Where sockets are watched: a `selectors` selector, or `hbd.shell.daemon.LoopRegistry`."""

    def register(self, fileobj: Any, events: int, data: Any = None) -> Any: ...

    def modify(self, fileobj: Any, events: int, data: Any = None) -> Any: ...

    def unregister(self, fileobj: Any) -> Any: ...


class ControlError(HbdError):
    """The daemon could not be reached or refused the request."""


def socket_path(run_dir: str) -> str:
    return os.path.join(run_dir, SOCKET_NAME)


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""


class ControlServer:
    """Accepts control connections on the daemon's selector and answers them with `handler`."""

    def __init__(self, run_dir: str, selector: Registry, handler: Handler) -> None:
        self.path = socket_path(run_dir)
        self._selector = selector
        self._handler = handler
        os.makedirs(run_dir, mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            self._listener.bind(self.path)
        finally:
            os.umask(old_umask)
        self._listener.listen(16)
        self._listener.setblocking(False)
        selector.register(self._listener, selectors.EVENT_READ, self._accept)
        self._conns: dict[int, _Conn] = {}

    def _accept(self, _mask: int) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        conn = _Conn(sock)
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, lambda mask: self._service(conn, mask))

    def _service(self, conn: _Conn, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ and not conn.outbuf:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    self._drop(conn)
                    return
                conn.inbuf += chunk
                if b"\n" in conn.inbuf or len(conn.inbuf) > MAX_REQUEST:
                    conn.outbuf = self._answer(conn.inbuf) + b"\n"
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

    def _answer(self, raw: bytes) -> bytes:
        if len(raw) > MAX_REQUEST:
            reply: dict[str, Any] = {"ok": False, "error": "request larger than 64 KiB"}
        else:
            try:
                request = json.loads(raw.split(b"\n", 1)[0])
                if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                    raise ValueError("a request is a JSON object with a string 'cmd'")
            except ValueError as e:
                reply = {"ok": False, "error": f"bad request: {e}"}
            else:
                try:
                    reply = self._handler(request)
                except HbdError as e:
                    reply = {"ok": False, "error": str(e)}
        return json.dumps(reply, separators=(",", ":")).encode()

    def _drop(self, conn: _Conn) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        self._conns.pop(conn.sock.fileno(), None)
        conn.sock.close()

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
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
