"""bench/failover.py, bench/plot.py and bench/detection.py run end to end with tiny
parameters, as a user runs them, and what they report is read back.

The failover check runs one crash and one cut for hbd (native frames, 200 ms / 1 s) and for
keepalived (advert 0.2 s): hbd must take the VIP over after the crash within its deadtime
and some slack, and must not take it after the cut (the VIP still answers on alpha); the
same cut must show keepalived holding the VIP on both nodes, so the bench's split detector
is seen to report a split when there is one (hbd's 0 then means something).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run(script: str, *args: str, timeout: float) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
@pytest.mark.skipif(shutil.which("keepalived") is None, reason="needs keepalived (Debian)")
@pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")
def test_failover_hbd_never_splits_where_keepalived_does(tmp_path: Path) -> None:
    results = tmp_path / "failover.json"
    out = run(
        "failover.py",
        "--systems=hbd native 0.2/1,keepalived advert 0.2",
        "--scenarios=crash,cut",
        "--runs=1",
        "--side-runs=1",
        f"--json={results}",
        timeout=120,
    )
    assert "### crash" in out and "### cut" in out
    runs = {(r["system"], r["scenario"]): r for r in json.loads(results.read_text())["runs"]}
    assert len(runs) == 4, runs

    crash = runs[("hbd native 0.2/1", "crash")]
    assert crash["failover_s"] is not None and 0.3 < crash["failover_s"] < 1.0 + 1.5, crash
    assert crash["split_ms"] == 0

    cut = runs[("hbd native 0.2/1", "cut")]
    assert cut["failover_s"] is None, f"hbd took over from a partitioned holder: {cut}"
    assert cut["split_ms"] == 0

    k_crash = runs[("keepalived advert 0.2", "crash")]
    assert k_crash["failover_s"] is not None and k_crash["failover_s"] < 2.0, k_crash
    k_cut = runs[("keepalived advert 0.2", "cut")]
    assert k_cut["split_ms"] > 0 and k_cut["split_at_end"], f"no split seen: {k_cut}"

    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed: the plot is not checked")
    png = tmp_path / "failover.png"
    run("plot.py", f"--json={results}", f"--out={png}", timeout=60)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_detection_simulated_figures_follow_the_deadtime(tmp_path: Path) -> None:
    out_md = tmp_path / "detection.md"
    out = run(
        "detection.py",
        "--no-real",
        "--pairs=0.2/1",
        "--crashes=3",
        "--sim-hours=0.02",
        f"--out={out_md}",
        timeout=60,
    )
    assert out_md.read_text().strip() == out.strip()
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| 0.2/1"):
            rows[cells[1]] = cells
    assert set(rows) == {"fixed", "adaptive"}, out
    for cells in rows.values():
        lo, med, hi = (float(x) for x in cells[2].split(" / "))
        # a crash is declared after deadtime of silence, counted from the last heartbeat
        # heard: between deadtime - keepalive and deadtime (+ the simulated 1 ms latency)
        assert 0.79 <= lo <= med <= hi <= 1.01, cells
    # the adaptive detector calls the crashed peer's paths down before deadtime, never later
    fixed_path = float(rows["fixed"][4].split(" / ")[1])
    adaptive_path = float(rows["adaptive"][4].split(" / ")[1])
    assert adaptive_path < fixed_path, rows
