"""Faults at the edge: oversized requests, and clients that give up under load."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from memgrpc.v1 import memory_pb2 as pb
from tests.convhelpers import eventually
from tests.helpers import md
from tests.memhelpers import mem


async def test_request_over_the_size_limit_is_refused(memory_stub, new_key, server) -> None:
    _, key = await new_key()
    limit = server.app.config.max_message_bytes
    huge = mem("u", "x" * (limit + 1024))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.CreateMemory(huge, metadata=md(key))
    assert e.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
    listed = await memory_stub.ListMemories(pb.ListMemoriesRequest(), metadata=md(key))
    assert listed.total_size == 0  # nothing written
    ok = await memory_stub.CreateMemory(mem("u", "the server is fine"), metadata=md(key))
    assert ok.id.startswith("mem_")


async def test_cancelled_calls_under_load_leak_no_tasks(memory_stub, new_key) -> None:
    _, key = await new_key()
    await memory_stub.BatchMemories(
        pb.BatchMemoriesRequest(
            operations=[pb.BatchOperation(create=mem("load", f"fact {i}")) for i in range(200)]
        ),
        metadata=md(key),
    )
    await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id="load", query="fact"), metadata=md(key)
    )
    await asyncio.sleep(0.2)
    baseline = len(asyncio.all_tasks())

    async def give_up(i: int) -> None:
        if i % 2:
            call = memory_stub.CreateMemory(mem("load", f"abandoned {i}"), metadata=md(key))
        else:
            call = memory_stub.SearchMemories(
                pb.SearchMemoriesRequest(user_id="load", query=f"fact {i}"), metadata=md(key)
            )
        await asyncio.sleep(0.001 * (i % 7))
        if not call.cancel():  # it had already finished
            await call
            return
        with pytest.raises((asyncio.CancelledError, grpc.aio.AioRpcError)):
            await call

    async def with_deadline(i: int) -> None:
        try:
            await memory_stub.SearchMemories(
                pb.SearchMemoriesRequest(user_id="load", query=f"fact {i}"),
                metadata=md(key),
                timeout=0.002,
            )
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    for _ in range(3):
        await asyncio.gather(
            *(give_up(i) for i in range(40)), *(with_deadline(i) for i in range(40))
        )
    # the server keeps serving, and what the abandoned calls started has finished
    await asyncio.sleep(1.0)
    ok = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id="load", query="fact 7"), metadata=md(key)
    )
    assert ok.results

    async def settled() -> bool:
        return len(asyncio.all_tasks()) <= baseline + 2

    await eventually(settled, timeout_s=10, every_s=0.1)  # leaked tasks would stay for good
    # abandoned creates were either written whole or not at all
    listed = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(user_id="load", page_size=1000), metadata=md(key)
    )
    assert all(m.content and m.version == 1 for m in listed.memories)
    assert len({m.id for m in listed.memories}) == listed.total_size
