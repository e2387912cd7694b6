"""Errors typed by blame (after h11's Local/Remote split).

- Garbage or forgeries from a peer never raise out of the core: they become a
  `FrameDropped` event carrying a `DropReason`.
- A caller's misuse of the core raises `LocalProtocolError`.
- A user's configuration mistake raises `ConfigError`, which names FILE:LINE.
"""

from __future__ import annotations

import enum


class HbdError(Exception):
    """Base of every error hbd raises on purpose."""


class LocalProtocolError(HbdError):
    """The caller used the core wrongly (a bug in hbd, not the peer's fault)."""


class ConfigError(HbdError):
    """A mistake in a configuration file: printed as `FILE:LINE: message` and exit 2."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")


class DropReason(enum.Enum):
    """Why a received frame was dropped. Values are stable strings for logs and status."""

    MALFORMED = "malformed"  # not a frame of any format we speak
    TRUNCATED = "truncated"  # a frame cut short
    TOO_LONG = "too-long"  # beyond the largest frame we accept
    BAD_CHECKSUM = "bad-checksum"  # serial CRC or framing check failed (line noise)
    NO_AUTH = "no-auth"  # frame carries no signature
    UNKNOWN_KEY = "unknown-key"  # signature names an authkeys index we do not have
    BAD_SIGNATURE = "bad-signature"  # signature does not verify: forged or wrong key
    WRONG_CLUSTER = "wrong-cluster"  # native frame for another cluster id
    REPLAYED = "replayed"  # sequence already seen in this generation
    STALE = "stale"  # older generation, or sequence below the window
    UNKNOWN_NODE = "unknown-node"  # sender not in ha.cf (autojoin none)
    FROM_SELF = "from-self"  # our own frame echoed back (broadcast loop)
    UNSUPPORTED = "unsupported"  # a message type we do not handle
    WRONG_PATH = "wrong-path"  # a native frame sent on another of the sender's paths
    UNCONFIRMED = "unconfirmed"  # an older generation, until it answers a fresh echo
