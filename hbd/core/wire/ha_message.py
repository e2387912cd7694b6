"""Heartbeat's message object (cluster-glue's `struct ha_msg`): an ordered list of typed fields.

Names and string values are `str` holding Heartbeat's bytes one-to-one (latin-1), because
Heartbeat is byte-oriented and never decodes text. Field types are cluster-glue's:

    (0) string   str               the default; written untyped (`name=value`)
    (1) binary   bytes             base64 in the classic format, raw in netstrings
    (2) struct   HaMessage         a nested message
    (3) list     tuple[str, ...]   packed as `3:abc,4:defg,`
    (4) compress bytes             an opaque compressed blob, handled like binary

Type (5) "uncompress" never reaches the wire (cluster-glue compresses it before sending).

`HaMessage.check()` states what can cross the wire and come back equal (see `_check`); the
encoders call it and raise `LocalProtocolError` for a message the caller built wrongly.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from hbd.core.errors import LocalProtocolError

# The escape for '\n' inside a string value (cluster-glue SPECIAL_SYM): '\n' <-> 0x13.
NL_ESCAPE = "\x13"
# Per nesting depth, the character a nested message's newlines become (SPECIAL_SYMS).
_SPECIAL_SYMS = (20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 15, 16, 17, 18)
DEPTH_ESCAPES = tuple(chr(c) for c in _SPECIAL_SYMS)
MAX_DEPTH = len(DEPTH_ESCAPES)  # cluster-glue MAXDEPTH
# Per depth, what a string field's name and value may not contain (see `_check`): the
# plain field's fast path; anything else gets the detailed check and its exact error.
_NAME_BAD = tuple(
    re.compile("[" + re.escape("=\n\0" + "".join(DEPTH_ESCAPES[:d])) + "]")
    for d in range(MAX_DEPTH)
)
_VALUE_BAD = tuple(
    re.compile("[" + re.escape("\0" + NL_ESCAPE + "".join(DEPTH_ESCAPES[:d])) + "]")
    for d in range(MAX_DEPTH)
)


class FieldType(enum.IntEnum):
    """cluster-glue's field type codes, as written in `(N)name=`."""

    STRING = 0
    BINARY = 1
    STRUCT = 2
    LIST = 3
    COMPRESS = 4


@dataclass(frozen=True, slots=True)
class HaField:
    """One `name=value` of a message, with its type."""

    name: str
    value: str | bytes | HaMessage | tuple[str, ...]
    type: FieldType = FieldType.STRING


_PY_TYPE: dict[FieldType, type] = {
    FieldType.STRING: str,
    FieldType.BINARY: bytes,
    FieldType.STRUCT: object,  # HaMessage, checked below (forward reference)
    FieldType.LIST: tuple,
    FieldType.COMPRESS: bytes,
}


@dataclass(frozen=True, slots=True)
class HaMessage:
    """A Heartbeat message: fields in wire order. Lookups return the first field of a name,
    as cluster-glue's `cl_get_value` does."""

    fields: tuple[HaField, ...] = ()
    # name -> its first field, built at the first lookup (a message is read a dozen times)
    _first: dict[str, HaField] | None = field(
        default=None, init=False, compare=False, hash=False, repr=False
    )

    @classmethod
    def of(cls, *pairs: tuple[str, str] | HaField) -> HaMessage:
        """Build from `(name, str value)` pairs and/or ready `HaField`s, in order."""
        return cls(tuple(p if isinstance(p, HaField) else HaField(p[0], p[1]) for p in pairs))

    def __iter__(self) -> Iterator[HaField]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def field(self, name: str) -> HaField | None:
        """The first field called `name`, or None."""
        first = self._first
        if first is None:
            first = {}
            for f in self.fields:
                first.setdefault(f.name, f)
            object.__setattr__(self, "_first", first)  # a cache: the message stays frozen
        return first.get(name)

    def get(self, name: str) -> str | None:
        """The first field called `name` if it is a string field (`ha_msg_value`), else None."""
        f = self.field(name)
        return f.value if f is not None and isinstance(f.value, str) else None

    def get_binary(self, name: str) -> bytes | None:
        """The value of the first field called `name` if it is binary (or compress)."""
        f = self.field(name)
        return f.value if f is not None and isinstance(f.value, bytes) else None

    def get_struct(self, name: str) -> HaMessage | None:
        f = self.field(name)
        return f.value if f is not None and isinstance(f.value, HaMessage) else None

    def get_list(self, name: str) -> tuple[str, ...] | None:
        f = self.field(name)
        return f.value if f is not None and isinstance(f.value, tuple) else None

    def get_hex(self, name: str) -> int | None:
        """A string field holding a Heartbeat hex number (`%lx`), or None if absent or not hex."""
        return parse_hex(self.get(name))

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def with_field(
        self,
        name: str,
        value: str | bytes | HaMessage | tuple[str, ...],
        type: FieldType | None = None,
    ) -> HaMessage:
        """`ha_msg_mod`: replace the first field of that name and type in place, else append."""
        ftype = type if type is not None else _infer_type(value)
        new = HaField(name, value, ftype)
        for i, f in enumerate(self.fields):
            if f.name == name and f.type == ftype:
                return HaMessage((*self.fields[:i], new, *self.fields[i + 1 :]))
        return HaMessage((*self.fields, new))

    def without(self, name: str) -> HaMessage:
        """The message with every field called `name` removed."""
        return HaMessage(tuple(f for f in self.fields if f.name != name))

    def check(self) -> None:
        """Raise LocalProtocolError unless this message survives both wire formats unchanged."""
        _check(self, 0)


def plain_top_level(f: HaField) -> bool:
    """Whether top-level field `f` passes `check()` by its first test and reads the same in
    both formats without escaping: an ASCII string with no newline, or binary, under an
    ASCII letters-and-digits name (what every field of hbd's own heartbeats is)."""
    name = f.name
    if type(name) is not str or not name.isascii() or not name.isalnum():
        return False
    if f.type is FieldType.STRING:
        value = f.value
        return (
            type(value) is str
            and value.isascii()
            and "\n" not in value
            and _VALUE_BAD[0].search(value) is None
        )
    return f.type is FieldType.BINARY and type(f.value) is bytes


def parse_hex(s: str | None) -> int | None:
    """Heartbeat writes numbers as `%lx`; accept exactly lowercase/uppercase hex digits."""
    if s is None or not s or len(s) > 16 or any(c not in "0123456789abcdefABCDEF" for c in s):
        return None
    return int(s, 16)


def _infer_type(value: object) -> FieldType:
    if isinstance(value, str):
        return FieldType.STRING
    if isinstance(value, bytes):
        return FieldType.BINARY
    if isinstance(value, HaMessage):
        return FieldType.STRUCT
    if isinstance(value, tuple):
        return FieldType.LIST
    raise LocalProtocolError(f"no Heartbeat field type for a {type(value).__name__} value")


def _bad_chars(text: str, forbidden: Iterable[str]) -> list[str]:
    if text.isalnum():
        return []  # the usual case, and none of the forbidden characters is alphanumeric
    return [repr(c) for c in forbidden if c in text]


def _check(msg: HaMessage, depth: int) -> None:
    """What a message must be for Heartbeat (and us) to carry it and read it back equal.

    - at least one field; a name is non-empty, has no '=', newline or NUL, does not start
      with '(' (a type prefix) nor '>>>'/'<<<' (the classic frame markers);
    - a string has no NUL and no 0x13 (cluster-glue turns 0x13 into '\\n' on receipt);
    - a list is non-empty, its items non-empty with no NUL/newline, one list per name
      (cluster-glue merges same-named lists);
    - inside a struct at depth d (top level = 0), text may not contain the escape chars of
      the enclosing levels (classic format turns each level's newlines into one);
    - structs nest at most 16 deep.
    """
    if depth >= MAX_DEPTH:
        raise LocalProtocolError(f"message nested deeper than {MAX_DEPTH}")
    if not msg.fields:
        raise LocalProtocolError("a Heartbeat message needs at least one field")
    outer = DEPTH_ESCAPES[:depth]
    lists: set[str] = set()
    name_bad, value_bad = _NAME_BAD[depth], _VALUE_BAD[depth]
    for f in msg.fields:
        name, value = f.name, f.value
        if (  # the usual field: a plain ASCII string under a plain name
            f.type is FieldType.STRING
            and type(name) is str
            and type(value) is str
            and name
            and name.isascii()
            and value.isascii()
            and name[0] != "("
            and not name.startswith((">>>", "<<<"))
            and name_bad.search(name) is None
            and value_bad.search(value) is None
        ):
            continue
        where = f"field {f.name!r}"
        if not isinstance(f.name, str) or not f.name:
            raise LocalProtocolError("empty field name")
        bad = _bad_chars(f.name, ("=", "\n", "\0", *outer))
        if bad or f.name.startswith(("(", ">>>", "<<<")):
            raise LocalProtocolError(f"{where}: name not allowed on the wire ({', '.join(bad)})")
        if _is_not_latin1(f.name):
            raise LocalProtocolError(f"{where}: name has characters beyond one byte")
        want = _PY_TYPE.get(f.type)
        if want is None or not isinstance(f.value, want):
            raise LocalProtocolError(f"{where}: value does not fit type {f.type!r}")
        if f.type is FieldType.STRING:
            assert isinstance(f.value, str)
            bad = _bad_chars(f.value, ("\0", NL_ESCAPE, *outer))
            if bad or _is_not_latin1(f.value):
                what = ", ".join(bad) or "wide chars"
                raise LocalProtocolError(f"{where}: string value has {what}")
        elif f.type is FieldType.LIST:
            assert isinstance(f.value, tuple)
            if not f.value or f.name in lists:
                raise LocalProtocolError(f"{where}: a list must be non-empty and unique by name")
            lists.add(f.name)
            for item in f.value:
                if (
                    not isinstance(item, str)
                    or not item
                    or _is_not_latin1(item)
                    or _bad_chars(item, ("\0", "\n", *outer))
                ):
                    raise LocalProtocolError(f"{where}: list item {item!r} not allowed")
        elif f.type is FieldType.STRUCT:
            if not isinstance(f.value, HaMessage):
                raise LocalProtocolError(f"{where}: struct value must be an HaMessage")
            _check(f.value, depth + 1)


def _is_not_latin1(s: str) -> bool:
    return not s.isascii() and any(ord(c) > 0xFF for c in s)  # isascii: the fast, usual case
