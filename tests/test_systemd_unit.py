"""systemd/hbd.service: systemd's own tools accept it, and its safety choices hold.

`systemd-analyze verify` refuses a unit whose ExecStart= binary does not exist, so the unit
is verified as installed on this machine: a copy with ExecStart= pointing at the `hbd`
console script that `pip install` put on PATH (the same substitution docs/systemd.md tells
users to make in a drop-in when hbd is not in /opt/hbd). Everything else is verified
verbatim, alone and with the sandboxing drop-in systemd/hbd-addresses-only.conf. verify
exits 0 even for unknown keys and bad values (it only warns), so any diagnostic counts as
a failure. tests/test_systemd_service.py runs the unit under a real systemd.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "hbd.service"
INSTALLED_AT = "/opt/hbd/bin/hbd"  # the README's venv
DROP_IN = UNIT.with_name("hbd-addresses-only.conf")

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (apt install systemd)"
)


def service_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """[Service] key -> values, in order (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "": 1}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|)", value)
    assert match, f"cannot read time span {value!r}"
    return float(match[1]) * units[match[2]]


@pytest.fixture
def installed_unit(tmp_path: Path) -> Path:
    hbd = shutil.which("hbd")
    if hbd is None:
        pytest.skip("no installed `hbd` on PATH (pip install -e .)")
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_AT}\n" in text
    unit = tmp_path / "hbd.service"
    unit.write_text(text.replace(f"ExecStart={INSTALLED_AT}\n", f"ExecStart={hbd}\n"))
    return unit


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit_without_a_single_warning(
    installed_unit: Path,
) -> None:
    result = analyze("verify", str(installed_unit))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@needs_analyze
def test_verify_would_catch_a_misspelt_directive(installed_unit: Path) -> None:
    # the check above has teeth: the same unit with one typo produces a diagnostic
    broken = installed_unit.with_name("hbd-typo.service")
    broken.write_text(installed_unit.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    result = analyze("verify", str(broken))
    assert "Unknown key 'WatchdogSecs'" in result.stderr


def exposure(unit: Path) -> float:
    """systemd-analyze security's overall exposure (0 safe .. 10 unsafe) of `unit`."""
    result = analyze("security", "--offline=yes", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    return float(match[1])


@needs_analyze
def test_the_unit_is_unconfined_on_purpose_and_the_drop_in_confines_it(
    installed_unit: Path,
) -> None:
    # the resource scripts run in the unit: no sandbox (docs/systemd.md has why)
    assert exposure(installed_unit) >= 9.0
    drop_ins = installed_unit.with_name("hbd.service.d")
    drop_ins.mkdir()
    shutil.copy(DROP_IN, drop_ins / "addresses-only.conf")
    result = analyze("verify", str(installed_unit))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    assert exposure(installed_unit) <= 4.0  # 3.2, "OK", for an addresses-only cluster


def test_a_failed_node_is_never_restarted_into_split_brain() -> None:
    service = service_settings()
    # recovery after a crash is the hardware watchdog's reset, never a restart
    assert service["Restart"] == ["no"]
    # SIGTERM to hbd alone, so it can stop its groups in order and tell the peer
    assert service["KillMode"] == ["mixed"]


def test_the_daemon_reports_readiness_and_is_watched() -> None:
    service = service_settings()
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    (watchdog,) = service["WatchdogSec"]
    # hbd pets at half the timeout; leave room for a slow loop turn, but catch a hang fast
    assert 2 <= seconds(watchdog) <= 30


# Sandbox settings a resource script would inherit, and what each one breaks for it.
SANDBOX = {
    "ProtectSystem": "an init.d script writing /run/NAME.pid, IPaddr2 in /run/resource-agents",
    "ReadWritePaths": "(only with ProtectSystem)",
    "PrivateTmp": "services sharing /tmp with the rest of the machine",
    "ProtectHome": "services with data under /home",
    "NoNewPrivileges": "su/sudo in a script, setuid helpers",
    "CapabilityBoundingSet": "start-stop-daemon --chuid, respawn USER (CAP_SETUID/SETGID), mount",
    "RestrictSUIDSGID": "services that create setuid files",
    "DevicePolicy": "Filesystem on a block device, DRBD",
    "DeviceAllow": "(only with DevicePolicy)",
    "SystemCallFilter": "mount(2), and whatever a service calls",
    "RestrictAddressFamilies": "services using other socket families",
    "RestrictNamespaces": "services that use namespaces (containers)",
    "ProtectKernelModules": "modprobe (the Filesystem agent loads its filesystem module)",
    "ProtectKernelLogs": "services reading the kernel log",
    "ProtectControlGroups": "services that manage cgroups",
    "ProtectClock": "time services",
    "ProtectHostname": "services that set the hostname",
    "LockPersonality": "32-bit services",
    "SystemCallArchitectures": "32-bit services",
}


def test_the_resource_scripts_inherit_no_sandbox() -> None:
    service = service_settings()
    assert sorted(set(SANDBOX) & set(service)) == []
    assert service["ExecStart"] == [INSTALLED_AT]
    # what stays: the limits hbd needs for itself, which its children do not inherit
    # (hbd/effects/children.py, hbd/effects/realtime.py)
    assert service["OOMScoreAdjust"] == ["-1000"] and service["UMask"] == ["0027"]


def test_the_addresses_only_drop_in_gives_hbd_only_the_capabilities_it_needs() -> None:
    service = service_settings(DROP_IN)
    (bounding,) = service["CapabilityBoundingSet"]
    assert set(bounding.split()) == {
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_NICE",
        "CAP_IPC_LOCK",
    }
    assert service["ProtectSystem"] == ["strict"]
    writable = service["ReadWritePaths"][0].split()
    assert {"/var/lib/hbd", "/run/hbd", "/var/log"} <= set(writable)
    assert service["DevicePolicy"] == ["closed"]
    allowed = {entry.split()[0] for entry in service["DeviceAllow"]}
    assert {"char-ttyS", "char-ttyUSB", "/dev/watchdog"} <= allowed
    assert set(SANDBOX) <= set(service)  # it sets every one the plain unit leaves out
