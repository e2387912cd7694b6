"""Keyed digests (HMAC) with the key's part done once per key, not once per frame.

An HMAC hashes the key's inner and outer pads before the message: two compression
blocks and, through OpenSSL, a context set up and torn down, for every frame. The keyed
state is kept per (key, algorithm) and copied for each message, which gives the same
digest (RFC 2104) in about half the time: each frame is signed once per path and
verified once per copy, on every heartbeat.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

_hmac_new: Callable[..., Any] | None
try:  # CPython's OpenSSL binding: hmac.new's own backend, without its Python wrapper
    from _hashlib import hmac_new as _hmac_new
except ImportError:  # pragma: no cover - an interpreter without OpenSSL's hmac
    _hmac_new = None


@functools.lru_cache(maxsize=64)
def _keyed(key: bytes, algorithm: str) -> Any:
    if _hmac_new is not None:
        return _hmac_new(key, digestmod=algorithm)
    return hmac.new(key, digestmod=algorithm)


def keyed_state(key: bytes, algorithm: str) -> Any:
    """The HMAC state with `key` and nothing else hashed: `.copy()` it, never update it."""
    return _keyed(key, algorithm)


def keyed_digest(key: bytes, data: bytes, algorithm: str) -> bytes:
    """HMAC-`algorithm`(key, data), as `hmac.digest` gives it."""
    h = _keyed(key, algorithm).copy()
    h.update(data)
    digest: bytes = h.digest()
    return digest
