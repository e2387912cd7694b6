"""`hbctl qnetd-test HOST[:PORT]`: prove a corosync-qnetd answers before trusting it.

It runs hbd's own qdevice client (the one the daemon runs) over a blocking socket: the
preinit and init exchange, a config and a membership node list for a throw-away cluster
("hbctl-qnetd-test-PID", node id 1, so no real cluster's votes are touched), and a few
echo requests one heartbeat apart, then reports what the server said and the round-trip
times. Exit status as `hbctl cable-test`: 0 clean, 1 the server answered but something was
wrong (refused init, TLS mismatch, no vote, a bad frame), 2 it could not be reached.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from hbd.core.qnetd import client as qc
from hbd.core.qnetd import msg as qm
from hbd.effects.qnetd import TlsFiles


@dataclass
class ProbeReport:
    server: str
    reached: bool = False
    ready: bool = False
    said: dict[str, Any] = field(default_factory=dict)
    vote: str | None = None
    rtts_ms: list[float] = field(default_factory=list)
    connect_ms: float | None = None
    events: list[str] = field(default_factory=list)
    error: str | None = None
    tls_handshake: bool | None = None  # None: TLS not asked; else whether it completed

    def exit_code(self) -> int:
        if not self.reached:
            return 2
        return 0 if self.ready and self.error is None and self.rtts_ms else 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "reached": self.reached,
            "handshake": self.ready,
            "server_said": self.said,
            "vote": self.vote,
            "connect_ms": self.connect_ms,
            "rtt_ms": {
                "count": len(self.rtts_ms),
                "min": min(self.rtts_ms, default=None),
                "median": statistics.median(self.rtts_ms) if self.rtts_ms else None,
                "max": max(self.rtts_ms, default=None),
            },
            "tls_handshake": self.tls_handshake,
            "events": self.events,
            "error": self.error,
        }


def probe(
    host: str,
    port: int,
    *,
    algorithm: str = "ffsplit",
    tls: bool = False,
    count: int = 3,
    timeout: float = 5.0,
    tls_files: TlsFiles | None = None,
    tls_dir: str | None = None,
) -> ProbeReport:
    """Connect, handshake, echo `count` times. TLS files: `tls_files`, else the usual
    names in `tls_dir`, else the daemon's (/etc/hbd/qnetd)."""
    report = ProbeReport(f"{host}:{port}")
    settings = qc.ClientSettings(
        host=host,
        port=port,
        cluster_name=f"hbctl-qnetd-test-{os.getpid()}",
        node_id=1,
        node_ids=(1,),
        algorithm=qm.Algorithm[algorithm.upper()],
        heartbeat=qc.MIN_HEARTBEAT,
        tls=tls,
    )
    start = time.monotonic()
    client = qc.QnetdClient(settings, start)
    client.set_membership(frozenset({1}), qm.RingId(1, 1), qm.Heuristics.UNDEFINED, start)
    client.handle_timer(start)
    client.next_action()  # Connect
    try:
        sock: socket.socket | ssl.SSLSocket = socket.create_connection((host, port), timeout)
    except OSError as e:
        report.error = f"cannot connect to {host}:{port}: {e.strerror or e}"
        return report
    report.reached = True
    report.connect_ms = round((time.monotonic() - start) * 1000, 3)
    deadline = time.monotonic() + timeout + count * settings.heartbeat
    try:
        client.connection_made(time.monotonic())
        while time.monotonic() < deadline:
            now = time.monotonic()
            t = client.get_timer()
            if t is not None and t <= now:
                client.handle_timer(now)
            data = client.data_to_send()
            if data:
                sock.sendall(data)
            while (action := client.next_action()) is not None:
                if isinstance(action, qc.StartTls):
                    files = tls_files or (TlsFiles.under(tls_dir) if tls_dir else TlsFiles())
                    missing = files.missing()
                    if missing:
                        report.error = f"TLS asked but {', '.join(missing)} missing"
                        return report
                    report.tls_handshake = False
                    sock = files.context().wrap_socket(sock, server_hostname="Qnetd Server")
                    report.tls_handshake = True
                    client.tls_started(time.monotonic())
                elif isinstance(action, qc.Close):
                    report.error = action.reason
            while (event := client.next_event()) is not None:
                report.events.append(event.text)
            report.said = dict(client.server)
            if client.state is qc.State.READY:
                report.ready = True
            if client.vote is not None:
                report.vote = client.vote.name
            if client.rtt is not None:
                report.rtts_ms.append(round(client.rtt * 1000, 3))
                client.rtt = None
            if report.error is not None:
                return report
            if report.ready and len(report.rtts_ms) >= count:
                return report
            wait = max(0.0, min(0.2, (client.get_timer() or now + 0.2) - time.monotonic()))
            readable, _, _ = select.select([sock], [], [], wait)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    client.connection_failed("qnetd closed the connection", time.monotonic())
                    report.error = client.reason
                    if report.tls_handshake and client.server.get("tls_client_cert_required"):
                        report.error += (
                            " right after the TLS handshake: qnetd accepts a client "
                            "certificate only for the cluster named in the certificate's CN, "
                            f"and this test calls itself {settings.cluster_name} so as not to "
                            "touch a real cluster's votes; the certificates themselves passed "
                            "(the daemon, with its own cluster name, gets the vote)"
                        )
                    return report
                client.data_received(chunk, time.monotonic())
        report.error = report.error or f"no complete exchange within {timeout:g} s"
        return report
    except (OSError, ssl.SSLError) as e:
        report.error = f"connection to {host}:{port} failed: {e}"
        return report
    finally:
        sock.close()


def render(report: ProbeReport) -> str:
    d = report.as_dict()
    lines = [f"qnetd {report.server}: " + ("reached" if report.reached else "NOT reached")]
    if report.connect_ms is not None:
        lines.append(f"  TCP connect: {report.connect_ms:.3f} ms")
    said = report.said
    if said:
        cert = "required" if said.get("tls_client_cert_required") else "not required"
        lines.append(f"  server: TLS {said.get('tls', '?')} (client certificate {cert})")
        if "algorithms" in said:
            lines.append(f"  algorithms: {', '.join(said['algorithms'])}")
            lines.append(
                f"  message sizes: request {said.get('max_request')}, reply {said.get('max_reply')}"
            )
    if report.tls_handshake is not None:
        lines.append(f"  TLS handshake: {'done' if report.tls_handshake else 'FAILED'}")
    lines.append(f"  handshake: {'ok' if report.ready else 'not completed'}")
    if report.vote is not None:
        lines.append(f"  vote for a one-node test cluster: {report.vote}")
    r = d["rtt_ms"]
    if r["count"]:
        lines.append(
            f"  echo round trip: {r['count']} x, min {r['min']:.3f} ms, "
            f"median {r['median']:.3f} ms, max {r['max']:.3f} ms"
        )
    for e in report.events:
        lines.append(f"  qnetd: {e}")
    if report.error:
        lines.append(f"  error: {report.error}")
    return "\n".join(lines)
