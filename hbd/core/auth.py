"""Authentication keys as the core sees them: one authkeys entry, index -> method and key.

The config layer (`hbd.config.authkeys`) builds these from the file; the wire codecs use
them to sign and verify. Heartbeat's methods are crc, md5 and sha1; hbd adds sha256.

Which entries a received frame may be signed with (`AuthKeys.get`): the active one (`auth
N`, the one we sign with) and the ones listed for rotation (ha.cf `accept_keys`), nothing
else: a leftover entry in authkeys is not a way in. crc has no secret (anyone can compute
it), so a crc entry is never accepted while any keyed entry (md5, sha1, sha256) is
configured: once a cluster holds a key, every frame must prove it holds it.
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
    """All authkeys entries, the one `auth N` selects for sending, and the indexes accepted
    on receipt besides it (`rotation`, ha.cf's `accept_keys`)."""

    active: AuthEntry
    entries: dict[int, AuthEntry]
    rotation: frozenset[int] = frozenset()

    @property
    def keyed(self) -> bool:
        """Some entry has a secret (md5, sha1 or sha256): crc is then never accepted."""
        return any(e.method is not AuthMethod.CRC for e in self.entries.values())

    def get(self, index: int) -> AuthEntry | None:
        """The entry a received frame names by index, or None when frames signed with it
        are not accepted (`refusal` says why)."""
        if index != self.active.index and index not in self.rotation:
            return None
        entry = self.entries.get(index)
        if entry is None or (entry.method is AuthMethod.CRC and self.keyed):
            return None
        return entry

    def refusal(self, index: int) -> str:
        """Why a frame signed with authkeys entry `index` is not accepted."""
        entry = self.entries.get(index)
        if entry is None:
            return f"authkeys index {index} is not configured"
        if entry.method is AuthMethod.CRC and self.keyed:
            return (
                f"authkeys entry {index} is crc, which anyone can compute, and a keyed entry "
                "is configured: crc frames are never accepted then"
            )
        listed = " ".join(str(i) for i in sorted(self.rotation)) or "none"
        return (
            f"authkeys entry {index} is neither the active key (auth {self.active.index}) "
            f"nor listed in ha.cf's accept_keys ({listed})"
        )
