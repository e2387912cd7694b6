"""The driver for an ha.cf medium: the one place that knows every kind of link."""

from __future__ import annotations

from hbd.config.model import Medium, MediumKind

from .base import Backoff, Link
from .serial import DEFAULT_LOCK_DIR, SerialLink
from .udp import udp_link


def make_link(
    medium: Medium,
    *,
    lock_dir: str | None = None,
    backoff: Backoff | None = None,
) -> Link:
    """The driver for one ha.cf medium (not yet opened): serial, bcast, mcast or ucast.

    `lock_dir` overrides where serial lines take their UUCP locks (default /var/lock).
    Raises ValueError naming the ha.cf line for a medium no driver can serve.
    """
    if medium.kind is MediumKind.SERIAL:
        return SerialLink(medium, lock_dir=lock_dir or DEFAULT_LOCK_DIR, backoff=backoff)
    return udp_link(medium, backoff=backoff)
