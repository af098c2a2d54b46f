"""Memory rows in LanceDB: filters, lookups, pages and the two search legs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memgrpc import tracing
from memgrpc.store.db import Store
from memgrpc.store.filters import Where

# every column but the vector: what reads return
ROW_COLUMNS = [
    "id", "project_id", "user_id", "session_id", "content", "type", "tags", "categories",
    "metadata", "importance", "archived", "source_message_ids", "version", "event_time",
    "create_time", "update_time", "version_time", "speaker", "seq",
]  # fmt: skip
ORDER_COLUMNS = ("create_time", "update_time", "event_time")


@dataclass(frozen=True)
class MemoryFilter:
    """Deterministic filters, as plain values; turned into SQL only here."""

    project_id: str
    user_id: str = ""
    session_id: str = ""
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    tags_all: bool = False
    categories: tuple[str, ...] = ()
    metadata_kv: tuple[str, ...] = ()
    include_archived: bool = False
    start_time: datetime | None = None
    end_time: datetime | None = None
    ids: tuple[str, ...] = field(default=())
    seqs: tuple[int, ...] = ()

    def where(self) -> Where:
        w = Where().eq("project_id", self.project_id)
        if self.user_id:
            w.eq("user_id", self.user_id)
        if self.session_id:
            w.eq("session_id", self.session_id)
        if self.ids:
            w.is_in("id", self.ids)
        if self.seqs:
            w.is_in("seq", self.seqs)
        if self.types:
            w.is_in("type", self.types)
        if self.tags:
            (w.has_all if self.tags_all else w.has_any)("tags", self.tags)
        if self.categories:
            w.has_any("categories", self.categories)
        if self.metadata_kv:
            w.has_all("metadata_kv", self.metadata_kv)
        if not self.include_archived:
            w.not_true("archived")
        if self.start_time is not None:
            w.cmp("event_time", ">=", self.start_time)
        if self.end_time is not None:
            w.cmp("event_time", "<", self.end_time)
        return w


class MemoryTable:
    """Read helpers over the `memories` table plus its writer."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._tbl = store.table("memories")
        self.writer = store.writer("memories")

    async def get(self, project_id: str, memory_id: str) -> dict[str, Any] | None:
        rows = await self.get_many(project_id, [memory_id])
        return rows[0] if rows else None

    async def get_many(self, project_id: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        where = Where().is_in("id", list(ids))
        tbl = await self._tbl.query().where(str(where)).select(ROW_COLUMNS).to_arrow()
        return _in_project(tbl.to_pylist(), project_id)

    async def get_with_vectors(self, project_id: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        where = Where().is_in("id", list(ids))
        return _in_project(_rows(await self._tbl.query().where(str(where)).to_arrow()), project_id)

    async def scan(
        self, flt: MemoryFilter, *, with_vectors: bool, batch_rows: int
    ) -> AsyncIterator[pa.RecordBatch]:
        """Every matching row, streamed in record batches from one table version (exports)."""
        columns = [*ROW_COLUMNS, "vector"] if with_vectors else ROW_COLUMNS
        q = self._tbl.query().where(str(flt.where())).select(columns)
        async with self._store.snapshot_read("memories"):
            async for batch in await q.to_batches(max_batch_length=batch_rows):
                yield batch

    async def user_rows(
        self, project_id: str, user_id: str, *, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Every row of one user with its vector as a numpy array (changed since `since`, when
        given)."""
        where = Where().eq("user_id", user_id)
        if since is not None:
            where.cmp("update_time", ">=", since)
        q = self._tbl.query().where(str(where)).select([*ROW_COLUMNS, "vector"])
        return _in_project(_rows(await q.to_arrow()), project_id)

    async def version(self) -> int:
        return int(await self._tbl.version())

    async def count(self, flt: MemoryFilter) -> int:
        return int(await self._tbl.count_rows(str(flt.where())))

    async def page(
        self,
        flt: MemoryFilter,
        order_col: str,
        desc: bool,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Keyset page: rows strictly after `after` in (order_col, id) order."""
        if order_col not in ORDER_COLUMNS:
            raise ValueError(order_col)
        where = flt.where()
        if after is not None:
            where.after(order_col, after[0], "id", after[1], desc=desc)
        keys: pa.Table = (
            await self._tbl.query().where(str(where)).select(["id", order_col]).to_arrow()
        )
        if keys.num_rows == 0:
            return []
        direction = "descending" if desc else "ascending"
        idx = pc.sort_indices(keys, sort_keys=[(order_col, direction), ("id", direction)])
        ids = keys.column("id").take(idx[:limit]).to_pylist()
        rows = {r["id"]: r for r in await self.get_many(flt.project_id, ids)}
        return [rows[i] for i in ids if i in rows]

    async def vector_search(self, flt: MemoryFilter, vector: np.ndarray, k: int) -> Scored:
        """Exact or ANN cosine search; (id, similarity), best first."""

        def query(where: str | None, limit: int) -> Any:
            q = self._tbl.vector_search(vector.astype(np.float32)).distance_type("cosine")
            if where:
                q = q.where(where)  # a prefilter by default in the async API
            return q.select([*_SCOPE_COLUMNS, "_distance"]).limit(limit)

        with tracing.span("store.vector_search", table="memories", k=k):
            found = await _scored(flt, k, query, "_distance")
        return [(i, 1.0 - d) for i, d in found]

    async def text_search(self, flt: MemoryFilter, query: str, k: int) -> Scored:
        """BM25 full-text search over content; (id, bm25), best first."""

        def build(where: str | None, limit: int) -> Any:
            q = self._tbl.query().nearest_to_text(query, columns="content")
            if where:
                q = q.where(where)
            return q.select([*_SCOPE_COLUMNS, "_score"]).limit(limit)

        try:
            with tracing.span("store.text_search", table="memories", k=k):
                return await _scored(flt, k, build, "_score")
        except Exception as exc:  # a query of only stop words / punctuation has no terms
            if "no tokens" in str(exc).lower() or "empty" in str(exc).lower():
                return []
            raise


def _in_project(rows: list[dict[str, Any]], project_id: str) -> list[dict[str, Any]]:
    """The rows of one project. Lookups by id or user filter on that indexed column alone and
    check the project here: a `project_id = ...` prefilter is evaluated over every row of the
    project (~30 ms at 1M rows), where the id or user index narrows to a few rows at once."""
    return [r for r in rows if r["project_id"] == project_id]


def _rows(tbl: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts, with the vector as a float32 numpy array (not a list of Python floats)."""
    if "vector" not in tbl.column_names or tbl.num_rows == 0:
        out: list[dict[str, Any]] = tbl.to_pylist()
        return out
    col = tbl.column("vector").combine_chunks()
    vectors = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)
    rows: list[dict[str, Any]] = tbl.drop_columns(["vector"]).to_pylist()
    for row, vec in zip(rows, vectors, strict=True):
        row["vector"] = vec
    return rows


Scored = list[tuple[str, float]]  # (memory id, the leg's score), best first
_SCOPE_COLUMNS = ["id", "project_id", "archived"]


async def _scored(flt: MemoryFilter, k: int, query: Any, score: str) -> Scored:
    """Run one search leg. A project-wide search with no other filter first searches the whole
    table and drops other projects' and archived rows after (at 1M rows the project + archived
    prefilter costs ~60 ms a leg, the search itself ~6 ms); only when that leaves fewer than `k`
    (other projects dominate the table) does the prefiltered search run."""
    if flt == MemoryFilter(project_id=flt.project_id, include_archived=flt.include_archived):
        over = 2 * k
        tbl: pa.Table = await query(None, over).to_arrow()
        kept = [
            (r["id"], float(r[score]))
            for r in tbl.to_pylist()
            if r["project_id"] == flt.project_id and (flt.include_archived or not r["archived"])
        ]
        if len(kept) >= k or tbl.num_rows < over:
            return kept[:k]
    tbl = await query(str(flt.where()), k).to_arrow()
    return [(r["id"], float(r[score])) for r in tbl.to_pylist()]
