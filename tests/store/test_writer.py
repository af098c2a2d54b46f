"""The single writer per table: coalescing, ordering, uniqueness, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from memgrpc.store import writer
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.filters import Where


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(StoreConfig(uri=str(tmp_path / "db"), dim=4))
    await s.open()
    yield s
    await s.close()


def _user(pk: str, meta: str = "{}") -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "pk": pk,
        "project_id": "p",
        "id": pk,
        "metadata": meta,
        "create_time": now,
        "last_active_time": now,
    }


async def _rows(store: Store) -> dict[str, str]:
    tbl = store.table("users")
    await tbl.checkout_latest()
    return {r["pk"]: r["metadata"] for r in (await tbl.query().to_arrow()).to_pylist()}


async def test_concurrent_inserts_coalesce_into_few_commits(store: Store) -> None:
    w = store.writer("users")
    await asyncio.gather(*(w.insert([_user(f"u{i}")]) for i in range(300)))
    assert len(await _rows(store)) == 300
    stats = await store.table("users").stats()
    assert stats["fragment_stats"]["num_fragments"] <= 10
    assert w.stats.commits <= 10 and w.stats.rows == 300


async def test_insert_absent_is_unique_under_races(store: Store) -> None:
    w = store.writer("users")
    await asyncio.gather(*(w.insert_absent([_user("same", meta=str(i))]) for i in range(50)))
    await asyncio.gather(*(w.insert_absent([_user("same", meta="later")]) for _ in range(5)))
    rows = await _rows(store)
    assert list(rows) == ["same"]
    assert rows["same"] != "later"  # existing rows are left alone


async def test_order_between_upserts_and_deletes_is_kept(store: Store) -> None:
    w = store.writer("users")
    await w.insert([_user("a"), _user("b")])
    where_a = str(Where().eq("pk", "a"))
    await asyncio.gather(
        w.upsert([_user("a", meta="v2")]),
        w.delete(where_a),
        w.upsert([_user("a", meta="v3")]),
        w.upsert([_user("b", meta="b2")]),
        w.delete(str(Where().eq("pk", "b"))),
    )
    assert await _rows(store) == {"a": "v3"}


async def test_failed_commit_reaches_its_callers_and_writer_survives(store: Store) -> None:
    w = store.writer("users")
    bad = _user("x")
    bad["create_time"] = "not a timestamp"
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own conversion error
        await w.insert([bad])
    await w.insert([_user("ok")])
    assert list(await _rows(store)) == ["ok"]


async def test_close_flushes_queued_writes(tmp_path: Path) -> None:
    s = Store(StoreConfig(uri=str(tmp_path / "db"), dim=4))
    await s.open()
    tasks = [asyncio.create_task(s.writer("users").insert([_user(f"q{i}")])) for i in range(20)]
    await asyncio.sleep(0)
    await s.close()
    await asyncio.gather(*tasks)
    s2 = Store(StoreConfig(uri=str(tmp_path / "db"), dim=4))
    await s2.open()
    assert len(await _rows(s2)) == 20
    await s2.close()


async def test_open_adds_new_nullable_columns_to_old_tables(tmp_path: Path) -> None:
    import lancedb
    import pyarrow as pa

    from memgrpc.store import schemas

    uri = str(tmp_path / "db")
    db = await lancedb.connect_async(uri)
    old = pa.schema([f for f in schemas.USERS if f.name != "last_active_time"])
    tbl = await db.create_table("users", schema=old)
    await tbl.add(
        [{"pk": "x", "project_id": "p", "id": "x", "metadata": "{}", "create_time": None}]
    )
    s = Store(StoreConfig(uri=uri, dim=4))
    await s.open()
    rows = (await s.table("users").query().to_arrow()).to_pylist()
    assert rows == [{**rows[0], "last_active_time": None}] and rows[0]["pk"] == "x"
    await s.writer("users").insert([_user("y")])
    assert set(await _rows(s)) == {"x", "y"}
    await s.close()


async def test_exclusive_work_runs_between_commits(store: Store) -> None:
    """A compaction run through `exclusive` is not raced by this writer's updates: patches
    queued meanwhile commit after it, inserts (appends) during it, and the compaction commits
    (no conflict)."""
    w = store.writer("users")
    await asyncio.gather(*(w.insert([_user(f"u{i}")]) for i in range(20)))
    for i in range(10):  # fragments to compact
        await w.patch([{"pk": f"u{i}", "metadata": f'{{"n": {i}}}'}])
    tbl = store.table("users")
    started = asyncio.Event()
    order: list[str] = []

    inserted = asyncio.Event()

    async def compact() -> object:
        started.set()
        await asyncio.wait_for(inserted.wait(), 10)  # an append commits during the work
        stats = await tbl.optimize()
        order.append("compacted")
        return stats

    job = asyncio.ensure_future(w.exclusive(compact))
    await started.wait()

    async def patch(i: int) -> None:
        await w.patch([{"pk": f"u{i}", "metadata": f'{{"again": {i}}}'}])
        order.append(f"patched u{i}")

    async def insert() -> None:
        await w.insert([_user("new")])
        order.append("inserted")
        inserted.set()

    await asyncio.gather(job, *(patch(i) for i in range(5)), insert())
    assert order[:2] == ["inserted", "compacted"] and len(order) == 7
    assert (await tbl.stats())["fragment_stats"]["num_small_fragments"] <= 2
    rows = await _rows(store)
    assert rows["u3"] == '{"again": 3}' and rows["u7"] == '{"n": 7}'
    # a failing job reaches its caller and the writer goes on
    with pytest.raises(RuntimeError, match="boom"):

        async def fail() -> None:
            raise RuntimeError("boom")

        await w.exclusive(fail)
    await w.insert([_user("after")])
    assert "after" in await _rows(store)


async def test_interleaved_inserts_and_patches_share_commits(store: Store) -> None:
    """New rows and patches of other rows, queued alternately, take one commit per kind; a
    patch of a row inserted in the same flush still lands after its insert."""
    w = store.writer("users")
    await w.insert([_user(f"old{i}") for i in range(10)])
    before = w.stats.commits
    ops = []
    for i in range(10):
        ops.append(w.insert([_user(f"new{i}")]))
        ops.append(w.patch([{"pk": f"old{i}", "metadata": f'{{"n": {i}}}'}]))
    ops.append(w.patch([{"pk": "new3", "metadata": '{"patched": true}'}]))
    await asyncio.gather(*ops)
    rows = await _rows(store)
    assert len(rows) == 20 and rows["old7"] == '{"n": 7}' and rows["new3"] == '{"patched": true}'
    assert w.stats.commits - before <= 4  # the first op may flush alone


async def test_exclusive_without_appends_holds_inserts_too(store: Store) -> None:
    w = store.writer("users")
    order: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def compact() -> None:
        started.set()
        await asyncio.wait_for(release.wait(), 10)
        order.append("compacted")

    job = asyncio.ensure_future(w.exclusive(compact, appends=False))
    await started.wait()

    async def insert() -> None:
        await w.insert([_user("held")])
        order.append("inserted")

    pending = asyncio.ensure_future(insert())
    await asyncio.sleep(0.2)
    assert order == []  # the insert waits for the work
    release.set()
    await asyncio.gather(job, pending)
    assert order == ["compacted", "inserted"]
    assert "held" in await _rows(store)


async def test_a_patch_runs_aside_inserts_pass_it_other_writes_wait(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A patch (a merge_insert, slow on a table of many fragments) does not hold up inserts;
    an update or delete submitted meanwhile waits for it, and a second patch after it too."""
    w = store.writer("users")
    await w.insert([_user(f"u{i}") for i in range(5)])
    release = asyncio.Event()
    order: list[str] = []
    commit = w._commit_with_retry

    async def gated(group: list[Any]) -> int:
        if group[0].kind == "patch" and not release.is_set():
            await asyncio.wait_for(release.wait(), 10)  # the slow merge_insert
        return await commit(group)

    monkeypatch.setattr(w, "_commit_with_retry", gated)

    async def run(name: str, op: Awaitable[object]) -> None:
        await op
        order.append(name)

    patch = asyncio.ensure_future(run("patch", w.patch([{"pk": "u1", "metadata": '{"n": 1}'}])))
    await asyncio.sleep(0.05)
    later = [
        asyncio.ensure_future(run("delete", w.delete(str(Where().eq("pk", "u2"))))),
        asyncio.ensure_future(run("patch2", w.patch([{"pk": "u1", "metadata": '{"n": 2}'}]))),
    ]
    await asyncio.sleep(0.05)
    await asyncio.wait_for(run("insert", w.insert([_user("new")])), 10)
    assert order == ["insert"]  # committed while the patch runs
    release.set()
    await asyncio.wait_for(asyncio.gather(patch, *later), 10)
    assert order == ["insert", "patch", "delete", "patch2"]
    rows = await _rows(store)
    assert rows["u1"] == '{"n": 2}' and "u2" not in rows and "new" in rows


async def test_a_patch_that_loses_alongside_inserts_retries_holding_them(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A patch's first try runs alongside inserts for PATCH_ALONGSIDE_S at most (LanceDB would
    retry a lost merge_insert for 30 s, and a stream of inserts can outrun every retry); its
    retry holds the inserts submitted meanwhile until it has committed."""
    w = store.writer("users")
    await w.insert([_user(f"u{i}") for i in range(5)])
    monkeypatch.setattr(writer, "PATCH_ALONGSIDE_S", 1e-6)  # the first try times out at once
    tries: list[float | None] = []
    retrying, release = asyncio.Event(), asyncio.Event()
    commit = w._commit

    async def watched(group: list[Any], timeout_s: float | None = None) -> int:
        if group[0].kind == "patch":
            tries.append(timeout_s)
            if timeout_s is None:
                retrying.set()
                await asyncio.wait_for(release.wait(), 10)
        return await commit(group, timeout_s)

    monkeypatch.setattr(w, "_commit", watched)
    order: list[str] = []

    async def run(name: str, op: Awaitable[object]) -> None:
        await op
        order.append(name)

    patch = asyncio.ensure_future(run("patch", w.patch([{"pk": "u1", "metadata": '{"n": 1}'}])))
    await asyncio.wait_for(retrying.wait(), 10)
    insert = asyncio.ensure_future(run("insert", w.insert([_user("new")])))
    await asyncio.sleep(0.2)
    assert order == []  # held for the retry
    release.set()
    await asyncio.wait_for(asyncio.gather(patch, insert), 10)
    assert order == ["patch", "insert"] and tries == [1e-6, None]
    rows = await _rows(store)
    assert rows["u1"] == '{"n": 1}' and "new" in rows and len(rows) == 6
    # the next patch runs alongside inserts again
    tries.clear()
    monkeypatch.setattr(writer, "PATCH_ALONGSIDE_S", 30.0)
    await asyncio.wait_for(w.patch([{"pk": "u2", "metadata": '{"n": 2}'}]), 10)
    assert tries == [30.0]


async def test_inserts_gather_longer_while_the_table_is_compacted_here(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inserts arriving some ms apart commit one by one (an idle writer does not wait), but
    while this process compacts the table they wait up to MAINTAINING_WAIT_S to share commits:
    a compaction's commit is rebased over every commit made meanwhile, and a stream of small
    ones outran it under load (LanceDB gave up after 30 s)."""
    monkeypatch.setattr(writer, "MAINTAINING_WAIT_S", 0.5)  # far longer than the trickle
    w = store.writer("users")

    async def trickle(prefix: str, gap_s: float) -> int:
        before = w.stats.commits
        pending = []
        for i in range(6):
            pending.append(asyncio.ensure_future(w.insert([_user(f"{prefix}{i}")])))
            await asyncio.sleep(gap_s)
        await asyncio.gather(*pending)
        return w.stats.commits - before

    alone = await trickle("a", 0.2)  # wide apart: a slow commit must not gather them
    with w.versions.maintaining():
        gathered = await trickle("m", 0.01)
    assert alone >= 3 and gathered == 1, (alone, gathered)
    assert len(await _rows(store)) == 12
