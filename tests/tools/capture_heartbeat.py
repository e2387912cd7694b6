#!/usr/bin/env python3
"""Re-capture the Heartbeat 3.0.6 wire-format test vectors (root only).

Runs two real Debian `heartbeat` daemons ("hb1" and "hb2") talking to each other over
  - UDP broadcast on a veth pair between two network namespaces (captured with tcpdump
    in hb2's namespace), and
  - a serial line made of two `socat` pty pairs joined by a relay in this process, which
    records every byte each way (and can drop whole frames to provoke retransmissions).
Each daemon runs in its own mount and UTS namespace with a private /etc/ha.d,
/var/lib/heartbeat (fixed hb_uuid and hb_generation) and /run, and a fixed hostname.

One run per authentication method (sha1, md5, crc: `auth 1/2/3` over the same authkeys);
a fourth run ("rexmit", sha1) uses the serial line only and the relay drops about a third
of the frames, so that NS_rexmit / NS_nak_rexmit show up.

Output per run in OUT/<method>/: frames.jsonl (one line per captured frame: medium,
direction, hex), serial-hb1.raw / serial-hb2.raw (the raw byte stream each node wrote on
its serial port), ha.cf. OUT/keys.json holds the authkeys entries.

Everything this script creates (namespaces, processes, temp dirs) is removed on exit.
Usage: sudo python3 tests/tools/capture_heartbeat.py [--out tests/vectors/heartbeat] [--seconds 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HEARTBEAT = "/usr/libexec/heartbeat/heartbeat"
KEYS = {1: ("sha1", "hbd-test-sha1-key"), 2: ("md5", "hbd-test-md5-key"), 3: ("crc", "")}
# run name -> (auth index, serial frame loss %, use UDP). The "rexmit" run is serial-only
# with the relay dropping frames, so that gaps provoke NS_rexmit (no netem needed).
RUNS = {"sha1": (1, 0, True), "md5": (2, 0, True), "crc": (3, 0, True), "rexmit": (1, 35, False)}
UUIDS = {"hb1": bytes(range(0x10, 0x20)), "hb2": bytes(range(0xA0, 0xB0))}
GENERATION = {"hb1": 41, "hb2": 7}  # heartbeat stores N, sends N+1
UDPPORT = 694


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class Relay(threading.Thread):
    """Copies whole classic frames between two pty ends, recording and maybe dropping them."""

    def __init__(self, a: str, b: str, loss: int) -> None:
        super().__init__(daemon=True)
        self.fds = {
            os.open(a, os.O_RDWR | os.O_NOCTTY): "hb1",
            os.open(b, os.O_RDWR | os.O_NOCTTY): "hb2",
        }
        self.peer = dict(zip(self.fds, reversed(list(self.fds)), strict=True))
        self.raw: dict[str, bytearray] = {"hb1": bytearray(), "hb2": bytearray()}
        self.pending: dict[int, bytearray] = {fd: bytearray() for fd in self.fds}
        self.frames: list[tuple[str, bytes]] = []
        self.loss = loss
        self.stop = threading.Event()
        self.count = 0

    def run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select(list(self.fds), [], [], 0.2)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                name = self.fds[fd]
                self.raw[name] += data
                buf = self.pending[fd]
                buf += data
                while (end := buf.find(b"<<<\n")) >= 0:
                    chunk = bytes(buf[: end + 4])
                    del buf[: end + 4]
                    start = chunk.find(b">>>\n")
                    frame = chunk[start:] if start >= 0 else chunk
                    self.frames.append((name, frame))
                    self.count += 1
                    # deterministic "loss": drop every frame whose counter hits the rate
                    if self.loss and (self.count * 37) % 100 < self.loss:
                        continue
                    os.write(self.peer[fd], chunk)

    def close(self) -> None:
        self.stop.set()
        self.join(2)
        for fd in self.fds:
            os.close(fd)


def write_node(root: Path, node: str, peer_if: str | None, tty: str, authnum: int) -> None:
    etc, lib, run = root / "etc", root / "lib", root / "run"
    for sub in ("rc.d", "resource.d"):
        shutil.copytree(f"/etc/ha.d/{sub}", etc / sub, symlinks=True)
    for f in ("harc", "shellfuncs"):
        if Path(f"/etc/ha.d/{f}").exists():
            shutil.copy2(f"/etc/ha.d/{f}", etc / f)
    (etc / "ha.cf").write_text(
        f"logfile {root}/ha-log\ndebugfile {root}/ha-debug\n"
        "keepalive 1\nwarntime 4\ndeadtime 8\ninitdead 16\n"
        + (f"udpport {UDPPORT}\nbcast {peer_if}\n" if peer_if else "")
        + f"serial {tty}\nbaud 19200\n"
        "auto_failback off\ncrm no\nnode hb1\nnode hb2\n"
    )
    (etc / "haresources").write_text("")
    lines = [f"auth {authnum}"] + [f"{i} {m} {k}".rstrip() for i, (m, k) in KEYS.items()]
    (etc / "authkeys").write_text("\n".join(lines) + "\n")
    os.chmod(etc / "authkeys", 0o600)
    for d in (
        "api",
        "casual",
        "ccm",
        "ckpt",
        "crm",
        "lrm",
        "pengine",
        "cores/root",
        "cores/hacluster",
        "cores/nobody",
    ):
        (lib / d).mkdir(parents=True)
    (lib / "hb_uuid").write_bytes(UUIDS[node])
    (lib / "hb_generation").write_text(f"{GENERATION[node]}\n")
    for d in ("heartbeat/ccm", "heartbeat/crm", "heartbeat/dopd", "crm", "lock"):
        (run / d).mkdir(parents=True)
    for d in ("ccm", "crm", "cores/hacluster"):
        shutil.chown(lib / d, "hacluster", "haclient")
    for d in ("heartbeat", "heartbeat/ccm", "heartbeat/crm", "heartbeat/dopd", "crm"):
        shutil.chown(run / d, "hacluster", "haclient")


def start_node(ns: str, root: Path, node: str) -> subprocess.Popen[bytes]:
    script = (
        f"hostname {node} && mount --make-rprivate / && "
        f"mount --bind {root}/etc /etc/ha.d && mount --bind {root}/lib /var/lib/heartbeat && "
        f"mount --bind {root}/run /run && exec {HEARTBEAT} -f -l"
    )
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, "unshare", "--mount", "--uts", "sh", "-c", script],
        stdout=open(root / "stdout", "wb"),
        stderr=subprocess.STDOUT,
    )


def pcap_udp_payloads(path: Path) -> list[tuple[str, bytes]]:
    """(source ip, UDP payload) of every IPv4 UDP packet to UDPPORT in an Ethernet pcap."""
    data = path.read_bytes()
    out: list[tuple[str, bytes]] = []
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, off)
        pkt = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if len(pkt) < 42 or pkt[12:14] != b"\x08\x00":
            continue
        ihl = (pkt[14] & 0x0F) * 4
        if pkt[23] != 17:
            continue
        udp = pkt[14 + ihl :]
        dport = struct.unpack_from(">H", udp, 2)[0]
        if dport == UDPPORT:
            out.append((".".join(str(b) for b in pkt[26:30]), udp[8:]))
    return out


def capture(method: str, out: Path, seconds: float, keep: bool) -> None:
    authnum, loss, use_udp = RUNS[method]
    tag = f"{os.getpid()}{method[0]}"
    ns = {"hb1": f"hbcap1_{tag}", "hb2": f"hbcap2_{tag}"}
    veth = {"hb1": f"hbc1{tag}"[:15], "hb2": f"hbc2{tag}"[:15]}
    tmp = Path(tempfile.mkdtemp(prefix=f"hbcap-{method}-"))
    procs: list[subprocess.Popen[bytes]] = []
    relay: Relay | None = None
    try:
        for n in ns.values():
            sh("ip", "netns", "add", n)
        sh("ip", "link", "add", veth["hb1"], "type", "veth", "peer", "name", veth["hb2"])
        for i, node in enumerate(("hb1", "hb2"), start=1):
            sh("ip", "link", "set", veth[node], "netns", ns[node])
            ex = ("ip", "netns", "exec", ns[node])
            sh(
                *ex,
                "ip",
                "addr",
                "add",
                f"10.213.0.{i}/24",
                "brd",
                "10.213.0.255",
                "dev",
                veth[node],
            )
            sh(*ex, "ip", "link", "set", veth[node], "up")
            sh(*ex, "ip", "link", "set", "lo", "up")
        pcap = tmp / "udp.pcap"
        procs.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns["hb2"],
                    "tcpdump",
                    "-i",
                    veth["hb2"],
                    "-U",
                    "-s",
                    "0",
                    "-w",
                    str(pcap),
                    "udp",
                    "port",
                    str(UDPPORT),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        ttys = {}
        for node in ("hb1", "hb2"):
            procs.append(
                subprocess.Popen(
                    [
                        "socat",
                        f"pty,raw,echo=0,link={tmp}/{node}-hb",
                        f"pty,raw,echo=0,link={tmp}/{node}-relay",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for _ in range(50):
            if all((tmp / f"{n}-{s}").exists() for n in ns for s in ("hb", "relay")):
                break
            time.sleep(0.1)
        for node in ("hb1", "hb2"):
            ttys[node] = os.path.realpath(tmp / f"{node}-hb")
        relay = Relay(
            os.path.realpath(tmp / "hb1-relay"), os.path.realpath(tmp / "hb2-relay"), loss
        )
        relay.start()
        time.sleep(1)  # tcpdump ready
        for node in ("hb1", "hb2"):
            root = tmp / node
            write_node(root, node, veth[node] if use_udp else None, ttys[node], authnum)
            procs.append(start_node(ns[node], root, node))
        time.sleep(seconds)
    finally:
        # Everything inside our namespaces is ours: heartbeat and the children it forks
        # (some appear during shutdown), so sweep until the namespaces are empty.
        for attempt, sig in enumerate([signal.SIGTERM] + [signal.SIGKILL] * 10):
            pids = [
                p
                for n in ns.values()
                for p in sh("ip", "netns", "pids", n, check=False).stdout.split()
            ]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), sig)
            time.sleep(3 if attempt == 0 else 0.5)
        for p in procs:
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if relay is not None:
            relay.close()
        for n in ns.values():
            sh("ip", "netns", "del", n, check=False)
    dest = out / method
    dest.mkdir(parents=True, exist_ok=True)
    ip2node = {"10.213.0.1": "hb1", "10.213.0.2": "hb2"}
    with (dest / "frames.jsonl").open("w") as f:
        for src, payload in pcap_udp_payloads(tmp / "udp.pcap"):
            f.write(
                json.dumps({"medium": "udp", "from": ip2node.get(src, src), "hex": payload.hex()})
                + "\n"
            )
        assert relay is not None
        for node, frame in relay.frames:
            f.write(json.dumps({"medium": "serial", "from": node, "hex": frame.hex()}) + "\n")
    for node in ("hb1", "hb2"):
        (dest / f"serial-{node}.raw").write_bytes(bytes(relay.raw[node]))
    shutil.copy2(tmp / "hb1" / "etc" / "ha.cf", dest / "ha.cf")
    if keep:
        print(f"kept {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "vectors" / "heartbeat"
    )
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--only", choices=sorted(RUNS))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("capture_heartbeat: needs root (network and mount namespaces)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "keys.json").write_text(
        json.dumps({str(i): {"method": m, "key": k} for i, (m, k) in KEYS.items()}, indent=1) + "\n"
    )
    for method in [args.only] if args.only else list(RUNS):
        capture(method, args.out, args.seconds, args.keep)
        print(f"captured {method}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
