"""docs/try-it.md's script, as a user runs it: tools/try-one-box.sh builds two nodes, a
LAN, a null-modem cable and a ping node; the group starts on alpha; pulling alpha's LAN
cable moves nothing (the serial line still carries); pulling it and stalling the cable
isolates alpha, which goes, and beta takes over; healing brings the group back (failback);
`down` leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netns import requires_root, requires_socat

SCRIPT = Path(__file__).parent.parent / "tools" / "try-one-box.sh"
pytestmark = [pytest.mark.root, pytest.mark.slow, requires_root, requires_socat]


@pytest.fixture
def box(tmp_path: Path) -> Iterator[dict[str, str]]:
    if any(Path("/run/netns").glob("hbd-try-*")):
        pytest.fail("namespaces hbd-try-* exist already: someone is trying hbd on this box")
    env = {**os.environ, "TRY_DIR": str(tmp_path / "try")}
    try:
        yield env
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, check=False, capture_output=True)


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def runs_on(env: dict[str, str]) -> list[str]:
    lines = run(env, "where").splitlines()
    return [line.split(":")[0] for line in lines if line.endswith("service yes")]


def until(env: dict[str, str], where: list[str], limit: float) -> None:
    deadline = time.monotonic() + limit
    while runs_on(env) != where:
        assert time.monotonic() < deadline, f"the service never ran on {where} alone"
        time.sleep(0.2)


def test_the_one_box_recipe_fails_over_on_isolation_and_cleans_up(box: dict[str, str]) -> None:
    assert "up: alpha 10.77.0.1" in run(box, "up")
    until(box, ["alpha"], 15)
    run(box, "unplug", "alpha")  # the serial line still carries: nothing moves
    time.sleep(3)
    assert runs_on(box) == ["alpha"]
    run(box, "cut-serial")  # now alpha is cut off from beta and from the ping node
    until(box, ["beta"], 15)
    run(box, "heal-serial")
    run(box, "plug", "alpha")
    until(box, ["alpha"], 15)  # auto_failback on
    assert "group IPaddr::10.77.0.100/24 started" in run(box, "events", "beta")
    assert "down:" in run(box, "down")
    assert not any(Path("/run/netns").glob("hbd-try-*"))
    assert not Path(box["TRY_DIR"]).exists()
