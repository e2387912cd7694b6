"""The advert: what an hbd node tells its peers about the resource groups.

Heartbeats say "I am alive"; the advert says what the policy needs to agree on who holds
which group without ever letting two nodes run one:

- `running`: per group, whether it may be running on the sender (not known stopped);
- `targets`: per group, which node the sender thinks should hold it (a node index into
  ha.cf's node list, or NO_NODE);
- `hears`: which nodes the sender hears (a bitmap of node indexes), so a node learns when
  its peer has stopped hearing it (an asymmetric cut);
- `standby`: which groups the sender refuses (hbctl standby), and `claim`/`claim_id`: a
  takeover request ("you, give these up"), applied once per new claim_id;
- `digest`: a hash of the group list, so nodes with different haresources notice.

It is sent on every change and again every second (not in every heartbeat: a heartbeat
stays 48 bytes on serial). Native frames carry it as kind ADVERT; Heartbeat-format frames as
a `t=hbd-advert` message with the same bytes in hex.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

from hbd.core.errors import LocalProtocolError

VERSION = 1
NO_NODE = 0xFF
MAX_GROUPS = 64
MAX_NODES = 16
_HEAD = struct.Struct("!BHBHBBH")  # version, digest, ngroups, hears, standby, claim, claim_id


class Standby(enum.IntEnum):
    """Which groups a node refuses to hold (Heartbeat's hb_standby argument)."""

    NONE = 0
    LOCAL = 1  # the groups whose preferred node is this one
    FOREIGN = 2  # the groups whose preferred node is another
    ALL = 3

    @classmethod
    def parse(cls, text: str) -> Standby:
        modes = {"off": cls.NONE, "none": cls.NONE, "local": cls.LOCAL}
        modes.update(foreign=cls.FOREIGN, all=cls.ALL)
        if text not in modes:
            raise LocalProtocolError(
                f"'{text}' is not a standby mode; use all, local, foreign or off"
            )
        return modes[text]

    def covers(self, preferred_is_self: bool) -> bool:
        if self is Standby.ALL:
            return True
        if self is Standby.LOCAL:
            return preferred_is_self
        if self is Standby.FOREIGN:
            return not preferred_is_self
        return False


def group_digest(group_names: tuple[str, ...]) -> int:
    """16 bits that differ when two nodes' haresources list different groups."""
    h = hashlib.sha256("\0".join(group_names).encode()).digest()
    return int.from_bytes(h[:2], "big")


@dataclass(frozen=True, slots=True)
class Advert:
    digest: int
    running: tuple[bool, ...]
    targets: tuple[int, ...]
    hears: int = 0
    standby: Standby = Standby.NONE
    claim: Standby = Standby.NONE  # groups (from the sender's point of view) it asks for
    claim_id: int = 0

    def __post_init__(self) -> None:
        if len(self.running) != len(self.targets) or len(self.running) > MAX_GROUPS:
            raise LocalProtocolError("advert: running and targets must match, <= 64 groups")
        if not 0 <= self.digest <= 0xFFFF or not 0 <= self.claim_id <= 0xFFFF:
            raise LocalProtocolError("advert: digest and claim_id are 16-bit")
        if not 0 <= self.hears < 1 << MAX_NODES:
            raise LocalProtocolError("advert: hears is a 16-node bitmap")
        if any(not 0 <= t <= NO_NODE for t in self.targets):
            raise LocalProtocolError("advert: a target is a node index or NO_NODE")

    def hears_node(self, index: int) -> bool:
        return bool(self.hears >> index & 1)

    def encode(self) -> bytes:
        n = len(self.running)
        bitmap = sum(1 << i for i, r in enumerate(self.running) if r)
        return (
            _HEAD.pack(VERSION, self.digest, n, self.hears, self.standby, self.claim, self.claim_id)
            + bitmap.to_bytes(8, "big")
            + bytes(self.targets)
        )


def decode_advert(data: bytes) -> Advert | None:
    """The advert in `data`, or None when it is not one (never raises)."""
    if len(data) < _HEAD.size + 8:
        return None
    version, digest, n, hears, standby, claim, claim_id = _HEAD.unpack_from(data)
    if version != VERSION or n > MAX_GROUPS or len(data) != _HEAD.size + 8 + n:
        return None
    if standby > Standby.ALL or claim > Standby.ALL:
        return None
    bitmap = int.from_bytes(data[_HEAD.size : _HEAD.size + 8], "big")
    if bitmap >> n:
        return None
    targets = tuple(data[_HEAD.size + 8 :])
    return Advert(
        digest,
        tuple(bool(bitmap >> i & 1) for i in range(n)),
        targets,
        hears,
        Standby(standby),
        Standby(claim),
        claim_id,
    )
