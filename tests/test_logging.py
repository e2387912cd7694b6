"""Logs an admin can live with: `debugfile` gets debug lines only with `debug N`, no line
at any level holds a repr of a binary payload, and a peer's other deadtime is a warning."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hbd.config.load import load_config
from hbd.core import events as ev
from hbd.shell.daemon import describe_event, event_log_line
from hbd.shell.logsetup import configure_logging

from confkit import config_dir


@pytest.fixture(autouse=True)
def restore_hbd_logger() -> Iterator[None]:
    logger = logging.getLogger("hbd")
    handlers, level = list(logger.handlers), logger.level
    yield
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    for h in handlers:
        logger.addHandler(h)
    logger.setLevel(level)


def logged_with(tmp_path: Path, debug: int) -> tuple[str, str]:
    logfile, debugfile = tmp_path / "ha-log", tmp_path / "ha-debug"
    hacf = (
        f"logfile {logfile}\ndebugfile {debugfile}\ndebug {debug}\n"
        "node ha-01 ha-02\nbcast eth0\nauto_failback on\n"
    )
    config = load_config(str(config_dir(tmp_path / "ha.d", hacf=hacf)), "ha-01")
    configure_logging(config)
    log = logging.getLogger("hbd.test")
    log.debug("a frame arrived")
    log.info("Status update for node ha-02: status active")
    return logfile.read_text(), debugfile.read_text()


def test_without_debug_the_debugfile_gets_what_the_logfile_gets(tmp_path: Path) -> None:
    logfile, debugfile = logged_with(tmp_path, debug=0)
    assert "status active" in logfile and "status active" in debugfile
    assert "a frame arrived" not in debugfile + logfile


def test_with_debug_the_debugfile_also_gets_debug_lines(tmp_path: Path) -> None:
    logfile, debugfile = logged_with(tmp_path, debug=1)
    assert "a frame arrived" in debugfile and "debug: a frame arrived" in debugfile
    assert "a frame arrived" not in logfile


def test_an_event_without_a_line_of_its_own_shows_payload_sizes_never_the_bytes() -> None:
    event = ev.AdvertReceived("beta", b"\x02\xff\x00secret-ish")
    assert event_log_line(event, {}) is None
    text = describe_event(event)
    assert text == "AdvertReceived node=beta payload=13 bytes"
    assert "\\x" not in text and "secret" not in text


def test_a_peer_advertising_another_deadtime_is_a_warning_saying_which_applies() -> None:
    line = event_log_line(ev.DeadtimeDiffers("beta", 2.0, 1.0), {})
    assert line is not None
    level, text, fields = line
    assert level == logging.WARNING and fields == {"peer": "beta"}
    assert text.startswith("node beta advertises deadtime 2 s, this node's is 1 s")
    assert "declared dead after its own 2 s" in text


LOGROTATE = Path(__file__).resolve().parent.parent / "logrotate" / "hbd"


def test_the_shipped_logrotate_file_rotates_a_log_hbd_keeps_writing(tmp_path: Path) -> None:
    """logrotate (forced) moves ha-log away; hbd's next line lands in a fresh ha-log, with
    no signal: the file handler reopens a moved file."""
    assert shutil.which("logrotate"), "logrotate is not installed (.ci/install)"
    conf = tmp_path / "hbd.logrotate"
    text = LOGROTATE.read_text()
    assert "/var/log/ha-log /var/log/ha-debug {" in text
    here = f"{tmp_path}/ha-log {tmp_path}/ha-debug {{"
    conf.write_text(
        text.replace("/var/log/ha-log /var/log/ha-debug {", here).replace(
            "create 0640 root adm", "create 0640 root root"
        )
    )
    logfile, _ = logged_with(tmp_path, debug=0)
    assert "status active" in logfile
    state = tmp_path / "logrotate.state"
    done = subprocess.run(
        ["logrotate", "-f", "-s", str(state), str(conf)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ha-log.1").exists()
    logging.getLogger("hbd.test").info("after the rotation")
    assert "after the rotation" in (tmp_path / "ha-log").read_text()
    assert "after the rotation" not in (tmp_path / "ha-log.1").read_text()
