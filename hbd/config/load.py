"""Load a Heartbeat configuration directory (ha.cf, authkeys, haresources) for one node."""

from __future__ import annotations

import dataclasses
import os
import stat

from hbd.config.authkeys import check_mode, parse_authkeys
from hbd.config.hacf import parse_hacf
from hbd.config.haresources import AgentDirs, parse_haresources
from hbd.config.model import Config, ConfigWarning, HaCf, MediumKind
from hbd.config.safefiles import (
    UnsafeFile,
    check_not_writable_by_others,
    check_owner,
    read_regular,
)
from hbd.core.auth import AuthKeys, AuthMethod
from hbd.core.errors import ConfigError
from hbd.core.model import ResourceGroup, WireFormat

DEFAULT_CONFIG_DIR = "/etc/ha.d"
DEFAULT_INITD_DIR = "/etc/init.d"
DEFAULT_OCF_ROOT = "/usr/lib/ocf"


def local_node_name(override: str | None = None) -> str:
    """The node name: --node-name if given, else `uname -n`, lowercased as Heartbeat does."""
    return (override or os.uname().nodename).lower()


def _read(path: str) -> str:
    """ha.cf or haresources, read safely: a regular file (a symbolic link is followed, its
    target checked on the open descriptor), never blocking on a FIFO, owned by root (or
    the user hbd runs as) and writable by nobody else -- what it says runs as root."""
    try:
        data, st = read_regular(path, follow=True)
        check_owner(path, st)
        check_not_writable_by_others(path, st)
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    except UnsafeFile as e:
        raise ConfigError(path, None, e.problem) from None
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror}") from None
    return _decode(path, data)


def read_keys(path: str) -> str:
    """authkeys, read safely (hbd.config.safefiles): a regular file, not through a symbolic
    link, never blocking on a FIFO, owned by root (or the user hbd runs as), and readable
    by nobody else -- every check on the open file, none by name."""
    try:
        data, st = read_regular(path)
        check_owner(path, st)
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found") from None
    except UnsafeFile as e:
        raise ConfigError(path, None, e.problem) from None
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror}") from None
    check_mode(path, st.st_mode)
    return _decode(path, data)


def _decode(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(path, line, "not UTF-8 text") from None


def load_config(
    directory: str,
    node_name: str,
    *,
    initd_dir: str | None = None,
    ocf_root: str | None = None,
) -> Config:
    """Read and check the whole directory. Raises ConfigError (FILE:LINE: message)."""
    hacf_path = os.path.join(directory, "ha.cf")
    hacf = parse_hacf(_read(hacf_path), hacf_path)
    if node_name not in hacf.nodes:
        raise ConfigError(
            hacf_path,
            None,
            f"this node '{node_name}' is not listed (nodes: {', '.join(hacf.nodes)}); "
            f"add 'node {node_name}', or give --node-name if `uname -n` is not the cluster name",
        )
    keys_path = os.path.join(directory, "authkeys")
    text = read_keys(keys_path)
    authkeys, key_warnings = parse_authkeys(text, keys_path)
    if hacf.wire is WireFormat.HEARTBEAT and authkeys.active.method is AuthMethod.SHA256:
        raise ConfigError(
            keys_path,
            None,
            f"'auth {authkeys.active.index}' selects sha256, which Heartbeat peers cannot "
            "verify; with 'wire heartbeat' (the default) sign with sha1 or md5, or put "
            "'wire hbd' in ha.cf when every node runs hbd",
        )
    if hacf.wire is WireFormat.HBD and authkeys.active.method is AuthMethod.CRC:
        raise ConfigError(
            keys_path,
            None,
            f"'auth {authkeys.active.index}' selects a crc entry, which has no key, but "
            f"{hacf_path} says 'wire hbd': hbd's frames are signed with HMAC-SHA256; "
            f"write '{authkeys.active.index} sha256 SECRET' (or remove 'wire hbd')",
        )
    authkeys = _receivable_keys(hacf, authkeys, keys_path)
    warnings: list[ConfigWarning] = [*hacf.warnings, *key_warnings]
    res_path = os.path.join(directory, "haresources")
    if os.path.exists(res_path):
        dirs = AgentDirs(directory, initd_dir or DEFAULT_INITD_DIR, ocf_root or DEFAULT_OCF_ROOT)
        groups = parse_haresources(_read(res_path), hacf.nodes, dirs, res_path, warnings)
    else:
        groups = ()
        warnings.append(ConfigWarning(res_path, "no haresources file: this cluster runs no groups"))
    if groups:
        warnings.extend(partition_warnings(hacf, groups))
    return Config(directory, node_name, hacf, authkeys, groups, tuple(warnings))


def _receivable_keys(hacf: HaCf, keys: AuthKeys, keys_path: str) -> AuthKeys:
    """The keys with ha.cf's `accept_keys` as their rotation set, checked against authkeys:
    frames are accepted signed with the active entry or a listed one, and never with crc
    once any entry has a key (anyone can compute crc)."""
    keyed = [e.index for e in keys.entries.values() if e.method is not AuthMethod.CRC]
    if keys.active.method is AuthMethod.CRC and keyed:
        raise ConfigError(
            keys_path,
            None,
            f"'auth {keys.active.index}' selects crc, but entry {keyed[0]} has a key: a node "
            "holding a key never accepts crc frames (anyone can forge them), so this node "
            f"would not hear peers signing like it; select the keyed entry ('auth {keyed[0]}') "
            f"on every node, or remove entry {keyed[0]}",
        )
    for index in hacf.accept_keys:
        entry = keys.entries.get(index)
        if entry is None:
            raise ConfigError(
                hacf.path,
                hacf.accept_keys_line,
                f"accept_keys {index}: {keys_path} has no entry {index}",
            )
        if entry.method is AuthMethod.CRC:
            raise ConfigError(
                hacf.path,
                hacf.accept_keys_line,
                f"accept_keys {index}: entry {index} of {keys_path} is crc, which anyone can "
                f"compute; frames signed with it are never accepted beside a key: remove "
                f"{index} from accept_keys",
            )
    return dataclasses.replace(keys, rotation=frozenset(hacf.accept_keys))


def check_watchdog_device(hacf: HaCf) -> None:
    """The `watchdog` device exists and is a character device (or a regular file, as the
    FUSE test watchdog is), checked WITHOUT opening it: opening arms most watchdogs.
    Raises ConfigError at the `watchdog` line."""
    path = hacf.watchdog
    if path is None:
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(
            hacf.path,
            hacf.watchdog_line,
            f"watchdog device {path} does not exist: load the driver for this machine's "
            "watchdog (or 'modprobe softdog' for a software one), or remove the line",
        ) from None
    except OSError as e:
        raise ConfigError(
            hacf.path, hacf.watchdog_line, f"watchdog device {path}: {e.strerror}"
        ) from None
    if not (stat.S_ISCHR(mode) or stat.S_ISREG(mode)):
        raise ConfigError(
            hacf.path,
            hacf.watchdog_line,
            f"watchdog device {path} is neither a character device nor a file",
        )


def partition_warnings(hacf: HaCf, groups: tuple[ResourceGroup, ...]) -> list[ConfigWarning]:
    """What leaves the residual case open (docs/policy.md): a partition in which both nodes
    reach the world and nothing of the peer answers puts a group on both nodes."""
    where = hacf.path
    out: list[ConfigWarning] = []
    if hacf.qnetd is not None:
        # the vote decides a partition (docs/qnetd.md): only a missing watchdog matters
        if not hacf.watchdog:
            out.append(
                ConfigWarning(
                    f"{where}:{hacf.qnetd_line}",
                    "qnetd without a watchdog: a node that loses the vote can only release "
                    "its groups, not be reset before the side with the vote takes them over; "
                    "add 'watchdog /dev/watchdog' (docs/watchdog.md)",
                )
            )
        return out
    out.append(
        ConfigWarning(
            where,
            "two nodes without an arbiter: if every path is cut, both nodes still reach a "
            "ping node and nothing of the peer answers a probe, both run the groups "
            "(docs/policy.md, 'the residual case'); 'qnetd HOST' closes it (docs/qnetd.md)",
        )
    )
    if not hacf.ping_nodes and not hacf.ping_groups:
        out.append(
            ConfigWarning(
                where,
                "no ping nodes: a node cut off from everything cannot tell it is isolated, "
                "so a holder keeps its groups while its peer takes them over; add "
                "'ping ADDRESS' (a router both nodes reach)",
            )
        )
    lan = any(m.kind is not MediumKind.SERIAL for m in hacf.media)
    addressed = any(
        r.name in ("IPaddr", "IPaddr2", "IPv6addr") for g in groups for r in g.resources
    )
    if not lan and not addressed:
        out.append(
            ConfigWarning(
                where,
                "nothing to probe: no heartbeat runs over a LAN (so the peer's addresses are "
                "unknown) and no group has a service address, so a silent peer cannot be "
                "told from a dead one; add a bcast/ucast path or a service address",
            )
        )
    if not hacf.watchdog:
        out.append(
            ConfigWarning(
                where,
                "no watchdog: a node that must go (isolated, or unheard by its peer) can "
                "only release its groups, not be reset before the peer takes over; add "
                "'watchdog /dev/watchdog' (docs/watchdog.md)",
            )
        )
    return out
