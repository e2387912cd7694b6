#!/usr/bin/env python3
"""Record what Heartbeat 3.0.6's `cl_status` prints, as test data for `hbctl cl-status`.

Runs two real Debian `heartbeat` daemons ("hb1" and "hb2") in network namespaces with
private mounts (the set-up of tests/tools/capture_heartbeat.py), joined by
  - `bcast eth0` on a veth pair,
  - `ucast eth1 <peer>` on a second veth pair,
  - `serial <pty>` over a socat pty pair,
with `ping` to hb2's eth0 address as a ping node, and then runs the real
/usr/bin/cl_status in hb1's (and hb2's) namespace and mounts at each stage of a scenario:

  stopped      heartbeat not running
  alone        hb1 started, hb2 not (yet): during and after initdead
  both         hb1 and hb2 up, every link up
  cut          hb2's eth1 down: hb1 sees link eth1 of hb2 dead
  peer-dead    hb2's heartbeat killed: hb1 sees hb2 dead and takes its resources

Two runs: "groups" (haresources: one harmless group per node, `hbdtest` resource scripts
that only keep a state file under the node's private /run) and "nogroups" (an empty
haresources). Each record in OUT/<run>.jsonl is one call:
{"stage", "node", "argv", "stdout", "rc", "stderr"} (stderr with the syslog-style time
stamp, host and pid replaced by "<ts> <host>" and "<pid>").

Everything this script creates (namespaces, processes, temp dirs) is removed on exit.
Usage: sudo python3 tests/tools/capture_clstatus.py [--out tests/vectors/cl_status]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEARTBEAT = "/usr/libexec/heartbeat/heartbeat"
CL_STATUS = "/usr/bin/cl_status"
NODES = ("hb1", "hb2")
ETH0 = {"hb1": "10.214.0.1", "hb2": "10.214.0.2"}
ETH1 = {"hb1": "10.215.0.1", "hb2": "10.215.0.2"}
PING = ETH0["hb2"]
TIMING = "keepalive 250ms\nwarntime 1\ndeadtime 2\ninitdead 4\n"
RESOURCE_SCRIPT = """#!/bin/sh
# hbdtest NAME {start|stop|status}: a harmless resource kept as a file in /run
f=/run/hbdtest.$1
case "$2" in
  start) touch "$f";;
  stop) rm -f "$f";;
  status) if [ -e "$f" ]; then echo running; else echo stopped; fi;;
esac
exit 0
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=30)


def write_node(root: Path, node: str, tty: str, groups: bool) -> None:
    etc, lib, run = root / "etc", root / "lib", root / "run"
    for sub in ("rc.d", "resource.d"):
        shutil.copytree(f"/etc/ha.d/{sub}", etc / sub, symlinks=True)
    for f in ("harc", "shellfuncs"):
        if Path(f"/etc/ha.d/{f}").exists():
            shutil.copy2(f"/etc/ha.d/{f}", etc / f)
    peer = next(n for n in NODES if n != node)
    (etc / "ha.cf").write_text(
        f"logfile {root}/ha-log\ndebugfile {root}/ha-debug\n"
        + TIMING
        + f"udpport 694\nbcast eth0\nucast eth1 {ETH1[peer]}\nserial {tty}\nbaud 19200\n"
        + (
            "auto_failback on\ncrm no\nnode hb1\nnode hb2\n" + f"ping {PING}\n"
            if groups
            else f"ping {PING}\n" + "auto_failback on\ncrm no\nnode hb1\nnode hb2\n"
        )
    )
    script = etc / "resource.d" / "hbdtest"
    script.write_text(RESOURCE_SCRIPT)
    script.chmod(0o755)
    (etc / "haresources").write_text("hb1 hbdtest::alpha\nhb2 hbdtest::beta\n" if groups else "")
    (etc / "authkeys").write_text("auth 1\n1 sha1 hbd-clstatus-capture\n")
    os.chmod(etc / "authkeys", 0o600)
    for d in ("api", "casual", "ccm", "ckpt", "crm", "lrm", "pengine", "cores/root"):
        (lib / d).mkdir(parents=True)
    for d in ("cores/hacluster", "cores/nobody"):
        (lib / d).mkdir(parents=True)
    for d in ("heartbeat/ccm", "heartbeat/crm", "heartbeat/dopd", "crm", "lock"):
        (run / d).mkdir(parents=True)
    for d in ("ccm", "crm", "cores/hacluster"):
        shutil.chown(lib / d, "hacluster", "haclient")
    for d in ("heartbeat", "heartbeat/ccm", "heartbeat/crm", "heartbeat/dopd", "crm"):
        shutil.chown(run / d, "hacluster", "haclient")


def in_node(ns: str, root: Path, node: str, command: str) -> list[str]:
    """argv running `command` in `node`'s network namespace with its private mounts."""
    script = (
        f"hostname {node} && mount --make-rprivate / && "
        f"mount --bind {root}/etc /etc/ha.d && mount --bind {root}/lib /var/lib/heartbeat && "
        f"mount --bind {root}/run /run && exec {command}"
    )
    return ["ip", "netns", "exec", ns, "unshare", "--mount", "--uts", "sh", "-c", script]


_STAMP = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ cl_status: \[\d+\]: ", re.MULTILINE)


def normalise_stderr(text: str) -> str:
    return _STAMP.sub("<ts> <host> cl_status: [<pid>]: ", text)


class Run:
    def __init__(self, name: str, tmp: Path, groups: bool) -> None:
        self.name = name
        self.tmp = tmp
        self.groups = groups
        tag = f"{os.getpid() % 100000}{name[0]}"
        self.ns = {n: f"hbcls{i}_{tag}" for i, n in enumerate(NODES, 1)}
        self.roots = {n: tmp / n for n in NODES}
        self.hb: dict[str, subprocess.Popen[bytes]] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.records: list[dict[str, object]] = []
        self.tty: dict[str, str] = {}

    def setup(self) -> None:
        for n in self.ns.values():
            sh("ip", "netns", "add", n)
        for dev, addrs in (("eth0", ETH0), ("eth1", ETH1)):
            a, b = (
                f"cla{dev[-1]}{self.ns['hb1'][-6:]}"[:15],
                f"clb{dev[-1]}{self.ns['hb1'][-6:]}"[:15],
            )
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            for node, tmpname in (("hb1", a), ("hb2", b)):
                ns = self.ns[node]
                sh("ip", "link", "set", tmpname, "netns", ns)
                sh("ip", "-n", ns, "link", "set", tmpname, "name", dev)
                sh("ip", "-n", ns, "addr", "add", f"{addrs[node]}/24", "brd", "+", "dev", dev)
                sh("ip", "-n", ns, "link", "set", dev, "up")
        for n in self.ns.values():
            sh("ip", "-n", n, "link", "set", "lo", "up")
        self.procs.append(
            subprocess.Popen(
                [
                    "socat",
                    f"pty,raw,echo=0,link={self.tmp}/tty-hb1",
                    f"pty,raw,echo=0,link={self.tmp}/tty-hb2",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        for _ in range(50):
            if all((self.tmp / f"tty-{n}").exists() for n in NODES):
                break
            time.sleep(0.1)
        for node in NODES:
            self.tty[node] = os.path.realpath(self.tmp / f"tty-{node}")
            write_node(self.roots[node], node, self.tty[node], self.groups)

    def start(self, node: str) -> None:
        root = self.roots[node]
        with open(root / "stdout", "ab") as log:
            self.hb[node] = subprocess.Popen(
                in_node(self.ns[node], root, node, f"{HEARTBEAT} -f -l"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, node: str) -> None:
        """SIGKILL every process in `node`'s namespace: heartbeat dies without a word."""
        for _ in range(20):
            pids = sh("ip", "netns", "pids", self.ns[node], check=False).stdout.split()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.3)
        proc = self.hb.pop(node, None)
        if proc is not None:
            proc.wait(5)

    def cl_status(self, stage: str, node: str, *args: str) -> None:
        root = self.roots[node]
        cmd = " ".join([CL_STATUS, *(f"'{a}'" for a in args)])
        proc = subprocess.run(
            in_node(self.ns[node], root, node, cmd), capture_output=True, text=True, timeout=30
        )
        self.records.append(
            {
                "stage": stage,
                "node": node,
                "argv": ["cl_status", *args],
                "stdout": proc.stdout,
                "rc": proc.returncode,
                "stderr": normalise_stderr(proc.stderr),
            }
        )

    def survey(self, stage: str, node: str, links: bool = True) -> None:
        peer = next(n for n in NODES if n != node)
        c = self.cl_status
        c(stage, node, "hbstatus")
        c(stage, node, "listnodes")
        c(stage, node, "listnodes", "-n")
        c(stage, node, "listnodes", "-p")
        c(stage, node, "rscstatus")
        c(stage, node, "rscstatus", "-m")
        for who in (*NODES, PING):
            c(stage, node, "nodestatus", who)
        c(stage, node, "nodestatus", "-m", peer)
        if not links:
            return
        for who in (*NODES, PING):
            c(stage, node, "listhblinks", who)
        for link in ("eth0", "eth1", self.tty[node]):
            c(stage, node, "hblinkstatus", peer, link)
        for link in ("eth0", "eth1", self.tty[node]):
            c(stage, node, "hblinkstatus", node, link)
        c(stage, node, "hblinkstatus", PING, "ping")
        c(stage, node, "hblinkstatus", PING, PING)
        c(stage, node, "hblinkstatus", "-m", peer, "eth0")

    def errors(self, stage: str, node: str) -> None:
        c = self.cl_status
        c(stage, node, "nodestatus", "nosuchnode")
        c(stage, node, "nodestatus")
        c(stage, node, "listhblinks", "nosuchnode")
        c(stage, node, "listhblinks")
        c(stage, node, "hblinkstatus", "hb2", "nosuchlink")
        c(stage, node, "hblinkstatus", "nosuchnode", "eth0")
        c(stage, node, "hblinkstatus", "hb2")
        c(stage, node, "bogus")
        c(stage, node, "listnodes", "-x")

    def scenario(self) -> None:
        self.survey("stopped", "hb1", links=False)
        self.cl_status("stopped", "hb1", "listhblinks", "hb1")
        self.cl_status("stopped", "hb1", "hblinkstatus", "hb2", "eth0")
        self.errors("stopped", "hb1")
        self.start("hb1")
        time.sleep(1.5)
        self.survey("alone-initdead", "hb1")
        time.sleep(8)
        self.survey("alone", "hb1")
        self.start("hb2")
        time.sleep(8)
        self.survey("both", "hb1")
        self.survey("both", "hb2")
        self.errors("both", "hb1")
        sh("ip", "-n", self.ns["hb2"], "link", "set", "eth1", "down")
        time.sleep(4)
        self.survey("cut", "hb1")
        sh("ip", "-n", self.ns["hb2"], "link", "set", "eth1", "up")
        self.kill("hb2")
        time.sleep(6)
        self.survey("peer-dead", "hb1")

    def teardown(self) -> None:
        for node in list(self.hb):
            self.kill(node)
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
            p.wait(5)
        for n in self.ns.values():
            sh("ip", "netns", "del", n, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "vectors" / "cl_status"
    )
    ap.add_argument("--only", choices=("groups", "nogroups"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (heartbeat logs)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("capture_clstatus: needs root (network and mount namespaces)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in [args.only] if args.only else ["groups", "nogroups"]:
        tmp = Path(tempfile.mkdtemp(prefix=f"hbcls-{name}-"))
        run = Run(name, tmp, groups=name == "groups")
        try:
            run.setup()
            run.scenario()
        finally:
            run.teardown()
            with (args.out / f"{name}.jsonl").open("w") as f:
                for rec in run.records:
                    text = json.dumps(rec)
                    for node, path in run.tty.items():  # pty numbers vary from run to run
                        text = text.replace(path, f"<tty-{node}>")
                    f.write(text + "\n")
            if args.keep:
                print(f"kept {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        print(f"captured {name}: {len(run.records)} calls", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
