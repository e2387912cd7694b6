"""TLS to the real corosync-qnetd, with certificates made as corosync-qnetd-certutil makes them.

The fixture builds, in tmp_path, what `corosync-qnetd-certutil -i` builds in
/etc/corosync/qnetd/nssdb (an NSS database with the "QNet CA" and the "Qnetd Server"
certificate; the script itself only writes under /etc), then a client certificate for
the cluster as `corosync-qdevice-net-certutil -r` / `corosync-qnetd-certutil -s` would,
exported to the PEM files hbd reads (docs/qnetd.md, "TLS"). qnetd runs with `-s req`
(TLS and a client certificate required) on a free loopback port and is stopped after.
The daemon's own connection object (hbd.effects.qnetd) carries the qdevice client.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hbd.commands.cli import hbctl_main
from hbd.core.qnetd.client import ClientSettings, Close, Connect, QnetdClient, StartTls, State
from hbd.core.qnetd.msg import Heuristics, RingId, Vote
from hbd.effects.qnetd import QnetdConnection, TlsFiles

from netns import qnetd_process

QNETD = shutil.which("corosync-qnetd")
TOOLS = all(shutil.which(t) for t in ("certutil", "openssl"))
pytestmark = pytest.mark.skipif(
    QNETD is None or not TOOLS, reason="needs corosync-qnetd, certutil (libnss3-tools), openssl"
)
CLUSTER = "linux-ha"


def run(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True)


def make_ca(db: Path) -> None:
    """What `corosync-qnetd-certutil -i` does, in `db`."""
    db.mkdir()
    pwd, noise = db / "pwdfile.txt", db / "noise.txt"
    pwd.write_text("")
    noise.write_bytes(bytes(range(256)) * 4)
    run("certutil", "-N", "-d", str(db), "-f", str(pwd))
    common = ("-v", "1200", "-d", str(db), "-z", str(noise), "-f", str(pwd))
    run(
        "certutil", "-S", "-n", "QNet CA", "-s", "CN=QNet CA", "-x", "-t", "CT,,", "-m", "1",
        *common, "-2", stdin="y\n0\ny\n",
    )  # fmt: skip
    run(
        "certutil", "-S", "-n", "QNetd Cert", "-s", "CN=Qnetd Server", "-c", "QNet CA",
        "-t", "u,u,u", "-m", "2", *common,
    )  # fmt: skip


def sign_client(db: Path, out: Path, cluster: str, serial: int) -> TlsFiles:
    """A key and certificate request for `cluster` (CN = the cluster name, as qdevice
    makes it), signed by the qnetd CA as `corosync-qnetd-certutil -s` does, and the PEM
    files hbd reads: the CA, the certificate, the key."""
    out.mkdir()
    key, crq, crt = out / "cluster-key.pem", out / "node.crq", out / "cluster.crt"
    run(
        "openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
        "-subj", f"/CN={cluster}", "-out", str(crq),
    )  # fmt: skip
    run(
        "certutil", "-C", "-v", "1200", "-m", str(serial), "-i", str(crq), "-a",
        "-o", str(crt), "-c", "QNet CA", "-d", str(db), "-f", str(db / "pwdfile.txt"),
    )  # fmt: skip
    ca_export = out / "qnetd-cacert.crt"  # as the script exports it: a listing, then PEM
    listing = subprocess.run(
        ["certutil", "-L", "-d", str(db), "-n", "QNet CA"], check=True, capture_output=True
    ).stdout
    pem = subprocess.run(
        ["certutil", "-L", "-d", str(db), "-n", "QNet CA", "-a"], check=True, capture_output=True
    ).stdout
    ca_export.write_bytes(listing + pem)
    files = TlsFiles(
        ca=str(out / "qnetd-cacert.pem"), cert=str(out / "cluster-cert.pem"), key=str(key)
    )
    run("openssl", "x509", "-in", str(ca_export), "-out", files.ca)
    run("openssl", "x509", "-in", str(crt), "-out", files.cert)
    return files


@dataclass
class Server:
    port: int
    db: Path
    log: Path


@pytest.fixture
def qnetd_tls(tmp_path: Path) -> Iterator[Server]:
    assert QNETD is not None
    db = tmp_path / "nssdb"
    make_ca(db)
    with qnetd_process(QNETD, tmp_path, tls="req", nss_db=db) as (port, _, log):
        yield Server(port, db, log)


async def vote_over(files: TlsFiles, port: int, seconds: float = 8.0) -> QnetdClient:
    """The daemon's connection object carrying one qdevice client with TLS on, until it
    has a vote, fails, or `seconds` pass."""
    now = time.monotonic()
    client = QnetdClient(
        ClientSettings("127.0.0.1", port, CLUSTER, 1, (1, 2), heartbeat=1.0, tls=True), now
    )
    client.set_membership(frozenset({1}), RingId(1, 1), Heuristics.UNDEFINED, now)
    woke = asyncio.Event()

    def feed(what: str, arg: object = None) -> None:
        t = time.monotonic()
        if what == "connected":
            client.connection_made(t)
        elif what == "data":
            assert isinstance(arg, bytes)
            client.data_received(arg, t)
        elif what == "tls":
            client.tls_started(t)
        else:
            client.connection_failed(str(arg), t)
        woke.set()

    conn = QnetdConnection(
        on_connected=lambda: feed("connected"),
        on_data=lambda data: feed("data", data),
        on_failed=lambda reason: feed("failed", reason),
        on_tls=lambda: feed("tls"),
        tls=files,
    )
    end = time.monotonic() + seconds
    failures: list[str] = []
    try:
        while time.monotonic() < end and client.vote is None:
            t = time.monotonic()
            if (due := client.get_timer()) is not None and due <= t:
                client.handle_timer(t)
            if data := client.data_to_send():
                conn.send(data)
            while (action := client.next_action()) is not None:
                if isinstance(action, Connect):
                    conn.connect(action.host, action.port)
                elif isinstance(action, StartTls):
                    conn.start_tls()
                elif isinstance(action, Close):
                    failures.append(action.reason)
                    conn.close()
            if client.state is State.DISCONNECTED and client.reason not in failures:
                failures.append(client.reason)
                break
            woke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woke.wait(), 0.1)
    finally:
        conn.close()
        await asyncio.sleep(0.1)  # the transports finish closing on this loop
    client.reason = "; ".join(failures) or client.reason
    return client


def test_the_daemons_connection_gets_the_vote_over_tls_with_a_client_certificate(
    qnetd_tls: Server, tmp_path: Path
) -> None:
    files = sign_client(qnetd_tls.db, tmp_path / "client", CLUSTER, 3)
    client = asyncio.run(vote_over(files, qnetd_tls.port))
    assert client.state is State.READY, (client.reason, qnetd_tls.log.read_text()[-2000:])
    assert client.vote is Vote.ACK
    assert client.server.get("tls") == "required"


def test_a_client_certificate_from_another_ca_fails_the_handshake_with_a_reason(
    qnetd_tls: Server, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca"
    make_ca(other)
    files = sign_client(other, tmp_path / "client", CLUSTER, 3)
    client = asyncio.run(vote_over(files, qnetd_tls.port, seconds=4.0))
    assert client.vote is None and client.state is not State.READY
    assert "TLS with qnetd failed" in client.reason, client.reason


def test_a_certificate_for_another_cluster_name_is_refused_by_qnetd(
    qnetd_tls: Server, tmp_path: Path
) -> None:
    """qnetd accepts a client certificate only for the cluster named in its CN."""
    files = sign_client(qnetd_tls.db, tmp_path / "client", "some-other-cluster", 3)
    client = asyncio.run(vote_over(files, qnetd_tls.port, seconds=4.0))
    assert client.vote is None
    assert "valid CN" in qnetd_tls.log.read_text()


def test_hbctl_qnetd_test_over_tls_says_the_handshake_passed_and_why_qnetd_stopped(
    qnetd_tls: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test uses a cluster name of its own (it must not touch a real cluster's
    votes), which a per-cluster certificate does not name: qnetd closes the connection
    right after the handshake. The report says the certificates passed and why."""
    files = sign_client(qnetd_tls.db, tmp_path / "client", CLUSTER, 3)
    tls_dir = Path(files.ca).parent
    code = hbctl_main(
        ["qnetd-test", f"127.0.0.1:{qnetd_tls.port}", "--tls", "--tls-dir", str(tls_dir)]
    )
    out = capsys.readouterr().out
    assert "TLS handshake: done" in out, out
    assert "certificate's CN" in out, out
    assert code == 1
