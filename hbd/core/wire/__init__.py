"""Wire codecs: Heartbeat 3.0.6 classic text and netstring formats, and hbd's native frames.

A codec never raises on what a peer sent: decoding returns either the decoded frame or a
`Dropped` naming the reason. Encoding a message the caller built wrongly raises
`LocalProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hbd.core.errors import DropReason


@dataclass(frozen=True, slots=True)
class Dropped:
    """A received frame (or run of bytes) that was thrown away, and why."""

    reason: DropReason
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value
