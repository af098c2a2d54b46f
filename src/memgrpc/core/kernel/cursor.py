"""Opaque keyset page tokens over (time or integer, key) orders, bound to their query.

core/kernel/paging.py covers time-ordered memory pages; messages page by their integer `seq`, so this
token carries either kind of sort value.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

from memgrpc.core.kernel.errors import InvalidArgument

SortValue = datetime | int
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def encode(value: SortValue, key: str, fp: str) -> str:
    if isinstance(value, datetime):
        # exact integer microseconds: a float round-trip can be off by one and repeat a row
        body: dict[str, object] = {"t": (value.astimezone(UTC) - _EPOCH) // _US}
    else:
        body = {"n": int(value)}
    body |= {"i": key, "f": fp}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode(token: str, fp: str, name: str = "page_token") -> tuple[SortValue, str]:
    try:
        pad = "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(token + pad))
        key, got = str(body["i"]), str(body["f"])
        value: SortValue = _EPOCH + int(body["t"]) * _US if "t" in body else int(body["n"])
    except (ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
        raise InvalidArgument.field(name, "is not a page token this server issued") from exc
    if got != fp:
        raise InvalidArgument.field(name, "belongs to a different query (filters changed)")
    return value, key
