"""Concurrent writes are coalesced by the single writer: exactly once, few fragments."""

from __future__ import annotations

import asyncio

import lancedb

from memgrpc.v1 import memory_pb2 as pb
from tests.helpers import md
from tests.memhelpers import mem


async def test_200_concurrent_creates(memory_stub, new_key, server) -> None:
    _, key = await new_key()
    db = await lancedb.connect_async(str(server.data_dir))
    tbl = await db.open_table("memories")
    before = (await tbl.stats())["fragment_stats"]["num_fragments"]
    created = await asyncio.gather(
        *(
            memory_stub.CreateMemory(mem(f"c{i % 10}", f"concurrent note {i}"), metadata=md(key))
            for i in range(200)
        )
    )
    ids = [m.id for m in created]
    assert len(set(ids)) == 200
    listed = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(page_size=1000), metadata=md(key)
    )
    assert sorted(m.id for m in listed.memories) == sorted(ids)
    assert listed.total_size == 200
    await tbl.checkout_latest()
    after = (await tbl.stats())["fragment_stats"]["num_fragments"]
    # 200 single-row commits would be 200 fragments; coalescing gives a handful
    assert after - before <= 20, f"{after - before} new fragments for 200 creates"
