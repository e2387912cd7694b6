"""OCF instance files, `conf/OCF/TYPE/INSTANCE`: the settings of `OCF::TYPE::INSTANCE`.

Heartbeat's `resource.d/OCF` wrapper sources the instance file with /bin/sh and exports
every variable it assigns, so the agent sees `OCF_RESKEY_ip=10.0.0.5` as its `ip`
parameter. hbd reads the same files without a shell, so that `hbctl check-config` can
name a bad line before anything runs. What it reads, one assignment per line:

    # a comment                     blank lines and comments are skipped
    OCF_RESKEY_ip=10.0.0.5          NAME=value
    export OCF_RESKEY_nic=eth0      `export` in front is allowed (sh does the same)
    OCF_RESKEY_options="-o noatime" "..." and '...' quote spaces; \\ escapes
    dir=/srv/pg
    OCF_RESKEY_pgdata=$dir/data     $NAME and ${NAME} of a name set earlier in the file

Every name is exported as the shell would export it. A name that is not `OCF_*` and that
no later line uses reaches the agent as a plain environment variable, not a parameter,
which is almost always a forgotten `OCF_RESKEY_` prefix: it gives a warning. What a shell
would do but hbd will not (command substitution, a name from the environment, several
commands on a line) is an error naming the line and what to write instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from hbd.config.model import ConfigWarning
from hbd.config.syntax import lines as _lines
from hbd.core.errors import ConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class InstanceSettings:
    """An instance file, read: its assignments in file order, and its warnings."""

    path: str
    assignments: tuple[tuple[str, str], ...]
    warnings: tuple[ConfigWarning, ...]

    @property
    def parameters(self) -> dict[str, str]:
        """The agent's parameters: `OCF_RESKEY_NAME=value` as NAME -> value."""
        prefix = "OCF_RESKEY_"
        return {k[len(prefix) :]: v for k, v in self.assignments if k.startswith(prefix)}


class _Value:
    """One shell word after `NAME=`, expanded the way sh would expand it."""

    def __init__(self, text: str, known: dict[str, str], fail: Callable[[str], ConfigError]):
        self.text = text
        self.known = known
        self.pos = 0
        self.used: set[str] = set()
        self.fail = fail

    def read(self) -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t":
                rest = self.text[self.pos :].strip()
                if rest and not rest.startswith("#"):
                    raise self.fail(
                        f"'{rest}' follows the value: write one NAME=value per line, and quote "
                        'a value with spaces, e.g. NAME="a b"'
                    )
                break
            self.pos += 1
            if c == "'":
                end = self.text.find("'", self.pos)
                if end < 0:
                    raise self.fail("unterminated '...': close the quote on the same line")
                out.append(self.text[self.pos : end])
                self.pos = end + 1
            elif c == '"':
                out.append(self._double_quoted())
            elif c == "\\":
                if self.pos < len(self.text):
                    out.append(self.text[self.pos])
                    self.pos += 1
            elif c == "$":
                out.append(self._expand())
            elif c == "`":
                raise self.fail(_NO_COMMANDS)
            else:
                out.append(c)
        return "".join(out)

    def _double_quoted(self) -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\\" and self.pos < len(self.text) and self.text[self.pos] in '$`"\\':
                out.append(self.text[self.pos])
                self.pos += 1
            elif c == "$":
                out.append(self._expand())
            elif c == "`":
                raise self.fail(_NO_COMMANDS)
            else:
                out.append(c)
        raise self.fail('unterminated "...": close the quote on the same line')

    def _expand(self) -> str:
        """After a '$': the value of ${NAME} or $NAME, which an earlier line set."""
        rest = self.text[self.pos :]
        if rest.startswith("("):
            raise self.fail(_NO_COMMANDS)
        if rest.startswith("{"):
            m = _NAME.match(rest, 1)
            if m is None or rest[m.end() : m.end() + 1] != "}":
                raise self.fail(
                    "only ${NAME} and $NAME are expanded (no ${NAME:-...} and the like); "
                    "write the value itself"
                )
            skip = m.end() + 1
        else:
            if rest[:1].isdigit() or rest[:1] in tuple("?#@*!-$"):
                raise self.fail(f"${rest[:1]} means nothing in an instance file; write the value")
            m = _NAME.match(rest)
            if m is None:
                return "$"  # a '$' not followed by a name is itself, as in sh
            skip = m.end()
        name = m.group(0)
        if name not in self.known:
            raise self.fail(
                f"${name} is not set earlier in this file (hbd does not read its own "
                f"environment here); set {name}=... above this line or write the value itself"
            )
        self.pos += skip
        self.used.add(name)
        return self.known[name]


_NO_COMMANDS = "command substitution ($(...) or `...`) is not run by hbd; write the value itself"


def parse_instance(text: str, path: str) -> InstanceSettings:
    """Read an OCF instance file. Raises ConfigError naming FILE:LINE and the fix."""
    known: dict[str, str] = {}
    order: list[tuple[str, str, int]] = []
    used_after: dict[str, int] = {}  # name -> last line that expanded it
    for number, raw in enumerate(_lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def fail(message: str, number: int = number) -> ConfigError:
            return ConfigError(path, number, message)

        if "\x00" in line:
            raise fail("line contains a NUL byte; an instance file must be text")
        m = _ASSIGNMENT.fullmatch(line)
        spaced = re.fullmatch(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if m is None and spaced is not None:
            raise fail(
                f"no spaces around '=' (sh would run a command): write "
                f"{spaced.group(1)}={spaced.group(2)}"
            )
        if m is None:
            word, *after = line.split()
            hint = (
                f"; to set the agent's '{word}' parameter write "
                f"OCF_RESKEY_{word}={' '.join(after) or 'VALUE'}"
                if _NAME.fullmatch(word) and "=" not in line
                else ""
            )
            raise fail(f"'{line}' is not NAME=value (one assignment per line){hint}")
        name, rest = m.group(1), m.group(2)
        if name == "OCF_RESKEY_":
            raise fail("OCF_RESKEY_ needs a parameter name after it, e.g. OCF_RESKEY_ip=10.0.0.5")
        if rest[:1] in (" ", "\t") and rest.strip() and not rest.strip().startswith("#"):
            raise fail(
                f"no spaces around '=' (sh would run a command): write {name}={rest.strip()}"
            )
        value = _Value(rest, known, fail)
        known[name] = value.read()
        for used in value.used:
            used_after[used] = number
        order.append((name, known[name], number))
    assignments: list[tuple[str, str]] = []
    warnings: list[ConfigWarning] = []
    last: dict[str, int] = {name: number for name, _, number in order}
    for name, _, number in order:
        if last[name] != number:
            continue  # assigned again further down: the last value is what sh exports
        assignments.append((name, known[name]))
        if not name.startswith("OCF_") and used_after.get(name, 0) <= number:
            warnings.append(
                ConfigWarning(
                    f"{path}:{number}",
                    f"'{name}' is not an OCF parameter: the agent gets it as the plain "
                    f"environment variable {name} (as Heartbeat passed it); to set the "
                    f"agent's '{name}' parameter write OCF_RESKEY_{name}=...",
                )
            )
    return InstanceSettings(path, tuple(assignments), tuple(warnings))
