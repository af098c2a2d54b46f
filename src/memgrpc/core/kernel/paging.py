"""Keyset paging for every list call: the request, the page, the token codec and the fetch.

A token carries the last row's (sort value, key) and the fingerprint of the query it came from,
so a token from another query (filters or order changed) is INVALID_ARGUMENT, never a wrong
page. Pages are keysets, not offsets: a row written meanwhile neither repeats nor skips a row.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from memgrpc.core.kernel.errors import InvalidArgument, Violations
from memgrpc.store.filters import Where
from memgrpc.store.tables import Table

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

T = TypeVar("T")
# the type of the column a list is sorted by: a time, an integer (a message's seq) or the key
V = TypeVar("V", datetime, int, str)
Cursor = tuple[V, str]  # (sort value, key) of the last row of a page
Row = dict[str, Any]
Read = Callable[[Cursor[V] | None, int], Awaitable[tuple[Sequence[Row], int]]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ISSUED = "is not a page token this server issued"


@dataclass(frozen=True)
class PageRequest:
    """What a list call asks for: `order_by` is read only by lists that take one (memories)."""

    size: int = 0
    token: str = ""
    order_by: str = ""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page: its items, the next token ("" at the end) and the total over every page."""

    items: list[T]
    next_page_token: str
    total_size: int


def page_size(v: Violations, size: int, name: str = "page_size") -> int:
    """0 is the default, larger than the maximum is capped, negative is a violation."""
    if size < 0:
        v.add(name, "must not be negative")
        return DEFAULT_PAGE_SIZE
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def fingerprint(*parts: Any) -> str:
    """What binds a token to its query: every filter and the order."""
    raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode(value: datetime | int | str, key: str, fp: str) -> str:
    body: dict[str, object]
    if isinstance(value, datetime):
        # exact integer microseconds: a float round-trip can be off by one and repeat a row
        body = {"t": (value.astimezone(UTC) - _EPOCH) // _US}
    elif isinstance(value, int):
        body = {"n": value}
    else:
        body = {"s": value}
    body |= {"i": key, "f": fp}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode(token: str, fp: str, kind: type[V], name: str = "page_token") -> Cursor[V]:
    """The cursor of `token`; INVALID_ARGUMENT unless this query of this server issued it."""
    try:
        pad = "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(token + pad))
        key, got = str(body["i"]), str(body["f"])
        value: datetime | int | str
        if "t" in body:
            value = _EPOCH + int(body["t"]) * _US
        elif "n" in body:
            value = int(body["n"])
        else:
            value = str(body["s"])
    except (ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
        raise InvalidArgument.field(name, _ISSUED) from exc
    if got != fp:
        raise InvalidArgument.field(name, "belongs to a different query (filters or order changed)")
    if not isinstance(value, kind):  # a token of a list sorted by another kind of column
        raise InvalidArgument.field(name, _ISSUED)
    return value, key


async def fetch(
    size: int,
    token: str,
    fp: str,
    read: Read[V],
    *,
    order: tuple[str, str],
    kind: type[V],
    item: Callable[[Row], T],
) -> Page[T]:
    """One page of at most `size` items after `token`'s cursor.

    `read(after, limit)` returns up to `limit` rows after the cursor in the list's order and the
    total; it is asked for one row more than a page, which says whether another page follows.
    `order` names the rows' (sort column, key column): the next token is the last row's.
    """
    after = decode(token, fp, kind) if token else None
    found, total = await read(after, size + 1)
    next_token = ""
    if len(found) > size:
        last = found[size - 1]
        next_token = encode(last[order[0]], str(last[order[1]]), fp)
    return Page([item(r) for r in found[:size]], next_token, total)


async def newest_first(
    table: Table, where: Where, size: int, token: str, fp: str, item: Callable[[Row], T]
) -> Page[T]:
    """The common list: `where`'s rows newest first, keyset-paged by (create_time, id), with
    the total count."""

    async def read(after: Cursor[datetime] | None, limit: int) -> tuple[list[Row], int]:
        rows = await table.page(where, "create_time", "id", desc=True, after=after, limit=limit)
        return rows, await table.count(where)

    return await fetch(size, token, fp, read, order=("create_time", "id"), kind=datetime, item=item)
