"""Fixtures more than one test module plugs in: serial lines made of socat ptys.

A "loopback plug" is a pty whose other end socat hands to `cat` (TX wired back to RX); a
"cable" is a socat pty pair: what one end writes the other reads, as over a null-modem cable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netns import start_socat, stop_process


@pytest.fixture
def loopback_plug(tmp_path: Path) -> Iterator[str]:
    port = tmp_path / "ttyLOOP"
    proc = start_socat(f"pty,raw,echo=0,link={port}", "EXEC:cat", links=[port])
    try:
        yield str(port)
    finally:
        stop_process(proc)


@pytest.fixture
def cable(tmp_path: Path) -> Iterator[tuple[str, str]]:
    here, there = tmp_path / "ttyHERE", tmp_path / "ttyTHERE"
    proc = start_socat(
        f"pty,raw,echo=0,link={here}", f"pty,raw,echo=0,link={there}", links=[here, there]
    )
    try:
        yield str(here), str(there)
    finally:
        stop_process(proc)
