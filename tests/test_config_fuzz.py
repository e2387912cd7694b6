"""Fuzz every configuration parser.

Invariant: whatever text or bytes a user puts in ha.cf, authkeys or haresources, loading
either succeeds or raises ConfigError whose message is a single line naming the file -
never another exception (which would reach the user as a traceback).

Inputs: random bytes and random text, and "directive soup": lines made of real directive
names, methods and resource names with values drawn from a pool of plausible and broken
words (times, numbers, addresses, paths, booleans, unicode digits, huge numbers),
separated by blanks, commas, tabs, comments and continuations.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbd.config.authkeys import parse_authkeys
from hbd.config.hacf import DIRECTIVES, parse_hacf, parse_time_ms
from hbd.config.haresources import AgentDirs, parse_haresources
from hbd.config.load import load_config
from hbd.core.errors import ConfigError

from confkit import GOOD_AUTHKEYS, GOOD_HACF

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NODES = ("ha-01", "ha-02")

WORDS = st.one_of(
    st.sampled_from(
        [
            "0",
            "1",
            "2",
            "10",
            "1.5",
            ".5",
            "1.",
            "1500ms",
            "200us",
            "499us",
            "1e3",
            "-1",
            "65535",
            "65536",
            "694",
            "19200",
            "14400",
            "255",
            "256",
            "99",
            "100",
            "on",
            "off",
            "yes",
            "no",
            "legacy",
            "none",
            "any",
            "other",
            "true",
            "maybe",
            "eth0",
            "eth1",
            "lo",
            "eth0/1",
            "a" * 20,
            "/dev/ttyS0",
            "/dev/watchdog",
            "ttyS0",
            "10.0.0.1",
            "10.0.0.2",
            "239.192.0.1",
            "225.0.0.1",
            "10.0.0.300",
            "::1",
            "ff12::1",
            "ha-01",
            "ha-02",
            "HA-01",
            "ha_01!",
            "hacluster",
            "/usr/lib/ipfail",
            "uid=hacluster",
            "gid=haclient",
            "uid=",
            "heartbeat",
            "hbd",
            "classic",
            "netstring",
            "file",
            "nodename",
            "time",
            "local0",
            "local9",
            "daemon",
            "\u00b2",
            "\u0661\u0662",
            "\uff11",
            "9" * 40,
            "9" * 400,
            "9" * 5000,
            "#",
            "\\",
        ]
    ),
    st.text(max_size=12),
)

# Words that have broken parsers before: digits int() refuses or reads oddly, numbers
# too long for a double or for int()'s 4300-digit limit, separators str.splitlines() sees.
TRICKY = st.sampled_from(
    ["\u00b2", "\u0661\u0662", "\uff11", "9" * 400, "9" * 5000, "1" * 31, "\f", "\x85"]
)

SEPARATORS = st.sampled_from([" ", "  ", ",", ", ", "\t", " \f", "\x85", "\u2028"])


@st.composite
def soup_line(draw: st.DrawFn, heads: st.SearchStrategy[str]) -> str:
    # most directives take exactly one value: give that case half the draws
    count = draw(st.one_of(st.just(1), st.integers(min_value=0, max_value=6)))
    words = [draw(heads), *draw(st.lists(WORDS, min_size=count, max_size=count))]
    line = draw(SEPARATORS).join(words)
    return line + draw(st.sampled_from(["", "", " # comment", " \\", "\r"]))


def soup(heads: st.SearchStrategy[str], prefix: str = "") -> st.SearchStrategy[str]:
    lines = st.lists(soup_line(heads), max_size=12)
    return st.builds(
        lambda ls, good: (prefix if good else "") + "\n".join(ls), lines, st.booleans()
    )


HACF_HEADS = st.one_of(
    st.sampled_from(sorted(DIRECTIVES)),
    st.sampled_from(sorted(DIRECTIVES)).map(str.upper),
    st.text(max_size=10),
)
AUTHKEYS_HEADS = st.sampled_from(["auth", "AUTH", "0", "1", "2", "15", "16", "\u00b9", "x"])
AUTHKEYS_SOUP = st.lists(
    st.one_of(
        st.builds(lambda i: f"auth {i}", WORDS),
        st.builds(
            lambda i, m, k: f"{i} {m} {k}",
            st.sampled_from(["0", "1", "2", "15", "16", "\u00b2", "one"]),
            st.sampled_from(["crc", "md5", "sha1", "sha256", "SHA1", "sha3", ""]),
            WORDS,
        ),
        soup_line(AUTHKEYS_HEADS),
    ),
    max_size=8,
).map("\n".join)
RESOURCE_WORDS = st.one_of(
    WORDS,
    st.sampled_from(
        [
            "10.0.0.5",
            "10.0.0.5/24/eth0/10.0.0.255",
            "10.0.0.5/33",
            "10.0.0.5/\u00b2",
            "IPaddr::10.0.0.6",
            "IPaddr2::10.0.0.7/24",
            "IPaddr::",
            "SendArp",
            "SendArp::10.0.0.5/eth0",
            "OCF::Dummy",
            "OCF::Dummy::one",
            "OCF::../x::y",
            "Filesystem::/dev/sdb1::/srv",
            "..",
            ".",
            "a/b",
            "::",
            "apache",
        ]
    ),
)
HARESOURCES_HEADS = st.sampled_from([*NODES, "HA-02", "ha-03", ""])


def check(error: ConfigError, file: str) -> None:
    message = str(error)
    assert message.startswith(file)
    assert "\n" not in message and "\r" not in message


def agent_dirs() -> AgentDirs:
    return AgentDirs("/nonexistent/hbd-fuzz", "/nonexistent/hbd-fuzz-initd", "/nonexistent/ocf")


# --- ha.cf -----------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_hacf_random_bytes(data: bytes) -> None:
    try:
        parse_hacf(data.decode("utf-8", "replace"), "ha.cf")
    except ConfigError as e:
        check(e, "ha.cf")


@FUZZ
@given(soup(HACF_HEADS, prefix=GOOD_HACF))
def test_hacf_directive_soup(text: str) -> None:
    try:
        parse_hacf(text, "ha.cf")
    except ConfigError as e:
        check(e, "ha.cf")


@FUZZ
@given(
    st.sampled_from(sorted(DIRECTIVES)),
    st.lists(st.one_of(TRICKY, WORDS), min_size=1, max_size=5),
    st.sampled_from([" ", ","]),
)
def test_hacf_each_directive_with_odd_values(name: str, values: list[str], sep: str) -> None:
    try:
        parse_hacf(GOOD_HACF + sep.join([name, *values]) + "\n", "ha.cf")
    except ConfigError as e:
        check(e, "ha.cf")


@FUZZ
@given(st.text(max_size=30))
def test_time_syntax_is_a_time_or_none(text: str) -> None:
    ms = parse_time_ms(text)
    assert ms is None or ms >= 0


# --- authkeys --------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_authkeys_random_bytes(data: bytes) -> None:
    try:
        parse_authkeys(data.decode("utf-8", "replace"), "authkeys")
    except ConfigError as e:
        check(e, "authkeys")


@FUZZ
@given(AUTHKEYS_SOUP)
def test_authkeys_soup(text: str) -> None:
    try:
        keys, _ = parse_authkeys(text, "authkeys")
    except ConfigError as e:
        check(e, "authkeys")
    else:
        assert keys.entries[keys.active.index] is keys.active


# --- haresources -----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_haresources_random_bytes(data: bytes) -> None:
    try:
        parse_haresources(data.decode("utf-8", "replace"), NODES, agent_dirs(), "haresources")
    except ConfigError as e:
        check(e, "haresources")


@FUZZ
@given(soup(HARESOURCES_HEADS).map(lambda t: t.replace("\t", " ")), st.lists(RESOURCE_WORDS))
def test_haresources_soup(text: str, extra: list[str]) -> None:
    text = text + "\nha-01 " + " ".join(extra)
    try:
        groups = parse_haresources(text, NODES, agent_dirs(), "haresources")
    except ConfigError as e:
        check(e, "haresources")
    else:
        assert all(g.preferred in NODES and g.resources for g in groups)


# --- the whole directory, from bytes on disk ---------------------------------------------------


@FUZZ
@given(
    st.sampled_from(["ha.cf", "authkeys", "haresources"]),
    st.one_of(st.binary(max_size=300), soup(HACF_HEADS).map(str.encode)),
)
def test_load_config_from_random_files(which: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = {"ha.cf": GOOD_HACF.encode(), "authkeys": GOOD_AUTHKEYS.encode()}
        files[which] = data
        for name, content in files.items():
            Path(tmp, name).write_bytes(content)
        os.chmod(Path(tmp, "authkeys"), 0o600)
        try:
            load_config(tmp, "ha-01", initd_dir=f"{tmp}/init.d", ocf_root=f"{tmp}/ocf")
        except ConfigError as e:
            check(e, tmp)
