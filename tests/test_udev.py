"""udev/61-hbd.rules: well-formed by udev's grammar, and udev itself applies it.

systemd 252 has no `udevadm verify` (253+). Two checks instead:

* every rule is tokenised here into key/operator/value and checked against udev(7)'s
  grammar: known keys, match keys only with ==/!=, assignment keys only with =/+=/-=/:=,
  brace arguments where required, commas between pairs (udev silently accepts a missing
  comma), GOTO targets that exist; plus hbd's own policy for the file;
* `udevadm test` runs the real rules engine on this machine's ttyS0 (COM1 at 0x3F8), in a
  private mount namespace with tmpfs over /dev, /run and /etc/udev/rules.d, so the links
  and permissions it applies land nowhere on the host. It must read the file without one
  diagnostic, and create /dev/hbd/com1 with the mode the rules ask for.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[1] / "udev" / "61-hbd.rules"

MATCH_ONLY = {
    "ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER", "DRIVERS",
    "ATTRS", "TAGS", "TEST", "PROGRAM", "RESULT", "CONST",
}  # fmt: skip
ASSIGN_ONLY = {"OWNER", "GROUP", "MODE", "SECLABEL", "RUN", "IMPORT", "OPTIONS", "LABEL", "GOTO"}
EITHER = {"NAME", "SYMLINK", "ENV", "TAG", "ATTR", "SYSCTL"}
NEEDS_BRACE = {"ATTR", "ATTRS", "ENV", "SYSCTL", "CONST", "SECLABEL", "IMPORT"}
MAY_BRACE = {"TEST", "RUN"}
MATCH_OPS = {"==", "!="}
ASSIGN_OPS = {"=", "+=", "-=", ":="}

PAIR = re.compile(
    r'\s*(?P<key>[A-Z_]+)(?:\{(?P<arg>[^}]*)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*'
)


@dataclass(frozen=True)
class Pair:
    key: str
    arg: str | None
    op: str
    value: str


@dataclass(frozen=True)
class Rule:
    line: int
    pairs: tuple[Pair, ...]

    def get(self, key: str) -> list[Pair]:
        return [p for p in self.pairs if p.key == key]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; skip comments and blanks (udev's line reader).

    A continued rule is numbered by its last physical line, as udev numbers it.
    """
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((number, pending + line))
        pending = ""
    assert not pending, f"line {start}: continuation runs off the end of the file"
    return out


def parse_rule(number: int, line: str) -> tuple[Rule, list[str]]:
    """Tokenise one rule; return it with every grammar error found, as 'line N: ...'."""
    errors: list[str] = []
    pairs: list[Pair] = []
    pos = 0
    while pos < len(line):
        match = PAIR.match(line, pos)
        if not match:
            errors.append(f"line {number}: cannot read a key/operator/value at {line[pos:]!r}")
            break
        pair = Pair(match["key"], match["arg"], match["op"], match["value"])
        pairs.append(pair)
        pos = match.end()
        if pos < len(line):
            if line[pos] != ",":
                errors.append(f"line {number}: missing ',' after {pair.key}")
            else:
                pos += 1
    for pair in pairs:
        where = f"line {number}: {pair.key}"
        if pair.key not in MATCH_ONLY | ASSIGN_ONLY | EITHER:
            errors.append(f"{where} is not a udev key")
            continue
        if pair.key in NEEDS_BRACE and not pair.arg:
            errors.append(f"{where} needs a {{argument}}")
        if pair.arg is not None and pair.key not in NEEDS_BRACE | MAY_BRACE:
            errors.append(f"{where} takes no {{argument}}")
        if pair.key in MATCH_ONLY and pair.op not in MATCH_OPS:
            errors.append(f"{where} can only be matched (==, !=), not assigned with {pair.op}")
        if pair.key in ASSIGN_ONLY and pair.op not in ASSIGN_OPS:
            errors.append(f"{where} can only be assigned, not matched with {pair.op}")
        if pair.key in {"LABEL", "GOTO"} and pair.op != "=":
            errors.append(f"{where} takes '=', not {pair.op}")
    if pairs and all(p.op in MATCH_OPS for p in pairs):
        errors.append(f"line {number}: only matches, no assignment: the rule does nothing")
    return Rule(number, tuple(pairs)), errors


def check(text: str) -> tuple[list[Rule], list[str]]:
    rules: list[Rule] = []
    errors: list[str] = []
    for number, line in logical_lines(text):
        rule, found = parse_rule(number, line)
        rules.append(rule)
        errors += found
    labels = {p.value for r in rules for p in r.get("LABEL")}
    for rule in rules:
        errors += [
            f"line {rule.line}: GOTO={p.value!r} has no LABEL"
            for p in rule.get("GOTO")
            if p.value not in labels
        ]
    return rules, errors


# --------------------------------------------------------------------------- grammar


def test_every_rule_follows_udevs_grammar() -> None:
    rules, errors = check(RULES.read_text())
    assert errors == []
    assert len(rules) >= 10


def test_the_grammar_check_catches_what_udev_would_ignore_or_misread() -> None:
    broken = "\n".join(
        [
            'KERNEL=="ttyS0", SYMLNK+="hbd/a"',  # udev: Invalid key
            'KERNEL=="ttyS0" SYMLINK+="hbd/b"',  # udev: silently accepted
            'KERNEL="ttyS0", SYMLINK+="hbd/c"',  # assigning a match-only key
            'KERNEL=="ttyS0", MODE=="0600"',  # matching an assignment-only key
            'ATTRS=="x", GOTO="nowhere"',  # no {attribute}, no such LABEL
        ]
    )
    _, errors = check(broken)
    assert errors == [
        "line 1: SYMLNK is not a udev key",
        "line 2: missing ',' after KERNEL",
        "line 3: KERNEL can only be matched (==, !=), not assigned with =",
        "line 4: MODE can only be assigned, not matched with ==",
        "line 4: only matches, no assignment: the rule does nothing",
        "line 5: ATTRS needs a {argument}",
        "line 5: GOTO='nowhere' has no LABEL",
    ]


def test_the_rules_only_name_links_under_dev_hbd_and_keep_the_watchdog_to_root() -> None:
    rules, _ = check(RULES.read_text())
    links = [p for r in rules for p in r.get("SYMLINK")]
    assert links and all(p.op == "+=" and p.value.startswith("hbd/") for p in links)
    # no renaming, no programs, no sysfs writes: only names and permissions
    forbidden = {"NAME", "RUN", "PROGRAM", "ATTR"}
    assert not [
        (r.line, p.key)
        for r in rules
        for p in r.pairs
        if p.key in forbidden and p.op not in MATCH_OPS
    ]
    serial_links = [r for r in rules if any(p.value.startswith("hbd/serial") for p in r.pairs)]
    for rule in serial_links:  # each port rule pins the exact device: vendor, serial or path
        keys = {(p.key, p.arg) for p in rule.pairs if p.op == "=="}
        assert keys & {("ATTRS", "serial"), ("ENV", "ID_PATH"), ("KERNELS", None)}, rule.line
    (watchdog,) = [r for r in rules if any(p.value.startswith("watchdog|") for p in r.pairs)]
    assert [p.value for p in watchdog.get("MODE")] == ["0600"]
    assert [p.value for p in watchdog.get("OWNER")] == ["root"]


# --------------------------------------------------------------------------- udevadm


def com1_is_present() -> str | None:
    """Why the udevadm scenario cannot run here, or None if it can."""
    tty = Path("/sys/class/tty/ttyS0")
    if shutil.which("udevadm") is None:
        return "udevadm not installed (apt install udev)"
    if shutil.which("unshare") is None:
        return "unshare not installed (util-linux)"
    if not tty.exists():
        return "no /sys/class/tty/ttyS0"
    if (tty / "type").read_text().strip() == "0" or (tty / "port").read_text().strip() != "0x3F8":
        return "ttyS0 here is not a COM1 UART at 0x3F8"
    return None


ISOLATED_UDEVADM_TEST = r"""
set -e
mount --make-rprivate /
mount -t tmpfs hbd-test-dev /dev
mknod -m 0600 /dev/ttyS0 c 4 64
mount -t tmpfs hbd-test-run /run
mount -t tmpfs hbd-test-rules /etc/udev/rules.d
cp "$1" /etc/udev/rules.d/61-hbd.rules
udevadm test --action=add /sys/class/tty/ttyS0
echo "LINK_TARGET=$(readlink /dev/hbd/com1)"
echo "NODE_MODE=$(stat -c %a /dev/ttyS0)"
"""


def udevadm_test(rules: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", ISOLATED_UDEVADM_TEST, "sh", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def our_diagnostics(stderr: str) -> list[str]:
    """udevadm lines about 61-hbd.rules other than reading it and applying its rules."""
    applied = re.compile(r"^ttyS0: /etc/udev/rules\.d/61-hbd\.rules:\d+ [A-Z]+ ")
    return [
        line
        for line in stderr.splitlines()
        if "61-hbd.rules" in line
        and not line.startswith("Reading rules file:")
        and not applied.match(line)
    ]


@pytest.mark.root
@pytest.mark.skipif(com1_is_present() is not None, reason=str(com1_is_present()))
def test_udev_applies_the_rules_to_com1_without_a_complaint() -> None:
    result = udevadm_test(RULES)
    assert result.returncode == 0, result.stderr[-3000:]
    assert our_diagnostics(result.stderr) == []
    assert "DEVLINKS=/dev/hbd/com1" in result.stdout.split()
    assert "LINK_TARGET=../ttyS0" in result.stdout
    assert "NODE_MODE=660" in result.stdout
    assert not Path("/dev/hbd").exists()  # it all happened in the private namespace


@pytest.mark.root
@pytest.mark.skipif(com1_is_present() is not None, reason=str(com1_is_present()))
def test_udev_names_the_line_of_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "61-hbd.rules"
    text = RULES.read_text().replace('SYMLINK+="hbd/com1"', 'SYMLNK+="hbd/com1"')
    broken.write_text(text)
    result = udevadm_test(broken)
    line = next(n for n, raw in enumerate(text.splitlines(), 1) if "SYMLNK" in raw)
    assert our_diagnostics(result.stderr) == [
        f"/etc/udev/rules.d/61-hbd.rules:{line} Invalid key 'SYMLNK'"
    ]
    assert "/dev/hbd/com1" not in result.stdout
