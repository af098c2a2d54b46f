"""Oversized page sizes and limits are coerced to the maximum (AIP-158), negative ones refused.

The project holds more than the maxima, so a cap that was not applied would show: 1,001+ rows
for a page of at most 1000, 101+ hits for a search of at most 100.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from memgrpc.core.kernel.paging import MAX_PAGE_SIZE
from memgrpc.core.memory.search import MAX_LIMIT
from memgrpc.v1 import memory_pb2 as pb
from tests.helpers import md
from tests.memhelpers import details

MODEL = "all-MiniLM-L6-v2-int8"
DIM = 384
ROWS = MAX_PAGE_SIZE + 50


@pytest.fixture(scope="module")
async def crowded(memory_stub, new_key_module) -> str:  # type: ignore[no-untyped-def]
    """A project with ROWS memories of one user, loaded with vectors (no model calls)."""
    _, key = await new_key_module()
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(ROWS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [
        pb.MemoryRecord(
            memory=pb.Memory(id=f"cap-{i:05d}", user_id="crowd", content=f"tea note {i}"),
            vector=vectors[i].tolist(),
            model=MODEL,
        )
        for i in range(ROWS)
    ]

    async def requests() -> AsyncIterator[pb.ImportMemoriesRequest]:
        for i in range(0, ROWS, 500):
            yield pb.ImportMemoriesRequest(records=records[i : i + 500])

    summary = await memory_stub.ImportMemories(requests(), metadata=md(key))
    assert (summary.imported, summary.failed) == (ROWS, 0)
    return key


async def test_page_size_above_the_maximum_is_coerced(memory_stub, crowded) -> None:
    resp = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(user_id="crowd", page_size=2_000_000_000), metadata=md(crowded)
    )
    assert len(resp.memories) == MAX_PAGE_SIZE == 1000
    assert resp.total_size == ROWS and resp.next_page_token
    rest = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(
            user_id="crowd", page_size=2_000_000_000, page_token=resp.next_page_token
        ),
        metadata=md(crowded),
    )
    assert len(rest.memories) == ROWS - MAX_PAGE_SIZE and not rest.next_page_token


@pytest.mark.parametrize("query", ["", "tea note"])
async def test_search_limit_above_the_maximum_is_coerced(memory_stub, crowded, query) -> None:
    resp = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id="crowd", query=query, limit=100_000),
        metadata=md(crowded),
    )
    assert len(resp.results) == MAX_LIMIT == 100


@pytest.mark.parametrize(
    ("call", "request_", "field"),
    [
        ("ListMemories", pb.ListMemoriesRequest(page_size=-1), "page_size"),
        ("SearchMemories", pb.SearchMemoriesRequest(query="tea", limit=-5), "limit"),
    ],
)
async def test_negative_sizes_are_invalid(memory_stub, crowded, call, request_, field) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(memory_stub, call)(request_, metadata=md(crowded))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value) == ({field}, "INVALID_ARGUMENT")
