"""The bench scripts run end to end with tiny parameters, so they cannot rot unnoticed.

Each script runs as a user runs it (`python bench/NAME.py ...`, a subprocess) and its table
is read back: the rows it must have are there and the figures are consistent with the codecs.
The fuzz harness is also checked to notice a broken engine (a replay window that accepts
everything, a MAC check that passes anything): a campaign reporting 0 means something only
if the harness can report more.
"""

from __future__ import annotations

import importlib
import json
import os
import pstats
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from hbd.core.wire import native as nat
from hbd.core.wire import replay

BENCH = Path(__file__).resolve().parent.parent / "bench"
REPO = BENCH.parent


def run_bench(script: str, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def table_rows(text: str, first_header: str) -> dict[str, list[str]]:
    """The rows of the Markdown table whose first header cell is `first_header`, by their
    first cell (a later row with the same first cell wins)."""
    rows: dict[str, list[str]] = {}
    inside = False
    for line in text.splitlines():
        if not line.startswith("|"):
            inside = False
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == first_header:
            inside = True
        elif inside and not set(cells[0]) <= {"-", ":"}:
            rows[cells[0]] = cells
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("x"))


@pytest.fixture
def fuzz_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    # appended, not prepended: bench/serial.py must not shadow pyserial for this process
    monkeypatch.setattr(sys, "path", [*sys.path, str(BENCH)])
    yield importlib.import_module("fuzz")


# -- fuzz -------------------------------------------------------------------------------------


def test_fuzz_campaign_runs_and_reports_every_input_kind() -> None:
    out = run_bench(
        "fuzz.py",
        *("--frame-inputs", "4000", "--config-inputs", "3000", "--chunk", "1000"),
        *("--coverage", "1500"),
    )
    reached = table_rows(out.split("code reached by", 1)[1], "module")
    assert number(reached["hbd/core/engine.py"][2]) > 0  # the receive path, in lines
    frames = table_rows(out, "input")
    for kind in ("random", "mutated", "forged", "replayed", "structured"):
        assert number(frames[kind][1]) > 0, f"no {kind} inputs ran"
    assert "structured (signed) inputs by message type" in out
    configs = table_rows(out.split("configuration fuzzers", 1)[1], "input")
    assert number(configs["total"][1]) == 3000
    assert number(configs["total"][2]) == 0  # crashes
    assert "bad-signature" in out and "replayed" in out  # the inputs reached the checks


def test_fuzz_harness_notices_an_engine_that_accepts_replays(
    fuzz_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = fuzz_module.frame_chunk(7, 1500)
    assert sum(clean.replayed.values()) == 0 and sum(clean.forged.values()) == 0
    monkeypatch.setattr(replay.ReplayWindow, "check", lambda self, g, s: replay.Accepted())
    broken = fuzz_module.frame_chunk(7, 1500)
    assert sum(broken.replayed.values()) > 0


def test_signed_structured_inputs_reach_every_message_type_and_stay_cheap_and_quiet(
    fuzz_module: ModuleType,
) -> None:
    tally = fuzz_module.frame_chunk(11, 6000)
    assert sum(tally.crashes.values()) == 0, tally.examples
    assert sum(tally.amplified.values()) == 0, tally.examples
    assert tally.most_out <= fuzz_module.OUT_LIMIT
    from hbd.testing.fuzzing import HEARTBEAT_TYPES, NATIVE_TYPES

    drawn = set(HEARTBEAT_TYPES) | {f"native {t}" for t in NATIVE_TYPES}
    assert set(tally.types) == drawn  # every type was sent, signed
    for sequenced in ("status", "hbd-advert", "resource", "shutdone", "native heartbeat"):
        assert tally.reached[sequenced] > 0, f"no {sequenced} got past the signature"


def test_a_signed_field_too_long_for_int_is_refused_not_raised() -> None:
    # found by the structured fuzzer: ttl=<5000 digits> raised ValueError out of the engine
    from hbd.core.wire.ha_control import parse_decimal

    assert parse_decimal("9" * 5000) is None and parse_decimal("\u00b2") is None
    assert parse_decimal("42") == 42 and parse_decimal("") is None and parse_decimal(None) is None


def test_fuzz_harness_notices_an_engine_that_accepts_bad_macs(
    fuzz_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hbd.core.wire.native.hmac.compare_digest", lambda a, b: True)
    broken = fuzz_module.frame_chunk(7, 3000)
    assert sum(broken.forged.values()) > 0


# -- serial -----------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")
def test_serial_sizes_capacity_and_pty_run() -> None:
    out = run_bench("serial.py", "--names", "hb1", "--pty-seconds", "0.2", "--sim-seconds", "10")
    sizes = table_rows(out.split("measured:", 1)[0], "format")
    native = sizes["hbd native (HMAC-SHA256/128)"]
    assert number(native[2]) == nat.HEARTBEAT_LEN
    assert number(native[3]) == nat.HEARTBEAT_SERIAL_LEN
    for row in sizes.values():
        # capacity: the line's bytes/s less the probes' over the bytes per heartbeat
        probes = 0.0 if row[6] == "-" else number(row[6].split("/")[1])
        assert number(row[7]) == pytest.approx((1920 - probes) / number(row[5]), rel=0.01, abs=0.06)
    assert number(native[6].split("/")[1]) > 0  # the serial path is probed too
    assert any(name.startswith("Heartbeat wire, sent by hbd (crc)") for name in sizes)
    pty = table_rows(out.split("measured:", 1)[1], "format")
    assert len(pty) == 4  # native, and Heartbeat's sha1, md5, crc for one name
    for row in pty.values():
        assert row[2] == row[3] and number(row[2]) > 0  # every frame written was verified
        assert row[4] == "0"


# -- idle -------------------------------------------------------------------------------------


def _bench_namespaces(pid: int) -> set[str]:
    """The namespaces a bench process made (bench/common.py names them `hbdb-*-PIDxN`),
    so another bench running beside this test does not count."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    mark = f"-{pid % 100000}x"
    return {
        line.split()[0]
        for line in out.stdout.splitlines()
        if line.startswith("hbdb-") and mark in line.split()[0]
    }


def run_idle(*args: str, timeout: float, output: list[str] | None = None) -> dict[str, list[str]]:
    """bench/idle.py at 5 Hz with `args`: its table's rows by system, once it exited cleanly
    and removed every namespace it made (its whole output appended to `output`)."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "idle.py"), "--settle", "0.5", "--rates", "5", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"idle.py exited {proc.returncode}\n{out}\n{err}"
    assert _bench_namespaces(proc.pid) == set()  # every namespace it made is gone
    if output is not None:
        output.append(out)
    return table_rows(out, "system")


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.skipif(
    not os.access("/usr/libexec/heartbeat/heartbeat", os.X_OK), reason="needs Heartbeat 3.0.6"
)
def test_idle_cluster_with_a_vip_measured_for_hbd_heartbeat_and_keepalived() -> None:
    if shutil.which("keepalived") is None:
        pytest.skip("needs keepalived")
    rows = run_idle("--window", "3", "--systems", "hbd,heartbeat,keepalived", timeout=150)
    assert set(rows) == {"hbd (native frames)", "Heartbeat 3.0.6", "keepalived"}
    for row in rows.values():
        assert row[1] == "5 Hz"
        cpu, wakes, rss, pss, locked, procs = (number(row[i]) for i in (2, 3, 5, 6, 7, 8))
        assert cpu >= 0 and wakes > 0 and rss > 0 and pss > 0 and locked >= 0 and procs >= 1
    hbd = rows["hbd (native frames)"]
    assert hbd[4] != "-"  # hbd's own loop counters were read
    # Heartbeat runs a reader and a writer per path beside its master: more than hbd's one
    assert number(rows["Heartbeat 3.0.6"][8]) > number(hbd[8])


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")
@pytest.mark.skipif(
    not os.access("/usr/libexec/heartbeat/heartbeat", os.X_OK), reason="needs Heartbeat 3.0.6"
)
def test_idle_measures_both_daemons_petting_a_watchdog_and_hbds_pets_wake_no_turn(
    tmp_path: Path,
) -> None:
    out = tmp_path / "idle.json"
    rows = run_idle(
        "--window", "4", "--systems", "hbd-wd,heartbeat-wd", "--json", str(out), timeout=150
    )  # fmt: skip
    assert set(rows) == {"hbd (native, watchdog)", "Heartbeat 3.0.6 (watchdog)"}
    hbd = rows["hbd (native, watchdog)"]
    assert number(hbd[2]) > 0 and number(rows["Heartbeat 3.0.6 (watchdog)"][2]) > 0
    # whose deadlines woke hbd's timer turns, by its own counters: the heartbeats' (the
    # engine's), never a pet's alone (2 s watchdog: a pet every 0.5-1 s rides them)
    samples = json.loads(out.read_text())["samples"]
    mine = [x for x in samples if x["system"] == "hbd (native, watchdog)"]
    assert len(mine) == 2
    beats = sum(n for x in mine for k, n in x["woken_by"].items() if "engine" in k.split("+"))
    assert beats >= 4 * 5 * 0.8, mine  # 5 Hz: the leading node's beats at least
    for x in mine:
        assert "fencing" not in x["woken_by"], x["woken_by"]


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_idle_measures_the_python_floor_on_hbds_three_paths() -> None:
    rows = run_idle("--window", "2", "--systems", "floor-asyncio,floor-epoll", timeout=120)
    assert set(rows) == {"Python floor (asyncio)", "Python floor (epoll)"}
    for row in rows.values():
        cpu, wakes, procs = number(row[2]), number(row[3]), number(row[8])
        assert cpu > 0 and procs == 1
        assert wakes >= 5  # 5 Hz: at least its own timer, and the peer's frames on top


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_idle_profiles_hb1s_steady_state_with_cprofile(tmp_path: Path) -> None:
    output: list[str] = []
    args = ("--window", "2", "--systems", "hbd", "--no-group", "--cprofile", str(tmp_path))
    rows = run_idle(*args, timeout=120, output=output)
    assert set(rows) == {"hbd (native frames)"}
    assert (tmp_path / "5hz-hbd-run0.prof").exists()
    report = output[0].split("cProfile of hb1", 1)[1]
    assert "calls a loop turn" in report and "cumulative" in report
    profiled = pstats.Stats(str(tmp_path / "5hz-hbd-run0.prof")).stats  # type: ignore[attr-defined]
    names = {f[2] for f in profiled}
    assert "receive_frame" in names  # the peer's heartbeats were read in the window...
    assert "load_config" not in names  # ...and the start-up is left out


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_idle_times_hb1s_loop_functions_without_a_profiler(tmp_path: Path) -> None:
    output: list[str] = []
    args = ("--window", "2", "--systems", "hbd", "--no-group", "--timing", str(tmp_path))
    rows = run_idle(*args, timeout=120, output=output)
    assert set(rows) == {"hbd (native frames)"}
    counted = json.loads((tmp_path / "5hz-hbd-run0.json").read_text())
    functions = counted["functions"]
    # the peer's heartbeats were read and ours sent in the window, inside the loop's turns
    assert functions["Node.receive_frame"]["calls"] > 0
    assert functions["UdpLink.send"]["calls"] > 0
    assert functions["BaseEventLoop._run_once"]["ns"] >= functions["Daemon._read"]["ns"]
    assert 0 < counted["thread_ns"] < counted["wall_ns"]
    report = output[0].split("Timing of hb1", 1)[1]
    assert "Node.receive_frame" in report and "µs/call" in report


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_idle_runs_a_baseline_checkout_beside_the_current_build(tmp_path: Path) -> None:
    # a checkout whose heartbeats each spin 2 ms of CPU: 600 ms/min more at 5 Hz, which
    # only its own cluster shows if --baseline really runs its code
    tree = tmp_path / "tree"
    for package in ("hbd", "links"):
        shutil.copytree(REPO / package, tree / package)
    engine = tree / "hbd" / "core" / "engine.py"
    text = engine.read_text()
    send = "    def _send_heartbeat(self, now: float) -> None:\n"
    assert send in text
    spin = "        spin = time.thread_time() + 0.002\n        while time.thread_time() < spin:\n"
    engine.write_text(
        text.replace(send, send + "        import time\n\n" + spin + "            pass\n")
    )
    rows = run_idle("--window", "3", "--systems", "hbd", "--baseline", str(tree), timeout=120)
    assert set(rows) == {"hbd (native frames)", f"hbd (native, {tree})"}
    current, baseline = (
        number(rows["hbd (native frames)"][2]),
        number(rows[f"hbd (native, {tree})"][2]),
    )
    assert baseline > current + 300, (current, baseline)


def test_idle_refuses_a_baseline_that_holds_no_hbd(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "idle.py"), "--baseline", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"--baseline: {tmp_path} holds no hbd package (hbd/__init__.py)" in proc.stderr


def test_hostile_bench_reports_cpu_rexmit_and_echo_within_their_bounds() -> None:
    out = run_bench("hostile.py", "--frames", "3", "--replays", "200")
    rows = [line.split() for line in out.splitlines() if line.startswith("  wire ")]
    assert len(rows) == 10
    assert all(float(row[3]) < 2.0 for row in rows), out  # ms per forged frame
    assert "echo: 200 replays of one native ECHO in 1 s: 0 frames sent" in out
    rexmit = next(line for line in out.splitlines() if line.startswith("rexmit:"))
    assert float(rexmit.split("; ")[1].split()[0]) < 1.0  # bytes sent per byte received
