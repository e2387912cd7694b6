"""`hbctl check-config`: what hbd understood, and every mistake as one line with exit 2.

The malformed table covers all three files. Each entry is a whole file as a user might
write it, the line the error must name (None when the mistake is the file as a whole) and a
phrase of the message. Every entry must give exactly one ConfigError from load_config, and
through the CLI exactly one line on stderr, nothing on stdout, exit status 2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from hbd.commands.cli import hbctl_main
from hbd.config.load import load_config
from hbd.core.errors import ConfigError

import confkit
from confkit import GOOD_AUTHKEYS, GOOD_HACF, config_dir, empty_agent_dirs


def sample(name: str, dest: Path) -> Path:
    """A sample directory whose `watchdog` device exists here (check-config checks it)."""
    return confkit.sample(name, dest, watchdog_stand_in=True)


H = GOOD_HACF  # 3 lines: a bad line appended to it is line 4


class Bad(NamedTuple):
    file: str  # "ha.cf", "authkeys" or "haresources"
    content: str | bytes
    line: int | None
    phrase: str


MALFORMED: dict[str, Bad] = {
    # ha.cf
    "unknown directive": Bad("ha.cf", H + "keeplive 2\n", 4, "did you mean 'keepalive'?"),
    "time not a time": Bad("ha.cf", H + "keepalive fast\n", 4, "needs a time such as 10"),
    "time rounds to 0": Bad("ha.cf", H + "keepalive 499us\n", 4, "more than 0 ms"),
    "keepalive twice": Bad("ha.cf", H + "keepalive 2\nkeepalive 3\n", 5, "given twice"),
    "two values": Bad("ha.cf", H + "udpport 694 695\n", 4, "exactly one value"),
    "deadtime vs keepalive": Bad("ha.cf", H + "deadtime 2\n", 4, "more than twice keepalive"),
    "warntime >= deadtime": Bad("ha.cf", H + "warntime 30\n", 4, "less than deadtime"),
    "initdead < deadtime": Bad("ha.cf", H + "initdead 20\n", 4, "at least deadtime"),
    "deadping too short": Bad("ha.cf", H + "deadping 2\n", 4, "deadping 2s is too small"),
    "udpport range": Bad("ha.cf", H + "udpport 70000\n", 4, "port from 1 to 65535"),
    "odd baud": Bad("ha.cf", H + "baud 14400\n", 4, "invalid baud rate '14400'"),
    "serial relative": Bad("ha.cf", H + "serial ttyS0\n", 4, "full path such as /dev/ttyS0"),
    "path twice": Bad("ha.cf", H + "bcast eth1 eth0\n", 4, "bcast:eth0 is already defined"),
    "mcast unicast group": Bad(
        "ha.cf", H + "mcast eth0 10.0.0.1 694 1 0\n", 4, "not a multicast group"
    ),
    "mcast ttl 0": Bad("ha.cf", H + "mcast eth1 239.0.0.1 694 0 0\n", 4, "ttl '0'"),
    "mcast short": Bad("ha.cf", H + "mcast eth1 239.0.0.1 694\n", 4, "device group port ttl"),
    "ucast bad peer": Bad("ha.cf", H + "ucast eth1 10.0.0.300\n", 4, "not an IPv4 address"),
    "iface name": Bad("ha.cf", H + "bcast eth0/1\n", 4, "not a network interface name"),
    "ping twice": Bad("ha.cf", H + "ping 10.0.0.1 10.0.0.1\n", 4, "listed twice"),
    "ping_group alone": Bad("ha.cf", H + "ping_group gw\n", 4, "a name and addresses"),
    "bad node name": Bad("ha.cf", H + "node ha_01!\n", 4, "not a valid node name"),
    "node twice": Bad("ha.cf", H + "node HA-01\n", 4, "node 'ha-01' is listed twice"),
    "autojoin any": Bad("ha.cf", H + "autojoin any\n", 4, "every node must be listed"),
    "auto_failback word": Bad("ha.cf", H + "auto_failback sometimes\n", 4, "on, off or legacy"),
    "nice + auto": Bad("ha.cf", H + "nice_failback on\n", 4, "not both"),
    "watchdog relative": Bad("ha.cf", H + "watchdog watchdog\n", 4, "full path"),
    "wd timeout, no wd": Bad("ha.cf", H + "watchdog_timeout 40\n", 4, "needs a 'watchdog DEVICE'"),
    "wd timeout short": Bad(
        "ha.cf", H + "watchdog /dev/watchdog\nwatchdog_timeout 10\n", 5, "shorter than deadtime"
    ),
    "wd timeout frac": Bad(
        "ha.cf", H + "watchdog /dev/watchdog\nwatchdog_timeout 31.5\n", 5, "whole seconds"
    ),
    "logfacility": Bad("ha.cf", H + "logfacility local9\n", 4, "not a syslog facility"),
    "debug range": Bad("ha.cf", H + "debug 256\n", 4, "from 0 to 255"),
    "superscript digit": Bad("ha.cf", H + "debug \u00b2\n", 4, "from 0 to 255"),
    "arabic digits": Bad("ha.cf", H + "udpport \u0666\u0669\u0664\n", 4, "port from 1 to 65535"),
    "huge time": Bad("ha.cf", H + "deadtime " + "9" * 400 + "\n", 4, "needs a time"),
    "realtime word": Bad("ha.cf", H + "realtime maybe\n", 4, "on/off"),
    "rtprio range": Bad("ha.cf", H + "rtprio 100\n", 4, "from 1 to 99"),
    "uuidfrom": Bad("ha.cf", H + "uuidfrom mac\n", 4, "one of file, nodename"),
    "hbgenmethod": Bad("ha.cf", H + "hbgenmethod random\n", 4, "one of file, time"),
    "msgfmt": Bad("ha.cf", H + "msgfmt xml\n", 4, "one of classic, netstring"),
    "max_rexmit_delay": Bad("ha.cf", H + "max_rexmit_delay soon\n", 4, "milliseconds"),
    "respawn relative": Bad("ha.cf", H + "respawn hacluster ipfail\n", 4, "not a full path"),
    "apiauth no list": Bad("ha.cf", H + "apiauth ipfail hacluster\n", 4, "uid=... or gid=..."),
    "wire": Bad("ha.cf", H + "wire json\n", 4, "heartbeat or hbd"),
    "crm respawn": Bad("ha.cf", H + "crm respawn\n", 4, "does not start Pacemaker"),
    "pacemaker on": Bad("ha.cf", H + "pacemaker on\n", 4, "use 'crm off'"),
    "mcast6 global": Bad("ha.cf", H + "mcast6 eth0 ff0e::1 694 1 0\n", 4, "as Heartbeat refuses"),
    "mcast6 hops": Bad("ha.cf", H + "mcast6 eth0 ff12::1 694 5 0\n", 4, "hops '5'"),
    "mcast6 v4 group": Bad("ha.cf", H + "mcast6 eth0 239.0.0.1 694 1 0\n", 4, "write mcast"),
    "mcast v6 group": Bad("ha.cf", H + "mcast eth0 ff12::1 694 1 0\n", 4, "write mcast6"),
    "ucast v6 peer": Bad("ha.cf", H + "ucast eth1 fd00::2\n", 4, "write ucast6 eth1 fd00::2"),
    "ucast6 v4 peer": Bad("ha.cf", H + "ucast6 eth1 10.0.0.2\n", 4, "write ucast eth1"),
    "ucast6 loopback": Bad("ha.cf", H + "ucast6 eth1 ::1\n", 4, "loopback address"),
    "ucast6 scope": Bad("ha.cf", H + "ucast6 eth1 fe80::2%eth0\n", 4, "names interface eth0"),
    "ping v6": Bad("ha.cf", H + "ping fd00::fe\n", 4, "write ping6 fd00::fe"),
    "ping6 v4": Bad("ha.cf", H + "ping6 10.0.0.254\n", 4, "write ping 10.0.0.254"),
    "ping6 link-local": Bad("ha.cf", H + "ping6 fe80::1\n", 4, "fe80::1%eth0"),
    "ping_group v6": Bad("ha.cf", H + "ping_group gw fd00::1\n", 4, "one ping6 line each"),
    "NUL byte": Bad("ha.cf", H + "bcast\x00 eth1\n", 4, "NUL byte"),
    "not UTF-8": Bad("ha.cf", H.encode() + b"logfile /var/log/\xff\n", 4, "not UTF-8"),
    "form feed": Bad("ha.cf", H + "# part two\f\nkeepalive fast\n", 5, "needs a time"),
    "no media": Bad("ha.cf", "node ha-01 ha-02\nauto_failback on\n", None, "no heartbeat media"),
    "no nodes": Bad("ha.cf", "bcast eth0\nauto_failback on\n", None, "no nodes defined"),
    "not our node": Bad("ha.cf", "node ha-02\nbcast eth0\n", None, "this node 'ha-01'"),
    # authkeys
    "no auth line": Bad("authkeys", "1 sha1 secret\n", None, "no 'auth N' line"),
    "auth names nothing": Bad("authkeys", "auth 2\n1 sha1 x\n", 1, "key 2, which is not defined"),
    "auth word": Bad("authkeys", "auth one\n1 sha1 x\n", 1, "one key index"),
    "auth superscript": Bad("authkeys", "auth \u00b9\n1 sha1 x\n", 1, "one key index"),
    "auth twice": Bad("authkeys", "auth 1\nauth 1\n1 sha1 x\n", 2, "'auth' given twice"),
    "no key": Bad("authkeys", "auth 1\n1 sha1\n", 2, "has no key"),
    "no method": Bad("authkeys", "auth 1\n1\n", 2, "has no method"),
    "unknown method": Bad("authkeys", "auth 1\n1 sha3 x\n", 2, "unknown method 'sha3'"),
    "index range": Bad("authkeys", "auth 1\n1 sha1 x\n16 sha1 y\n", 3, "from 0 to 15"),
    "index twice": Bad("authkeys", "auth 1\n1 sha1 x\n1 md5 y\n", 3, "defined twice"),
    "garbage": Bad("authkeys", "auth 1\nkey=secret\n", 2, "expected 'auth N'"),
    # haresources
    "stranger node": Bad("haresources", "ha-03 10.0.0.5\n", 1, "not a node of this cluster"),
    "unknown agent": Bad("haresources", "ha-01 hbd-test-no-such-agent\n", 1, "not found"),
    "bad ip": Bad("haresources", "ha-01 10.0.0.300\n", 1, "not an IPv4 address"),
    "prefix 33": Bad("haresources", "ha-01 IPaddr::10.0.0.5/33\n", 1, "from 0 to 32"),
    "prefix superscript": Bad("haresources", "ha-01 10.0.0.5/\u00b2\n", 1, "from 0 to 32"),
    "bad broadcast": Bad(
        "haresources", "ha-01 IPaddr::10.0.0.5/24/eth0/10.0.0.x\n", 1, "broadcast"
    ),
    "ipaddr 2 args": Bad("haresources", "ha-01 IPaddr::10.0.0.5::eth0\n", 1, "one argument"),
    "empty part": Bad("haresources", "ha-01 IPaddr2::\n", 1, "empty part"),
    "IPaddr v6": Bad("haresources", "ha-01 IPaddr::fd00::5\n", 1, "IPaddr is IPv4 only"),
    "bare v6": Bad("haresources", "ha-01 fd00::5/64\n", 1, "write IPv6addr::fd00::5/64"),
    "IPv6addr v4": Bad("haresources", "ha-01 IPv6addr::10.0.0.5\n", 1, "write IPaddr2::"),
    "IPv6 prefix": Bad("haresources", "ha-01 IPaddr2::fd00::5/129\n", 1, "from 0 to 128"),
    "ocf short": Bad("haresources", "ha-01 OCF::Dummy\n", 1, "OCF::agent-type::instance"),
    "ocf missing": Bad("haresources", "ha-01 OCF::HbdTestNoSuch::a\n", 1, "not found under"),
    "sendarp bare": Bad("haresources", "ha-01 SendArp\n", 1, "SendArp needs ip/iface"),
    "slash in name": Bad("haresources", "ha-01 ../../bin/sh\n", 1, "must not contain '/'"),
    "no resources": Bad("haresources", "# web\nha-01\n", 2, "lists no resources"),
    "continued": Bad(
        "haresources", "ha-01 10.0.0.5\nha-02 10.0.0.6 \\\n  hbd-test-nope\n", 2, "not found"
    ),
    "duplicate": Bad("haresources", "ha-01 10.0.0.5\nha-02 10.0.0.5\n", 2, "already in a group"),
}


def write_bad(tmp_path: Path, bad: Bad) -> Path:
    files: dict[str, Any] = {"hacf": GOOD_HACF, "authkeys": GOOD_AUTHKEYS, "haresources": None}
    files["hacf" if bad.file == "ha.cf" else bad.file] = bad.content
    return config_dir(tmp_path / "ha.d", **files)


def test_the_table_is_large_and_spans_all_three_files() -> None:
    files = [b.file for b in MALFORMED.values()]
    assert len(files) >= 30
    assert {f: files.count(f) >= 10 for f in ("ha.cf", "authkeys", "haresources")} == {
        "ha.cf": True,
        "authkeys": True,
        "haresources": True,
    }


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_config_gives_one_error_naming_file_and_line(tmp_path: Path, case: str) -> None:
    bad = MALFORMED[case]
    directory = write_bad(tmp_path, bad)
    initd, ocf = empty_agent_dirs(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(str(directory), "ha-01", initd_dir=initd, ocf_root=ocf)
    assert (info.value.file, info.value.line) == (f"{directory}/{bad.file}", bad.line)
    assert bad.phrase in info.value.message


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_config_is_one_stderr_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    bad = MALFORMED[case]
    directory = write_bad(tmp_path, bad)
    status = hbctl_main(["check-config", "--config-dir", str(directory), "--node-name", "ha-01"])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    where = f"{directory}/{bad.file}" + ("" if bad.line is None else f":{bad.line}")
    assert err.startswith(f"{where}: ")
    assert err.endswith("\n") and err.count("\n") == 1
    assert bad.phrase in err


def hbctl(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hbctl")
    assert exe is not None, "hbctl is not on PATH: pip install -e '.[test]'"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    "case", ["unknown directive", "not UTF-8", "no auth line", "continued", "not our node"]
)
def test_the_installed_hbctl_prints_one_line_and_no_traceback(tmp_path: Path, case: str) -> None:
    bad = MALFORMED[case]
    directory = write_bad(tmp_path, bad)
    run = hbctl("check-config", "--config-dir", str(directory), "--node-name", "ha-01")
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith(f"{directory}/{bad.file}")
    assert bad.phrase in run.stderr


def test_a_missing_directory_is_one_line_too(tmp_path: Path) -> None:
    run = hbctl("check-config", "--config-dir", str(tmp_path / "nowhere"), "--node-name", "a")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == f"{tmp_path}/nowhere/ha.cf: file not found\n"


# --- what hbd understood -----------------------------------------------------------------------


def check_json(directory: Path, node: str = "ha-01") -> dict[str, Any]:
    run = hbctl("check-config", "--config-dir", str(directory), "--node-name", node, "--json")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def test_json_names_every_path_witness_and_timing_in_milliseconds(tmp_path: Path) -> None:
    directory = sample("allpaths", tmp_path)
    d = check_json(directory, node="HA-02")  # --node-name is lowercased like uname -n
    assert d["valid"] is True
    assert (d["node"], d["nodes"], d["cluster"]) == ("ha-02", ["ha-01", "ha-02"], "appliance")
    assert [p["id"] for p in d["paths"]] == [
        "serial:/dev/ttyS0",
        "bcast:eth0",
        "mcast:eth0:225.0.0.1",
        "ucast:eth0:10.0.0.2",
    ]
    serial, bcast, mcast, ucast = d["paths"]
    assert serial["baud"] == 38400 and "port" not in serial
    assert bcast["port"] == 694 and bcast["source"] == f"{directory}/ha.cf:9"
    assert (mcast["group"], mcast["ttl"], mcast["loop"]) == ("225.0.0.1", 1, False)
    assert ucast["peer"] == "10.0.0.2"
    assert [p["id"] for p in d["ping_nodes"]] == ["ping:192.168.0.254"]
    assert d["ping_groups"] == [
        {"id": "ping_group:routers", "name": "routers", "addresses": ["192.168.0.1", "192.168.0.2"]}
    ]
    timings = {k: v for k, v in d.items() if k.endswith("_ms")}
    assert timings == {
        "keepalive_ms": 500,
        "deadtime_ms": 5000,
        "warntime_ms": 2500,
        "initdead_ms": 20000,
        "deadping_ms": 5000,
        "max_rexmit_delay_ms": 250,
        "watchdog_timeout_ms": 10000,
    }
    assert d["auth"] == {"index": 2, "method": "sha256", "indexes": [1, 2]}
    assert (d["wire"], d["auto_failback"], d["adaptive_detector"]) == ("hbd", "off", True)
    assert [(g["preferred"], g["name"]) for g in d["groups"]] == [
        ("ha-01", "IPaddr::10.0.0.100"),
        ("ha-02", "IPaddr::10.0.0.101/24/eth0"),
    ]
    # only what leaves the residual case open: two nodes alone, no arbiter
    assert len(d["warnings"]) == 1 and "without an arbiter" in d["warnings"][0]


def test_check_config_describes_ipv6_paths_witnesses_and_addresses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hacf = (
        "node ha-01 ha-02\nauto_failback on\nucast6 eth0 FD00:0::2\n"
        "mcast6 eth1 ff12::1:694 695 1 0\nping6 fd00::fe fe80::1%eth1\n"
    )
    haresources = "ha-01 IPv6addr::fd00::100/64/eth0 IPaddr2::fd00::101/64\n"
    directory = config_dir(tmp_path / "ha.d", hacf, haresources=haresources)
    d = check_json(directory)
    assert [(p["id"], p["family"], p["port"]) for p in d["paths"]] == [
        ("ucast6:eth0:fd00::2", "ipv6", 694),
        ("mcast6:eth1:ff12::1:694", "ipv6", 695),
    ]
    assert (d["paths"][0]["peer"], d["paths"][1]["hops"], d["paths"][1]["loop"]) == (
        "fd00::2",
        1,
        False,
    )
    assert [(p["id"], p["family"]) for p in d["ping_nodes"]] == [
        ("ping:fd00::fe", "ipv6"),
        ("ping:fe80::1%eth1", "ipv6"),
    ]
    assert [r["spec"] for r in d["groups"][0]["resources"]] == [
        "IPv6addr::fd00::100/64/eth0",
        "IPaddr2::fd00::101/64",
    ]
    argv = ["check-config", "--config-dir", str(directory), "--node-name", "ha-01"]
    assert hbctl_main(argv) == 0
    text = capsys.readouterr().out
    assert "ucast6:eth0:fd00::2" in text and "ping:fd00::fe (ping6)" in text


def test_json_of_the_issues_example(tmp_path: Path) -> None:
    d = check_json(sample("example", tmp_path))
    assert (d["keepalive_ms"], d["deadtime_ms"], d["warntime_ms"], d["initdead_ms"]) == (
        2000,
        30000,
        10000,
        120000,
    )
    assert d["watchdog_timeout_ms"] is None  # hbd picks it from deadtime
    assert d["auth"]["method"] == "sha1"
    assert [r["agent"] for r in d["groups"][0]["resources"]] == ["builtin", "builtin", "resource.d"]
    assert len(d["warnings"]) == 2 and "ipfail" in d["warnings"][0]
    assert "without an arbiter" in d["warnings"][1]


def test_text_output_shows_ids_units_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = sample("allpaths", tmp_path)
    (directory / "ha.cf").write_text(
        (directory / "ha.cf").read_text() + "stonith baytech /etc/ha.d/conf/stonith.baytech\n"
    )
    assert hbctl_main(["check-config", "--config-dir", str(directory), "--node-name", "ha-01"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"Configuration {directory} is valid for node ha-01.")
    for text in (
        "keepalive 500 ms",
        "deadtime 5 s",
        "initdead 20 s",
        "auth 2 sha256",
        "serial:/dev/ttyS0",
        "38400 baud",
        "mcast:eth0:225.0.0.1",
        "ucast:eth0:10.0.0.2",
        "ping:192.168.0.254",
        "ping_group:routers (192.168.0.1, 192.168.0.2)",
        f"{directory}/watchdog timeout 10 s",
        f"{directory}/ha.cf:20: warning: 'stonith' is not carried out",
    ):
        assert text in out


def test_exit_status_tells_valid_from_invalid(tmp_path: Path) -> None:
    directory = sample("allpaths", tmp_path)
    assert (
        hbctl("check-config", "--config-dir", str(directory), "--node-name", "ha-01").returncode
        == 0
    )
    (directory / "authkeys").write_text("auth 2\n2 sha256\n")
    run = hbctl("check-config", "--config-dir", str(directory), "--node-name", "ha-01", "--json")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.startswith(f"{directory}/authkeys:2: key 2 (sha256) has no key")


def test_a_missing_watchdog_device_is_an_error_at_its_line_and_nothing_is_opened(
    tmp_path: Path,
) -> None:
    """The Heartbeat guides' ha.cf says `watchdog /dev/watchdog`; on a box without one,
    check-config says so at that line (exit 2), without opening anything: opening arms most
    watchdogs."""
    directory = confkit.sample("allpaths", tmp_path)  # watchdog /dev/watchdog at line 16
    hacf = directory / "ha.cf"
    hacf.write_text(hacf.read_text().replace("/dev/watchdog", f"{tmp_path}/no-watchdog"))
    run = hbctl("check-config", "--config-dir", str(directory), "--node-name", "ha-01")
    assert run.returncode == 2
    assert run.stderr.startswith(f"{hacf}:16: watchdog device {tmp_path}/no-watchdog does not")
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    (tmp_path / "no-watchdog").mkdir()  # a directory is no device either
    run = hbctl("check-config", "--config-dir", str(directory), "--node-name", "ha-01")
    assert run.returncode == 2 and "neither a character device nor a file" in run.stderr


def test_with_qnetd_the_arbiter_is_described_and_the_residual_warning_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hacf = GOOD_HACF + "ping 10.0.0.254\nqnetd 10.0.0.9\nqnetd_tie_breaker 2\n"
    directory = config_dir(tmp_path / "ha.d", hacf, haresources="ha-01 IPaddr::10.0.0.100\n")
    d = check_json(directory)
    assert d["qnetd"] == {
        "host": "10.0.0.9",
        "port": 5403,
        "algorithm": "ffsplit",
        "tls": False,
        "tie_breaker": "2",
        "node_ids": {"ha-01": 1, "ha-02": 2},
    }
    assert not any("without an arbiter" in w for w in d["warnings"])
    assert [w for w in d["warnings"] if "qnetd without a watchdog" in w]
    assert hbctl_main(["check-config", "--config-dir", str(directory), "--node-name", "ha-01"]) == 0
    assert "arbiter:    qnetd 10.0.0.9 port 5403, ffsplit, tie-breaker 2" in capsys.readouterr().out
