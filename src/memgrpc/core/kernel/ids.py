"""Flat, prefixed, unguessable ids (`mem_...`, `prj_...`, `key_...`)."""

from __future__ import annotations

import hashlib
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 32)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """Time-ordered (ms) then 80 random bits, so ids sort roughly by creation."""
    ms = int(time.time() * 1000)
    return f"{prefix}_{_b32(ms, 10)}{_b32(secrets.randbits(80), 16)}"


def derived_id(prefix: str, *parts: str) -> str:
    """A stable id of the same shape as `new_id`'s, determined by `parts` (130 bits of SHA-256)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return f"{prefix}_{_b32(int.from_bytes(digest[:17], 'big') >> 6, 26)}"
