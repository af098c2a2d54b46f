"""The writer's `update` (a compare-and-set by row count) and `patch` (partial rows, matched
keys only) operations, and the coalesced user activity built on them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memgrpc.core.conversation.activity import UserRegistry
from memgrpc.core.conversation.records import user_pk
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.filters import Where


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(StoreConfig(uri=str(tmp_path / "db"), dim=4))
    await s.open()
    yield s
    await s.close()


async def _users(store: Store) -> dict[str, dict[str, object]]:
    tbl = store.table("users")
    await tbl.checkout_latest()
    return {r["id"]: r for r in (await tbl.query().to_arrow()).to_pylist()}


async def test_update_counts_rows_so_it_can_compare_and_set(store: Store) -> None:
    reg = UserRegistry(store)
    await reg.ensure("p", {"a", "b"})
    w = store.writer("users")
    where = Where().eq("project_id", "p").eq("metadata", "{}")
    assert await w.update(str(where), {"metadata": '{"x":1}'}) == 2
    assert await w.update(str(where), {"metadata": '{"x":2}'}) == 0  # the expected state is gone
    assert {r["metadata"] for r in (await _users(store)).values()} == {'{"x":1}'}


async def test_concurrent_claims_have_one_winner(store: Store) -> None:
    reg = UserRegistry(store)
    await reg.ensure("p", {"a"})
    w = store.writer("users")
    where = str(Where().eq("id", "a").eq("metadata", "{}"))
    won = await asyncio.gather(*(w.update(where, {"metadata": f'"{i}"'}) for i in range(5)))
    assert sorted(won) == [0, 0, 0, 0, 1]


async def test_patch_overwrites_given_columns_and_never_resurrects(store: Store) -> None:
    reg = UserRegistry(store)
    await reg.ensure("p", {"a", "b"})
    w = store.writer("users")
    t = datetime(2030, 1, 1, tzinfo=UTC)
    await w.delete(str(Where().eq("id", "b")))
    await asyncio.gather(
        w.patch([{"pk": user_pk("p", "a"), "last_active_time": t}]),
        w.patch([{"pk": user_pk("p", "b"), "last_active_time": t}]),  # deleted: ignored
        w.patch([{"pk": user_pk("p", "a"), "metadata": '{"m":1}'}]),  # other columns
    )
    rows = await _users(store)
    assert set(rows) == {"a"}
    assert rows["a"]["last_active_time"] == t and rows["a"]["metadata"] == '{"m":1}'
    with pytest.raises(ValueError):
        await w.patch([{"pk": "x", "metadata": "{}"}, {"pk": "y"}])


async def test_activity_is_coalesced_and_flushed_once(store: Store) -> None:
    reg = UserRegistry(store)
    await reg.ensure("p", {"a"})
    created = (await _users(store))["a"]["last_active_time"]
    w = store.writer("users")
    commits = w.stats.commits
    for i in range(50):
        reg.touch("p", ["a"], datetime.now(UTC) + timedelta(seconds=i))
    latest = reg.pending("p", "a")
    assert latest is not None and w.stats.commits == commits
    await reg.flush()
    assert w.stats.commits == commits + 1 and reg.pending("p", "a") is None
    stored = (await _users(store))["a"]["last_active_time"]
    assert stored == latest and stored > created  # type: ignore[operator]
    reg.forget("p", "a")
    await reg.flush()  # nothing pending: no commit
    assert w.stats.commits == commits + 1
