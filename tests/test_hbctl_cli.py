"""`hbctl cable-test` and `hbctl export pacemaker`, as an administrator runs them: through
`hbctl_main` and once each as a real `hbctl` process.

cable-test runs over socat ptys (a loopback plug is a pty socat hands to `cat`; a cable is
a socat pty pair). export reads a configuration directory written by the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hbd.commands.cli import hbctl_main

from cluster import HBCTL

requires_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")


# -- cable-test -----------------------------------------------------------------------


@requires_socat
def test_hbctl_cable_test_through_a_loopback_plug_passes(
    loopback_plug: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["cable-test", loopback_plug, "--loopback", "--count", "20", "--json"]
    assert hbctl_main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["mode"], report["sent"], report["ok"], report["lost"]) == ("loopback", 20, 20, 0)
    assert report["clean"] is True


@requires_socat
def test_hbctl_cable_test_between_two_hosts_with_the_peer_a_real_hbctl_process(
    cable: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    here, there = cable
    peer = subprocess.Popen(
        [HBCTL, "cable-test", there, "--peer", "--timeout", "10", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stderr is not None
        line = peer.stderr.readline()  # the peer says when it listens; probes before are lost
        assert "waiting for a sender" in line, line
        assert hbctl_main(["cable-test", here, "--count", "30", "--json"]) == 0
        sender = json.loads(capsys.readouterr().out)
        out, _ = peer.communicate(timeout=15)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.communicate()
    assert (sender["mode"], sender["sent"], sender["ok"]) == ("sender", 30, 30)
    assert sender["rtt_ms"]["min"] > 0
    assert peer.returncode == 0, out
    assert json.loads(out)["finished"] is True


def test_hbctl_cable_test_names_a_port_it_cannot_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "ttyNOPE"
    assert hbctl_main(["cable-test", str(missing), "--loopback"]) == 2
    assert f"cannot open {missing}" in capsys.readouterr().err


# -- export pacemaker -----------------------------------------------------------------


def write_config(d: Path, auto_failback: str) -> Path:
    d.mkdir()
    (d / "ha.cf").write_text(f"bcast eth0\nauto_failback {auto_failback}\nnode alpha beta\n")
    (d / "authkeys").write_text("auth 1\n1 sha1 export-test-key\n")
    os.chmod(d / "authkeys", 0o600)
    (d / "haresources").write_text("# web\nalpha 10.0.0.10/24/eth0\nbeta 10.0.0.20\n")
    return d


@pytest.mark.parametrize(("auto_failback", "stickiness"), [("on", "0"), ("off", "1000")])
def test_hbctl_export_pacemaker_turns_haresources_into_crm_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], auto_failback: str, stickiness: str
) -> None:
    conf = write_config(tmp_path / "ha.d", auto_failback)
    argv = ["export", "pacemaker", "--config-dir", str(conf), "--node-name", "alpha"]
    assert hbctl_main(argv) == 0
    crm = capsys.readouterr().out
    assert "params ip=10.0.0.10 cidr_netmask=24 nic=eth0" in crm
    assert "group grp_ip_10.0.0.10 ip_10.0.0.10\n" in crm
    assert "location loc_grp_ip_10.0.0.10 grp_ip_10.0.0.10 100: alpha\n" in crm
    assert "location loc_grp_ip_10.0.0.20 grp_ip_10.0.0.20 100: beta\n" in crm
    assert f"rsc_defaults resource-stickiness={stickiness}\n" in crm
    assert f"# from {conf}/haresources:2\n" in crm


def test_hbctl_export_pacemaker_as_pcs_commands_from_a_real_process(tmp_path: Path) -> None:
    conf = write_config(tmp_path / "ha.d", "off")
    argv = [HBCTL, "export", "pacemaker", "--config-dir", str(conf), "--node-name", "beta"]
    argv += ["--format", "pcs"]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("#!/bin/sh\n")
    assert "pcs constraint location grp_ip_10.0.0.20 prefers beta=100\n" in proc.stdout
    assert "pcs resource defaults update resource-stickiness=1000\n" in proc.stdout
    check = subprocess.run(["sh", "-n"], input=proc.stdout, text=True, check=False)
    assert check.returncode == 0


def test_hbctl_export_pacemaker_names_the_broken_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_config(tmp_path / "ha.d", "on")
    (conf / "haresources").write_text("gamma 10.0.0.30\n")
    argv = ["export", "pacemaker", "--config-dir", str(conf), "--node-name", "alpha"]
    assert hbctl_main(argv) == 2
    err = capsys.readouterr().err
    assert f"{conf}/haresources:1" in err and "gamma" in err
    with pytest.raises(SystemExit) as exited:
        hbctl_main([*argv, "--format", "yaml"])
    assert exited.value.code == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err


def test_every_hbctl_command_is_listed_in_its_help() -> None:
    proc = subprocess.run(
        [HBCTL, "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    for command in ("cl-status", "cable-test", "export", "status", "check-config"):
        assert f"    {command}" in proc.stdout
