"""What the fuzzers share: the hypothesis tests (tests/test_config_fuzz.py,
tests/test_fuzz_engine.py) and the million-input campaign (bench/fuzz.py) draw "directive
soup" from the same words and damage frames the same way.

Config words: plausible and broken values side by side: times in every unit Heartbeat
takes and some it does not, numbers at the edges of their ranges, booleans, devices,
addresses, node names, agents and resource arguments, and the words that have broken
parsers before (digits `int()` refuses or reads oddly, numbers too long for a double or for
`int()`'s 4300-digit limit, characters `str.splitlines()` treats as line breaks)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

VALUES: tuple[str, ...] = (
    "0", "1", "2", "10", "1.5", ".5", "1.", "1500ms", "200us", "499us", "1e3", "-1",
    "65535", "65536", "694", "19200", "14400", "255", "256", "99", "100",
    "on", "off", "yes", "no", "legacy", "none", "any", "other", "true", "maybe",
    "eth0", "eth1", "lo", "eth0/1", "a" * 20, "/dev/ttyS0", "/dev/watchdog", "ttyS0",
    "10.0.0.1", "10.0.0.2", "239.192.0.1", "225.0.0.1", "10.0.0.300", "::1", "ff12::1",
    "ha-01", "ha-02", "HA-01", "ha_01!", "hacluster", "/usr/lib/ipfail", "uid=hacluster",
    "gid=haclient", "uid=", "heartbeat", "hbd", "classic", "netstring", "file", "nodename",
    "time", "local0", "local9", "daemon", "#", "\\",
)  # fmt: skip

# Words that have broken parsers before.
TRICKY: tuple[str, ...] = (
    "\u00b2", "\u0661\u0662", "\uff11", "9" * 40, "9" * 400, "9" * 5000, "1" * 31, "\f", "\x85",
)  # fmt: skip

# authkeys: key methods, good and bad.
KEY_METHODS: tuple[str, ...] = ("crc", "md5", "sha1", "sha256", "SHA1", "sha3", "")
KEY_INDEXES: tuple[str, ...] = ("0", "1", "2", "15", "16", "\u00b2", "one")

# haresources: addresses, agents and their arguments.
RESOURCES: tuple[str, ...] = (
    "10.0.0.5", "10.0.0.5/24/eth0/10.0.0.255", "10.0.0.5/33", "10.0.0.5/\u00b2",
    "IPaddr::10.0.0.6", "IPaddr2::10.0.0.7/24", "IPaddr::", "SendArp",
    "SendArp::10.0.0.5/eth0", "OCF::Dummy", "OCF::Dummy::one", "OCF::../x::y",
    "Filesystem::/dev/sdb1::/srv", "..", ".", "a/b", "::", "apache",
)  # fmt: skip

# What goes between the words of a line and at its end.
SEPARATORS: tuple[str, ...] = (" ", "  ", ",", ", ", "\t", " \f", "\x85", "\u2028")
ENDINGS: tuple[str, ...] = ("", "", " # comment", " \\", "\r")

# The first word of a line, beside ha.cf's directive names (hbd.config.hacf.DIRECTIVES).
AUTHKEYS_HEADS: tuple[str, ...] = ("auth", "AUTH", "0", "1", "2", "15", "16", "\u00b9", "x")
NODES: tuple[str, ...] = ("ha-01", "ha-02")
HARESOURCES_HEADS: tuple[str, ...] = (*NODES, "HA-02", "ha-03", "")


# Frame markers a mutation may splice in: Heartbeat's classic and netstring delimiters, a
# COBS frame end and the start of a native header.
MARKERS: tuple[bytes, ...] = (b">>>\n", b"<<<\n", b"###\n", b"%%%\n", b"\x00", b"\xb8\x01")


def mutate(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """`data` damaged 1 to 4 times: a bit flipped, random bytes inserted, bytes deleted, the
    tail cut off, the tail replaced by the tail of another frame of `pool`, or a marker
    inserted."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:
            del b[i : i + rng.randint(1, 16)]
        elif op == 3:
            del b[i:]
        elif op == 4 and pool:
            other = rng.choice(pool)
            j = rng.randrange(len(other) + 1)
            b[i:] = other[j:]
        else:
            b[i:i] = rng.choice(MARKERS)
    return bytes(b)


# -- structure-aware, signed: inputs that pass the signature and reach the handlers ---------

HEARTBEAT_TYPES: tuple[str, ...] = (
    "status", "hbd-advert", "resource", "hbd-echo", "shutdone", "reqnodes", "repnodes",
    "ackmsg", "rexmit", "nak_rexmit", "other",
)  # fmt: skip
NATIVE_TYPES: tuple[str, ...] = ("heartbeat", "advert", "echo", "echo_reply", "leaving")


def _number(rng: random.Random, near: int, top: int = 0xFFFFFFFF) -> int:
    """A number around `near`, or at an edge of its range."""
    pick = rng.randrange(6)
    if pick == 0:
        return 0
    if pick == 1:
        return top
    if pick == 2:
        return rng.randrange(top + 1)
    return max(0, min(top, near + rng.randint(-3, 3)))


def _advert_bytes(rng: random.Random) -> bytes:
    from hbd.core.advert import NO_NODE, Advert, Standby

    if rng.random() < 0.2:
        return rng.randbytes(rng.randint(0, 80))
    n = rng.randint(0, 4)
    advert = Advert(
        digest=rng.randrange(0x10000),
        running=tuple(rng.random() < 0.5 for _ in range(n)),
        targets=tuple(rng.choice((0, 1, NO_NODE)) for _ in range(n)),
        hears=rng.randrange(4),
        standby=rng.choice(tuple(Standby)),
        claim=rng.choice(tuple(Standby)),
        claim_id=rng.randrange(0x10000),
        epoch=rng.randrange(0x10000),
        seen=tuple(rng.randrange(0x10000) for _ in range(rng.randint(0, 2))),
        arbiter=rng.choice((None, False, True)),
        witness=rng.random() < 0.5,
        offer=(offer := rng.choice(tuple(Standby))),
        offer_id=rng.randrange(0x10000) if offer is not Standby.NONE else 0,
    )
    data = advert.encode()
    return data if rng.random() < 0.8 else mutate(rng, data, ())


def signed_heartbeat_message(
    rng: random.Random,
    *,
    src: str,
    srcuuid: bytes,
    dest: str,
    generation: int,
    seq: int,
) -> tuple[str, Any]:
    """(type, an `HaMessage` of that type with random but well-formed fields, some of them
    then dropped, replaced or added): for the caller to sign and send."""
    from hbd.core.wire import ha_control as hc
    from hbd.core.wire.ha_message import HaMessage

    kind = rng.choice(HEARTBEAT_TYPES)
    gen = generation if rng.random() < 0.9 else _number(rng, generation)
    s = seq if rng.random() < 0.85 else _number(rng, seq)
    ts = _number(rng, 0x6B05FFD4)
    to = rng.choice((dest, dest, src, "nobody"))
    msg: HaMessage
    if kind == "status":
        msg = hc.status_message(
            src, srcuuid, s, gen, rng.choice(("active", "up", "dead", "x")),
            _number(rng, 8000), ts, watchdog_ms=rng.choice((None, 0, 1000, 0xFFFFFFFF)),
        )  # fmt: skip
    elif kind == "hbd-advert":
        msg = hc.advert_message(src, srcuuid, s, gen, ts, _advert_bytes(rng))
    elif kind == "resource":
        held = rng.choice(("none", "local", "foreign", "all"))
        msg = hc.resource_message(src, srcuuid, s, gen, ts, held, rng.random() < 0.5)
    elif kind == "hbd-echo":
        reply = rng.choice((None, dest, src))
        msg = hc.echo_message(src, srcuuid, gen, ts, _number(rng, 7), reply_to=reply)
    elif kind == "shutdone":
        msg = hc.shutdone_message(src, srcuuid, s, gen, ts)
    elif kind == "reqnodes":
        msg = hc.reqnodes_message(src, srcuuid, to, None, s, gen, ts)
    elif kind == "repnodes":
        nodes = rng.sample((src, dest, "stranger"), rng.randint(1, 3))
        msg = hc.repnodes_message(src, srcuuid, to, None, s, gen, ts, nodes)
    elif kind == "ackmsg":
        msg = hc.ack_message(src, srcuuid, to, None, _number(rng, seq), gen, ts)
    elif kind == "rexmit":
        first = _number(rng, seq - 20)
        last = first + rng.choice((0, 1, 31, 32, 1000, 0xFFFFFFFF))
        msg = hc.rexmit_message(src, srcuuid, to, None, first, last, gen, ts)
    elif kind == "nak_rexmit":
        msg = hc.nak_rexmit_message(src, srcuuid, to, None, s, "not in history", gen, ts)
    else:
        msg = hc.shutdone_message(src, srcuuid, s, gen, ts).with_field("t", rng.choice(VALUES))
    for _ in range(rng.choice((0, 0, 1, 2))):
        names = [f.name for f in msg.fields]
        how = rng.randrange(3)
        if how == 0 and len(names) > 1:
            msg = msg.without(rng.choice(names))
        elif how == 1 and names:
            msg = msg.with_field(rng.choice(names), rng.choice((*VALUES, *TRICKY)))
        else:
            msg = msg.with_field(rng.choice(("x", "dest", "ttl", "hg", "seq")), rng.choice(VALUES))
    return kind, msg


def signed_native_frame(
    rng: random.Random, *, cluster: int, node_id: int, generation: int, seq: int, path_hash: int
) -> tuple[str, Any]:
    """(type, a `NativeFrame` with random but encodable fields), for the caller to sign."""
    from hbd.core.wire import native as nat

    kind = rng.choice(NATIVE_TYPES)
    frame_kind = {
        "heartbeat": nat.FrameKind.HEARTBEAT,
        "leaving": nat.FrameKind.HEARTBEAT,
        "advert": nat.FrameKind.ADVERT,
        "echo": nat.FrameKind.ECHO,
        "echo_reply": nat.FrameKind.ECHO_REPLY,
    }[kind]
    state = nat.NodeState.LEAVING if kind == "leaving" else rng.choice(tuple(nat.NodeState))
    if frame_kind is nat.FrameKind.ADVERT:
        payload = _advert_bytes(rng)
    elif frame_kind in (nat.FrameKind.ECHO, nat.FrameKind.ECHO_REPLY):
        payload = rng.randbytes(rng.choice((4, 4, 4, 0, 3, 9)))
    else:
        payload = rng.randbytes(rng.choice((0, 0, 0, 8)))
    frame = nat.NativeFrame(
        cluster_id=cluster if rng.random() < 0.95 else rng.randrange(1 << 32),
        node_id=node_id if rng.random() < 0.95 else rng.randrange(1 << 32),
        generation=generation if rng.random() < 0.9 else _number(rng, generation),
        seq=seq if rng.random() < 0.85 else _number(rng, seq),
        state=state,
        deadtime_ms=_number(rng, 8000, nat.MAX_MS),
        watchdog_ms=rng.choice((0, 1000, nat.MAX_MS)),
        path_hash=path_hash if rng.random() < 0.9 else rng.randrange(0x10000),
        kind=frame_kind,
        payload=payload,
    )
    return kind, frame
