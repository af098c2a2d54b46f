"""The one keyset paging helper: tokens round-trip, stay bound to their query, and page a list."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from memgrpc.core.kernel import paging
from memgrpc.core.kernel.errors import InvalidArgument, Violations
from memgrpc.core.kernel.paging import Cursor, Row

FP = paging.fingerprint("p1", "users", {"tier": "gold"})


def _violation(exc: pytest.ExceptionInfo[InvalidArgument]) -> tuple[str, str]:
    (v,) = exc.value.violations
    return v.field, v.description


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        # microseconds a float timestamp would round wrong
        (datetime(2025, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC), datetime),
        (datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC), datetime),
        (0, int),
        (2**40, int),
        ("key_0042", str),
    ],
)
def test_round_trip(value: datetime | int | str, kind: type[datetime | int | str]) -> None:
    token = paging.encode(value, "id-7", FP)
    assert "=" not in token and "/" not in token and "+" not in token  # url-safe, unpadded
    assert paging.decode(token, FP, kind) == (value, "id-7")


def test_a_time_in_another_zone_is_the_same_instant() -> None:
    local = datetime(2025, 3, 1, 14, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    got, _ = paging.decode(paging.encode(local, "k", FP), FP, datetime)
    assert got == local and got.tzinfo == UTC


def test_a_token_of_another_query_is_invalid_argument() -> None:
    token = paging.encode(5, "k", paging.fingerprint("p1", "users", {"tier": "silver"}))
    with pytest.raises(InvalidArgument) as exc:
        paging.decode(token, FP, int)
    assert _violation(exc) == (
        "page_token",
        "belongs to a different query (filters or order changed)",
    )


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "%%%",
        "zz",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(json.dumps({"x": 1}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"t": "soon", "i": "k", "f": FP}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"t": 10**30, "i": "k", "f": FP}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, 2]).encode()).decode(),
    ],
)
def test_garbage_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        paging.decode(token, FP, datetime, name="page_token")
    assert _violation(exc) == ("page_token", "is not a page token this server issued")


def test_a_token_of_another_sort_kind_is_invalid_argument() -> None:
    """A crafted token with the right fingerprint but a seq where a time belongs."""
    with pytest.raises(InvalidArgument) as exc:
        paging.decode(paging.encode(17, "k", FP), FP, datetime)
    assert _violation(exc) == ("page_token", "is not a page token this server issued")


def test_the_fingerprint_reads_every_part() -> None:
    assert paging.fingerprint("p", {"a": 1, "b": 2}) == paging.fingerprint("p", {"b": 2, "a": 1})
    assert paging.fingerprint("p", "users") != paging.fingerprint("p", "sessions")
    assert paging.fingerprint("p", "x", True) != paging.fingerprint("p", "x", False)


def test_page_size_defaults_caps_and_rejects_negatives() -> None:
    v = Violations()
    assert paging.page_size(v, 0) == paging.DEFAULT_PAGE_SIZE
    assert paging.page_size(v, 10**6) == paging.MAX_PAGE_SIZE
    assert paging.page_size(v, 7) == 7
    assert v.items == []
    paging.page_size(v, -1)
    assert [(x.field, x.description) for x in v.items] == [("page_size", "must not be negative")]


ROWS: list[Row] = [{"seq": i, "id": f"m{i:02}", "text": f"message {i}"} for i in range(7)]


class Reader:
    """A list of rows in (seq, id) order, read the way the store reads a keyset page."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = rows
        self.limits: list[int] = []

    async def __call__(self, after: Cursor[int] | None, limit: int) -> tuple[list[Row], int]:
        self.limits.append(limit)
        rest = [r for r in self.rows if after is None or (r["seq"], r["id"]) > after]
        return rest[:limit], len(self.rows)


async def _pages(read: Reader, size: int) -> list[paging.Page[str]]:
    out: list[paging.Page[str]] = []
    token = ""
    while True:
        page = await paging.fetch(
            size, token, FP, read, order=("seq", "id"), kind=int, item=lambda r: str(r["text"])
        )
        out.append(page)
        token = page.next_page_token
        if not token:
            return out


async def test_fetch_pages_through_every_row_once() -> None:
    read = Reader(ROWS)
    pages = await _pages(read, 3)
    assert [p.items for p in pages] == [
        ["message 0", "message 1", "message 2"],
        ["message 3", "message 4", "message 5"],
        ["message 6"],
    ]
    assert {p.total_size for p in pages} == {7}
    assert read.limits == [4, 4, 4]  # one row more than a page says whether another follows
    assert paging.decode(pages[0].next_page_token, FP, int) == (2, "m02")


async def test_fetch_of_an_exact_multiple_ends_without_an_empty_page() -> None:
    pages = await _pages(Reader(ROWS[:6]), 3)
    assert [len(p.items) for p in pages] == [3, 3]
    assert pages[-1].next_page_token == ""


async def test_fetch_of_nothing_is_one_empty_page() -> None:
    pages = await _pages(Reader([]), 3)
    assert [(p.items, p.next_page_token, p.total_size) for p in pages] == [([], "", 0)]


async def test_fetch_refuses_another_querys_token_before_reading() -> None:
    read = Reader(ROWS)
    other = paging.encode(2, "m02", paging.fingerprint("another"))
    with pytest.raises(InvalidArgument):
        await paging.fetch(3, other, FP, read, order=("seq", "id"), kind=int, item=str)
    assert read.limits == []
