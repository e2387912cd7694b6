"""The Prometheus endpoint (`metrics ADDRESS:PORT` in ha.cf; off without it).

The metrics are built, with the `prometheus-client` library, from the same status the
control socket answers `hbctl status` with, at the moment of the scrape and on the daemon's
own event loop: nothing is computed between scrapes, and no thread ever reads the daemon's
state. The HTTP side is deliberately small: `GET /metrics` (and `/`) over HTTP/1.0 or 1.1,
one request per connection, at most `MAX_CONNECTIONS` at once, each answered or hung up
on within `REQUEST_TIMEOUT`; anything else gets a 4xx line. Names, labels and an example:
docs/metrics.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # prometheus_client is imported only when `metrics` is configured
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 8
REQUEST_TIMEOUT = 5.0
MAX_REQUEST = 8192  # bytes of request line and headers
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format

NODE_STATES = ("init", "up", "active", "dead")
GROUP_STATES = ("stopped", "starting", "started", "stopping", "failed", "unknown")
REDUNDANCY = ("redundant", "degraded", "partitioned")


class Counts:
    """What the daemon counts between scrapes (the rest is read from the status)."""

    def __init__(self) -> None:
        self.acquisitions: dict[str, int] = {}
        self.failovers: dict[str, int] = {}
        self.fence_decisions = 0

    def decided(self, decision: str, reason: str) -> None:
        """A policy decision line (`acquire G`, `self-fence`, ...), as the log shows it."""
        if decision.startswith("acquire "):
            group = decision[len("acquire ") :]
            self.acquisitions[group] = self.acquisitions.get(group, 0) + 1
            if reason.startswith("taking over from"):
                self.failovers[group] = self.failovers.get(group, 0) + 1
        elif decision == "self-fence":
            self.fence_decisions += 1


def _seconds(ms: Any) -> float | None:
    return None if ms is None else float(ms) / 1000.0


def families(status: Mapping[str, Any], counts: Counts) -> list[Metric]:
    """Every metric family, from one `status` (hbd.shell.daemon.Daemon.status)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    out: list[Metric] = []
    node = str(status["node"])

    def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=list(labels))
        out.append(family)
        return family

    def counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=list(labels))
        out.append(family)
        return family

    gauge("hbd_up", "1 while this hbd answers").add_metric([], 1)
    info = gauge("hbd_info", "this node: name, state, generation", ["node", "state", "generation"])
    info.add_metric([node, str(status["state"]), str(status["generation"])], 1)
    level = gauge("hbd_redundancy", "1 for the redundancy level in force", ["level"])
    for name in REDUNDANCY:
        level.add_metric([name], 1 if status["redundancy"] == name else 0)

    peer_state = gauge("hbd_peer_state", "1 for each peer's current state", ["peer", "state"])
    heard = gauge("hbd_peer_last_heard_seconds", "seconds since the peer was heard", ["peer"])
    path_up = gauge("hbd_path_up", "1 while the path to the peer is up", ["peer", "path"])
    loss = gauge("hbd_path_loss_ratio", "recent heartbeat loss on the path", ["peer", "path"])
    rtt = gauge("hbd_path_rtt_seconds", "round trip on the path (hbd peers)", ["peer", "path"])
    got = counter("hbd_path_heartbeats_received", "heartbeats received", ["peer", "path"])
    lost = counter(
        "hbd_path_heartbeats_lost", "heartbeats missed (sequence gaps)", ["peer", "path"]
    )
    for peer, p in status["nodes"].items():
        for state in NODE_STATES:
            peer_state.add_metric([peer, state], 1 if p["status"] == state else 0)
        if (age := _seconds(p.get("last_heard_ms"))) is not None:
            heard.add_metric([peer], age)
        for path, q in p["paths"].items():
            path_up.add_metric([peer, path], 1 if q["status"] == "up" else 0)
            loss.add_metric([peer, path], float(q["loss"]))
            if (r := _seconds(q.get("rtt_ms"))) is not None:
                rtt.add_metric([peer, path], r)
            got.add_metric([peer, path], float(q.get("received", 0)))
            lost.add_metric([peer, path], float(q.get("lost", 0)))

    sent = counter("hbd_link_frames_sent", "frames sent on the link", ["link"])
    received = counter("hbd_link_frames_received", "frames received on the link", ["link"])
    dropped = counter("hbd_link_frames_dropped", "frames the link could not send", ["link"])
    link_open = gauge("hbd_link_open", "1 while the link's device or socket is open", ["link"])
    for link, s in status.get("links", {}).items():
        sent.add_metric([link], float(s["frames_sent"]))
        received.add_metric([link], float(s["frames_received"]))
        dropped.add_metric([link], float(s["dropped"]))
        link_open.add_metric([link], 1 if s["open"] else 0)
    refused = counter("hbd_frames_refused", "frames refused on arrival, by reason", ["reason"])
    for reason, n in status.get("dropped_frames", {}).items():
        refused.add_metric([reason], float(n))
    ping = gauge("hbd_ping_node_up", "1 while the ping node answers", ["ping_node"])
    for witness, w in status.get("ping_nodes", {}).items():
        ping.add_metric([witness], 1 if w["status"] == "up" else 0)

    group_state = gauge("hbd_group_state", "1 for the group's state here", ["group", "state"])
    holder = gauge("hbd_group_holder", "1 for the node holding the group", ["group", "node"])
    for g in status.get("groups", []):
        for state in GROUP_STATES:
            group_state.add_metric([g["name"], state], 1 if g["state"] == state else 0)
        if g.get("holder"):
            holder.add_metric([g["name"], str(g["holder"])], 1)
    acquired = counter("hbd_group_acquisitions", "group starts decided here", ["group"])
    for group, n in sorted(counts.acquisitions.items()):
        acquired.add_metric([group], float(n))
    failovers = counter("hbd_failovers", "takeovers from a lost peer decided here", ["group"])
    for group, n in sorted(counts.failovers.items()):
        failovers.add_metric([group], float(n))
    counter("hbd_fence_decisions", "decisions to self-fence").add_metric(
        [], float(counts.fence_decisions)
    )

    watchdog = status.get("watchdog")
    if watchdog is not None:
        gauge("hbd_watchdog_timeout_seconds", "the armed watchdog's timeout").add_metric(
            [], float(watchdog["timeout_s"])
        )
        if (left := watchdog.get("time_left_s")) is not None:
            gauge("hbd_watchdog_time_left_seconds", "until the watchdog resets").add_metric(
                [], float(left)
            )
    q = status.get("qnetd")
    if q is not None:
        gauge("hbd_qnetd_connected", "1 while connected to corosync-qnetd").add_metric(
            [], 1 if q["connected"] else 0
        )
        vote = gauge("hbd_qnetd_vote", "1 for qnetd's vote in force", ["vote"])
        for name in ("ACK", "NACK", "none"):
            vote.add_metric([name], 1 if (q.get("vote") or "none") == name else 0)
    return out


def exposition(status: Callable[[], Mapping[str, Any]], counts: Counts) -> bytes:
    """The text format a scrape gets, built now."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.registry import Collector

    class StatusCollector(Collector):
        def collect(self) -> Iterable[Metric]:
            return families(status(), counts)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector())
    return generate_latest(registry)


class MetricsServer:
    """`GET /metrics` on the daemon's loop. `open()` binds at once (so a bad address is
    reported at start-up, in one line, and hbd runs on without metrics)."""

    def __init__(self, sock: socket.socket, render: Callable[[], bytes]) -> None:
        self._sock = sock
        self._render = render
        self._active = 0
        self._server: asyncio.AbstractServer | None = None
        self._task = asyncio.ensure_future(self._serve())
        self.address = sock.getsockname()[:2]

    @classmethod
    def open(cls, host: str, port: int, render: Callable[[], bytes]) -> MetricsServer:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(16)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return cls(sock, render)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self._sock, limit=MAX_REQUEST)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._active += 1
        try:
            if self._active > MAX_CONNECTIONS:
                await self._reply(writer, 503, b"busy\n")
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return  # idle, cut short or too long: hung up on
            words = head.split(b"\r\n", 1)[0].split()
            if len(words) != 3 or not words[2].startswith(b"HTTP/1."):
                await self._reply(writer, 400, b"not an HTTP/1.x request\n")
                return
            method, target = words[0], words[1].split(b"?", 1)[0]
            if method != b"GET":
                await self._reply(writer, 405, b"only GET\n")
                return
            if target not in (b"/metrics", b"/"):
                await self._reply(writer, 404, b"see /metrics\n")
                return
            try:
                body = self._render()
            except Exception:  # a metrics bug must never take the daemon down
                log.exception("metrics: building the exposition failed")
                await self._reply(writer, 500, b"internal error, see the log\n")
                return
            await self._reply(writer, 200, body, CONTENT_TYPE)
        finally:
            self._active -= 1
            with contextlib.suppress(OSError):
                writer.close()

    @staticmethod
    async def _reply(
        writer: asyncio.StreamWriter, code: int, body: bytes, kind: str = "text/plain"
    ) -> None:
        reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        reasons |= {500: "Internal Server Error", 503: "Service Unavailable"}
        head = (
            f"HTTP/1.1 {code} {reasons[code]}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._task.cancel()
        with contextlib.suppress(OSError):
            self._sock.close()
