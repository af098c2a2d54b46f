"""Memory rows in LanceDB: filters, lookups, pages and the two search legs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

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
    "create_time", "update_time", "version_time", "speaker", "seq", "origin", "profile_slot",
    "mention_count", "last_mentioned_time", "entities", "conflict_id", "agent_id", "instance_id",
]  # fmt: skip
ORDER_COLUMNS = ("create_time", "update_time", "event_time")
# ROW_COLUMNS again, as one JSON document per row: what reads and search legs select. Lance reads
# a random row column by column, so one column reads several times faster than 19 (measured:
# docs/BENCHMARKS.md). The columns stay the source for filters and indexes. A column added to
# ROW_COLUMNS later is missing from older docs: refill them (fill_docs) or read it apart.
DOC = "doc"
# a doc filled in later lands only on the row it was made from: still without one, same owner
_STILL_BARE = f"target.{DOC} IS NULL AND target.user_id = source.user_id"
_TIMES = ("event_time", "create_time", "update_time", "version_time", "last_mentioned_time")
# rows written before origins were recorded have none: the origin their type implies
_TYPED_ORIGINS = ("message", "summary")
# ANN search (the index: store.maintenance.VECTOR_INDEX): the IVF partitions searched, and the
# HNSW beam per result asked. Past these, recall of the exact top 10 (~92% at 1M memories) grew
# little for much more time; LanceDB's defaults suit smaller partitions (measured:
# docs/BENCHMARKS.md).
PROBES = 4
BEAM_PER_HIT = 12


def encode_doc(row: Mapping[str, Any]) -> str:
    """The `doc` of a row about to be written (its ROW_COLUMNS values, as they read back)."""
    doc = {c: row.get(c) for c in ROW_COLUMNS}
    for c in _TIMES:
        when = doc[c]
        if when is not None:
            doc[c] = (when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()
    if doc["importance"] is not None:  # the column holds a float32
        doc["importance"] = float(np.float32(doc["importance"]))
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def decode_doc(doc: str) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(doc)
    for c in _TIMES:
        if row.get(c) is not None:
            row[c] = datetime.fromisoformat(row[c])
    return row


# "recall": an agent's memories of the user in that instance (or its default state) plus the
# user's general memories (no agent); with no agent_id, no condition. "exact": only memories of
# exactly that scope (no agent_id = only general memories): reconciliation never crosses scopes.
ScopeMode = Literal["recall", "exact"]


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
    origins: tuple[str, ...] = ()
    profile_slots: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    # the agent scope (see ScopeMode): empty agent_id with mode "recall" = any scope
    agent_id: str = ""
    instance_id: str = ""
    scope_mode: ScopeMode = "recall"

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
        if self.origins:
            w.either(Where().is_in("origin", self.origins), _legacy_origin(self.origins))
        if self.profile_slots:
            w.is_in("profile_slot", self.profile_slots)
        if self.entities:
            w.has_any("entities", self.entities)
        if self.start_time is not None:
            w.cmp("event_time", ">=", self.start_time)
        if self.end_time is not None:
            w.cmp("event_time", "<", self.end_time)
        scope = self.scope()
        if scope is not None:
            w.either(*scope)
        return w

    def scope(self) -> tuple[Where, ...] | None:
        """The scope condition's alternatives (OR-ed), or None when the filter has none."""
        return scope_alternatives(self.agent_id, self.instance_id, self.scope_mode)


def scope_alternatives(
    agent_id: str, instance_id: str, mode: ScopeMode = "recall"
) -> tuple[Where, ...] | None:
    """The agent-scope condition of a table with agent_id / instance_id columns (memories,
    messages) as alternatives to OR (Where.either); None when there is no condition."""
    if mode == "recall" and not agent_id:
        return None
    own = _own_scope(agent_id, instance_id)
    return (own, Where().is_null("agent_id")) if mode == "recall" else (own,)


def _own_scope(agent_id: str, instance_id: str) -> Where:
    """Exactly this scope: the agent's instance, its default state, or (no agent) general."""
    if not agent_id:
        return Where().is_null("agent_id")
    w = Where().eq("agent_id", agent_id)
    return w.eq("instance_id", instance_id) if instance_id else w.is_null("instance_id")


def _legacy_origin(origins: tuple[str, ...]) -> Where:
    """Rows without an origin whose type implies one of `origins` (model.default_origin)."""
    typed = [o for o in origins if o in _TYPED_ORIGINS]
    w = Where().is_null("origin")
    if "client" in origins:
        return w.either(
            Where().is_null("type"),
            Where().not_in("type", _TYPED_ORIGINS),
            *([Where().is_in("type", typed)] if typed else []),
        )
    return w.is_in("type", typed)


class MemoryTable:
    """Read helpers over the `memories` table plus its writer."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.writer = store.writer("memories")

    @property
    def _tbl(self) -> Any:
        return self._store.table("memories")  # looked up per read: Store.renew_session moves it

    async def get(self, project_id: str, memory_id: str) -> dict[str, Any] | None:
        rows = await self.get_many(project_id, [memory_id])
        return rows[0] if rows else None

    async def get_many(self, project_id: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        return _in_project(await self._read(Where().is_in("id", list(ids))), project_id)

    async def get_with_vectors(self, project_id: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        rows = await self._read(Where().is_in("id", list(ids)), vectors=True)
        return _in_project(rows, project_id)

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
        return _in_project(await self._read(where, vectors=True), project_id)

    async def _read(self, where: Where, *, vectors: bool = False) -> list[dict[str, Any]]:
        """The matching rows, from their docs; rows without one (written before docs, or re-owned
        since: see `fill_docs`) are read from their columns, by id (asked again with the ids: a
        doc filled in between must not lose its row)."""
        extra = ["vector"] if vectors else []
        tbl: pa.Table = await self._tbl.query().where(str(where)).select([DOC, *extra]).to_arrow()
        found = _rows(tbl)
        if len(found) == tbl.num_rows:
            return found
        q = self._tbl.query().where(str(where)).select(["id", DOC, *extra])
        tbl = await q.to_arrow()
        found = _rows(tbl)
        have = {r["id"] for r in found}
        bare = [i for i in tbl.column("id").to_pylist() if i not in have]
        q = self._tbl.query().where(str(Where().is_in("id", bare)))
        return found + _rows(await q.select([*ROW_COLUMNS, *extra]).to_arrow())

    async def fill_docs(
        self, *, project_id: str = "", user_id: str = "", limit: int | None = None
    ) -> int:
        """Write the docs of (up to `limit`) rows of the project / user that have none: rows
        written before docs, or whose doc an update in place voided. Returns how many were read
        for it; a row written or re-owned meanwhile keeps what that write gave it."""
        where = Where()
        if project_id:
            where.eq("project_id", project_id)
        if user_id:
            where.eq("user_id", user_id)
        q = self._tbl.query().where(str(where.is_null(DOC)))  # whole rows: Lance 0.40 cannot
        rows = (await (q.limit(limit) if limit else q).to_arrow()).to_pylist()  # patch some
        if rows:  # columns under a condition (a panic in the merge)
            await self.writer.patch([r | {DOC: encode_doc(r)} for r in rows], only_if=_STILL_BARE)
        return len(rows)

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

    async def vector_search(
        self, flt: MemoryFilter, vector: np.ndarray, k: int, *, enough: int = 0
    ) -> Found:
        """Exact or ANN cosine search; (row, similarity), best first: the top `k` rows of the
        filter, or at least `enough` of them when given (see `_scored`)."""

        def query(where: str | None, limit: int, columns: list[str]) -> Any:
            q = self._tbl.vector_search(vector.astype(np.float32)).distance_type("cosine")
            q = q.ef(BEAM_PER_HIT * limit).minimum_nprobes(PROBES)
            # a filter (a prefilter, by default in the async API) may leave fewer than `limit`
            # rows in the nearest partitions: then Lance searches on; without one they hold enough
            q = q.where(where).maximum_nprobes(0) if where else q.maximum_nprobes(PROBES)
            return q.select([*columns, "_distance"]).limit(limit)

        with tracing.span("store.vector_search", table="memories", k=k):
            found = await _scored(flt, k, enough or k, query, "_distance")
        return [(r, 1.0 - d) for r, d in found]

    async def text_search(self, flt: MemoryFilter, query: str, k: int, *, enough: int = 0) -> Found:
        """BM25 full-text search over content; (row, bm25), best first, like `vector_search`."""

        def build(where: str | None, limit: int, columns: list[str]) -> Any:
            q = self._tbl.query().nearest_to_text(query, columns="content")
            if where:
                q = q.where(where)
            return q.select([*columns, "_score"]).limit(limit)

        try:
            with tracing.span("store.text_search", table="memories", k=k):
                return await _scored(flt, k, enough or k, build, "_score")
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
    """Rows as dicts: from their docs when those were read (rows without one are left out), else
    from the columns; the vector, when read, as a float32 numpy array (not a list of floats)."""
    names = tbl.column_names
    if DOC in names:
        docs = tbl.column(DOC).to_pylist()
        keep = [i for i, d in enumerate(docs) if d is not None]
        rows = [decode_doc(docs[i]) for i in keep]
        if len(keep) < len(docs):
            tbl = tbl.take(pa.array(keep, pa.int64()))
    else:
        rows = tbl.drop_columns(["vector"] if "vector" in names else []).to_pylist()
    if "vector" in names and rows:
        col = tbl.column("vector").combine_chunks()
        vectors = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)
        for row, vec in zip(rows, vectors, strict=True):
            row["vector"] = vec
    return rows


Found = list[tuple[dict[str, Any], float]]  # (memory row, the leg's score), best first


async def _scored(flt: MemoryFilter, k: int, enough: int, query: Any, score: str) -> Found:
    """Run one search leg, reading the hits' docs. A project-wide search with no other filter
    first searches the whole table (its top `k`) and drops other projects' and archived rows
    after: at 1M rows the project + archived prefilter costs ~70-95 ms a leg, the search itself
    ~5 ms. Those are the project's best rows, so when at least `enough` are left they are the
    answer, though fewer than `k` when other projects' or archived rows took places (a smaller
    pool for the fusion); only when fewer are left does the prefiltered search run. Hits without
    a doc (rows written before docs) make the leg read their columns instead."""

    async def run(where: str | None, limit: int) -> Found:
        tbl: pa.Table = await query(where, limit, [DOC]).to_arrow()
        rows = _rows(tbl)
        if len(rows) < tbl.num_rows:
            tbl = await query(where, limit, ROW_COLUMNS).to_arrow()
            rows = _rows(tbl)
        return list(zip(rows, tbl.column(score).to_pylist(), strict=True))

    if flt == MemoryFilter(project_id=flt.project_id, include_archived=flt.include_archived):
        hits = await run(None, k)
        kept = [
            (r, float(s))
            for r, s in hits
            if r["project_id"] == flt.project_id and (flt.include_archived or not r["archived"])
        ]
        if len(kept) >= enough or len(hits) < k:
            return kept
    return [(r, float(s)) for r, s in await run(str(flt.where()), k)]
