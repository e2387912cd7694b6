"""The connection to corosync-qnetd: TCP, and TLS after STARTTLS, behind one small object.

The core's qdevice client (`hbd.core.qnetd.client`) decides what to say; this object only
opens the connection, writes bytes, reads them, wraps the socket in TLS when told, and
reports what happened through the callbacks the daemon gives it (which feed the node).
Everything runs on the daemon's asyncio loop; nothing here blocks it.

TLS (`qnetd_tls on`) uses the standard `ssl` module with PEM files: the CA that signed
qnetd's certificate, and this node's client certificate and key. corosync-qnetd-certutil
keeps them in NSS databases; docs/qnetd.md shows the `pk12util`/`openssl` commands that
export them to the paths below.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass

TLS_DIR = "/etc/hbd/qnetd"
CONNECT_TIMEOUT = 5.0
TLS_FILES = ("qnetd-cacert.pem", "cluster-cert.pem", "cluster-key.pem")  # CA, cert, key


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: str = os.path.join(TLS_DIR, TLS_FILES[0])
    cert: str = os.path.join(TLS_DIR, TLS_FILES[1])
    key: str = os.path.join(TLS_DIR, TLS_FILES[2])

    @classmethod
    def under(cls, directory: str) -> TlsFiles:
        """The three files, by their usual names, in `directory`."""
        return cls(*(os.path.join(directory, name) for name in TLS_FILES))

    def missing(self) -> list[str]:
        return [p for p in (self.ca, self.cert, self.key) if not os.path.exists(p)]

    def context(self, server_name: str = "Qnetd Server") -> ssl.SSLContext:
        """qdevice checks qnetd's certificate is signed by the cluster's CA and names
        "Qnetd Server" (its default `tls_server_name`); so does this context."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.check_hostname = True
        return ctx


class QnetdConnection:
    """One connection at a time; `connect`, `send`, `start_tls`, `close`."""

    def __init__(
        self,
        *,
        on_connected: Callable[[], None],
        on_data: Callable[[bytes], None],
        on_failed: Callable[[str], None],
        on_tls: Callable[[], None],
        tls: TlsFiles | None = None,
    ) -> None:
        self._on_connected = on_connected
        self._on_data = on_data
        self._on_failed = on_failed
        self._on_tls = on_tls
        self.tls = tls or TlsFiles()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._generation = 0  # a late callback of a closed connection is ignored
        self._upgrading: asyncio.Future[None] | None = None

    def connect(self, host: str, port: int) -> None:
        self.close()
        self._generation += 1
        self._task = asyncio.ensure_future(self._run(host, port, self._generation))

    def send(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    def start_tls(self) -> None:
        self._upgrading = asyncio.ensure_future(self._upgrade(self._generation))

    def close(self) -> None:
        self._generation += 1
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None

    async def _run(self, host: str, port: int, generation: int) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as e:
            self._fail(generation, f"cannot connect to qnetd {host}:{port}: {_text(e)}")
            return
        self._reader, self._writer = reader, writer
        if generation != self._generation:
            writer.close()
            return
        self._on_connected()
        await self._read(generation)

    async def _read(self, generation: int) -> None:
        while generation == self._generation and self._reader is not None:
            try:
                data = await self._reader.read(65536)
            except (OSError, ssl.SSLError) as e:
                self._fail(generation, f"qnetd connection broke: {_text(e)}")
                return
            if generation != self._generation:
                return
            if not data:
                self._fail(generation, "qnetd closed the connection")
                return
            self._on_data(data)

    async def _upgrade(self, generation: int) -> None:
        writer = self._writer
        if writer is None:
            return
        missing = self.tls.missing()
        if missing:
            self._fail(
                generation,
                f"qnetd_tls on but {', '.join(missing)} missing (docs/qnetd.md: exporting "
                "corosync-qnetd-certutil's certificates)",
            )
            return
        try:
            await writer.drain()
            await writer.start_tls(self.tls.context())
        except (OSError, ssl.SSLError, ValueError) as e:
            self._fail(generation, f"TLS with qnetd failed: {_text(e)}")
            return
        if generation == self._generation:
            self._on_tls()

    def _fail(self, generation: int, reason: str) -> None:
        if generation != self._generation:
            return
        self.close()
        self._on_failed(reason)


def _text(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
