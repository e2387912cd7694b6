"""`hbd demo`: what a new user runs first.

The slow scenario runs the real command as a user would (`hbd demo --no-interactive`) and
checks what it promises: every step named and passed, the failover and failback times
printed and plausible for the demo's timings, and nothing left behind (no process of the
demo's, no directory). The fast ones check its two parts that are not hbd: the generated
configuration is one hbd accepts as meant, and the in-process serial cable carries bytes
both ways, loses them while cut, and closes every descriptor.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbd.commands.demo import (
    DEADTIME_MS,
    KEEPALIVE_MS,
    NODES,
    DemoNode,
    SerialCable,
    journal_overlap,
    read_journal,
    write_configs,
)
from hbd.config.load import load_config
from hbd.config.model import MediumKind
from hbd.core.model import AutoFailback

STEPS = (
    "Step 1: both nodes up",
    "Step 2: cut the serial path",
    "Step 3: kill the active node",
    "Step 4: restart alpha",
    "Step 5: stop both nodes",
)


def _hbd() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "hbd"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("hbd")
    assert found is not None, "hbd is not installed (pip install -e '.[test]')"
    return found


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short private TMPDIR: the demo's control sockets must fit in sun_path."""
    path = Path(tempfile.mkdtemp(prefix="hbdt-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry}: {cmdline}")
    return found


def _open_fds() -> set[str]:
    """This process's open descriptors, as fd -> what (the listing's own fd is gone by then)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except FileNotFoundError:
            continue
    return found


@pytest.mark.slow
def test_the_demo_runs_every_step_measures_the_failover_and_leaves_nothing(
    short_tmp: Path,
) -> None:
    env = {**os.environ, "TMPDIR": str(short_tmp)}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("COLUMNS", None)  # the measured lines must not be wrapped at rich's 80 columns
    started = time.monotonic()
    proc = subprocess.run(
        [_hbd(), "demo", "--no-interactive"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out

    for step in STEPS:
        assert step in out, f"{step!r} missing from the demo's output:\n{out}"
    assert "Every step did what it should." in out

    failover = float(re.search(r"Failover time: ([0-9.]+) s", out)[1])  # type: ignore[index]
    failback = float(re.search(r"Failback time: ([0-9.]+) s", out)[1])  # type: ignore[index]
    # beta last heard alpha at most a keepalive before the kill, and waits the deadtime
    assert (DEADTIME_MS - KEEPALIVE_MS) / 1000 - 0.1 <= failover < 10, out
    assert 0 < failback < 15, out
    generations = re.search(r"alpha is back \(generation (\d+) -> (\d+)\)", out)
    assert generations and int(generations[2]) > int(generations[1]), out
    assert "hand-off: beta stopped demo-service, then alpha started it" in out
    print(f"demo: failover {failover:.2f} s, failback {failback:.2f} s, run {took:.1f} s")

    demo_dir = re.search(r"Demo directory: (\S+)", out)[1]  # type: ignore[index]
    assert demo_dir.startswith(str(short_tmp)), demo_dir
    assert not os.path.exists(demo_dir)
    assert os.listdir(short_tmp) == []
    assert _processes_mentioning(demo_dir) == []
    pids = re.findall(r"hbd for \w+(?: again)?: pid (\d+)", out)
    assert len(pids) == 3, out  # alpha, beta, alpha again: all gone, as the scan above says


def test_the_generated_configuration_is_what_the_demo_means(tmp_path: Path) -> None:
    cable = SerialCable()
    try:
        nodes = {name: DemoNode(name, tmp_path / name) for name in NODES}
        write_configs(nodes, cable, 7694)
        keys = set()
        for side, (name, node) in enumerate(nodes.items()):
            config = load_config(str(node.config_dir), name)
            hacf = config.hacf
            assert config.node_name == name
            assert hacf.deadtime == pytest.approx(DEADTIME_MS / 1000)
            assert hacf.keepalive == pytest.approx(KEEPALIVE_MS / 1000)
            assert hacf.auto_failback is AutoFailback.ON
            assert hacf.logfacility is None  # the demo does not write to syslog
            kinds = {m.kind: m for m in hacf.media}
            assert kinds[MediumKind.SERIAL].device == cable.device(side)
            ucast = kinds[MediumKind.UCAST]
            assert ucast.port == 7694
            assert ucast.bind == ("127.0.0.1" if name == "alpha" else "127.0.0.2")
            assert [(g.preferred, [r.name for r in g.resources]) for g in config.groups] == [
                ("alpha", ["demo-service"])
            ]
            assert os.stat(node.config_dir / "authkeys").st_mode & 0o777 == 0o600
            keys.add((node.config_dir / "authkeys").read_text())
            script = str(node.config_dir / "resource.d" / "demo-service")
            for op, expect in (
                ("status", "stopped"),
                ("start", "started"),
                ("status", "running"),
                ("stop", "stopped"),
                ("status", "stopped"),
            ):
                result = subprocess.run([script, op], capture_output=True, text=True, check=True)
                assert expect in result.stdout, (op, result.stdout)
                assert node.service_file.exists() == (op == "start" or expect == "running")
        assert len(keys) == 1, "both nodes must share one key"
        assert read_journal(tmp_path) == ["alpha start", "alpha stop", "beta start", "beta stop"]
    finally:
        cable.close()


def test_the_serial_cable_relays_both_ways_and_loses_bytes_while_cut() -> None:
    before = _open_fds()
    cable = SerialCable()
    ends = [os.open(cable.device(side), os.O_RDWR | os.O_NOCTTY) for side in (0, 1)]
    try:

        def read(fd: int, n: int) -> bytes:
            deadline = time.monotonic() + 5
            data = b""
            while len(data) < n and time.monotonic() < deadline:
                os.set_blocking(fd, False)
                try:
                    data += os.read(fd, n - len(data))
                except BlockingIOError:
                    time.sleep(0.01)
            return data

        os.write(ends[0], b"alpha->beta\x00\xff")
        assert read(ends[1], 13) == b"alpha->beta\x00\xff"
        os.write(ends[1], b"beta->alpha")
        assert read(ends[0], 11) == b"beta->alpha"

        cable.cut()
        os.write(ends[0], b"lost")
        time.sleep(0.2)
        cable.restore()
        os.write(ends[0], b"kept")
        assert read(ends[1], 8) == b"kept"
        assert cable.dropped >= 4
    finally:
        for fd in ends:
            os.close(fd)
        cable.close()
    assert _open_fds() == before


def test_a_bad_option_is_a_usage_error() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from hbd.commands.cli import hbd_main; sys.exit(hbd_main())",
            "demo",
            "--frobnicate",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "--frobnicate" in proc.stderr


def test_the_journal_check_catches_a_start_while_the_other_node_runs() -> None:
    handoff = ["alpha start", "alpha power-loss", "beta start", "beta stop", "alpha start"]
    assert journal_overlap(handoff) is None
    assert journal_overlap(["alpha start", "beta start"]) == (
        "beta started demo-service while alpha still ran it"
    )
    # a failback that starts alpha before beta has stopped is the bug the demo must catch
    assert journal_overlap(["alpha start", "alpha power-loss", "beta start", "alpha start"]) == (
        "alpha started demo-service while beta still ran it"
    )
