"""The search legs' project-wide fast path (search the whole table, then keep the project's rows)
never returns another project's or an archived row, and falls back to the prefiltered search
when other projects crowd the top of the table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.memories import DOC, MemoryFilter, MemoryTable, encode_doc

DIM = 8


def _row(i: int, project: str, vec: np.ndarray, *, archived: bool = False) -> dict[str, object]:
    now = datetime.now(UTC)
    row = {
        "id": f"{project}_{i:04d}", "project_id": project, "user_id": "u",
        "content": f"lighthouse keeper note {i}", "type": "fact", "tags": [], "categories": [],
        "metadata": "{}", "metadata_kv": [], "importance": 0.5, "archived": archived,
        "source_message_ids": [], "version": 1, "event_time": now, "create_time": now,
        "update_time": now, "version_time": now, "vector": vec.tolist(),
    }  # fmt: skip
    return row | {DOC: encode_doc(row)}  # as written by the service; rows without: test_memory_docs


def _unit(rng: np.random.Generator, base: np.ndarray, noise: float) -> np.ndarray:
    v = base + rng.normal(0, noise, DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture
async def table(tmp_path: Path) -> AsyncIterator[MemoryTable]:
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM))
    await store.open()
    try:
        yield MemoryTable(store)
    finally:
        await store.close()


async def test_project_wide_legs_keep_to_the_project(table: MemoryTable) -> None:
    rng = np.random.default_rng(5)
    q = _unit(rng, np.ones(DIM), 0.0)
    rows = [_row(i, "big", _unit(rng, q, 0.01)) for i in range(200)]  # closest to q
    rows += [_row(i, "small", _unit(rng, q, 0.3)) for i in range(6)]
    rows += [_row(i, "small", _unit(rng, q, 0.3), archived=True) for i in range(6, 9)]
    await table.writer.insert(rows)

    # "small" is crowded out of the table's top rows: the prefiltered search runs
    small = MemoryFilter(project_id="small")
    for hits in (
        await table.vector_search(small, q, 5),
        await table.text_search(small, "lighthouse keeper", 5),
    ):
        assert len(hits) == 5
        assert all(r["id"].startswith("small_") and int(r["id"][-4:]) < 6 for r, _ in hits)
    with_archived = MemoryFilter(project_id="small", include_archived=True)
    found = await table.vector_search(with_archived, q, 20)
    assert sorted(r["id"] for r, _ in found) == [f"small_{i:04d}" for i in range(9)]

    # "big" fills the top: the unfiltered search is enough, and ranked best first
    big = await table.vector_search(MemoryFilter(project_id="big"), q, 10)
    assert len(big) == 10 and all(r["id"].startswith("big_") for r, _ in big)
    assert [s for _, s in big] == sorted((s for _, s in big), reverse=True)
    # enough of the project's rows among the table's top k: no prefiltered search either
    some = await table.vector_search(MemoryFilter(project_id="big"), q, 40, enough=10)
    assert len(some) == 40 and all(r["id"].startswith("big_") for r, _ in some)
    few = await table.vector_search(small, q, 40, enough=5)  # big rows fill the top 40
    assert sorted(r["id"] for r, _ in few) == [f"small_{i:04d}" for i in range(6)]
    # an unknown project sees nothing
    assert await table.vector_search(MemoryFilter(project_id="none"), q, 5) == []
    assert await table.text_search(MemoryFilter(project_id="none"), "lighthouse", 5) == []


async def test_a_leg_settles_for_enough_of_the_project_in_the_table_top(table: MemoryTable) -> None:
    """Two projects share the table's top rows: with `enough`, the project's rows among the
    table's top k are the answer (fewer than k, best first); without, the prefiltered search
    gives all k. The former are the first rows of the latter."""
    rng = np.random.default_rng(9)
    q = _unit(rng, np.ones(DIM), 0.0)
    await table.writer.insert(
        [_row(i, p, _unit(rng, q, 0.05)) for i in range(60) for p in ("a", "b")]
    )
    a = MemoryFilter(project_id="a")
    settled = await table.vector_search(a, q, 40, enough=10)
    full = await table.vector_search(a, q, 40)
    assert 10 <= len(settled) < 40 and len(full) == 40
    assert all(r["project_id"] == "a" for r, _ in settled + full)
    assert [r["id"] for r, _ in settled] == [r["id"] for r, _ in full[: len(settled)]]
    # too few of the project there: the prefiltered search runs even with `enough`
    assert len(await table.vector_search(a, q, 40, enough=len(settled) + 1)) == 40
