"""authkeys: `auth N`, then `N method [key]`; crc warns, a group-readable file is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hbd.commands.cli import hbctl_main
from hbd.config.authkeys import check_mode, parse_authkeys
from hbd.config.load import load_config
from hbd.core.auth import AuthMethod
from hbd.core.errors import ConfigError

from confkit import GOOD_HACF, config_dir


@pytest.mark.parametrize(
    ("method", "enum"),
    [
        ("md5", AuthMethod.MD5),
        ("sha1", AuthMethod.SHA1),
        ("sha256", AuthMethod.SHA256),
        ("SHA1", AuthMethod.SHA1),
    ],
)
def test_each_keyed_method_loads_with_its_key(method: str, enum: AuthMethod) -> None:
    keys, warnings = parse_authkeys(f"auth 3\n3 {method} s3cret with spaces # and a hash\n")
    assert keys.active.index == 3
    assert keys.active.method is enum
    # only whole-line comments are comments: a key may contain '#'
    assert keys.active.key == b"s3cret with spaces # and a hash"
    assert warnings == []


def test_several_keys_the_active_one_is_named_by_auth() -> None:
    keys, _ = parse_authkeys(
        "# rolling a new key in: peers still sign with 1 for a while\n"
        "\n"
        "auth 2\n"
        "1 sha1 old-key\n"
        "2 sha256 new-key\n"
    )
    assert keys.active.method is AuthMethod.SHA256
    assert sorted(keys.entries) == [1, 2]
    assert keys.entries[1].key == b"old-key"
    # on receipt only the active key counts until ha.cf's accept_keys lists another
    assert keys.get(1) is None and keys.get(2) == keys.active and keys.get(7) is None


def test_crc_loads_with_a_loud_warning_that_it_authenticates_nothing() -> None:
    keys, warnings = parse_authkeys("auth 1\n1 crc\n", "/etc/ha.d/authkeys")
    assert keys.active.method is AuthMethod.CRC
    (warning,) = warnings
    assert warning.source == "/etc/ha.d/authkeys:2"
    assert "authenticates NOTHING" in warning.message
    assert "use sha256" in warning.message


def test_crc_warning_reaches_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = config_dir(tmp_path / "ha.d", authkeys="auth 1\n1 crc\n")
    assert hbctl_main(["check-config", "--config-dir", str(directory), "--node-name", "ha-01"]) == 0
    out = capsys.readouterr().out
    assert f"{directory}/authkeys:2: warning: crc authenticates NOTHING" in out


@pytest.mark.parametrize(
    ("text", "line", "phrase"),
    [
        ("1 sha1 secret\n", None, "no 'auth N' line"),
        ("auth 2\n1 sha1 secret\n", 1, "names key 2, which is not defined"),
        ("auth 1\n1 sha1\n", 2, "has no key; write '1 sha1 SECRET'"),
        ("auth 1\n1 sha1   \n", 2, "has no key"),
        ("auth 1\n1\n", 2, "has no method"),
        ("auth 1\n1 sha512 secret\n", 2, "unknown method 'sha512'; use one of crc, md5, sha1"),
        ("auth 1\n1 hmac secret\n", 2, "sha256"),
    ],
)
def test_missing_index_missing_key_unknown_method(text: str, line: int | None, phrase: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_authkeys(text, "authkeys")
    assert (info.value.file, info.value.line) == ("authkeys", line)
    assert phrase in info.value.message


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602, 0o620])
def test_a_key_file_group_or_others_can_touch_is_refused_with_the_fix(mode: int) -> None:
    with pytest.raises(ConfigError) as info:
        check_mode("/etc/ha.d/authkeys", stat.S_IFREG | mode)
    message = str(info.value)
    assert message.startswith("/etc/ha.d/authkeys: ")
    assert f"mode {mode:04o}" in message
    assert "Fix: chmod 600 /etc/ha.d/authkeys" in message


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_an_owner_only_key_file_is_accepted(mode: int) -> None:
    check_mode("/etc/ha.d/authkeys", stat.S_IFREG | mode)


def test_a_world_readable_authkeys_stops_the_load_before_its_keys_are_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = config_dir(tmp_path / "ha.d", authkeys_mode=0o644)
    with pytest.raises(ConfigError) as info:
        load_config(str(directory), "ha-01")
    assert info.value.file == f"{directory}/authkeys"
    assert hbctl_main(["check-config", "--config-dir", str(directory), "--node-name", "ha-01"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"{directory}/authkeys: mode 0644 lets group or others read the cluster keys; "
        f"hbd will not start with it. Fix: chmod 600 {directory}/authkeys\n"
    )
    os.chmod(directory / "authkeys", 0o600)
    assert load_config(str(directory), "ha-01").authkeys.active.index == 1


def test_wire_hbd_with_a_crc_key_is_refused_at_load_not_at_the_first_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = config_dir(
        tmp_path / "ha.d", hacf=GOOD_HACF + "wire hbd\n", authkeys="auth 1\n1 crc\n"
    )
    assert hbctl_main(["check-config", "--config-dir", str(directory), "--node-name", "ha-01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{directory}/authkeys: 'auth 1' selects a crc entry")
    assert "write '1 sha256 SECRET'" in err and err.count("\n") == 1
    (directory / "authkeys").write_text("auth 1\n1 sha256 a-long-random-secret\n")
    assert load_config(str(directory), "ha-01").authkeys.active.method is AuthMethod.SHA256


def test_a_leftover_crc_line_beside_a_key_is_never_accepted_and_cannot_be_listed(
    tmp_path: Path,
) -> None:
    keys = "auth 2\n1 crc\n2 sha256 a-long-random-secret\n"
    directory = config_dir(tmp_path / "ok", hacf=GOOD_HACF + "wire hbd\n", authkeys=keys)
    loaded = load_config(str(directory), "ha-01").authkeys
    assert loaded.get(1) is None and loaded.get(2) == loaded.active
    assert "crc" in loaded.refusal(1) and "never accepted" in loaded.refusal(1)
    listed = config_dir(
        tmp_path / "listed", hacf=GOOD_HACF + "accept_keys 1\nwire hbd\n", authkeys=keys
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(listed), "ha-01")
    assert (info.value.file, info.value.line) == (f"{listed}/ha.cf", 4)
    assert "accept_keys 1: entry 1" in info.value.message and "is crc" in info.value.message


def test_accept_keys_lists_the_rotation_keys_and_names_a_missing_one(tmp_path: Path) -> None:
    keys = "auth 2\n1 md5 the-old-key\n2 sha1 the-new-key\n"
    directory = config_dir(tmp_path / "ok", hacf=GOOD_HACF + "accept_keys 1\n", authkeys=keys)
    loaded = load_config(str(directory), "ha-01").authkeys
    assert loaded.rotation == {1}
    entry = loaded.get(1)
    assert entry is not None and entry.key == b"the-old-key"
    missing = config_dir(tmp_path / "missing", hacf=GOOD_HACF + "accept_keys 3\n", authkeys=keys)
    with pytest.raises(ConfigError) as info:
        load_config(str(missing), "ha-01")
    assert (info.value.file, info.value.line) == (f"{missing}/ha.cf", 4)
    assert info.value.message == f"accept_keys 3: {missing}/authkeys has no entry 3"


def test_signing_with_crc_while_a_key_is_configured_is_refused_at_load(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "d", authkeys="auth 1\n1 crc\n2 sha1 a-key\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(directory), "ha-01")
    assert info.value.file == f"{directory}/authkeys"
    assert "'auth 1' selects crc, but entry 2 has a key" in info.value.message
    assert "('auth 2')" in info.value.message
