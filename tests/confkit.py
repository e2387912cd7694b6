"""Helpers for the configuration tests: sample directories and throw-away config dirs.

The sample directories live in tests/configs/. Git keeps only 644/755 modes, so a test
that loads one copies it to a temporary directory and gives authkeys mode 600 as an
administrator would.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CONFIGS = Path(__file__).parent / "configs"

# The smallest ha.cf that loads without complaint: both nodes, one path, auto_failback.
GOOD_HACF = "node ha-01 ha-02\nbcast eth0\nauto_failback on\n"
GOOD_AUTHKEYS = "auth 1\n1 sha1 Correct-Horse-Battery-Staple\n"


def sample(name: str, dest: Path, *, watchdog_stand_in: bool = False) -> Path:
    """Copy tests/configs/NAME to dest/NAME with authkeys chmod 600; returns the copy.

    `watchdog_stand_in`: point its `watchdog` line at a regular file in the copy (as the
    FUSE test watchdog is one), for checks that want the device to exist on this machine."""
    target = dest / name
    shutil.copytree(CONFIGS / name, target)
    os.chmod(target / "authkeys", 0o600)
    if watchdog_stand_in:
        hacf = target / "ha.cf"
        device = target / "watchdog"
        device.touch()
        hacf.write_text(hacf.read_text().replace("watchdog /dev/watchdog", f"watchdog {device}"))
    return target


def config_dir(
    dest: Path,
    hacf: str | bytes = GOOD_HACF,
    authkeys: str | bytes = GOOD_AUTHKEYS,
    haresources: str | bytes | None = None,
    authkeys_mode: int = 0o600,
) -> Path:
    """Write a configuration directory (the files as given) and return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, content in (("ha.cf", hacf), ("authkeys", authkeys), ("haresources", haresources)):
        if content is None:
            continue
        data = content.encode() if isinstance(content, str) else content
        (dest / name).write_bytes(data)
    os.chmod(dest / "authkeys", authkeys_mode)
    return dest


def empty_agent_dirs(dest: Path) -> tuple[str, str]:
    """An empty init.d and OCF root, so lookups never see the machine's own agents."""
    initd = dest / "init.d"
    ocf = dest / "ocf"
    initd.mkdir(parents=True, exist_ok=True)
    (ocf / "resource.d").mkdir(parents=True, exist_ok=True)
    return str(initd), str(ocf)


def make_executable(path: Path, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    os.chmod(path, 0o755)
    return path
