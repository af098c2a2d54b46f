"""The store's LanceDB helpers."""

from __future__ import annotations

import asyncio
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa

from memgrpc.store.db import Store, StoreConfig, list_versions
from memgrpc.store.memories import DOC, MemoryFilter, MemoryTable, encode_doc
from tests.store.memory_rows import DIM, _row


async def test_versions_are_listed_while_a_cleanup_removes_them(tmp_path: Path) -> None:
    """LanceDB lists the versions, then reads each manifest: a cleanup in between failed the
    listing (seen under load as metrics_store_stats_failed "Not found: ..._versions/N.manifest";
    with `tries=1` this test fails so)."""
    db = await lancedb.connect_async(str(tmp_path))
    tbl = await db.create_table("t", pa.table({"x": [0]}))
    for i in range(300):
        await tbl.add(pa.table({"x": [i]}))

    async def count_often() -> list[int]:
        return [len(await list_versions(tbl)) for _ in range(20)]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # cleanup_older_than=0 is meant here
        _, counts, more = await asyncio.gather(
            tbl.optimize(cleanup_older_than=timedelta(0)), count_often(), count_often()
        )
    assert all(1 <= n <= 303 for n in counts + more)  # the 301 written and the compaction's
    assert [int(v["version"]) for v in await list_versions(tbl)] == [await tbl.version()]


def _memories(start: int, stop: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = [
        _row(i, doc=False) | {"id": f"m{i:05d}", "content": f"lighthouse note {i} word{i % 50}"}
        for i in range(start, stop)
    ]
    for row in rows:
        row["vector"] = rng.normal(size=DIM).astype(np.float32).tolist()
        row[DOC] = encode_doc(row)
    return rows


async def test_a_new_session_drops_the_index_versions_maintenance_replaced(
    tmp_path: Path,
) -> None:
    """Every `optimize` folds new rows into a new version of the full-text index, and LanceDB
    keeps the versions searches opened before in its cache: a new session starts from what the
    prewarm loads, and searches run on as before."""
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM, prewarm_indexes=True))
    await store.open()
    table, rng = MemoryTable(store), np.random.default_rng(0)
    flt = MemoryFilter(project_id="p", user_id="u")
    await table.writer.insert(_memories(0, 2000, rng))
    sizes = []
    for k in range(8):
        last = _memories(2000 + 200 * k, 2200 + 200 * k, rng)
        await table.writer.insert(last)
        await store.table("memories").optimize()
        for w in range(5):
            await table.text_search(flt, f"word{w} lighthouse", 5)
        sizes.append(int(store.session.size_bytes))
    assert sizes == sorted(sizes) and sizes[-1] > 4 * sizes[0], sizes  # each version kept

    await store.renew_session()
    assert store.session_renewals == 1
    renewed = int(store.session.size_bytes)
    assert 0 < renewed < sizes[-1] / 3, (renewed, sizes)  # the prewarmed index alone
    found = await table.text_search(flt, "word7 lighthouse", 5)
    assert len(found) == 5 and all(r["content"].endswith("word7") for r, _ in found)
    hits = await table.vector_search(flt, np.asarray(last[-1]["vector"], np.float32), 1)
    assert hits[0][0]["id"] == last[-1]["id"]
    await store.close()


async def test_every_acknowledged_write_is_read_back_across_renewals(tmp_path: Path) -> None:
    """Tables move to a new session between their writers' commits: a write acknowledged just
    before or after a move is read back at once (a handle sees others' commits only after
    read_consistency_s, 0.5 s here), reads running meanwhile finish, nothing is written twice."""
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM, prewarm_indexes=True))
    await store.open()
    table, rng = MemoryTable(store), np.random.default_rng(1)
    await table.writer.insert(_memories(0, 500, rng))
    missed: list[str] = []
    scanned: list[int] = []
    renewals = 20

    async def importance(memory_id: str) -> list[float]:
        q = store.table("memories").query().where(f"id = '{memory_id}'").select(["importance"])
        return [float(x) for x in (await q.to_arrow())["importance"].to_pylist()]

    async def write_and_read(worker: int) -> None:
        for i in range(1000 + 100 * worker, 1040 + 100 * worker):
            await table.writer.insert(_memories(i, i + 1, rng))
            if await table.get("p", f"m{i:05d}") is None:
                missed.append(f"insert m{i:05d}")
            await table.writer.update(f"id = 'm{i:05d}'", {"importance": 0.25})
            if await importance(f"m{i:05d}") != [0.25]:
                missed.append(f"update m{i:05d}")

    async def scan() -> None:
        for _ in range(10):
            scanned.append(await store.table("memories").count_rows())

    async def renew() -> None:
        for _ in range(renewals):
            await store.renew_session()
            await asyncio.sleep(0)

    await asyncio.gather(*(write_and_read(w) for w in range(4)), scan(), renew())
    assert store.session_renewals == renewals
    assert missed == []
    assert all(500 <= n <= 660 for n in scanned)
    assert await store.table("memories").count_rows() == 660  # 500 + 4 x 40, each once
    await store.close()
