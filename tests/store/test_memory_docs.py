"""Memory reads come from each row's `doc` (one column instead of nineteen) and give exactly what
the columns hold; rows without a doc (written before docs, or voided by an update in place) are
read from their columns, and `fill_docs` writes their docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.filters import Where
from memgrpc.store.maintenance import Maintainer, MaintenanceConfig
from memgrpc.store.memories import (
    _STILL_BARE,
    DOC,
    ROW_COLUMNS,
    MemoryFilter,
    MemoryTable,
    encode_doc,
)
from tests.store.memory_rows import DIM, _row, _vec


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM))
    await s.open()
    yield s
    await s.close()


async def _columns(store: Store, ids: list[str]) -> dict[str, dict[str, Any]]:
    """What the columns hold, read the way reads worked before docs."""
    q = store.table("memories").query().where(str(Where().is_in("id", ids)))
    return {r["id"]: r for r in (await q.select(ROW_COLUMNS).to_arrow()).to_pylist()}


async def test_reads_from_docs_equal_the_columns(store: Store) -> None:
    table = MemoryTable(store)
    await table.writer.insert([_row(i, doc=True) for i in range(6)])
    ids = [f"m{i:02d}" for i in range(6)]
    truth = await _columns(store, ids)
    assert truth["m00"]["importance"] != 0.7  # a float32: the doc must hold the same value

    got = {r["id"]: r for r in await table.get_many("p", ids)}
    assert got == truth
    assert await table.get_many("other", ids) == []  # the project is still checked
    users = {r["id"]: r for r in await table.user_rows("p", "u")}
    assert {i: {k: v for k, v in r.items() if k != "vector"} for i, r in users.items()} == truth
    assert users["m05"]["vector"].dtype == np.float32
    assert users["m05"]["vector"].tolist() == pytest.approx((_vec(5) + 0.1).tolist())
    assert [r["id"] for r in await table.page(MemoryFilter("p"), "update_time", True, None, 3)] == [
        "m05", "m04", "m02"  # m03 is archived
    ]  # fmt: skip

    # what is read is the doc itself (here made to differ from its columns)
    changed = encode_doc(truth["m01"] | {"content": "from the doc"})
    await store.table("memories").update({DOC: changed}, where="id = 'm01'")
    assert (await table.get("p", "m01") or {})["content"] == "from the doc"
    dense = await table.vector_search(MemoryFilter("p"), _vec(1), 1)
    assert [(r["id"], r["content"]) for r, _ in dense] == [("m01", "from the doc")]


async def test_rows_without_docs_are_read_from_columns_then_filled(store: Store) -> None:
    table = MemoryTable(store)
    await table.writer.insert([_row(i, doc=i < 3) for i in range(6)])
    ids = [f"m{i:02d}" for i in range(6)]
    truth = await _columns(store, ids)
    assert {r["id"]: r for r in await table.get_many("p", ids)} == truth
    with_vectors = await table.get_with_vectors("p", ids)
    assert sorted(r["id"] for r in with_vectors) == ids
    assert all(np.allclose(r["vector"], _vec(int(r["id"][1:])) + 0.1) for r in with_vectors)

    # the search legs: hits without a doc make the leg read their columns
    q = np.ones(DIM, dtype=np.float32)
    dense = await table.vector_search(MemoryFilter("p", user_id="u"), q, 10)
    text = await table.text_search(MemoryFilter("p"), "lighthouse", 10)
    for found, n in ((dense, 5), (text, 5)):  # m03 is archived
        assert len(found) == n
        assert all({k: r[k] for k in ROW_COLUMNS} == truth[r["id"]] for r, _ in found)

    assert await table.fill_docs(project_id="p", user_id="u") == 3
    assert await table.fill_docs(project_id="p", user_id="u") == 0
    docs = await store.table("memories").query().select([DOC]).to_arrow()
    assert docs.column(DOC).null_count == 0
    assert {r["id"]: r for r in await table.get_many("p", ids)} == truth


async def test_maintenance_fills_missing_docs_in_batches(store: Store) -> None:
    table = MemoryTable(store)
    await table.writer.insert([_row(i, doc=i == 0) for i in range(12)])
    docs = store.table("memories").query().select([DOC])
    assert (await docs.to_arrow()).column(DOC).null_count == 11

    await Maintainer(store, MaintenanceConfig(doc_batch=5, doc_fill_s=0)).run_once()
    assert (await docs.to_arrow()).column(DOC).null_count == 11  # no time given: none filled
    await Maintainer(store, MaintenanceConfig(doc_batch=5)).run_once()
    assert (await docs.to_arrow()).column(DOC).null_count == 0  # 5 + 5 + 1 in one pass
    ids = [f"m{i:02d}" for i in range(12)]
    assert {r["id"]: r for r in await table.get_many("p", ids)} == await _columns(store, ids)


async def test_a_late_fill_never_overwrites_a_newer_write(store: Store) -> None:
    """fill_docs reads a row, then patches its doc: a write in between must win."""
    table = MemoryTable(store)
    await table.writer.insert([_row(i, doc=False) for i in range(2)])
    before = await _columns(store, ["m00", "m01"])
    # m00 is updated with its doc; m01 is re-owned (the update in place voids its doc)
    updated = _row(0, doc=False) | {"content": "new"}
    await table.writer.upsert([updated | {DOC: encode_doc(updated)}])
    await table.writer.update("id = 'm01'", {"user_id": "u2", DOC: None})
    # what a fill that read the rows before sends
    late = [_row(i, doc=False) | {DOC: encode_doc(before[f"m{i:02d}"])} for i in range(2)]
    await table.writer.patch(late, only_if=_STILL_BARE)

    now = {r["id"]: r for r in await table.get_many("p", ["m00", "m01"])}
    assert now["m00"]["content"] == "new"
    assert now["m01"]["user_id"] == "u2"
    assert await table.fill_docs(user_id="u2") == 1
    assert (await table.get("p", "m01") or {})["user_id"] == "u2"
