"""Memories: create, version, list, search and batch them (the Sovant/RecallrAI memory API)."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import numpy as np

from memgrpc import tracing
from memgrpc.core.conversation.activity import UserRegistry
from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import DomainError, InvalidArgument, NotFound, Violations
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.memory import recall, rows
from memgrpc.core.memory.model import (
    DEFAULT_IMPORTANCE,
    DEFAULT_MEMORY_TYPE,
    PATCHABLE,
    Memory,
    MemoryPage,
    MemoryQuery,
    MemoryVersion,
    Page,
    Patch,
    SearchHit,
)
from memgrpc.core.memory.recall_cache import MAX_ROWS, CachedUser, IndexCache, matches
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.memories import Found, MemoryFilter, MemoryTable
from memgrpc.store.tables import Table

MAX_BATCH = 1000
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
# fusion weights measured on ../shared/bench (min-max normalised legs)
W_DENSE, W_TEXT = 0.55, 0.45
SearchMode = Literal["hybrid", "semantic", "keyword"]


class AsyncEmbedder(Protocol):
    @property
    def dim(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    async def embed_one(self, text: str) -> np.ndarray: ...


@dataclass
class BatchResult:
    index: int
    id: str = ""
    memory: Memory | None = None
    error: DomainError | None = None


BatchOp = (
    tuple[Literal["create"], Memory]
    | tuple[Literal["update"], Patch]
    | tuple[Literal["delete"], str]
)


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryService:
    def __init__(
        self, store: Store, embedder: AsyncEmbedder, *, cache_rows: int = MAX_ROWS
    ) -> None:
        self.store = store
        self._table = MemoryTable(store)
        self._versions = store.writer("memory_versions")
        self._versions_tbl = Table(store, "memory_versions")
        self._embedder = embedder
        self._users = UserRegistry(store)
        self._locks = KeyedLocks()
        self.cache = IndexCache(
            self._table,
            embedder.dim,
            refresh_s=store.config.read_consistency_s,
            max_rows=cache_rows,
        )

    # -- create ---------------------------------------------------------------------------
    def _prepare(self, m: Memory, v: Violations, prefix: str = "memory") -> Memory:
        validation.check_id(v, f"{prefix}.user_id", m.user_id, required=True)
        validation.check_memory(v, m, prefix)
        now = _now()
        return replace(
            m,
            id=new_id("mem"),
            type=m.type or DEFAULT_MEMORY_TYPE,
            importance=DEFAULT_IMPORTANCE if m.importance is None else m.importance,
            version=1,
            event_time=m.event_time or now,
            create_time=now,
            update_time=now,
        )

    async def create(self, project_id: str, m: Memory) -> Memory:
        v = Violations()
        ready = self._prepare(m, v)
        v.raise_if_any()
        await self._insert(project_id, [ready])
        return ready

    async def create_many(
        self, project_id: str, memories: Sequence[Memory], *, prefix: str = "memories"
    ) -> builtins.list[Memory]:
        """All or nothing: one embedding batch and one commit (messages indexed as memories)."""
        ready = self.prepare_many(memories, prefix=prefix)
        await self.insert_prepared(project_id, ready)
        return ready

    def prepare_many(
        self, memories: Sequence[Memory], *, prefix: str = "memories"
    ) -> builtins.list[Memory]:
        """Validated memories with their ids and times, not stored yet (see insert_prepared)."""
        v = Violations()
        ready = [self._prepare(m, v, f"{prefix}[{i}]") for i, m in enumerate(memories)]
        v.raise_if_any()
        return ready

    async def insert_prepared(self, project_id: str, ready: Sequence[Memory]) -> None:
        """Store memories from `prepare_many` (ids may be replaced by ids minted the same way)."""
        if ready:
            await self._insert(project_id, builtins.list(ready))

    async def _insert(self, project_id: str, memories: builtins.list[Memory]) -> None:
        vectors = await self._embedder.embed([embed_text(m) for m in memories])
        await self._users.ensure(project_id, {m.user_id for m in memories})
        new_rows = [
            rows.to_row(m, project_id, vec, m.create_time)
            for m, vec in zip(memories, vectors, strict=True)
        ]
        await self._table.writer.insert(new_rows)
        await self.cache.written(project_id, new_rows)

    # -- read -----------------------------------------------------------------------------
    async def get(self, project_id: str, memory_id: str) -> Memory:
        _check_id(memory_id)
        cached = await self.cache.lookup(project_id, memory_id)
        if cached is not None:
            return cached
        return rows.from_row(await self._get_row(project_id, memory_id, with_vector=False))

    async def get_many(self, project_id: str, ids: Sequence[str]) -> builtins.list[Memory]:
        """The memories that still exist among `ids`, in the order of `ids`."""
        found = {r["id"]: r for r in await self._table.get_many(project_id, list(ids))}
        return [rows.from_row(found[i]) for i in ids if i in found]

    async def _get_row(
        self, project_id: str, memory_id: str, *, with_vector: bool
    ) -> dict[str, Any]:
        _check_id(memory_id)
        found = (
            await self._table.get_with_vectors(project_id, [memory_id])
            if with_vector
            else await self._table.get_many(project_id, [memory_id])
        )
        if not found:
            raise NotFound(
                f"memory {memory_id} not found",
                reason="MEMORY_NOT_FOUND",
                metadata={"id": memory_id},
            )
        return found[0]

    # -- update / replace / delete ----------------------------------------------------------
    async def update(self, project_id: str, patch: Patch) -> Memory:
        if patch.fields == frozenset({"*"}):
            return await self.replace(project_id, patch.memory, reason=patch.reason or "REPLACED")
        v = Violations()
        validation.check_id(v, "memory.id", patch.memory.id, required=True)
        bad = sorted(patch.fields - set(PATCHABLE))
        for f in bad:
            v.add("update_mask", f"field {f!r} cannot be updated")
        if not bad:
            validation.check_memory(v, patch.memory, fields=set(patch.fields))
        v.raise_if_any()
        async with self._locks.hold(f"{project_id}/{patch.memory.id}"):
            row = await self._get_row(project_id, patch.memory.id, with_vector=True)
            current = rows.from_row(row)
            changes = {f: getattr(patch.memory, f) for f in patch.fields}
            if changes.get("type") == "":
                changes["type"] = DEFAULT_MEMORY_TYPE
            if "importance" in changes and changes["importance"] is None:
                changes["importance"] = DEFAULT_IMPORTANCE
            if "event_time" in changes and changes["event_time"] is None:
                changes["event_time"] = current.create_time
            updated = replace(current, **changes)
            return await self._write_new_state(
                project_id, row, current, updated, patch.reason or "UPDATED"
            )

    async def replace(self, project_id: str, m: Memory, reason: str = "REPLACED") -> Memory:
        v = Violations()
        validation.check_id(v, "memory.id", m.id, required=True)
        validation.check_memory(v, m)
        v.raise_if_any()
        async with self._locks.hold(f"{project_id}/{m.id}"):
            row = await self._get_row(project_id, m.id, with_vector=True)
            current = rows.from_row(row)
            if m.user_id and m.user_id != current.user_id:
                raise InvalidArgument.field("memory.user_id", "cannot be changed by a replace")
            updated = replace(
                m,
                user_id=current.user_id,
                type=m.type or DEFAULT_MEMORY_TYPE,
                importance=DEFAULT_IMPORTANCE if m.importance is None else m.importance,
                event_time=m.event_time or current.create_time,
                create_time=current.create_time,
                version=current.version,
            )
            return await self._write_new_state(project_id, row, current, updated, reason)

    async def _write_new_state(
        self, project_id: str, row: dict[str, Any], current: Memory, updated: Memory, reason: str
    ) -> Memory:
        now = _now()
        vector = row["vector"]
        version_time = row.get("version_time") or current.create_time
        if updated.content != current.content:
            # old content first: a crash in between leaves an extra version row, never a lost one
            await self._versions.upsert(
                [rows.version_row(project_id, row["user_id"], rows.expired(row, now, reason))]
            )
            vector = await self._embedder.embed_one(embed_text(updated))
            updated = replace(updated, version=current.version + 1)
            version_time = now
        updated = replace(updated, update_time=now)
        new_row = rows.to_row(updated, project_id, vector, version_time)
        await self._table.writer.upsert([new_row])
        await self.cache.written(project_id, [new_row])
        return updated

    async def delete(self, project_id: str, memory_id: str) -> None:
        async with self._locks.hold(f"{project_id}/{memory_id}"):
            row = await self._get_row(project_id, memory_id, with_vector=False)
            await self._table.writer.delete(
                str(Where().eq("project_id", project_id).eq("id", memory_id))
            )
            await self.cache.deleted(project_id, row["user_id"], [memory_id])
            await self._versions.delete(
                str(Where().eq("project_id", project_id).eq("memory_id", memory_id))
            )

    async def versions(self, project_id: str, memory_id: str) -> list[MemoryVersion]:
        """Current version first, then older ones, newest first."""
        row = await self._get_row(project_id, memory_id, with_vector=False)
        where = Where().eq("project_id", project_id).eq("memory_id", memory_id)
        old = await self._versions_tbl.rows(where)
        current = rows.from_row(row)
        out = [
            MemoryVersion(
                memory_id=current.id,
                version=current.version,
                content=current.content,
                type=current.type,
                tags=current.tags,
                metadata=current.metadata,
                create_time=row.get("version_time") or current.create_time,
            )
        ]
        out += sorted(
            (rows.version_from_row(r) for r in old if int(r["version"]) < current.version),
            key=lambda ver: -ver.version,
        )
        return out

    # -- list / search ----------------------------------------------------------------------
    def _filter(self, project_id: str, q: MemoryQuery, v: Violations) -> MemoryFilter:
        validation.check_id(v, "user_id", q.user_id, required=False)
        validation.check_id(v, "session_id", q.session_id, required=False)
        validation.check_labels(v, "tags", q.tags)
        validation.check_labels(v, "categories", q.categories)
        validation.check_types(v, "types", q.types)
        validation.check_metadata(v, "metadata", q.metadata)
        if q.start_time and q.end_time and q.start_time >= q.end_time:
            v.add("end_time", "must be after start_time")
        return MemoryFilter(
            project_id=project_id,
            user_id=q.user_id,
            session_id=q.session_id,
            types=q.types,
            tags=q.tags,
            tags_all=q.tags_all,
            categories=q.categories,
            metadata_kv=tuple(validation.metadata_pairs(q.metadata)) if not v.items else (),
            include_archived=q.include_archived,
            start_time=q.start_time,
            end_time=q.end_time,
        )

    @staticmethod
    def _order(v: Violations, order_by: str) -> tuple[str, bool]:
        parts = order_by.strip().lower().split() or ["create_time", "desc"]
        col = parts[0]
        direction = parts[1] if len(parts) > 1 else "asc"
        if (
            col not in ("create_time", "update_time", "event_time")
            or direction not in ("asc", "desc")
            or len(parts) > 2
        ):
            v.add(
                "order_by",
                "must be create_time, update_time or event_time, then optionally asc or desc",
            )
            return "create_time", True
        return col, direction == "desc"

    async def list(self, project_id: str, q: MemoryQuery, page: Page) -> MemoryPage:
        v = Violations()
        flt = self._filter(project_id, q, v)
        size = paging.page_size(v, page.size)
        col, desc = self._order(v, page.order_by)
        v.raise_if_any()
        fp = paging.fingerprint(project_id, q, col, desc)
        after = paging.decode(page.token, fp) if page.token else None
        found, total = await asyncio.gather(
            self._table.page(flt, col, desc, after, size + 1), self._table.count(flt)
        )
        more = len(found) > size
        found = found[:size]
        token = paging.encode(found[-1][col], found[-1]["id"], fp) if more else ""
        return MemoryPage([rows.from_row(r) for r in found], token, total)

    async def search(
        self,
        project_id: str,
        q: MemoryQuery,
        query: str,
        *,
        limit: int = 0,
        mode: SearchMode = "hybrid",
        min_score: float = 0.0,
    ) -> builtins.list[SearchHit]:
        v = Violations()
        flt = self._filter(project_id, q, v)
        if limit < 0:
            v.add("limit", "must not be negative")
        if not 0.0 <= min_score <= 1.0:
            v.add("min_score", "must be between 0 and 1")
        if len(query.encode("utf-8")) > validation.MAX_CONTENT_BYTES:
            v.add("query", f"must be at most {validation.MAX_CONTENT_BYTES} bytes")
        if "\x00" in query:
            v.add("query", "must not contain NUL characters")
        v.raise_if_any()
        k = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        if not query.strip():  # a filter search: newest first
            found = await self._table.page(flt, "event_time", True, None, k)
            return [SearchHit(rows.from_row(r), 1.0) for r in found]
        if mode == "hybrid" and q.user_id:
            cached = await self.cache.get(project_id, q.user_id)
            if cached is not None:
                return await self._search_cached(cached, flt, query, k, min_score)
        pool = max(4 * k, 40)
        # the keyword leg needs no embedding: start it first, embed meanwhile, then the vector leg
        text_leg = asyncio.ensure_future(
            self._table.text_search(flt, query, pool, enough=k)
            if mode != "semantic"
            else _no_hits()
        )
        try:
            dense: Found = []
            if mode != "keyword":
                vector = await self._embedder.embed_one(query)
                dense = await self._table.vector_search(flt, vector, pool, enough=k)
            text = await text_leg
        finally:
            text_leg.cancel()
        # the legs read their hits' rows (one column each: store.memories.DOC)
        by_id = {r["id"]: r for r, _ in (*dense, *text)}
        fused = _fuse(_ids(dense), _ids(text), mode)
        ranked = [(i, s) for i, s in fused if s >= min_score][:k]
        return [SearchHit(rows.from_row(by_id[i]), s) for i, s in ranked]

    async def _search_cached(
        self, user: CachedUser, flt: MemoryFilter, query: str, k: int, min_score: float
    ) -> builtins.list[SearchHit]:
        """Exhaustive ranking of one user's items (see core.memory.recall)."""
        memories = user.memories
        allowed: set[str] | None
        if flt == MemoryFilter(project_id=flt.project_id, user_id=flt.user_id):
            # no filter but the default "not archived": skip the per-item check when possible
            allowed = (memories.keys() - user.archived) if user.archived else None
        elif flt == MemoryFilter(project_id=flt.project_id, user_id=flt.user_id, types=flt.types):
            # only types (a context's summaries): no pass over every item
            allowed = set().union(*(user.by_type.get(t, ()) for t in flt.types)) - user.archived
        else:
            allowed = {i for i, m in memories.items() if matches(m, flt)}
        if allowed is not None and not allowed:  # e.g. summaries before any were made
            return []
        vector = await self._embedder.embed_one(query)
        with tracing.span("recall.search", items=len(memories), k=k):
            ranked = user.index.search(query, vector, k, filter=allowed)
        return [SearchHit(memories[i], s) for i, s in ranked if s >= min_score]

    async def find(
        self, project_id: str, q: MemoryQuery, seqs: Sequence[int]
    ) -> builtins.list[Memory]:
        """Memories of one session at the given message positions (neighbouring turns)."""
        flt = replace(self._filter(project_id, q, Violations()), seqs=tuple(seqs))
        found = await self._table.page(flt, "event_time", False, None, len(seqs) or 1)
        return [rows.from_row(r) for r in found]

    # -- batch ------------------------------------------------------------------------------
    async def batch(self, project_id: str, ops: Sequence[BatchOp]) -> builtins.list[BatchResult]:
        if not ops:
            raise InvalidArgument.field("operations", "must not be empty")
        if len(ops) > MAX_BATCH:
            raise InvalidArgument.field("operations", f"at most {MAX_BATCH} operations")
        results = [BatchResult(index=i) for i in range(len(ops))]
        creates: list[tuple[int, Memory]] = []
        others: list[asyncio.Task[None]] = []
        for i, op in enumerate(ops):
            if op[0] == "create":
                v = Violations()
                ready = self._prepare(op[1], v, prefix=f"operations[{i}].create.memory")
                try:
                    v.raise_if_any()
                    creates.append((i, ready))
                except DomainError as exc:
                    results[i].error = exc
            else:
                others.append(asyncio.create_task(self._batch_one(project_id, op, results[i])))
        if creates:
            try:
                await self._insert(project_id, [m for _, m in creates])
                for i, m in creates:
                    results[i].memory, results[i].id = m, m.id
            except DomainError as exc:
                for i, _ in creates:
                    results[i].error = exc
        await asyncio.gather(*others)
        return results

    async def _batch_one(self, project_id: str, op: BatchOp, out: BatchResult) -> None:
        try:
            if op[0] == "update":
                out.id = op[1].memory.id
                out.memory = await self.update(project_id, op[1])
            elif op[0] == "delete":
                out.id = op[1]
                await self.delete(project_id, op[1])
        except DomainError as exc:
            out.error = exc

    # -- for sessions: their memories, vectors and deletion ----------------------------------
    @property
    def users(self) -> UserRegistry:
        """The registry of implicit users; shared so purge and rename can drop cached ids."""
        return self._users

    # -- for export/import (core.memory.transfer) ---------------------------------------------------
    @property
    def embedder(self) -> AsyncEmbedder:
        return self._embedder

    def query_filter(self, project_id: str, q: MemoryQuery) -> MemoryFilter:
        """The store filter of a list/search query; InvalidArgument if a filter is malformed."""
        v = Violations()
        flt = self._filter(project_id, q, v)
        v.raise_if_any()
        return flt

    async def in_session(self, project_id: str, session_id: str) -> builtins.list[Memory]:
        """Every memory of a session, archived ones too, oldest first."""
        flt = MemoryFilter(project_id=project_id, session_id=session_id, include_archived=True)
        total = await self._table.count(flt)
        found = await self._table.page(flt, "create_time", False, None, total) if total else []
        return [rows.from_row(r) for r in found]

    async def vectors(self, project_id: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored embeddings of memories by id (no re-embedding)."""
        found = await self._table.get_with_vectors(project_id, list(ids)) if ids else []
        return {r["id"]: np.asarray(r["vector"], dtype=np.float32) for r in found}

    async def delete_many(self, project_id: str, ids: Sequence[str]) -> None:
        """Delete memories and their versions by id (a deleted session, a redone summary)."""
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            owners = {r["id"]: r["user_id"] for r in await self._table.get_many(project_id, part)}
            await self._table.writer.delete(
                str(Where().eq("project_id", project_id).is_in("id", part))
            )
            await self._versions.delete(
                str(Where().eq("project_id", project_id).is_in("memory_id", part))
            )
            for user_id in set(owners.values()):
                await self.cache.deleted(
                    project_id, user_id, [i for i, u in owners.items() if u == user_id]
                )


def _check_id(memory_id: str) -> None:
    v = Violations()
    validation.check_id(v, "id", memory_id, required=True)
    v.raise_if_any()


def embed_text(m: Memory) -> str:
    """What gets embedded: a message reads better to the model with its speaker in it."""
    return recall.embed_text(m.content, m.speaker)


async def _no_hits() -> Found:
    return []


def _minmax(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi - lo < 1e-9:
        return {k: 1.0 for k in scores}
    return {k: (s - lo) / (hi - lo) for k, s in scores.items()}


Scored = builtins.list[tuple[str, float]]  # (memory id, score), best first


def _ids(found: Found) -> Scored:
    return [(r["id"], s) for r, s in found]


def _fuse(dense: Scored, text: Scored, mode: SearchMode) -> Scored:
    """Scores in [0, 1]: cosine for semantic, BM25/max for keyword, min-max fusion for hybrid."""
    d = {i: max(0.0, s) for i, s in dense}
    t = dict(text)
    if mode == "semantic":
        fused = {i: min(1.0, s) for i, s in d.items()}
    elif mode == "keyword":
        top = max(t.values(), default=1.0) or 1.0
        fused = {i: s / top for i, s in t.items()}
    else:
        dn, tn = _minmax(d), _minmax(t)
        if not t:
            fused = {i: min(1.0, s) for i, s in d.items()}
        else:
            fused = {i: W_DENSE * dn.get(i, 0.0) + W_TEXT * tn.get(i, 0.0) for i in d | t}
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
