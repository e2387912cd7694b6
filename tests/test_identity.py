"""A node's identity: its name, a uuid kept across starts, a generation bumped at every start."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from hbd.config.load import local_node_name
from hbd.effects.identity import (
    StateError,
    load_identity,
    load_peer_addresses,
    save_peer_addresses,
)


def test_node_name_is_uname_lowercased_unless_overridden() -> None:
    assert local_node_name() == os.uname().nodename.lower()
    assert local_node_name("HA-01") == "ha-01"


def test_uuid_is_created_once_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"  # does not exist yet: created on first start
    first = load_identity(str(state), "ha-01", "file", "file")
    stored = (state / "uuid").read_text()
    assert uuid.UUID(stored.strip()).bytes == first.uuid
    second = load_identity(str(state), "ha-01", "file", "file")
    assert second.uuid == first.uuid
    assert (state / "uuid").read_text() == stored


def test_two_state_dirs_are_two_machines(tmp_path: Path) -> None:
    a = load_identity(str(tmp_path / "a"), "ha-01", "file", "file")
    b = load_identity(str(tmp_path / "b"), "ha-01", "file", "file")
    assert a.uuid != b.uuid


def test_uuidfrom_nodename_uses_the_name_and_writes_no_uuid(tmp_path: Path) -> None:
    ident = load_identity(str(tmp_path), "ha-01", "nodename", "file")
    assert ident.uuid == b"ha-01" + b"\0" * 11
    assert not (tmp_path / "uuid").exists()
    long_name = load_identity(str(tmp_path), "appliance-node-number-1", "nodename", "file")
    assert long_name.uuid == b"appliance-node-n"


def test_generation_increments_at_every_load_and_is_on_disk(tmp_path: Path) -> None:
    generations = [load_identity(str(tmp_path), "ha-01", "file", "file").generation for _ in "abc"]
    assert generations == [1, 2, 3]
    assert (tmp_path / "generation").read_text() == "3\n"
    assert sorted(os.listdir(tmp_path)) == ["generation", "uuid"]  # no temp file left behind


def test_generation_continues_from_what_an_administrator_wrote(tmp_path: Path) -> None:
    (tmp_path / "generation").write_text("41\n")
    assert load_identity(str(tmp_path), "ha-01", "file", "file").generation == 42


def test_hbgenmethod_time_never_goes_below_the_clock_nor_backwards(tmp_path: Path) -> None:
    before = int(time.time())
    first = load_identity(str(tmp_path), "ha-01", "file", "time").generation
    assert first >= before
    assert load_identity(str(tmp_path), "ha-01", "file", "time").generation == first + 1


def test_generation_is_fsynced_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync: Callable[[int], None] = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    load_identity(str(tmp_path), "ha-01", "nodename", "file")
    # the new content is synced under its temporary name, then the rename in the directory
    assert len(synced) == 2
    assert synced[0].startswith(f"{tmp_path}/generation.tmp.")
    assert synced[1] == str(tmp_path)


@pytest.mark.parametrize("content", ["twelve\n", "-3\n", "1.5\n", "7 8\n"])
def test_a_corrupt_generation_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "generation").write_text(content)
    with pytest.raises(StateError) as info:
        load_identity(str(tmp_path), "ha-01", "file", "file")
    message = str(info.value)
    assert message.startswith(f"{tmp_path}/generation: '{content.strip()}' is not a generation")
    assert "write a number larger than any this node used before" in message
    assert (tmp_path / "generation").read_text() == content  # left for the administrator


def test_a_corrupt_uuid_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "uuid").write_text("not-a-uuid\n")
    with pytest.raises(StateError) as info:
        load_identity(str(tmp_path), "ha-01", "file", "file")
    assert str(info.value).startswith(f"{tmp_path}/uuid: 'not-a-uuid' is not a uuid")
    assert "remove the file" in str(info.value)


def test_an_unusable_state_dir_names_itself_and_the_option(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError) as info:
        load_identity(str(blocker / "state"), "ha-01", "file", "file")
    assert str(blocker) in str(info.value)
    assert "--state-dir" in str(info.value)


def test_the_peers_addresses_come_back_and_unusable_lines_are_named_and_left_out(
    tmp_path: Path,
) -> None:
    save_peer_addresses(str(tmp_path), {"beta": ("10.0.0.2", "fd94::2", "fe80::2%eth1")})
    assert load_peer_addresses(str(tmp_path), ("alpha", "beta")) == (
        {"beta": ("10.0.0.2", "fd94::2", "fe80::2%eth1")},
        [],
    )
    peers = tmp_path / "peers"
    peers.write_text("beta 10.0.0.2 fe80::2 nonsense\nzed 10.0.0.9\n")
    addresses, warnings = load_peer_addresses(str(tmp_path), ("alpha", "beta"))
    assert addresses == {"beta": ("10.0.0.2",)}
    assert warnings == [
        f"{peers}:1: 'fe80::2' is link-local without its interface (fe80::1%eth0); ignored",
        f"{peers}:1: 'nonsense' is not an IP address; ignored",
        f"{peers}:2: 'zed' is no peer in ha.cf; line ignored",
    ]
