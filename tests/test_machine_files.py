"""Files hbd reads and writes as root, where someone else may have planted something
(docs/security.md, "On the machine"): authkeys, the pid file, the state directory's temp
files, the serial line's UUCP lock.

Each scenario is one plant: a symbolic link to a root-only file, a FIFO (which would hang a
plain open), a file owned by another user, a second daemon, a lock file naming a live
process that does not use the port.
"""

from __future__ import annotations

import grp
import os
import pwd
import threading
from pathlib import Path

import pytest

from hbd.commands.statusview import links_lines
from hbd.config.load import load_config
from hbd.config.model import Medium, MediumKind
from hbd.core.errors import ConfigError, HbdError
from hbd.effects.identity import load_identity, save_peer_addresses
from hbd.links.base import LinkOpenFailed
from hbd.links.serial import SerialLink, UucpLock, lock_name
from hbd.shell.daemon import AlreadyRunning, Daemon, DaemonOptions

from confkit import GOOD_AUTHKEYS, config_dir
from netns import sleeper

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="gives a file to another user")
VICTIM = "root-only secret\n"


def victim(tmp_path: Path) -> Path:
    """A file root alone may write: what a planted symlink points at."""
    path = tmp_path / "victim"
    path.write_text(VICTIM)
    path.chmod(0o600)
    return path


# -- authkeys ----------------------------------------------------------------------------


def test_an_authkeys_that_is_a_symbolic_link_is_refused_naming_the_file(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "ha.d")
    elsewhere = tmp_path / "keys"
    (directory / "authkeys").rename(elsewhere)
    (directory / "authkeys").symlink_to(elsewhere)
    with pytest.raises(ConfigError) as e:
        load_config(str(directory), "ha-01")
    assert str(e.value).startswith(f"{directory}/authkeys: is a symbolic link")


def test_an_authkeys_that_is_a_fifo_is_refused_at_once_instead_of_hanging_the_start(
    tmp_path: Path,
) -> None:
    directory = config_dir(tmp_path / "ha.d")
    keys = directory / "authkeys"
    keys.unlink()
    os.mkfifo(keys, 0o600)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            load_config(str(directory), "ha-01")
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(5.0)
    if t.is_alive():  # unblock the hung open before failing
        os.close(os.open(keys, os.O_WRONLY | os.O_NONBLOCK))
        t.join(5.0)
        pytest.fail("load_config hung on a FIFO authkeys")
    [error] = errors
    assert isinstance(error, ConfigError)
    assert str(error).startswith(f"{keys}: is a FIFO, not a regular file")


@as_root
def test_an_authkeys_owned_by_another_user_is_refused_naming_the_owner(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "ha.d")
    nobody = pwd.getpwnam("nobody")
    os.chown(directory / "authkeys", nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(ConfigError) as e:
        load_config(str(directory), "ha-01")
    assert str(e.value).startswith(
        f"{directory}/authkeys: owned by nobody (uid {nobody.pw_uid}), not by root"
    )


def test_an_owner_only_regular_authkeys_still_loads(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "ha.d", authkeys=GOOD_AUTHKEYS, authkeys_mode=0o600)
    assert load_config(str(directory), "ha-01").authkeys.active.index == 1


# -- ha.cf and haresources: what they say runs as root -----------------------------------

HARESOURCES = "ha-01 IPaddr::10.9.9.9/24\n"


@pytest.mark.parametrize("name", ["ha.cf", "haresources"])
def test_a_config_file_others_may_write_is_refused_with_the_fix(tmp_path: Path, name: str) -> None:
    directory = config_dir(tmp_path / "ha.d", haresources=HARESOURCES)
    (directory / name).chmod(0o666)
    with pytest.raises(ConfigError) as e:
        load_config(str(directory), "ha-01")
    assert str(e.value) == (
        f"{directory}/{name}: is writable by everyone (mode 0666), and what it says runs as "
        f"root; hbd will not use it. Fix: chmod go-w {directory}/{name}"
    )


@as_root
def test_a_config_file_another_group_may_write_is_refused_roots_group_is_fine(
    tmp_path: Path,
) -> None:
    directory = config_dir(tmp_path / "ha.d", haresources=HARESOURCES)
    (directory / "haresources").chmod(0o664)
    assert load_config(str(directory), "ha-01").groups  # group root: still loads
    nogroup = grp.getgrnam("nogroup")
    os.chown(directory / "haresources", 0, nogroup.gr_gid)
    with pytest.raises(ConfigError, match="is writable by group nogroup"):
        load_config(str(directory), "ha-01")


@as_root
def test_an_ha_cf_owned_by_another_user_is_refused_naming_the_owner(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "ha.d")
    nobody = pwd.getpwnam("nobody")
    os.chown(directory / "ha.cf", nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(ConfigError) as e:
        load_config(str(directory), "ha-01")
    assert str(e.value).startswith(f"{directory}/ha.cf: owned by nobody (uid {nobody.pw_uid})")


def test_an_ha_cf_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "ha.d")
    (directory / "ha.cf").unlink()
    os.mkfifo(directory / "ha.cf", 0o644)
    with pytest.raises(ConfigError, match=r"ha\.cf: is a FIFO, not a regular file"):
        load_config(str(directory), "ha-01")  # O_NONBLOCK: never waits for a writer


def test_an_ha_cf_that_is_a_symbolic_link_to_a_safe_file_still_loads(tmp_path: Path) -> None:
    """Configuration management links ha.cf to its own copy: allowed, the target checked."""
    directory = config_dir(tmp_path / "ha.d")
    managed = tmp_path / "managed-ha.cf"
    (directory / "ha.cf").rename(managed)
    (directory / "ha.cf").symlink_to(managed)
    assert load_config(str(directory), "ha-01").hacf.nodes == ("ha-01", "ha-02")
    managed.chmod(0o646)
    with pytest.raises(ConfigError, match="is writable by everyone"):
        load_config(str(directory), "ha-01")


# -- the pid file ------------------------------------------------------------------------


def daemon(tmp_path: Path) -> Daemon:
    return Daemon(DaemonOptions(str(tmp_path / "ha.d"), str(tmp_path / "s"), str(tmp_path / "run")))


def test_a_planted_pid_file_symlink_never_makes_root_overwrite_its_target(
    tmp_path: Path,
) -> None:
    target = victim(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "hbd.pid").symlink_to(target)
    with pytest.raises(HbdError) as e:
        daemon(tmp_path)._claim_run_dir()
    assert str(e.value).startswith(f"{tmp_path}/run/hbd.pid: is a symbolic link")
    assert target.read_text() == VICTIM


def test_a_second_daemon_is_refused_by_the_pid_files_lock_naming_the_first(
    tmp_path: Path,
) -> None:
    first = daemon(tmp_path)
    first._claim_run_dir()
    pidfile = tmp_path / "run" / "hbd.pid"
    try:
        with pytest.raises(AlreadyRunning) as e:
            daemon(tmp_path)._claim_run_dir()  # same process: the lock, not the pid, refuses
        assert str(e.value) == (
            f"{pidfile}: hbd (pid {os.getpid()}) already runs with this run directory; stop "
            "it first or give another --run-dir"
        )
        assert pidfile.read_text() == f"{os.getpid()}\n"  # the refused one wrote nothing
    finally:
        first.shutdown()
    assert not pidfile.exists()


def test_a_pid_file_left_by_a_crash_naming_a_live_unrelated_process_does_not_block_a_start(
    tmp_path: Path,
) -> None:
    (tmp_path / "run").mkdir()
    pidfile = tmp_path / "run" / "hbd.pid"
    pidfile.write_text("1\n")  # init is alive, but holds no lock on the file
    d = daemon(tmp_path)
    d._claim_run_dir()
    try:
        assert pidfile.read_text() == f"{os.getpid()}\n"  # written whole, not "12345\n\n"
    finally:
        d.shutdown()


# -- the state directory -----------------------------------------------------------------


def test_a_symlink_planted_at_the_generation_temp_name_is_not_followed(tmp_path: Path) -> None:
    target = victim(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    for name in ("generation", "uuid", "peers"):  # the names the old writer used
        (state / f"{name}.tmp.{os.getpid()}").symlink_to(target)
    identity = load_identity(str(state), "ha-01", "file", "file")
    save_peer_addresses(str(state), {"ha-02": ("10.0.0.2",)})
    assert target.read_text() == VICTIM
    assert (state / "generation").read_text() == f"{identity.generation}\n"
    assert (state / "generation").stat().st_mode & 0o777 == 0o644
    leftovers = {p.name for p in state.iterdir()} - {"generation", "uuid", "peers"}
    assert leftovers == {f"{n}.tmp.{os.getpid()}" for n in ("generation", "uuid", "peers")}


# -- the serial line's UUCP lock -----------------------------------------------------------


def test_a_symlink_planted_at_the_lock_temp_name_is_not_followed(tmp_path: Path) -> None:
    target = victim(tmp_path)
    locks = tmp_path / "lock"
    locks.mkdir()
    device = "/dev/ttyS7"
    (locks / f"tmp{os.getpid()}-ttyS7").symlink_to(target)  # the name the old code used
    lock = UucpLock(device, str(locks))
    lock.acquire()
    try:
        assert target.read_text() == VICTIM
        assert (locks / lock_name(device)).read_bytes() == b"%10d\n" % os.getpid()
        assert (locks / lock_name(device)).stat().st_mode & 0o777 == 0o644
    finally:
        lock.release()
    assert {p.name for p in locks.iterdir()} == {f"tmp{os.getpid()}-ttyS7"}


def test_a_fifo_planted_as_the_lock_file_does_not_hang_the_daemon(tmp_path: Path) -> None:
    locks = tmp_path / "lock"
    locks.mkdir()
    os.mkfifo(locks / "LCK..ttyS7")
    result: list[int | None] = []
    t = threading.Thread(target=lambda: result.append(UucpLock("/dev/ttyS7", str(locks)).owner()))
    t.daemon = True
    t.start()
    t.join(5.0)
    if t.is_alive():
        os.close(os.open(locks / "LCK..ttyS7", os.O_WRONLY | os.O_NONBLOCK))
        t.join(5.0)
        pytest.fail("reading the lock file hung on a FIFO")
    assert result == [None]


def test_a_live_pid_that_does_not_use_the_port_is_named_as_a_stale_looking_lock(
    tmp_path: Path,
) -> None:
    locks = tmp_path / "lock"
    locks.mkdir()
    master, slave = os.openpty()
    device = os.ttyname(slave)
    holder = sleeper()  # alive, and no serial port open
    lock_file = locks / lock_name(device)
    try:
        lock_file.write_bytes(b"%10d\n" % holder.pid)
        medium = Medium(MediumKind.SERIAL, device, source="ha.cf:7", baud=19200)
        link = SerialLink(medium, lock_dir=str(locks))
        link.open(1.0)
        failed = link.next_event()
        assert isinstance(failed, LinkOpenFailed)
        assert failed.reason == (
            f"{device} is locked by pid {holder.pid} (sleep) in {lock_file}, which does not "
            f"have {device} open: a stale-looking lock (a reused pid?); hbd never takes over "
            f"a live process's lock, so this path stays down until pid {holder.pid} ends or "
            f"{lock_file} is removed"
        )
        assert link.last_failure == failed.reason  # what status shows
        assert lock_file.read_bytes() == b"%10d\n" % holder.pid
        link.close()
    finally:
        holder.kill()
        holder.wait()
        os.close(master)
        os.close(slave)


def test_hbctl_links_shows_why_a_link_is_down() -> None:
    why = "/dev/ttyS0 is locked by pid 7 (sleep) in /run/lock/LCK..ttyS0, which does not ..."
    status = {"nodes": {}, "links": {"serial:/dev/ttyS0": {"open": False, "error": why}}}
    assert links_lines(status) == [f"serial:/dev/ttyS0 cannot be opened: {why}"]
