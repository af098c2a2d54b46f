"""The own-writes cache of session rows and message tails: served without a read while only this
process writes, re-read after another process's write, never keeping a read that raced a write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memgrpc.core.conversation.messages import MessageService
from memgrpc.core.conversation.records import Message, Session, session_row
from memgrpc.core.conversation.session_store import SessionStore
from memgrpc.core.kernel.rowcache import OwnWritesCache
from memgrpc.core.memory.service import MemoryService
from memgrpc.embed import BatchingEmbedder, Embedder
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.filters import Where
from memgrpc.store.maintenance import adopting
from memgrpc.store.tables import Row, Table


async def _open(path: Path, dim: int) -> Store:
    store = Store(StoreConfig(uri=str(path), dim=dim, read_consistency_s=0.0))
    await store.open()
    return store


class CountingLoads:
    """Loads one session row from the table, counting the reads."""

    def __init__(self, table: Table, session_id: str) -> None:
        self.table, self.session_id, self.reads = table, session_id, 0

    async def __call__(self) -> Row | None:
        self.reads += 1
        return await self.table.first(Where().eq("project_id", "p").eq("id", self.session_id))


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one dataset, as two replicas."""
    a, b = await _open(tmp_path / "db", 384), await _open(tmp_path / "db", 384)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_hit_own_write_and_foreign_write(replicas: tuple[Store, Store]) -> None:
    a, b = replicas
    store_a, store_b = SessionStore(a), SessionStore(b)
    await store_a.insert("p", Session(id="s1", user_id="u", title="first"), None)
    cache: OwnWritesCache[Row] = OwnWritesCache(store_a.table, 0.0)
    load = CountingLoads(store_a.table, "s1")
    assert (await cache.get("s1", load))["title"] == "first"  # type: ignore[index]
    assert (await cache.get("s1", load))["title"] == "first"  # type: ignore[index]
    assert load.reads == 1
    # an own write applied through the cache: still no read, the new value served
    async with cache.writing("s1") as settle:
        await store_a.table.writer.patch([{"id": "s1", "title": "second"}])
        settle((cache.peek("s1") or {}) | {"title": "second"})
    assert (await cache.get("s1", load))["title"] == "second"  # type: ignore[index]
    assert load.reads == 1
    # another process writes: the next get reads the table again
    await store_b.table.writer.patch([{"id": "s1", "title": "third"}])
    assert (await cache.get("s1", load))["title"] == "third"  # type: ignore[index]
    assert load.reads == 2
    # a failed write (no settle) drops the entry
    async with cache.writing("s1"):
        pass
    assert cache.peek("s1") is None


async def test_entries_are_served_while_a_compaction_runs_here(
    replicas: tuple[Store, Store],
) -> None:
    """A compaction here changes no rows: its versions do not send every get to a table busy
    compacting; another replica's write made meanwhile is read once the pass ends."""
    a, b = replicas
    store_a, store_b = SessionStore(a), SessionStore(b)
    for i in range(3):  # fragments for the compaction to merge
        await store_a.insert("p", Session(id=f"s{i}", user_id="u", title=f"title {i}"), None)
    cache: OwnWritesCache[Row] = OwnWritesCache(store_a.table, 0.0)
    load = CountingLoads(store_a.table, "s1")
    assert (await cache.get("s1", load))["title"] == "title 1"  # type: ignore[index]
    tbl = a.table("sessions")
    before = int(await tbl.version())
    async with adopting(tbl, store_a.table.writer):  # as Maintainer._optimize runs it
        await tbl.optimize()
        assert int(await tbl.version()) > before
        assert (await cache.get("s1", load))["title"] == "title 1"  # type: ignore[index]
        await store_b.table.writer.patch([{"id": "s1", "title": "renamed elsewhere"}])
        assert (await cache.get("s1", load))["title"] == "title 1"  # type: ignore[index]
        assert load.reads == 1
    # the pass ended: its own versions adopted, the other replica's write is read
    assert (await cache.get("s1", load))["title"] == "renamed elsewhere"  # type: ignore[index]
    assert load.reads == 2


async def test_a_created_row_is_cached_and_another_writer_still_seen(
    replicas: tuple[Store, Store],
) -> None:
    a, b = replicas
    store_a, store_b = SessionStore(a), SessionStore(b)
    cache: OwnWritesCache[Row] = OwnWritesCache(store_a.table, 0.0)
    async with cache.creating("s1") as settle:
        await store_a.table.writer.insert(
            [session_row("p", Session(id="s1", user_id="u", title="made"), None)]
        )
        settle(session_row("p", Session(id="s1", user_id="u", title="made"), None))
    load = CountingLoads(store_a.table, "s1")
    assert (await cache.get("s1", load))["title"] == "made"  # type: ignore[index]
    assert load.reads == 0
    await store_b.table.writer.patch([{"id": "s1", "title": "renamed elsewhere"}])
    assert (await cache.get("s1", load))["title"] == "renamed elsewhere"  # type: ignore[index]
    assert load.reads == 1
    # an insert that fails caches nothing
    try:
        async with cache.creating("s2") as settle:
            raise RuntimeError("commit failed")
    except RuntimeError:
        pass
    assert cache.peek("s2") is None


async def test_a_read_that_overlaps_a_write_is_not_kept(
    tmp_path: Path, shared_embedder: Embedder
) -> None:
    store = await _open(tmp_path / "db", shared_embedder.dim)
    try:
        sessions = SessionStore(store)
        await sessions.insert("p", Session(id="s1", user_id="u", title="old"), None)
        cache: OwnWritesCache[Row] = OwnWritesCache(sessions.table, 0.0)
        gate, loaded = asyncio.Event(), asyncio.Event()

        async def slow_load() -> Row | None:
            row = await sessions.table.first(Where().eq("project_id", "p").eq("id", "s1"))
            loaded.set()
            await gate.wait()  # the write below commits while this read is "in flight"
            return row

        reader = asyncio.ensure_future(cache.get("s1", slow_load))
        await asyncio.wait_for(loaded.wait(), 10)  # read, not yet returned
        async with cache.writing("s1") as settle:
            await sessions.table.writer.patch([{"id": "s1", "title": "new"}])
            settle(None)
        gate.set()
        assert (await reader)["title"] == "old"  # type: ignore[index]
        assert cache.peek("s1") is None  # the stale read was not cached
        fresh = CountingLoads(sessions.table, "s1")
        assert (await cache.get("s1", fresh))["title"] == "new"  # type: ignore[index]
    finally:
        await store.close()


async def test_sessions_and_tails_across_two_processes(
    replicas: tuple[Store, Store], shared_embedder: Embedder
) -> None:
    """Two stores on one dataset (as two replicas): each sees the other's messages and counters
    at once (consistency interval 0), while its own repeated reads are served from the cache."""
    a, b = replicas
    services: list[tuple[SessionStore, MessageService]] = []
    for store in (a, b):
        ss = SessionStore(store)
        services.append((ss, MessageService(store, _memories(store, shared_embedder), ss)))
    (ss_a, msg_a), (ss_b, msg_b) = services
    await ss_a.insert("p", Session(id="s1", user_id="u"), None)
    await msg_a.add("p", "s1", [Message(role="user", content="hello from A")])
    assert [m.content for m in await msg_a.since("p", "s1", 0)] == ["hello from A"]
    await msg_a.add("p", "s1", [Message(role="assistant", content="reply on A")])
    # the cached tail follows A's own writes
    assert [m.content for m in await msg_a.since("p", "s1", 0)] == [
        "hello from A",
        "reply on A",
    ]
    assert (await ss_a.require("p", "s1")).message_count == 2
    await msg_b.add("p", "s1", [Message(role="user", content="hello from B")])
    await ss_b.flush()  # B's counters are written behind (core/conversation/session_store.py)
    # A's caches see B's commits and read again
    assert [m.content for m in await msg_a.since("p", "s1", 1)] == [
        "reply on A",
        "hello from B",
    ]
    assert (await ss_a.require("p", "s1")).message_count == 3
    # a purge behind the caches' backs is forgotten explicitly
    ss_a.forget_user("p", "u")
    msg_a.forget_user("p", "u")
    assert ss_a._cache.peek("p/s1") is None
    assert msg_a._tails.peek("p/s1") is None


def _memories(store: Store, embedder: Embedder) -> Any:
    return MemoryService(store, BatchingEmbedder(embedder))
