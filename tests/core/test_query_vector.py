"""Search with a query vector the caller already has (a chat turn's message as stored): the vector
ranks, the text only feeds the keyword leg, and the model does not run for the query."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from memgrpc.core.memory.model import Memory, MemoryQuery
from memgrpc.core.memory.service import MemoryService, SearchMode
from memgrpc.embed import BatchingEmbedder, Embedder
from memgrpc.store.db import Store, StoreConfig

FACTS = (
    "The user's cat is called Miso",
    "User is learning to play the cello",
    "User booked a trip to Lisbon in June",
)


@pytest.mark.parametrize("mode", ["hybrid", "semantic"])  # the user's cache, the store's index
async def test_the_given_vector_ranks_and_the_query_is_not_embedded(
    tmp_path: Path, shared_embedder: Embedder, mode: SearchMode
) -> None:
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=shared_embedder.dim))
    await store.open()
    embedder = BatchingEmbedder(shared_embedder)
    svc = MemoryService(store, embedder)
    try:
        for fact in FACTS:
            await svc.create("p", Memory(user_id="u", content=fact))
        q = MemoryQuery(user_id="u")
        query = "holiday travel"  # no keyword hit: the dense leg decides
        own = await svc.search("p", q, query, limit=1, mode=mode)
        assert own[0].memory.content == FACTS[2]
        before = embedder.texts
        vector = asyncio.ensure_future(embedder.embed_one("a musical instrument"))
        await vector
        assert embedder.texts == before + 1
        given = await svc.search("p", q, query, limit=1, mode=mode, vector=vector)
        assert given[0].memory.content == FACTS[1]
        assert embedder.texts == before + 1  # the query itself was not embedded
    finally:
        await embedder.aclose()
        await store.close()
