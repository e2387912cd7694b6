"""OCF instance files (`conf/OCF/TYPE/INSTANCE`): read as Heartbeat's OCF wrapper sources
them, and every line a shell would read differently from hbd named with its fix.

The scenarios: an administrator brings over a working Heartbeat instance file (quotes,
`export`, a helper variable) and sees the parameters hbd will pass; a new user forgets the
OCF_RESKEY_ prefix (a warning naming the line); and each mistake below stops
`hbctl check-config` and the daemon with one FILE:LINE message.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hbd.commands.cli import hbctl_main
from hbd.config.load import load_config
from hbd.config.ocf import parse_instance
from hbd.core.errors import ConfigError

from confkit import config_dir, empty_agent_dirs, make_executable


def test_a_heartbeat_instance_file_reads_as_sh_would_source_it() -> None:
    text = (
        "# PostgreSQL on the DRBD disk\n"
        "\n"
        "base=/srv/pg   # a helper, used below\n"
        "OCF_RESKEY_pgdata=$base/data\n"
        "export OCF_RESKEY_pgctl=/usr/lib/postgresql/15/bin/pg_ctl\n"
        'OCF_RESKEY_start_opt="-c config_file=${base}/postgresql.conf"\n'
        "OCF_RESKEY_pgdba='postgres'\n"
        "OCF_RESKEY_monitor_sql=select\\ 1\n"
        "OCF_RESKEY_pgdba=pgadmin\n"  # assigned twice: the last one counts, as in sh
        'OCF_RESKEY_price="\\$5 a \\"shot\\""\n'
    )
    s = parse_instance(text, "conf/OCF/pgsql/main")
    assert s.assignments == (
        ("base", "/srv/pg"),
        ("OCF_RESKEY_pgdata", "/srv/pg/data"),
        ("OCF_RESKEY_pgctl", "/usr/lib/postgresql/15/bin/pg_ctl"),
        ("OCF_RESKEY_start_opt", "-c config_file=/srv/pg/postgresql.conf"),
        ("OCF_RESKEY_monitor_sql", "select 1"),
        ("OCF_RESKEY_pgdba", "pgadmin"),
        ("OCF_RESKEY_price", '$5 a "shot"'),
    )
    assert s.parameters["pgdata"] == "/srv/pg/data"
    assert s.warnings == ()  # `base` is used further down: a helper, not a forgotten prefix


def test_a_forgotten_prefix_is_a_warning_naming_the_line() -> None:
    s = parse_instance("OCF_RESKEY_ip=10.0.0.5\nnic=eth0\n", "conf/OCF/IPaddr2/vip")
    assert s.assignments == (("OCF_RESKEY_ip", "10.0.0.5"), ("nic", "eth0"))
    (w,) = s.warnings
    assert w.source == "conf/OCF/IPaddr2/vip:2"
    assert "write OCF_RESKEY_nic=..." in w.message


MISTAKES = {
    "no equals": ("ip 10.0.0.5\n", 1, "write OCF_RESKEY_ip=10.0.0.5"),
    "spaces around =": ("\nOCF_RESKEY_ip = 10.0.0.5\n", 2, "write OCF_RESKEY_ip=10.0.0.5"),
    "space after =": ("OCF_RESKEY_ip= 10.0.0.5\n", 1, "no spaces around '='"),
    "two words": ("OCF_RESKEY_options=-o noatime\n", 1, 'NAME="a b"'),
    "open quote": ('OCF_RESKEY_options="-o noatime\n', 1, 'unterminated "..."'),
    "open single": ("OCF_RESKEY_options='-o\n", 1, "unterminated '...'"),
    "command": ("OCF_RESKEY_ip=$(hostname -i)\n", 1, "command substitution"),
    "backticks": ("OCF_RESKEY_ip=`hostname -i`\n", 1, "command substitution"),
    "environment": ("OCF_RESKEY_dir=$HOME/x\n", 1, "$HOME is not set earlier in this file"),
    "default syntax": ("OCF_RESKEY_dir=${D:-/x}\n", 1, "only ${NAME} and $NAME"),
    "positional": ("OCF_RESKEY_dir=$1\n", 1, "$1 means nothing"),
    "bare prefix": ("OCF_RESKEY_=1\n", 1, "needs a parameter name"),
    "bad name": ("OCF-RESKEY-ip=1\n", 1, "not NAME=value"),
    "NUL": ("OCF_RESKEY_ip=1\x00\n", 1, "NUL byte"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_each_mistake_is_one_error_naming_file_line_and_fix(case: str) -> None:
    text, line, phrase = MISTAKES[case]
    with pytest.raises(ConfigError) as info:
        parse_instance(text, "/etc/ha.d/conf/OCF/X/y")
    assert (info.value.file, info.value.line) == ("/etc/ha.d/conf/OCF/X/y", line)
    assert phrase in info.value.message


# -- through the configuration loader and hbctl check-config ------------------------------

HACF = "node ha-01 ha-02\nbcast eth0\nauto_failback on\n"


def ocf_config(tmp_path: Path, instance_text: str | None) -> tuple[Path, str, str]:
    """A config dir whose haresources runs OCF::Dummy::d1 (a test OCF root with Dummy)."""
    directory = config_dir(tmp_path / "ha.d", HACF, haresources="ha-01 10.0.0.5 OCF::Dummy::d1\n")
    initd, ocf = empty_agent_dirs(tmp_path)
    make_executable(Path(ocf) / "resource.d" / "heartbeat" / "Dummy")
    if instance_text is not None:
        inst = directory / "conf" / "OCF" / "Dummy" / "d1"
        inst.parent.mkdir(parents=True)
        inst.write_text(instance_text)
    return directory, initd, ocf


def test_check_config_shows_the_parameters_and_the_warning(tmp_path: Path) -> None:
    directory, initd, ocf = ocf_config(tmp_path, "OCF_RESKEY_state=/run/d1.state\nfake=1\n")
    config = load_config(str(directory), "ha-01", initd_dir=initd, ocf_root=ocf)
    (group,) = config.groups
    assert group.resources[1].settings == (("OCF_RESKEY_state", "/run/d1.state"), ("fake", "1"))
    inst = f"{directory}/conf/OCF/Dummy/d1"
    assert [str(w) for w in config.warnings if w.source.startswith(inst)] == [
        f"{inst}:2: warning: 'fake' is not an OCF parameter: the agent gets it as the plain "
        "environment variable fake (as Heartbeat passed it); to set the agent's 'fake' "
        "parameter write OCF_RESKEY_fake=..."
    ]


def test_hbctl_check_config_describes_an_ocf_resource(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, _, ocf = ocf_config(tmp_path, "OCF_RESKEY_state=/run/d1.state\n")
    monkeypatch.setattr("hbd.config.load.DEFAULT_OCF_ROOT", ocf)
    argv = ["check-config", "--config-dir", str(directory), "--node-name", "ha-01"]
    assert hbctl_main([*argv, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    (res,) = [r for r in d["groups"][0]["resources"] if r["agent"] == "ocf"]
    assert res["spec"] == "OCF::Dummy::d1"
    assert res["instance_file"] == f"{directory}/conf/OCF/Dummy/d1"
    assert res["parameters"] == {"state": "/run/d1.state"}
    assert hbctl_main(argv) == 0
    text = capsys.readouterr().out
    assert "OCF::Dummy::d1" in text and "state=/run/d1.state" in text


def test_a_bad_instance_file_stops_check_config_with_its_own_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, _, ocf = ocf_config(tmp_path, "OCF_RESKEY_state=/run/x\nstate /run/y\n")
    monkeypatch.setattr("hbd.config.load.DEFAULT_OCF_ROOT", ocf)
    status = hbctl_main(["check-config", "--config-dir", str(directory), "--node-name", "ha-01"])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err == (
        f"{directory}/conf/OCF/Dummy/d1:2: 'state /run/y' is not NAME=value (one assignment "
        "per line); to set the agent's 'state' parameter write OCF_RESKEY_state=/run/y\n"
    )


def test_a_missing_instance_file_names_the_haresources_line_and_the_file(tmp_path: Path) -> None:
    directory, initd, ocf = ocf_config(tmp_path, None)
    with pytest.raises(ConfigError) as info:
        load_config(str(directory), "ha-01", initd_dir=initd, ocf_root=ocf)
    assert (info.value.file, info.value.line) == (f"{directory}/haresources", 1)
    assert f"{directory}/conf/OCF/Dummy/d1 not found; create it with one " in info.value.message
    assert "OCF_RESKEY_name=value" in info.value.message


def test_hbd_reads_the_good_file_exactly_as_bin_sh_sources_it(tmp_path: Path) -> None:
    # the same text sourced by a real shell: every variable must come out the same
    text = (
        "base=/srv/pg\nOCF_RESKEY_pgdata=$base/data\nexport OCF_RESKEY_x='a  b'\n"
        'OCF_RESKEY_y="${base}\\"q\\" \\$HOME"\nOCF_RESKEY_z=one\\ two#three  # note\n'
        "OCF_RESKEY_w=$\n"
    )
    inst = tmp_path / "inst"
    inst.write_text(text)
    ours = dict(parse_instance(inst.read_text(), str(inst)).assignments)
    names = " ".join(ours)
    script = f'. {inst}; for v in {names}; do eval "printf \'%s\\0\' \\"\\${{$v}}\\""; done'
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    assert dict(zip(ours, out.decode().split("\0")[:-1], strict=True)) == ours
    assert ours["OCF_RESKEY_y"] == '/srv/pg"q" $HOME'
