"""The shipped unit under a real systemd, installed by the README's own steps, running the
kind of resources people run.

This machine has no systemd as PID 1, so the test boots one: systemd-nspawn on an overlay
of this machine's root (writes go to a tmpfs and vanish), with a private network and only
a test target started. Inside, a oneshot service runs the shell block of README.md
"Running it as a service" line by line, from the checkout, with one substitution: the
first line (a venv in /opt/hbd and `pip install .`) becomes a symlink from /opt/hbd to
this test run's own venv, which pip already installed from this checkout (the container
has no network to reach PyPI). `systemctl enable --now hbd` then starts hbd under systemd
with systemd/hbd.service as shipped.

The one node's group is what an existing /etc/ha.d runs: `hbdtestd`, an ordinary init.d
script that writes /run/hbdtestd.pid and starts its daemon as `nobody`
(start-stop-daemon --chuid), and `OCF::Dummy::d1` with its state in
/run/resource-agents; ha.cf has `respawn hacluster ...`. The facts are read from /proc
inside the container while hbd holds the group, then after `systemctl stop hbd`.

One drop-in differs from a real machine, and says why: this machine cannot raise
RLIMIT_MEMLOCK (no CAP_SYS_RESOURCE for anyone here), so `LimitMEMLOCK=infinity` would fail
the start; the test lowers it to this machine's hard limit.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from netns import requires_root

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "hbd.service"
VENV = Path(sys.prefix)  # the test run's venv: pip installed hbd from this checkout into it
README_FIRST = "python3 -m venv /opt/hbd && /opt/hbd/bin/pip install ."

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    requires_root,
    pytest.mark.skipif(
        shutil.which("systemd-nspawn") is None, reason="needs systemd-nspawn (systemd-container)"
    ),
    pytest.mark.skipif(not (VENV / "bin" / "hbd").exists(), reason="hbd is not installed here"),
]


def readme_service_steps() -> list[str]:
    """The shell lines of README.md's "Running it as a service" block."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Running it as a service", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_installs_what_the_unit_names() -> None:
    steps = readme_service_steps()
    assert steps[0] == README_FIRST
    assert "ExecStart=/opt/hbd/bin/hbd\n" in UNIT.read_text()  # the venv's console script
    assert "Documentation=file:/usr/share/doc/hbd/systemd.md " in UNIT.read_text()
    assert any("docs/*.md /usr/share/doc/hbd/" in s for s in steps)  # what it points at
    assert steps[-1] == "systemctl enable --now hbd"


HACF = """\
keepalive 200ms
deadtime 1
warntime 600ms
initdead 2
auto_failback on
ucast lo 127.0.0.1
respawn hacluster /bin/sleep 3601
node alpha
"""

INITD = """\
#!/bin/sh
# hbdtestd: an ordinary init.d service. Its pid file in /run, its daemon run as nobody.
PIDFILE=/run/hbdtestd.pid
case "$1" in
  start) exec start-stop-daemon --start --quiet --background --make-pidfile \\
           --pidfile $PIDFILE --chuid nobody:nogroup --exec /bin/sleep -- 3602 ;;
  stop) exec start-stop-daemon --stop --quiet --oknodo --retry 5 --pidfile $PIDFILE \\
          --remove-pidfile ;;
  status) if start-stop-daemon --status --pidfile $PIDFILE; then echo "hbdtestd is running"
          else echo "hbdtestd is not running"; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
"""

# run inside the container by hbdtest.service; $1 is the README's steps, rewritten
CHECKS = r"""
out=/hbdtest/facts
fact() { printf '%s=%s\n' "$1" "$2" >> $out; }
proc() { sed -n "s/^$2:[[:space:]]*//p" /proc/$1/status; }
sched() { sed -n 's/^policy *: *//p' /proc/$1/sched; }
finish() {
  journalctl --no-pager -o cat -u hbd > /hbdtest/hbd.journal 2>&1
  fact done yes
  systemctl --no-block poweroff
}
trap finish EXIT
cd "$CHECKOUT"
n=0
while read -r step; do
  n=$((n + 1))
  sh -c "$step" > /hbdtest/step$n.log 2>&1
  fact "step$n" "$?"
done < /hbdtest/steps
fact hbd_state "$(systemctl show -P ActiveState hbd)"
for i in $(seq 100); do
  hbctl status --json 2>/dev/null | grep -q '"state": "started"' && break
  sleep 0.2
done
first_state='import json, sys; print(json.load(sys.stdin)["groups"][0]["state"])'
fact group "$(hbctl status --json | python3 -c "$first_state")"
main=$(systemctl show -P MainPID hbd)
fact hbd_policy "$(sched $main)"
fact hbd_oom "$(cat /proc/$main/oom_score_adj)"
daemon=$(cat /run/hbdtestd.pid)
fact pidfile "$daemon"
fact daemon_cmd "$(tr '\0' ' ' < /proc/$daemon/cmdline)"
fact daemon_uid "$(proc $daemon Uid | cut -f1)"
fact daemon_groups "$(proc $daemon Groups)"
fact daemon_policy "$(sched $daemon)"
fact daemon_umask "$(proc $daemon Umask)"
fact daemon_notify "$(tr '\0' '\n' < /proc/$daemon/environ | grep -c '^NOTIFY_SOCKET=')"
fact dummy_state "$(ls /run/resource-agents/Dummy-d1.state 2>&1)"
client=$(pgrep -f 'sleep 3601')
fact client_uid "$(proc $client Uid | cut -f1)"
fact client_groups "$(proc $client Groups)"
fact client_home "$(tr '\0' '\n' < /proc/$client/environ | sed -n 's/^HOME=//p')"
systemctl stop hbd
fact stop_result "$(systemctl show -P Result hbd) $(systemctl show -P ExecMainStatus hbd)"
fact pidfile_after "$(ls /run/hbdtestd.pid 2>&1 | grep -c 'No such')"
fact daemon_after "$(kill -0 $daemon 2>&1 | grep -c 'No such')"
fact dummy_after "$(ls /run/resource-agents/Dummy-d1.state 2>&1 | grep -c 'No such')"
"""

BOOT = r"""
set -eu
mount -t tmpfs tmpfs "$ROOT/rw"
mkdir -p "$ROOT/rw/upper" "$ROOT/rw/work" "$ROOT/merged"
mount -t overlay overlay \
  -o "lowerdir=/,upperdir=$ROOT/rw/upper,workdir=$ROOT/rw/work" "$ROOT/merged"
cp -a "$ROOT/files/." "$ROOT/merged/"
exec systemd-nspawn --quiet --directory="$ROOT/merged" --hostname=alpha --register=no \
  --keep-unit --link-journal=no --private-network --bind="$ROOT/results:/hbdtest" \
  --setenv=CHECKOUT="$CHECKOUT" --boot -- --unit=hbdtest.target
"""


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def test_the_shipped_unit_runs_an_init_script_that_writes_run_and_drops_to_its_user(
    tmp_path: Path,
) -> None:
    root = tmp_path / "nspawn"
    files, results = root / "files", root / "results"
    (root / "rw").mkdir(parents=True)
    results.mkdir()
    steps = readme_service_steps()
    assert steps[0] == README_FIRST
    (results / "steps").write_text("\n".join([f"ln -s {VENV} /opt/hbd", *steps[1:]]) + "\n")
    (results / "checks.sh").write_text(CHECKS)
    hard = subprocess.run(
        ["sh", "-c", "ulimit -Hl"], capture_output=True, text=True, check=True
    ).stdout.strip()
    memlock = "infinity" if hard == "unlimited" else f"{hard}K"
    # the container's own files, copied over its root before it boots
    write(files / "etc" / "machine-id", uuid.uuid4().hex + "\n")
    write(files / "etc" / "hostname", "alpha\n")  # the node's `uname -n`, set at boot
    write(files / "etc" / "ha.d" / "ha.cf", HACF)
    write(files / "etc" / "ha.d" / "authkeys", "auth 1\n1 sha1 nspawn-test\n", 0o600)
    write(files / "etc" / "ha.d" / "haresources", "alpha hbdtestd OCF::Dummy::d1\n")
    write(files / "etc" / "ha.d" / "conf" / "OCF" / "Dummy" / "d1", "# the default state\n")
    write(files / "etc" / "init.d" / "hbdtestd", INITD, 0o755)
    system = files / "etc" / "systemd" / "system"
    write(system / "hbdtest.target", "[Unit]\nDescription=hbd test\nWants=hbdtest.service\n")
    write(
        system / "hbdtest.service",
        "[Service]\nType=oneshot\nPassEnvironment=CHECKOUT\n"
        "ExecStart=/bin/sh /hbdtest/checks.sh\nTimeoutStartSec=100\n",
    )
    write(
        system / "hbd.service.d" / "memlock.conf",
        f"# this machine cannot raise RLIMIT_MEMLOCK\n[Service]\nLimitMEMLOCK={memlock}\n",
    )
    boot = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", BOOT],
        env={**os.environ, "ROOT": str(root), "CHECKOUT": str(REPO)},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    facts_file = results / "facts"
    logs = "\n".join(f"---- {p.name}\n{p.read_text()}" for p in sorted(results.glob("*.log*")))
    assert facts_file.exists(), boot.stdout[-3000:] + boot.stderr[-2000:]
    facts = dict(line.split("=", 1) for line in facts_file.read_text().splitlines())
    why = f"{facts}\n{logs[-4000:]}"
    assert facts.get("done") == "yes", why
    # every README step succeeded, verify included, and hbd runs under systemd
    assert [facts[f"step{i}"] for i in range(1, len(steps) + 1)] == ["0"] * len(steps), why
    assert facts["hbd_state"] == "active"
    verify = steps.index("systemd-analyze verify /etc/systemd/system/hbd.service") + 1
    assert (results / f"step{verify}.log").read_text() == ""  # not one diagnostic
    # the group started: the init script wrote /run/hbdtestd.pid, its daemon is nobody
    assert facts["group"] == "started"
    assert facts["daemon_cmd"] == "/bin/sleep 3602 "
    assert (facts["daemon_uid"], facts["daemon_groups"].split()) == ("65534", ["65534"])
    assert facts["dummy_state"] == "/run/resource-agents/Dummy-d1.state"
    # ... and inherited nothing that is only right for hbd
    assert facts["hbd_policy"] == "1"  # hbd itself runs SCHED_FIFO (realtime on)
    assert facts["daemon_policy"] == "0"  # what it started does not
    assert facts["daemon_umask"] == "0022" and facts["daemon_notify"] == "0"
    # respawn hacluster ... switched user, with hacluster's groups and home
    hacluster = pwd.getpwnam("hacluster")
    assert facts["client_uid"] == str(hacluster.pw_uid)
    groups = os.getgrouplist("hacluster", hacluster.pw_gid)
    assert facts["client_groups"].split() == [str(g) for g in groups]
    assert facts["client_home"] == hacluster.pw_dir
    # a clean stop released it all
    assert facts["stop_result"] == "success 0"
    assert (facts["pidfile_after"], facts["daemon_after"], facts["dummy_after"]) == ("1", "1", "1")
