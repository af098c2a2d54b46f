"""Background upkeep: compaction, index refresh, the ANN index, request expiry."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from lancedb.index import IvfHnswSq

from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.maintenance import (
    VECTOR_INDEX,
    Maintainer,
    MaintenanceConfig,
    adopt_unchanged,
    rows_unchanged,
)
from memgrpc.store.memories import MemoryFilter, MemoryTable

DIM = 8


def _memory(i: int, vec: np.ndarray) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "id": f"mem_{i:05d}", "project_id": "p", "user_id": f"u{i % 3}", "content": f"note number {i}",
        "type": "fact", "tags": [], "categories": [], "metadata": "{}", "metadata_kv": [],
        "importance": 0.5, "archived": False, "source_message_ids": [], "version": 1,
        "event_time": now, "create_time": now, "update_time": now, "version_time": now,
        "vector": vec.tolist(),
    }  # fmt: skip


def _unit_vectors(n: int, *, seed: int) -> np.ndarray:
    vecs = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


async def _vector_indexes(tbl: Any) -> list[Any]:
    return [ix for ix in await tbl.list_indices() if ix.columns == ["vector"]]


async def test_compaction_ann_index_and_late_rows(tmp_path: Path) -> None:
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM))
    await store.open()
    vecs = _unit_vectors(1200, seed=0)
    table = MemoryTable(store)
    for start in range(0, 1000, 100):  # ten commits: ten small fragments
        await table.writer.insert([_memory(i, vecs[i]) for i in range(start, start + 100)])
    tbl = store.table("memories")
    assert (await tbl.stats())["fragment_stats"]["num_fragments"] == 10

    m = Maintainer(store, MaintenanceConfig(ann_min_rows=500, small_fragments=4))
    await m.run_once()
    stats = await tbl.stats()
    assert stats["fragment_stats"]["num_fragments"] == 1
    assert await _vector_indexes(tbl)

    # rows added after the index build are still found (no fast_search)
    await table.writer.insert([_memory(i, vecs[i]) for i in range(1000, 1200)])
    flt = MemoryFilter(project_id="p", user_id="u1")
    hits = await table.vector_search(flt, vecs[1150], 5)  # 1150 % 3 == 1
    assert hits[0][0]["id"] == "mem_01150" and hits[0][1] > 0.99
    found = await table.text_search(flt, "1150", 5)
    assert [r["id"] for r, _ in found][:1] == ["mem_01150"]
    # and the indexed ones too, with the user prefilter honoured
    hits = await table.vector_search(flt, vecs[4], 5)  # 4 % 3 == 1
    assert hits[0][0]["id"] == "mem_00004"
    assert all(int(r["id"][-5:]) % 3 == 1 for r, _ in hits)  # u1's memories only
    await store.close()


async def test_an_index_with_the_former_partitions_is_replaced(tmp_path: Path) -> None:
    """A vector index built by an older version (its name says which partitions it has) is
    rebuilt on the next pass, however few rows came since, and then dropped."""
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM))
    await store.open()
    vecs = _unit_vectors(600, seed=2)
    table = MemoryTable(store)
    await table.writer.insert([_memory(i, vecs[i]) for i in range(600)])
    tbl = store.table("memories")
    await tbl.create_index("vector", config=IvfHnswSq(distance_type="cosine", num_partitions=2))
    assert [ix.name for ix in await _vector_indexes(tbl)] == ["vector_idx"]
    m = Maintainer(store, MaintenanceConfig(ann_min_rows=500))
    await m.run_once()
    vector = await _vector_indexes(tbl)
    assert [ix.name for ix in vector] == [VECTOR_INDEX]
    await m.run_once()  # not rebuilt again: the table has not doubled
    again = await _vector_indexes(tbl)
    assert [ix.index_uuid for ix in again] == [vector[0].index_uuid]
    flt = MemoryFilter(project_id="p")
    hits = await table.vector_search(flt, vecs[123], 5)
    assert hits[0][0]["id"] == "mem_00123" and hits[0][1] > 0.99
    await store.close()


async def test_expired_request_ids_are_dropped(tmp_path: Path) -> None:
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM))
    await store.open()
    old = datetime.now(UTC) - timedelta(days=3)
    await store.writer("requests").insert(
        [
            {"pk": "old", "project_id": "p", "method": "m", "response": b"x", "create_time": old},
            {
                "pk": "new",
                "project_id": "p",
                "method": "m",
                "response": b"y",
                "create_time": datetime.now(UTC),
            },
        ]
    )
    await Maintainer(store).run_once()
    rows = (await store.table("requests").query().to_arrow()).to_pylist()
    assert [r["pk"] for r in rows] == ["new"]
    await store.close()


async def test_commit_pressure_wakes_the_maintainer(tmp_path: Path) -> None:
    """Many small commits get compacted soon, not at the next periodic pass."""
    import asyncio

    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM))
    await store.open()
    m = Maintainer(store, MaintenanceConfig(interval_s=3600, pressure_commits=20, min_gap_s=0.1))
    m.start()
    try:
        table = MemoryTable(store)
        rng = np.random.default_rng(1)
        for i in range(20):  # the 20th commit crosses the threshold
            await table.writer.insert([_memory(i, rng.normal(size=DIM).astype(np.float32))])
        for _ in range(100):
            if m.runs:
                break
            await asyncio.sleep(0.05)
        assert m.runs >= 1
        tbl = store.table("memories")
        await tbl.checkout_latest()
        assert (await tbl.stats())["fragment_stats"]["num_fragments"] <= 2
        assert len((await tbl.query().to_arrow()).to_pylist()) == 20
    finally:
        await m.stop()
        await store.close()


async def test_compaction_counts_as_own_but_another_replicas_write_does_not(
    tmp_path: Path,
) -> None:
    """The versions a pass makes are adopted as own writes (caches need not re-read), but a
    version another replica committed in between is not (caches must see its rows)."""
    a = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM, read_consistency_s=0.0))
    b = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM, read_consistency_s=0.0))
    await a.open()
    await b.open()
    try:
        vec = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
        mine, theirs = MemoryTable(a), MemoryTable(b)
        for i in range(0, 40, 4):  # ten small fragments from A
            await mine.writer.insert([_memory(j, vec) for j in range(i, i + 4)])
        tbl = a.table("memories")
        before = int(await tbl.version())
        await theirs.writer.insert([_memory(100, vec)])  # B's write
        await theirs.writer.delete("id = 'mem_00003'")  # and B's delete
        await Maintainer(a, MaintenanceConfig(small_fragments=4)).run_once(force=True)
        # as if B had committed while the pass ran: adopt everything since before B's writes
        await adopt_unchanged(tbl, mine.writer, before)
        after = int(await tbl.version())
        assert after >= before + 3  # B's two commits and at least one of the pass's
        foreign = [
            v for v in range(before + 1, after + 1) if v not in mine.writer.versions.own_versions
        ]
        assert len(foreign) == 2  # B's insert and delete, nothing of the pass
        assert not mine.writer.versions.only_own_since(before, after)
    finally:
        await a.close()
        await b.close()


def test_rows_unchanged_reads_the_version_summary() -> None:
    def summary(
        rows: int, data: int, deleted: int, files: int = 3, fragments: int = 3
    ) -> dict[str, str]:
        return {
            "total_rows": str(rows),
            "total_data_file_rows": str(data),
            "total_deletion_file_rows": str(deleted),
            "total_data_files": str(files),
            "total_fragments": str(fragments),
        }

    assert rows_unchanged(summary(10, 12, 2), summary(10, 10, 0, 1, 1))  # a compaction
    assert rows_unchanged(summary(10, 10, 0, 5, 3), summary(10, 10, 0, 1, 1))  # folds patches
    assert rows_unchanged(summary(10, 10, 0), summary(10, 10, 0))  # an index build
    assert not rows_unchanged(summary(10, 10, 0), summary(11, 11, 0, 4, 4))  # an append
    assert not rows_unchanged(summary(10, 10, 0), summary(9, 10, 1))  # a delete
    assert not rows_unchanged(summary(10, 10, 0), summary(10, 11, 1, 4, 4))  # an update
    # a patch of some columns: same rows, a new file of those columns beside a fragment's
    assert not rows_unchanged(summary(10, 10, 0), summary(10, 10, 0, 4, 3))
    assert not rows_unchanged(None, summary(10, 10, 0))
    assert not rows_unchanged(summary(10, 10, 0), {"total_rows": "x"})


async def _hundreds(tmp_path: Path, commits: int) -> tuple[Store, MemoryTable, Any]:
    """A store whose memories table took `commits` commits of 100 rows (one fragment each)."""
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM))
    await store.open()
    table = MemoryTable(store)
    vec = np.ones(DIM, dtype=np.float32)
    for start in range(0, 100 * commits, 100):
        await table.writer.insert([_memory(i, vec) for i in range(start, start + 100)])
    return store, table, store.table("memories")


async def test_cleanup_keeps_the_version_an_export_is_reading(tmp_path: Path) -> None:
    store, table, tbl = await _hundreds(tmp_path, 6)
    vec = np.ones(DIM, dtype=np.float32)
    read_version = int(await tbl.version())
    await asyncio.sleep(0.5)  # a quiet table: the version read is older than the window
    scan = table.scan(MemoryFilter(project_id="p"), with_vectors=False, batch_rows=50)
    seen = (await anext(scan)).num_rows
    await table.writer.delete("user_id = 'u0'")  # the compaction rewrites the fragments
    m = Maintainer(store, MaintenanceConfig(cleanup_older_than_s=0.2))
    await asyncio.sleep(0.3)
    await m.run_once(force=True)
    versions = {int(v["version"]) for v in await tbl.list_versions()}
    assert read_version in versions  # kept while the export reads it
    async for batch in scan:
        seen += batch.num_rows
    assert seen == 600  # the whole snapshot, deleted rows included
    assert store.snapshot_age_s("memories") == 0.0
    await table.writer.insert([_memory(900, vec)])
    await asyncio.sleep(0.5)
    await m.run_once(force=True)
    versions = {int(v["version"]) for v in await tbl.list_versions()}
    assert read_version not in versions  # removed once it ended
    await store.close()


async def test_a_snapshot_read_is_released_when_stopped_early_and_held_at_most_the_cap(
    tmp_path: Path,
) -> None:
    store, table, tbl = await _hundreds(tmp_path, 3)
    read_version = int(await tbl.version())
    scan = table.scan(MemoryFilter(project_id="p"), with_vectors=False, batch_rows=50)
    await anext(scan)
    assert store.snapshot_age_s("memories") > 0.0
    assert store.snapshot_age_s("messages") == 0.0  # only the table read is held
    # past the cap, the version is not kept any more
    await table.writer.delete("user_id = 'u0'")
    await asyncio.sleep(0.5)
    m = Maintainer(store, MaintenanceConfig(cleanup_older_than_s=0.1, snapshot_max_s=0.1))
    await m.run_once(force=True)
    assert read_version not in {int(v["version"]) for v in await tbl.list_versions()}
    await scan.aclose()  # the client went away after one batch
    assert store.snapshot_age_s("memories") == 0.0
    await store.close()


async def _passes_with_searches(config: MaintenanceConfig, tmp_path: Path) -> list[int]:
    """The store's renewals after each of 10 passes, each folding 200 new memories into a new
    version of the full-text index that searches then open."""
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM, prewarm_indexes=True))
    await store.open()
    table, vecs = MemoryTable(store), _unit_vectors(4000, seed=5)
    await table.writer.insert([_memory(i, vecs[i]) for i in range(2000)])
    m = Maintainer(store, config)
    renewals = []
    for k in range(10):
        start = 2000 + 200 * k
        await table.writer.insert([_memory(i, vecs[i]) for i in range(start, start + 200)])
        await m.run_once(force=True)
        for i in range(20):
            await table.text_search(MemoryFilter(project_id="p"), f"number {start + i}", 3)
        renewals.append(store.session_renewals)
    found = await table.text_search(MemoryFilter(project_id="p"), "number 3999", 1)
    assert [r["id"] for r, _ in found] == ["mem_03999"]
    await store.close()
    return renewals


async def test_a_new_session_is_taken_once_replaced_indexes_fill_the_cache(
    tmp_path: Path,
) -> None:
    """The first pass notes what the caches hold; a pass that finds twice that (and at least
    `cache_renew_mb`) moves the store to a new session, and the count starts again from there."""
    renewals = await _passes_with_searches(MaintenanceConfig(cache_renew_mb=1), tmp_path)
    assert renewals[0] == 0 and renewals[-1] >= 2, renewals
    assert all(b - a <= 1 for a, b in itertools.pairwise(renewals)), renewals
    never = await _passes_with_searches(MaintenanceConfig(cache_renew_mb=0), tmp_path / "off")
    assert never == [0] * 10
