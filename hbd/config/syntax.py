"""Small lexical helpers shared by the ha.cf, authkeys and haresources parsers."""

from __future__ import annotations

# Longer than any number a directive accepts, far below int()'s 4300-digit limit.
_MAX_DIGITS = 30


def digits(text: str) -> bool:
    """True for a plain ASCII decimal number that int() takes.

    str.isdigit() alone also accepts '²' (which int() refuses) and Arabic-Indic
    digits (which int() reads as numbers), so every count, port and index goes
    through here.
    """
    return text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS


def lines(text: str) -> list[str]:
    """Split a file into lines on '\\n' only, as Heartbeat's fgets does.

    str.splitlines() would also break on form feeds, '\\x1c'-'\\x1e', '\\x85' and
    U+2028, and then every FILE:LINE after such a character would name the wrong line.
    A trailing '\\r' stays on the line, where the parsers treat it as a blank.
    """
    return text.split("\n")
