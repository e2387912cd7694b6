"""Authentication keys as the core sees them: one authkeys entry, index -> method and key.

The config layer (`hbd.config.authkeys`) builds these from the file; the wire codecs use
them to sign and verify. Heartbeat's methods are crc, md5 and sha1; hbd adds sha256.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class AuthMethod(enum.Enum):
    """An authkeys method. The value is the name written in the file."""

    CRC = "crc"  # Heartbeat's CRC-32: detects corruption, authenticates nothing
    MD5 = "md5"  # HMAC-MD5, as Heartbeat
    SHA1 = "sha1"  # HMAC-SHA1, as Heartbeat
    SHA256 = "sha256"  # HMAC-SHA256, hbd's own (and the only one native frames use)


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """One `N method [key]` line of authkeys."""

    index: int
    method: AuthMethod
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthKeys:
    """All authkeys entries and the one `auth N` selects for sending."""

    active: AuthEntry
    entries: dict[int, AuthEntry]

    def get(self, index: int) -> AuthEntry | None:
        """The entry a received frame names by index, or None when there is none."""
        return self.entries.get(index)
