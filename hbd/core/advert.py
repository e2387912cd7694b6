"""The advert: what an hbd node tells its peers about the resource groups.

Heartbeats say "I am alive"; the advert says what the policy needs to agree on who holds
which group without ever letting two nodes run one:

- `running`: per group, whether it may be running on the sender (not known stopped);
- `failed`: per group, whether it failed to start on the sender (it refuses the group);
- `started`: per group, whether every resource is known running on the sender (what
  `auto_failback off` keeps a group on; `running` is the cautious "may be running");
- `targets`: per group, which node the sender thinks should hold it (a node index into
  ha.cf's node list, or NO_NODE);
- `hears`: which nodes the sender hears (a bitmap of node indexes), so a node learns when
  its peer has stopped hearing it (an asymmetric cut);
- `standby`: which groups the sender refuses (hbctl standby), and `claim`/`claim_id`: a
  takeover request ("you, give these up"), applied once per new claim_id;
- `digest`: a hash of the group list, so nodes with different haresources notice;
- `arbiter`: with `qnetd` configured, whether the sender's connection to qnetd is up
  (one trailing flags byte; absent, None, without an arbiter): the partition rules of
  both nodes depend on what each knew of the other's (policy.py, rule 8);
- `witness`: whether a ping node answers the sender (the same flags byte): a node no
  ping node has answered since its start knows from it that the ping node works, and
  that not reaching it is isolation, not a configuration problem (policy.py, rule 3);
- `offer`/`offer_id`: a hand-off request ("peer, take these", `hbctl release`, Heartbeat's
  hb_standby), from the sender's point of view; the peer answers it with a takeover claim
  of its own, once per new offer_id (in the flags byte, then mode and id: 3 bytes);
- `epoch` and `seen`: the sender's advert number (it goes up on every change) and, per
  node, the number of that node's advert the sender last had. A node starts a group only
  when each peer's "you are the target" was said after seeing this node's claim to it, so
  two nodes whose views flip at the same moment cannot both act on stale agreement.

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

VERSION = 2
NO_NODE = 0xFF
MAX_GROUPS = 64
MAX_NODES = 16
# version, digest, groups, nodes, hears, standby, claim, claim_id, epoch
_HEAD = struct.Struct("!BHBBHBBHH")
# the trailing flags byte (absent: no arbiter configured, no ping node answers the sender)
ARBITER_CONNECTED = 0x01  # the sender's qnetd connection is up
NO_ARBITER = 0x02  # the sender has no arbiter configured (the byte is there for WITNESS)
WITNESS = 0x04  # a ping node answers the sender
OFFER = 0x08  # a hand-off request follows: its mode (1 byte) and offer_id (2 bytes)
_FLAGS = ARBITER_CONNECTED | NO_ARBITER | WITNESS | OFFER


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
    failed: tuple[bool, ...] = ()  # per group (empty: none failed)
    standby: Standby = Standby.NONE
    claim: Standby = Standby.NONE  # groups (from the sender's point of view) it asks for
    claim_id: int = 0
    epoch: int = 0  # goes up whenever anything else in the sender's advert changes
    started: tuple[bool, ...] = ()  # per group (empty: none started)
    seen: tuple[int, ...] = ()  # per node index: the epoch of its advert the sender last had
    arbiter: bool | None = None  # its qnetd connection is up (None: no arbiter configured)
    witness: bool = False  # a ping node answers the sender
    offer: Standby = Standby.NONE  # groups (from the sender's point of view) it hands over
    offer_id: int = 0

    def __post_init__(self) -> None:
        if len(self.running) != len(self.targets) or len(self.running) > MAX_GROUPS:
            raise LocalProtocolError("advert: running and targets must match, <= 64 groups")
        if not 0 <= self.digest <= 0xFFFF or not 0 <= self.claim_id <= 0xFFFF:
            raise LocalProtocolError("advert: digest and claim_id are 16-bit")
        if not 0 <= self.offer_id <= 0xFFFF:
            raise LocalProtocolError("advert: offer_id is 16-bit")
        if not 0 <= self.epoch <= 0xFFFF or any(not 0 <= e <= 0xFFFF for e in self.seen):
            raise LocalProtocolError("advert: epochs are 16-bit")
        if not 0 <= self.hears < 1 << MAX_NODES or len(self.seen) > MAX_NODES:
            raise LocalProtocolError("advert: at most 16 nodes")
        if any(not 0 <= t <= NO_NODE for t in self.targets):
            raise LocalProtocolError("advert: a target is a node index or NO_NODE")
        if self.failed and len(self.failed) != len(self.running):
            raise LocalProtocolError("advert: failed must be empty or one per group")
        if self.started and len(self.started) != len(self.running):
            raise LocalProtocolError("advert: started must be empty or one per group")

    def started_group(self, index: int) -> bool:
        return bool(self.started) and self.started[index]

    def failed_group(self, index: int) -> bool:
        return bool(self.failed) and self.failed[index]

    def hears_node(self, index: int) -> bool:
        return bool(self.hears >> index & 1)

    def saw(self, index: int) -> int | None:
        """The epoch of node `index`'s advert the sender last had (None: none yet)."""
        return self.seen[index] if index < len(self.seen) else None

    def encode(self) -> bytes:
        n = len(self.running)
        running = sum(1 << i for i, r in enumerate(self.running) if r)
        failed = sum(1 << i for i, f in enumerate(self.failed) if f)
        started = sum(1 << i for i, f in enumerate(self.started) if f)
        head = _HEAD.pack(
            VERSION,
            self.digest,
            n,
            len(self.seen),
            self.hears,
            self.standby,
            self.claim,
            self.claim_id,
            self.epoch,
        )
        seen = b"".join(e.to_bytes(2, "big") for e in self.seen)
        flags = b""
        offer = self.offer is not Standby.NONE
        if self.arbiter is not None or self.witness or offer:
            bits = NO_ARBITER if self.arbiter is None else ARBITER_CONNECTED * self.arbiter
            flags = bytes((bits | WITNESS * self.witness | OFFER * offer,))
            if offer:
                flags += bytes((self.offer,)) + self.offer_id.to_bytes(2, "big")
        return (
            head
            + running.to_bytes(8, "big")
            + failed.to_bytes(8, "big")
            + started.to_bytes(8, "big")
            + bytes(self.targets)
            + seen
            + flags
        )


def decode_advert(data: bytes) -> Advert | None:
    """The advert in `data`, or None when it is not one (never raises)."""
    body = _HEAD.size + 24
    if len(data) < body:
        return None
    version, digest, n, nodes, hears, standby, claim, claim_id, epoch = _HEAD.unpack_from(data)
    if version != VERSION or n > MAX_GROUPS or nodes > MAX_NODES:
        return None
    end = body + n + 2 * nodes
    if len(data) < end:
        return None
    arbiter, witness, offer, offer_id = None, False, Standby.NONE, 0
    if len(data) > end:
        bits = data[end]
        if bits & ~_FLAGS or (bits & NO_ARBITER and bits & ARBITER_CONNECTED):
            return None  # an unknown or contradictory flag: not an advert this node knows
        if bits == NO_ARBITER:
            return None  # the byte is sent only when it says something
        if len(data) != end + (4 if bits & OFFER else 1):
            return None
        arbiter = None if bits & NO_ARBITER else bool(bits & ARBITER_CONNECTED)
        witness = bool(bits & WITNESS)
        if bits & OFFER:
            if not Standby.NONE < data[end + 1] <= Standby.ALL:
                return None
            offer = Standby(data[end + 1])
            offer_id = int.from_bytes(data[end + 2 : end + 4], "big")
    if standby > Standby.ALL or claim > Standby.ALL:
        return None
    running = int.from_bytes(data[_HEAD.size : _HEAD.size + 8], "big")
    failed = int.from_bytes(data[_HEAD.size + 8 : _HEAD.size + 16], "big")
    started = int.from_bytes(data[_HEAD.size + 16 : body], "big")
    if running >> n or failed >> n or started >> n:
        return None
    seen_at = body + n
    return Advert(
        digest=digest,
        running=tuple(bool(running >> i & 1) for i in range(n)),
        targets=tuple(data[body:seen_at]),
        hears=hears,
        failed=tuple(bool(failed >> i & 1) for i in range(n)),
        standby=Standby(standby),
        claim=Standby(claim),
        claim_id=claim_id,
        epoch=epoch,
        seen=tuple(
            int.from_bytes(data[seen_at + 2 * i : seen_at + 2 * i + 2], "big") for i in range(nodes)
        ),
        started=tuple(bool(started >> i & 1) for i in range(n)),
        arbiter=arbiter,
        witness=witness,
        offer=offer,
        offer_id=offer_id,
    )
