"""hbctl and hbd follow the conventions admins expect: --version, a global --run-dir (and
$HBD_RUN_DIR), `cl-status --help`, and exit statuses that tell "no daemon" from
"partitioned"."""

from __future__ import annotations

from pathlib import Path

import pytest

from hbd import __version__
from hbd.commands.cli import EXIT_NO_DAEMON, hbctl_main, hbd_main


@pytest.mark.parametrize(("main", "prog"), [(hbctl_main, "hbctl"), (hbd_main, "hbd")])
def test_version_prints_the_program_and_its_version(
    main: object, prog: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])  # type: ignore[operator]
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"{prog} {__version__}"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--run-dir", "{d}", "status"], None),  # the global form
        (["status", "--run-dir", "{d}"], None),  # the command's own
        (["--run-dir", "/elsewhere", "status", "--run-dir", "{d}"], None),  # its own wins
        (["status"], "{d}"),  # $HBD_RUN_DIR
    ],
)
def test_the_run_directory_comes_from_either_flag_or_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: str | None,
) -> None:
    run_dir = str(tmp_path / "run")
    if env is None:
        monkeypatch.delenv("HBD_RUN_DIR", raising=False)
    else:
        monkeypatch.setenv("HBD_RUN_DIR", env.format(d=run_dir))
    code = hbctl_main([a.format(d=run_dir) for a in argv])
    assert code == EXIT_NO_DAEMON == 3  # "no daemon", not 2 ("partitioned")
    assert f"{run_dir}/hbd.sock: no hbd is running here" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_cl_status_help_lists_its_subcommands(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = hbctl_main(["cl-status", flag])
    out = capsys.readouterr().out
    assert code == 0
    assert "Usage: hbctl cl-status <sub-command>" in out
    assert "listnodes" in out and "hblinkstatus" in out
