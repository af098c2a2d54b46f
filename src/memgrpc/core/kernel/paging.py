"""Opaque keyset page tokens, bound to the query they came from."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from memgrpc.core.kernel.errors import InvalidArgument, Violations

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(v: Violations, size: int, name: str = "page_size") -> int:
    if size < 0:
        v.add(name, "must not be negative")
        return DEFAULT_PAGE_SIZE
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def fingerprint(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode(last_value: datetime, last_id: str, fp: str) -> str:
    body = {"t": int(last_value.timestamp() * 1_000_000), "i": last_id, "f": fp}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode(token: str, fp: str, name: str = "page_token") -> tuple[datetime, str]:
    try:
        pad = "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(token + pad))
        t, last_id, got = int(body["t"]), str(body["i"]), str(body["f"])
        value = datetime.fromtimestamp(t / 1_000_000, tz=UTC)
    except (ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
        raise InvalidArgument.field(name, "is not a page token this server issued") from exc
    if got != fp:
        raise InvalidArgument.field(name, "belongs to a different query (filters or order changed)")
    return value, last_id
