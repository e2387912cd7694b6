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
from hbd.testing import fuzzing

from confkit import GOOD_AUTHKEYS, GOOD_HACF

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NODES = fuzzing.NODES
WORDS = st.one_of(st.sampled_from(fuzzing.VALUES + fuzzing.TRICKY), st.text(max_size=12))
TRICKY = st.sampled_from(fuzzing.TRICKY)
SEPARATORS = st.sampled_from(fuzzing.SEPARATORS)


@st.composite
def soup_line(draw: st.DrawFn, heads: st.SearchStrategy[str]) -> str:
    # most directives take exactly one value: give that case half the draws
    count = draw(st.one_of(st.just(1), st.integers(min_value=0, max_value=6)))
    words = [draw(heads), *draw(st.lists(WORDS, min_size=count, max_size=count))]
    line = draw(SEPARATORS).join(words)
    return line + draw(st.sampled_from(fuzzing.ENDINGS))


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
AUTHKEYS_HEADS = st.sampled_from(fuzzing.AUTHKEYS_HEADS)
AUTHKEYS_SOUP = st.lists(
    st.one_of(
        st.builds(lambda i: f"auth {i}", WORDS),
        st.builds(
            lambda i, m, k: f"{i} {m} {k}",
            st.sampled_from(fuzzing.KEY_INDEXES),
            st.sampled_from(fuzzing.KEY_METHODS),
            WORDS,
        ),
        soup_line(AUTHKEYS_HEADS),
    ),
    max_size=8,
).map("\n".join)
RESOURCE_WORDS = st.one_of(WORDS, st.sampled_from(fuzzing.RESOURCES))
HARESOURCES_HEADS = st.sampled_from(fuzzing.HARESOURCES_HEADS)


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
