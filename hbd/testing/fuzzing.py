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
