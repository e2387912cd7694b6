"""Parse Heartbeat's authkeys: `auth N`, then `N method [key]` lines.

Methods are Heartbeat's crc, md5 and sha1, plus hbd's sha256 (HMAC-SHA256). Only whole-line
`#` comments are comments here, since a key may itself contain `#`. The file must not be
readable or writable by group or others (Heartbeat refuses such a file too).
"""

from __future__ import annotations

import stat

from hbd.config.model import ConfigWarning
from hbd.config.syntax import digits as _digits
from hbd.config.syntax import lines as _lines
from hbd.core.auth import AuthEntry, AuthKeys, AuthMethod
from hbd.core.errors import ConfigError

_METHODS = ", ".join(m.value for m in AuthMethod)


def check_mode(path: str, mode: int) -> None:
    """Refuse an authkeys file that group or others can read or write."""
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            path,
            None,
            f"mode {stat.S_IMODE(mode):04o} lets group or others read the cluster keys; "
            f"hbd will not start with it. Fix: chmod 600 {path}",
        )


def parse_authkeys(text: str, path: str = "authkeys") -> tuple[AuthKeys, list[ConfigWarning]]:
    """Parse authkeys text into the keys and any warnings (crc authenticates nothing)."""
    active: tuple[int, int] | None = None  # (index, line)
    entries: dict[int, AuthEntry] = {}
    lines: dict[int, int] = {}
    warnings: list[ConfigWarning] = []
    for number, raw in enumerate(_lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\x00" in line:
            raise ConfigError(path, number, "line contains a NUL byte; authkeys must be text")
        words = line.split(None, 2)
        if words[0].lower() == "auth":
            if active is not None:
                raise ConfigError(path, number, f"'auth' given twice (first on line {active[1]})")
            if len(words) != 2 or not _digits(words[1]):
                raise ConfigError(path, number, "'auth' takes one key index, e.g. 'auth 1'")
            active = (int(words[1]), number)
            continue
        if not _digits(words[0]):
            raise ConfigError(
                path, number, f"expected 'auth N' or 'N method key', got '{words[0]}'"
            )
        index = int(words[0])
        if not 0 <= index <= 15:
            raise ConfigError(path, number, f"key index {index} must be from 0 to 15")
        if index in entries:
            raise ConfigError(
                path, number, f"key {index} defined twice (first on line {lines[index]})"
            )
        if len(words) < 2:
            raise ConfigError(path, number, f"key {index} has no method; use one of {_METHODS}")
        try:
            method = AuthMethod(words[1].lower())
        except ValueError:
            raise ConfigError(
                path, number, f"unknown method '{words[1]}'; use one of {_METHODS}"
            ) from None
        key = words[2].strip() if len(words) == 3 else ""
        if method is AuthMethod.CRC:
            warnings.append(
                ConfigWarning(
                    f"{path}:{number}",
                    "crc authenticates NOTHING: anyone on the network can forge heartbeats; "
                    "use sha256 (or sha1) with a long random key",
                )
            )
        elif not key:
            raise ConfigError(
                path,
                number,
                f"key {index} ({method.value}) has no key; write '{index} {method.value} SECRET'",
            )
        entries[index] = AuthEntry(index, method, key.encode())
        lines[index] = number
    if active is None:
        raise ConfigError(path, None, "no 'auth N' line: say which key to sign with, e.g. 'auth 1'")
    if active[0] not in entries:
        raise ConfigError(
            path, active[1], f"'auth {active[0]}' names key {active[0]}, which is not defined"
        )
    return AuthKeys(entries[active[0]], entries), warnings
