"""The real `hbd` daemon's life: start, SIGTERM, restart, SIGHUP, a second copy, bad configs.

Two nodes (tests/cluster.py: bcast eth0, ucast eth1, a socat serial line) in network
namespaces, keepalive 200 ms and deadtime 1 s; the bad-configuration cases need neither
root nor namespaces.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbd.links.serial import DEFAULT_LOCK_DIR, lock_name

from cluster import HBD, Cluster, Timing, build
from netns import requires_root, requires_socat

TIMING = Timing()
DEADTIME = TIMING.deadtime / 1000
MARGIN = 1.0
STARTUP = 15.0


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Cluster]:
    with build(tmp_path) as c:
        c.start()
        c.wait_all_up(STARTUP)
        yield c


@pytest.mark.root
@requires_root
@requires_socat
def test_sigterm_stops_cleanly_and_the_peer_declares_it_dead(pair: Cluster) -> None:
    c = pair
    beta = c["beta"]
    lock = Path(DEFAULT_LOCK_DIR) / lock_name(c.serial("alpha", "beta").device("beta"))
    assert lock.read_text().strip() == str(beta.pid)  # held while running
    marks = {n: c[n].log_mark() for n in ("alpha", "beta")}

    stopped_at = time.monotonic()
    assert beta.stop() == 0
    print(f"TIMING SIGTERM -> exit {time.monotonic() - stopped_at:.2f} s")
    assert not (beta.run_dir / "hbd.sock").exists()
    assert not (beta.run_dir / "hbd.pid").exists()
    assert not lock.exists()
    log = beta.log()[marks["beta"] :]
    assert re.search(r"beta hbd shutdown complete after \d+\.\d s", log)
    assert "Traceback" not in log

    c.wait_node("alpha", "beta", ["dead"], timeout=DEADTIME + MARGIN)
    print(f"TIMING SIGTERM -> peer declared dead after {time.monotonic() - stopped_at:.2f} s")
    c["alpha"].wait_log("node beta: is dead", 1.0, since=marks["alpha"])
    # a peer that stopped cleanly is no partition: degraded (exit 1), and says why
    assert c["alpha"].hbctl("status").returncode == 1
    assert c["alpha"].status()["degraded_by"] == "beta stopped cleanly"  # type: ignore[index]
    gone = beta.hbctl("status")
    assert gone.returncode == 3  # no daemon: not "partitioned"
    assert "no hbd is running here" in gone.stderr


@pytest.mark.root
@requires_root
@requires_socat
def test_a_restarted_peer_is_seen_as_a_new_generation(pair: Cluster) -> None:
    c = pair
    alpha, beta = c["alpha"], c["beta"]
    before = c.peer_view("alpha", "beta")
    assert before is not None
    mark = alpha.log_mark()

    assert beta.stop() == 0
    beta.start()
    c.wait(
        lambda: (
            True
            if (v := c.peer_view("alpha", "beta")) and v["generation"] == before["generation"] + 1
            else None
        ),
        "alpha to see beta's next generation",
        STARTUP,
    )
    c.wait_all_up(5.0)
    after = c.peer_view("alpha", "beta")
    assert after is not None
    assert after["uuid"] == before["uuid"]  # the same machine, started again
    assert (beta.state_dir / "generation").read_text().strip() == str(before["generation"] + 1)
    gen = before["generation"] + 1
    log = alpha.log()[mark:]
    assert (
        f"node beta restarted: generation {gen - 1} -> {gen}" in log
        or f"Status update for node beta: status up (generation {gen})" in log
    ), log


@pytest.mark.root
@requires_root
@requires_socat
def test_sighup_rereads_a_changed_hacf_and_keeps_running_as_the_same_incarnation(
    pair: Cluster,
) -> None:
    c = pair
    alpha = c["alpha"]
    gen = alpha.status()["generation"]  # type: ignore[index]
    mark = alpha.log_mark()
    # Tighten warntime below the keepalive: every heartbeat from beta becomes "late",
    # which shows the new value is the one in use.
    assert "Late heartbeat" not in alpha.log()
    alpha.write_config(
        c.hacf("alpha", warntime="150ms"), (alpha.config_dir / "authkeys").read_text()
    )

    alpha.signal(signal.SIGHUP)
    alpha.wait_log("configuration reloaded", 5.0, since=mark)
    alpha.wait_log("Late heartbeat: node beta, interval", 3.0, since=mark)
    assert alpha.running
    # a reload changes nothing the peer hears: no new generation, no restart seen
    assert alpha.status()["generation"] == gen  # type: ignore[index]
    c.wait_all_up(5.0)
    view = c.peer_view("beta", "alpha")
    assert view is not None and view["generation"] == gen
    assert "node alpha: is dead" not in c["beta"].log()
    assert "node alpha restarted" not in c["beta"].log()


@pytest.mark.root
@requires_root
@requires_socat
def test_sighup_with_a_broken_hacf_keeps_the_old_configuration(pair: Cluster) -> None:
    c = pair
    alpha = c["alpha"]
    gen = alpha.status()["generation"]  # type: ignore[index]
    hacf = c.hacf("alpha")
    bad_line = len(hacf.splitlines()) + 1
    (alpha.config_dir / "ha.cf").write_text(hacf + "deadtime soon\n")
    mark = alpha.log_mark()
    beta_mark = c["beta"].log_mark()

    alpha.signal(signal.SIGHUP)
    alpha.wait_log("configuration not reloaded, still running the old one", 5.0, since=mark)
    log = alpha.log()[mark:]
    assert f"{alpha.config_dir / 'ha.cf'}:{bad_line}: " in log
    assert "configuration reloaded" not in log
    assert alpha.running
    assert alpha.status()["generation"] == gen  # type: ignore[index]
    # still heartbeating with the old settings: beta hears the same run on every path
    before = c.peer_view("beta", "alpha")
    assert before is not None
    heard = {p: v["received"] for p, v in before["paths"].items()}

    def three_more_on_every_path() -> bool | None:
        view = c.peer_view("beta", "alpha")
        if view is None:
            return None
        fresh = all(v["received"] >= heard[p] + 3 for p, v in view["paths"].items())
        return True if fresh else None

    c.wait(three_more_on_every_path, "three more heartbeats from alpha on every path", 3.0)
    assert c.fully_up("beta") is not None
    assert c.peer_view("beta", "alpha")["generation"] == gen  # type: ignore[index]
    assert "node alpha: is dead" not in c["beta"].log()[beta_mark:]


@pytest.mark.root
@requires_root
@requires_socat
def test_a_second_hbd_on_the_same_run_dir_refuses_to_start(pair: Cluster) -> None:
    c = pair
    alpha = c["alpha"]
    second = alpha.run_foreground()
    assert second.returncode == 2
    assert second.stderr.splitlines()[-1] == (
        f"{alpha.run_dir / 'hbd.pid'}: hbd (pid {alpha.pid}) already runs with this run "
        "directory; stop it first or give another --run-dir"
    )
    assert alpha.running
    assert c.fully_up("alpha") is not None  # the first one still answers, all paths up


@pytest.mark.root
@requires_root
@requires_socat
def test_a_refused_second_hbd_leaves_the_running_daemon_alone(pair: Cluster) -> None:
    c = pair
    alpha = c["alpha"]
    pidfile = alpha.run_dir / "hbd.pid"
    assert alpha.run_foreground().returncode == 2
    assert pidfile.exists(), "the refused hbd removed the running daemon's pid file"
    assert pidfile.read_text().strip() == str(alpha.pid)


BAD_CONFIGS = [
    pytest.param("ha.cf", "warntime banana\n", "'warntime' needs a time", id="bad-time"),
    pytest.param("ha.cf", "bcast\n", "'bcast' needs at least one interface", id="no-interface"),
    pytest.param("ha.cf", "serial ttyS0\n", "must be a full path", id="relative-tty"),
    pytest.param("authkeys", "1 sha1\n", "has no key", id="authkeys-no-key"),
]


@pytest.mark.parametrize(("name", "line", "message"), BAD_CONFIGS)
def test_a_bad_configuration_exits_2_with_one_file_line_error(
    tmp_path: Path, name: str, line: str, message: str
) -> None:
    config = tmp_path / "ha.d"
    config.mkdir()
    hacf = "keepalive 200ms\ndeadtime 1\nauto_failback on\nnode alpha beta\n"
    authkeys = "auth 1\n"
    files = {"ha.cf": hacf, "authkeys": authkeys}
    if name == "ha.cf":
        files["authkeys"] += "1 sha1 secret\n"
    else:
        files["ha.cf"] += "bcast lo\n"
    files[name] += line
    for fname, text in files.items():
        (config / fname).write_text(text)
    (config / "authkeys").chmod(0o600)
    bad_line = len(files[name].splitlines())

    proc = subprocess.run(
        [
            HBD,
            "--config-dir",
            str(config),
            "--state-dir",
            str(tmp_path / "state"),
            "--run-dir",
            str(tmp_path / "run"),
            "--node-name",
            "alpha",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{config / name}:{bad_line}: "), lines[0]
    assert message in lines[0]
    assert not (tmp_path / "run" / "hbd.sock").exists()


@pytest.mark.root
@requires_root
def test_a_full_state_directory_fails_the_start_in_one_line_and_never_arms_the_watchdog(
    tmp_path: Path,
) -> None:
    """/var/lib full: the generation cannot be written. hbd must say so in one line and
    exit 2 without ever opening (arming) the watchdog: an armed device closed without the
    magic character would reset the box, which would boot into the same failure."""
    from hbd.testing.fusewatchdog import mounted_watchdog

    from confkit import GOOD_AUTHKEYS

    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(state)], check=True)
    try:
        filler = state / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            f.write(b"x" * 65536)  # ENOSPC: the tmpfs is full
        with mounted_watchdog(identity="full-state test watchdog") as dog:
            config = tmp_path / "ha.d"
            config.mkdir()
            (config / "ha.cf").write_text(
                "keepalive 200ms\ndeadtime 1\ninitdead 2\nauto_failback on\nudpport 7351\n"
                "ucast lo 127.0.0.2 127.0.0.1\nwire hbd\nnode alpha beta\n"
                f"watchdog {dog.path}\n"
            )
            (config / "authkeys").write_text(GOOD_AUTHKEYS.replace("sha1", "sha256"))
            (config / "authkeys").chmod(0o600)
            proc = subprocess.run(
                [
                    HBD,
                    "--config-dir",
                    str(config),
                    "--state-dir",
                    str(state),
                    "--run-dir",
                    str(tmp_path / "run"),
                    "--node-name",
                    "alpha",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert proc.returncode == 2, proc.stderr
            errors = [line for line in proc.stderr.splitlines() if "Traceback" in line]
            assert errors == [], proc.stderr
            assert f"{state}" in proc.stderr and "No space left" in proc.stderr, proc.stderr
            assert dog.events("open") == [] and dog.resets() == []
    finally:
        subprocess.run(["umount", str(state)], check=False)
