"""Search over memories: one user's cached index ranks every item exhaustively; otherwise the
store's dense and keyword legs are fused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from memgrpc import tracing
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.memory import rows
from memgrpc.core.memory.model import Memory, MemoryQuery, SearchHit
from memgrpc.core.memory.query import to_filter
from memgrpc.core.memory.recall_cache import CachedUser, IndexCache, matches
from memgrpc.store.memories import Found, MemoryFilter, MemoryTable

if TYPE_CHECKING:
    from memgrpc.core.memory.service import AsyncEmbedder

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
# fusion weights measured on ../shared/bench (min-max normalised legs)
W_DENSE, W_TEXT = 0.55, 0.45
SearchMode = Literal["hybrid", "semantic", "keyword"]


class MemorySearch:
    """Search and find for MemoryService, which owns the table, the embedder and the cache."""

    def __init__(self, table: MemoryTable, embedder: AsyncEmbedder, cache: IndexCache) -> None:
        self._table = table
        self._embedder = embedder
        self.cache = cache

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
    ) -> list[SearchHit]:
        """`vector`: the query's embedding, when the caller has it (or will: it is awaited only
        if needed), instead of embedding `query`; the keyword leg still searches `query`."""
        v = Violations()
        flt = to_filter(project_id, q, v)
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
                return await self._search_cached(cached, flt, query, k, min_score, vector)
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
                embedded = await self._query_vector(query, vector)
                dense = await self._table.vector_search(flt, embedded, pool, enough=k)
            text = await text_leg
        finally:
            text_leg.cancel()
        # the legs read their hits' rows (one column each: store.memories.DOC)
        by_id = {r["id"]: r for r, _ in (*dense, *text)}
        fused = _fuse(_ids(dense), _ids(text), mode)
        ranked = [(i, s) for i, s in fused if s >= min_score][:k]
        return [SearchHit(rows.from_row(by_id[i]), s) for i, s in ranked]

    async def _search_cached(
        self,
        user: CachedUser,
        flt: MemoryFilter,
        query: str,
        k: int,
        min_score: float,
        given: Awaitable[np.ndarray] | None,
    ) -> list[SearchHit]:
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
        vector = await self._query_vector(query, given)
        with tracing.span("recall.search", items=len(memories), k=k):
            ranked = user.index.search(query, vector, k, filter=allowed)
        return [SearchHit(memories[i], s) for i, s in ranked if s >= min_score]

    async def _query_vector(self, query: str, given: Awaitable[np.ndarray] | None) -> np.ndarray:
        if given is None:
            return await self._embedder.embed_one(query)
        # shielded: the caller may share it with other searches, which a cancel must not fail
        return await asyncio.shield(given)

    async def find(self, project_id: str, q: MemoryQuery, seqs: Sequence[int]) -> list[Memory]:
        """Memories of one session at the given message positions (neighbouring turns)."""
        flt = replace(to_filter(project_id, q, Violations()), seqs=tuple(seqs))
        found = await self._table.page(flt, "event_time", False, None, len(seqs) or 1)
        return [rows.from_row(r) for r in found]


async def _no_hits() -> Found:
    return []


def _minmax(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi - lo < 1e-9:
        return {k: 1.0 for k in scores}
    return {k: (s - lo) / (hi - lo) for k, s in scores.items()}


Scored = list[tuple[str, float]]  # (memory id, score), best first


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
