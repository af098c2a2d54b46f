"""The per-user recall cache: read-your-writes, other writers seen within the refresh interval."""

from __future__ import annotations

import asyncio
from pathlib import Path

from memgrpc.core.memory.model import Memory, MemoryQuery
from memgrpc.core.memory.service import MemoryService
from memgrpc.embed import BatchingEmbedder, Embedder
from memgrpc.store.db import Store, StoreConfig


async def _service(
    path: Path, embedder: Embedder, refresh_s: float, cache_rows: int = 300_000
) -> tuple[Store, MemoryService]:
    store = Store(StoreConfig(uri=str(path), dim=embedder.dim, read_consistency_s=refresh_s))
    await store.open()
    return store, MemoryService(store, BatchingEmbedder(embedder), cache_rows=cache_rows)


async def _top(svc: MemoryService, query: str, **kw: object) -> list[str]:
    hits = await svc.search("p", MemoryQuery(user_id="u", **kw), query, limit=3)  # type: ignore[arg-type]
    return [h.memory.content for h in hits]


async def test_two_writers_share_one_dataset(tmp_path: Path, shared_embedder: Embedder) -> None:
    store_a, a = await _service(tmp_path / "db", shared_embedder, 0.2)
    store_b, b = await _service(tmp_path / "db", shared_embedder, 0.2)
    try:
        await a.create("p", Memory(user_id="u", content="The user's cat is called Miso"))
        assert (await _top(a, "cat name"))[0] == "The user's cat is called Miso"
        assert a.cache.loads == 1
        # read-your-writes on A without waiting; B loads fresh
        m = await a.create("p", Memory(user_id="u", content="User is learning to play the cello"))
        assert (await _top(a, "musical instrument"))[0] == m.content
        await asyncio.sleep(0.3)  # B's view of the table is at most one interval old
        assert (await _top(b, "musical instrument"))[0] == m.content
        # a write on B reaches A's cache within the refresh interval
        other = await b.create(
            "p", Memory(user_id="u", content="User booked a trip to Lisbon in June")
        )
        await asyncio.sleep(0.3)
        assert (await _top(a, "travel plans"))[0] == other.content
        # a delete on B: A reloads and stops returning it
        await b.delete("p", other.id)
        await asyncio.sleep(0.3)
        assert other.content not in await _top(a, "travel plans")
        # filters apply in the cached path too
        await a.create("p", Memory(user_id="u", content="User's dog is called Rex", tags=["pets"]))
        assert await _top(a, "pet names", tags=("pets",)) == ["User's dog is called Rex"]
        # an update replaces the cached item
        cat = (await a.search("p", MemoryQuery(user_id="u"), "Miso", limit=1))[0].memory
        from memgrpc.core.memory.model import Patch

        await a.update(
            "p",
            Patch(
                Memory(id=cat.id, content="The user's cat is called Tofu"), frozenset({"content"})
            ),
        )
        assert (await _top(a, "cat name"))[0] == "The user's cat is called Tofu"
        # an update on B of a row A holds: A's refresh replaces it (rows it read before and
        # that did not change since are skipped)
        await asyncio.sleep(0.3)
        await b.update(
            "p",
            Patch(
                Memory(id=cat.id, content="The user's cat is called Mochi"), frozenset({"content"})
            ),
        )
        await asyncio.sleep(0.3)
        assert (await _top(a, "cat name"))[0] == "The user's cat is called Mochi"
    finally:
        await store_a.close()
        await store_b.close()


async def test_too_large_users_fall_back_to_the_store(
    tmp_path: Path, shared_embedder: Embedder
) -> None:
    store, svc = await _service(tmp_path / "db", shared_embedder, 0.5)
    try:
        svc.cache._max_user_rows = 2
        for text in (
            "alpha note about gardens",
            "beta note about boats",
            "gamma note about trains",
        ):
            await svc.create("p", Memory(user_id="u", content=text))
        assert (await _top(svc, "boats"))[0] == "beta note about boats"
        assert svc.cache.loads == 0  # served by the LanceDB legs
    finally:
        await store.close()


async def test_the_cache_holds_at_most_its_rows(tmp_path: Path, shared_embedder: Embedder) -> None:
    """A user larger than the whole cache is searched in the store; with 0 nobody is cached."""
    for cache_rows, cached in ((2, {"small": 1}), (0, {})):
        store, svc = await _service(tmp_path / f"db{cache_rows}", shared_embedder, 0.5, cache_rows)
        try:
            for user, texts in {
                "u": ["alpha note about gardens", "beta note about boats", "gamma note on trains"],
                "small": ["delta note about kites"],
            }.items():
                for text in texts:
                    await svc.create("p", Memory(user_id=user, content=text))
            assert (await _top(svc, "boats"))[0] == "beta note about boats"
            hits = await svc.search("p", MemoryQuery(user_id="small"), "kites", limit=3)
            assert [h.memory.content for h in hits] == ["delta note about kites"]
            assert (svc.cache.users, svc.cache.rows) == (len(cached), sum(cached.values()))
        finally:
            await store.close()


async def test_archived_memories_are_hidden_unless_asked(
    tmp_path: Path, shared_embedder: Embedder
) -> None:
    from memgrpc.core.memory.model import Patch

    store, svc = await _service(tmp_path / "db", shared_embedder, 0.5)
    try:
        keep = await svc.create("p", Memory(user_id="u", content="User likes green tea"))
        old = await svc.create("p", Memory(user_id="u", content="User likes black coffee"))
        assert len(await _top(svc, "drinks")) == 2
        assert svc.cache.loads == 1
        await svc.update("p", Patch(Memory(id=old.id, archived=True), frozenset({"archived"})))
        assert await _top(svc, "drinks") == [keep.content]
        assert set(await _top(svc, "drinks", include_archived=True)) == {keep.content, old.content}
        assert svc.cache.loads == 1  # all served from the cache
    finally:
        await store.close()


async def test_get_by_id_from_a_cached_user(tmp_path: Path, shared_embedder: Embedder) -> None:
    """A get of a cached user's memory is served by the cache, as fresh as that user's searches:
    own writes at once, another replica's update or delete within the refresh interval."""
    from memgrpc.core.kernel.errors import NotFound
    from memgrpc.core.memory.model import Patch

    store_a, a = await _service(tmp_path / "db", shared_embedder, 0.2)
    store_b, b = await _service(tmp_path / "db", shared_embedder, 0.2)
    try:
        m = await a.create("p", Memory(user_id="u", content="User keeps bees on the roof"))
        assert await a.cache.lookup("p", m.id) is None  # nobody searched u yet: the store
        assert (await a.get("p", m.id)).content == m.content
        await _top(a, "bees")
        assert a.cache.loads == 1
        cached = await a.cache.lookup("p", m.id)
        assert cached is not None and cached.content == m.content
        assert await a.cache.lookup("other-project", m.id) is None
        # own update: served at once
        await a.update(
            "p", Patch(Memory(id=m.id, content="User keeps wasps"), frozenset({"content"}))
        )
        assert (await a.get("p", m.id)).content == "User keeps wasps"
        # another replica's update, then delete: seen within the interval
        await asyncio.sleep(0.3)  # B sees A's writes after one interval too
        await b.update(
            "p", Patch(Memory(id=m.id, content="User keeps ants"), frozenset({"content"}))
        )
        await asyncio.sleep(0.3)
        assert (await a.get("p", m.id)).content == "User keeps ants"
        await b.delete("p", m.id)
        await asyncio.sleep(0.3)
        assert await a.cache.lookup("p", m.id) is None
        try:
            await a.get("p", m.id)
        except NotFound:
            pass
        else:
            raise AssertionError("a deleted memory was still returned")
    finally:
        await store_a.close()
        await store_b.close()


async def test_a_compaction_here_defers_the_refresh_not_the_write(
    tmp_path: Path, shared_embedder: Embedder
) -> None:
    """While this process compacts the table, its versions are not sorted out yet: the cache
    looks again once the pass ends, and then reads another replica's write made meanwhile."""
    store_a, a = await _service(tmp_path / "db", shared_embedder, 0.1)
    store_b, b = await _service(tmp_path / "db", shared_embedder, 0.1)
    try:
        await a.create("p", Memory(user_id="u", content="User grows tomatoes"))
        await _top(a, "garden")
        loads = a.cache.loads
        with a._table.writer.versions.maintaining():
            other = await b.create("p", Memory(user_id="u", content="User restores old clocks"))
            await asyncio.sleep(0.2)
            assert other.content not in await _top(a, "antique clocks")  # held back
        await asyncio.sleep(0.2)
        assert (await _top(a, "antique clocks"))[0] == other.content
        assert a.cache.loads == loads  # a delta read, not a reload
    finally:
        await store_a.close()
        await store_b.close()
