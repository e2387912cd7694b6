"""What a node hears, carried in every heartbeat: the newest message it has from each peer.

Each hbd heartbeat lists, for every peer the sender counts alive, the low bits of the
peer's generation and of the highest sequence number accepted from it. A peer the sender
counts dead is left out. So a node reading a peer's heartbeat learns two things:

- whether the peer counts it alive at all (it is listed): a live peer that leaves it out
  does not hear it -- a one-way cut -- and will take its groups over;
- when the peer last heard it: the node kept the time it sent each sequence number, so
  the peer may count it dead from that send time plus its own deadtime (which the peer
  applies to it), a moment it knows even when the peer's frames stop coming too.

A peer counted dead whose addresses still answer the sender's probes is listed with the
*probed* mark: "I do not hear your frames, but you answer me, so I will not take your
groups over". A node the peer cannot hear, but sees, need not go.

The policy (`hbd.core.policy`) turns that into "deaf" and "unheard"; docs/policy.md has
the proof that needs it.

On the wire: in a native heartbeat's payload, 4 bytes per entry (node index in the
sorted node list, its top bit the probed mark; generation & 0xFF; sequence & 0xFFFF); in
a Heartbeat-format status message, the field `hbdack` (`ha_control.ACK_FIELD`) holding
`INDEX:GEN:SEQ` entries in hex, comma separated, `p` before a probed one (Heartbeat
ignores fields it does not know). An empty list says "I
count nobody alive" and still marks the sender as one that acknowledges.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SEQ_MOD = 1 << 16
_ENTRY = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class Ack:
    """The newest message one peer heard from node `index` (low bits only)."""

    index: int  # position in the sorted node list
    generation: int  # generation & 0xFF
    seq: int  # sequence & 0xFFFF
    probed: bool = False  # counted dead on the paths, but its addresses answer probes


PROBED = 0x80  # the top bit of the index byte
MAX_INDEX = 0x7F


def encode_acks(acks: tuple[Ack, ...]) -> bytes:
    return b"".join(
        _ENTRY.pack(a.index | (PROBED if a.probed else 0), a.generation & 0xFF, a.seq % SEQ_MOD)
        for a in acks
    )


def decode_acks(data: bytes) -> tuple[Ack, ...] | None:
    """The entries in a heartbeat payload, or None when it is not a list of them."""
    if len(data) % _ENTRY.size:
        return None
    out = []
    for i in range(0, len(data), _ENTRY.size):
        index, gen, seq = _ENTRY.unpack_from(data, i)
        out.append(Ack(index & MAX_INDEX, gen, seq, bool(index & PROBED)))
    return tuple(out)


def acks_text(acks: tuple[Ack, ...]) -> str:
    return ",".join(
        f"{'p' if a.probed else ''}{a.index:x}:{a.generation & 0xFF:x}:{a.seq % SEQ_MOD:x}"
        for a in acks
    )


def parse_acks_text(text: str) -> tuple[Ack, ...] | None:
    """`hbdack`'s value, or None when it is malformed (never raises)."""
    if not text:
        return ()
    out: list[Ack] = []
    for entry in text.split(","):
        probed = entry.startswith("p")
        parts = entry[1:].split(":") if probed else entry.split(":")
        if len(parts) != 3 or any(not p or len(p) > 4 for p in parts):
            return None
        try:
            index, gen, seq = (int(p, 16) for p in parts)
        except ValueError:
            return None
        if index > MAX_INDEX or gen > 0xFF:
            return None
        out.append(Ack(index, gen, seq, probed))
    return tuple(out)


def full_seq(low: int, newest_sent: int) -> int | None:
    """The sequence number we sent whose low 16 bits are `low`: the latest one not above
    `newest_sent` (an ack is never ahead of what we sent). None when there is none."""
    seq = newest_sent - ((newest_sent - low) % SEQ_MOD)
    return seq if seq >= 1 else None
