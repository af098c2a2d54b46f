"""Memories: create, read, version, update, delete and list them (the Sovant/RecallrAI memory
API); search and batch live in their own modules, reached through this service."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from memgrpc.core.conversation.activity import UserRegistry
from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import InvalidArgument, NotFound, Violations
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.paging import Cursor, Page, PageRequest, Row
from memgrpc.core.memory import batch, checks, links, recall, rows
from memgrpc.core.memory.batch import BatchOp, BatchResult
from memgrpc.core.memory.categories import Categories
from memgrpc.core.memory.changes import ChangeKind, ChangeLog, deleted, written
from memgrpc.core.memory.model import (
    DEFAULT_IMPORTANCE,
    DEFAULT_MEMORY_TYPE,
    INTERNAL_PATCHABLE,
    PATCHABLE,
    Memory,
    MemoryQuery,
    MemoryVersion,
    Patch,
    SearchHit,
)
from memgrpc.core.memory.query import order, to_filter
from memgrpc.core.memory.recall_cache import MAX_ROWS, IndexCache, matches
from memgrpc.core.memory.search import MemorySearch, SearchMode
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.memories import MemoryFilter, MemoryTable
from memgrpc.store.tables import Table

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# memgrpc's own memories may come with a deterministic id (a re-run finds what a crash left)
_DERIVED = ("extracted", "action")


class AsyncEmbedder(Protocol):
    @property
    def dim(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    async def embed_one(self, text: str) -> np.ndarray: ...


def _now() -> datetime:
    return datetime.now(UTC)


# (project_id, agent_id, instance_id) -> raises NotFound when the scope does not exist
ScopeCheck = Callable[[str, str, str], Awaitable[None]]


class MemoryService:
    def __init__(
        self,
        store: Store,
        embedder: AsyncEmbedder,
        *,
        cache_rows: int = MAX_ROWS,
        changes: ChangeLog | None = None,
    ) -> None:
        self.store = store
        # every write below records its change there before it returns (core.memory.changes)
        self.changes = changes or ChangeLog(store)
        self._table = MemoryTable(store)
        self._versions = store.writer("memory_versions")
        self._versions_tbl = Table(store, "memory_versions")
        self._keys_tbl = Table(store, "memories")  # reads of a few columns (core.memory.links)
        self._embedder = embedder
        self._users = UserRegistry(store)
        self._locks = KeyedLocks()
        self.cache = IndexCache(
            self._table,
            embedder.dim,
            refresh_s=store.config.read_consistency_s,
            max_rows=cache_rows,
        )
        self._search = MemorySearch(self._table, embedder, self.cache)
        # every write registers its categories here; filters by category are checked here
        self.categories = Categories(store)
        self._scope_check: ScopeCheck | None = None

    def check_scope_with(self, check: ScopeCheck) -> None:
        """Have `check` confirm a memory's agent (and instance) exist in its project; the agents
        package owns them, so it plugs this in rather than being imported here."""
        self._scope_check = check

    async def check_scopes(self, project_id: str, memories: Sequence[Memory]) -> None:
        """NOT_FOUND unless every agent scope the memories name exists (each checked once)."""
        if self._scope_check is None:
            return
        for agent_id, instance_id in sorted(
            {(m.agent_id, m.instance_id) for m in memories if m.agent_id}
        ):
            await self._scope_check(project_id, agent_id, instance_id)

    # -- create ---------------------------------------------------------------------------
    def prepare(self, m: Memory, v: Violations, prefix: str = "memory") -> Memory:
        """`m` with its id and times, its bad fields added to `v` (not stored yet)."""
        validation.check_id(v, f"{prefix}.user_id", m.user_id, required=True)
        checks.check_memory(v, m, prefix)
        now = _now()
        return replace(
            m,
            id=m.id if m.origin in _DERIVED and m.id else new_id("mem"),
            type=m.type or DEFAULT_MEMORY_TYPE,
            origin=m.origin or "client",
            importance=DEFAULT_IMPORTANCE if m.importance is None else m.importance,
            version=1,
            event_time=m.event_time or now,
            create_time=now,
            update_time=now,
        )

    async def create(self, project_id: str, m: Memory) -> Memory:
        v = Violations()
        ready = self.prepare(m, v)
        v.raise_if_any()
        await self.check_scopes(project_id, [ready])
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
        ready = [self.prepare(m, v, f"{prefix}[{i}]") for i, m in enumerate(memories)]
        v.raise_if_any()
        return ready

    async def insert_prepared(self, project_id: str, ready: Sequence[Memory]) -> None:
        """Store memories from `prepare_many` (ids may be replaced by ids minted the same way)."""
        if ready:
            await self._insert(project_id, builtins.list(ready))

    async def _insert(self, project_id: str, memories: builtins.list[Memory]) -> None:
        vectors = await self._embedder.embed([embed_text(m) for m in memories])
        await self._users.ensure(project_id, {m.user_id for m in memories})
        await self.categories.register(project_id, {c for m in memories for c in m.categories})
        new_rows = [
            rows.to_row(m, project_id, vec, m.create_time)
            for m, vec in zip(memories, vectors, strict=True)
        ]
        await self._table.writer.insert(new_rows)
        await self.cache.written(project_id, new_rows)
        await self.changes.record(project_id, [written(ChangeKind.CREATED, m) for m in memories])

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
    async def update(self, project_id: str, patch: Patch, *, internal: bool = False) -> Memory:
        """`internal`: memgrpc's own patch (extraction, conflicts, profiles), which may also
        set the fields clients cannot (INTERNAL_PATCHABLE)."""
        if patch.fields == frozenset({"*"}):
            return await self.replace(project_id, patch.memory, reason=patch.reason or "REPLACED")
        v = Violations()
        validation.check_id(v, "memory.id", patch.memory.id, required=True)
        allowed = set(PATCHABLE) | (set(INTERNAL_PATCHABLE) if internal else set())
        bad = sorted(patch.fields - allowed)
        for f in bad:
            v.add("update_mask", f"field {f!r} cannot be updated")
        if not bad:
            checks.check_memory(v, patch.memory, fields=set(patch.fields))
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
        checks.check_memory(v, m)
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
                # memgrpc's own fields survive a client's PUT
                origin=current.origin,
                profile_slot=current.profile_slot,
                mention_count=current.mention_count,
                last_mentioned_time=current.last_mentioned_time,
                conflict_id=current.conflict_id,
                # a memory stays in the scope it was made in
                agent_id=current.agent_id,
                instance_id=current.instance_id,
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
            expired = rows.expired(row, now, reason)
            await self._versions.upsert(
                [
                    rows.version_row(
                        project_id, row["user_id"], expired, current.agent_id, current.instance_id
                    )
                ]
            )
            vector = await self._embedder.embed_one(embed_text(updated))
            updated = replace(updated, version=current.version + 1)
            version_time = now
        updated = replace(updated, update_time=now)
        await self.categories.register(project_id, updated.categories)
        new_row = rows.to_row(updated, project_id, vector, version_time)
        await self._table.writer.upsert([new_row])
        await self.cache.written(project_id, [new_row])
        kind = ChangeKind.VERSIONED if updated.version > current.version else ChangeKind.UPDATED
        await self.changes.record(project_id, [written(kind, updated)])
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
            await self.changes.record(project_id, [deleted(row["user_id"], memory_id)])

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
    async def list(self, project_id: str, q: MemoryQuery, page: PageRequest) -> Page[Memory]:
        v = Violations()
        flt = to_filter(project_id, q, v)
        size = paging.page_size(v, page.size)
        col, desc = order(v, page.order_by)
        v.raise_if_any()
        await self.categories.check_filter(project_id, q.categories)

        async def read(
            after: Cursor[datetime] | None, limit: int
        ) -> tuple[builtins.list[Row], int]:
            found, total = await asyncio.gather(
                self._table.page(flt, col, desc, after, limit), self._table.count(flt)
            )
            return found, total

        fp = paging.fingerprint(project_id, q, col, desc)
        return await paging.fetch(
            size, page.token, fp, read, order=(col, "id"), kind=datetime, item=rows.from_row
        )

    async def previous_versions(
        self, project_id: str, page: Sequence[Memory]
    ) -> dict[str, builtins.list[MemoryVersion]]:
        """Memory id -> the versions before its current one, newest first (one read a page)."""
        return await links.previous_versions(self._versions_tbl, project_id, page)

    async def connected(
        self,
        project_id: str,
        page: Sequence[Memory],
        limit: int = links.MAX_CONNECTED,
        *,
        scope: MemoryQuery | None = None,
    ) -> dict[str, builtins.list[Memory]]:
        """Memory id -> current memories of its user sharing an entity with it (see
        core.memory.links), within `scope`'s agent scope when given."""
        return await links.connected(
            self._keys_tbl,
            self._table,
            project_id,
            page,
            limit,
            agent_id=scope.agent_id if scope else "",
            instance_id=scope.instance_id if scope else "",
        )

    async def search(
        self,
        project_id: str,
        q: MemoryQuery,
        query: str,
        *,
        limit: int = 0,
        mode: SearchMode = "hybrid",
        min_score: float = 0.0,
        vector: Awaitable[np.ndarray] | None = None,
    ) -> builtins.list[SearchHit]:
        """The best memories for `query` among those `q` selects (see core.memory.search)."""
        if q.categories:
            self.query_filter(project_id, q)  # malformed filters are named before unknown ones
            await self.categories.check_filter(project_id, q.categories)
        return await self._search.search(
            project_id, q, query, limit=limit, mode=mode, min_score=min_score, vector=vector
        )

    async def find(
        self, project_id: str, q: MemoryQuery, seqs: Sequence[int]
    ) -> builtins.list[Memory]:
        """Memories of one session at the given message positions (neighbouring turns)."""
        return await self._search.find(project_id, q, seqs)

    # -- batch ------------------------------------------------------------------------------
    async def batch(self, project_id: str, ops: Sequence[BatchOp]) -> builtins.list[BatchResult]:
        return await batch.run(self, project_id, ops)

    # -- for sessions: their memories, vectors and deletion ----------------------------------
    @property
    def users(self) -> UserRegistry:
        """The registry of implicit users; shared so purge and rename can drop cached ids."""
        return self._users

    # -- for export/import (core.memory.transfer) ---------------------------------------------------
    @property
    def embedder(self) -> AsyncEmbedder:
        return self._embedder

    async def all(
        self, project_id: str, q: MemoryQuery, *, cached: bool = False
    ) -> builtins.list[Memory]:
        """Every memory `q` selects, oldest first: for a user's few memories of a kind (their
        extracted facts). `cached`: read them from the recall cache when it holds `q`'s user
        (a chat turn's context then reads no store), else the store pages through them."""
        user = await self.cache.get(project_id, q.user_id) if cached and q.user_id else None
        if user is not None:
            flt = self.query_filter(project_id, q)
            found = [m for m in user.memories.values() if matches(m, flt)]
            return sorted(found, key=lambda m: (m.create_time or _EPOCH, m.id))
        out: builtins.list[Memory] = []
        token = ""
        while True:
            page = await self.list(
                project_id, q, PageRequest(size=1000, token=token, order_by="create_time asc")
            )
            out += page.items
            token = page.next_page_token
            if not token:
                return out

    def query_filter(self, project_id: str, q: MemoryQuery) -> MemoryFilter:
        """The store filter of a list/search query; InvalidArgument if a filter is malformed."""
        v = Violations()
        flt = to_filter(project_id, q, v)
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
            await self.changes.record(project_id, [deleted(u, i) for i, u in owners.items()])


def _check_id(memory_id: str) -> None:
    v = Violations()
    validation.check_id(v, "id", memory_id, required=True)
    v.raise_if_any()


def embed_text(m: Memory) -> str:
    """What gets embedded: a message reads better to the model with its speaker in it."""
    return recall.embed_text(m.content, m.speaker)
