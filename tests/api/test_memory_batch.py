"""BatchMemories: per-op results, partial failure, limits, idempotency."""

from __future__ import annotations

import grpc
import pytest

from memgrpc.v1 import memory_pb2 as pb
from tests.helpers import md
from tests.memhelpers import details, mem


async def test_partial_failure_does_not_fail_the_others(memory_stub, new_key) -> None:
    _, key = await new_key()
    keep = await memory_stub.CreateMemory(mem("b", "to update"), metadata=md(key))
    gone = await memory_stub.CreateMemory(mem("b", "to delete"), metadata=md(key))
    ops = [
        pb.BatchOperation(create=mem("b", "First memory", type=pb.MEMORY_TYPE_JOURNAL)),
        pb.BatchOperation(create=mem("b", "")),  # invalid: empty content
        pb.BatchOperation(
            update=pb.UpdateMemoryRequest(memory=pb.Memory(id=keep.id, tags=["updated"]))
        ),
        pb.BatchOperation(delete=pb.DeleteMemoryRequest(id=gone.id)),
        pb.BatchOperation(delete=pb.DeleteMemoryRequest(id="mem_doesnotexist")),
        pb.BatchOperation(),  # no operation set
        pb.BatchOperation(create=mem("b", "Second memory")),
    ]
    resp = await memory_stub.BatchMemories(
        pb.BatchMemoriesRequest(operations=ops), metadata=md(key)
    )
    assert [r.index for r in resp.results] == list(range(len(ops)))
    codes = [grpc.StatusCode.OK.value[0] if r.code == 0 else r.code for r in resp.results]
    assert codes == [
        0,
        3,
        0,
        0,
        5,
        3,
        0,
    ]  # OK, INVALID_ARGUMENT, OK, OK, NOT_FOUND, INVALID_ARGUMENT, OK
    assert resp.summary.succeeded == 4 and resp.summary.failed == 3
    assert resp.results[1].reason == "INVALID_ARGUMENT" and "content" in resp.results[1].message
    assert resp.results[4].reason == "MEMORY_NOT_FOUND"
    assert (
        resp.results[0].memory.id.startswith("mem_")
        and resp.results[0].memory.content == "First memory"
    )
    assert list(resp.results[2].memory.tags) == ["updated"]
    listed = await memory_stub.ListMemories(pb.ListMemoriesRequest(user_id="b"), metadata=md(key))
    assert {m.content for m in listed.memories} == {"to update", "First memory", "Second memory"}


async def test_thousand_creates_in_one_batch(memory_stub, new_key) -> None:
    _, key = await new_key()
    ops = [
        pb.BatchOperation(create=mem(f"bulk{i % 7}", f"bulk fact number {i}")) for i in range(1000)
    ]
    resp = await memory_stub.BatchMemories(
        pb.BatchMemoriesRequest(operations=ops), metadata=md(key)
    )
    assert resp.summary.succeeded == 1000
    assert len({r.memory.id for r in resp.results}) == 1000
    listed = await memory_stub.ListMemories(pb.ListMemoriesRequest(page_size=1), metadata=md(key))
    assert listed.total_size == 1000


async def test_limits(memory_stub, new_key) -> None:
    _, key = await new_key()
    for n in (0, 1001):
        ops = [pb.BatchOperation(create=mem("b", "x")) for _ in range(n)]
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await memory_stub.BatchMemories(
                pb.BatchMemoriesRequest(operations=ops), metadata=md(key)
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "operations" in details(e.value)[0]
    listed = await memory_stub.ListMemories(pb.ListMemoriesRequest(), metadata=md(key))
    assert listed.total_size == 0


async def test_batch_retry_with_request_id(memory_stub, new_key) -> None:
    _, key = await new_key()
    req = pb.BatchMemoriesRequest(
        operations=[pb.BatchOperation(create=mem("r", f"m{i}")) for i in range(3)],
        request_id="batch-1",
    )
    a = await memory_stub.BatchMemories(req, metadata=md(key))
    b = await memory_stub.BatchMemories(req, metadata=md(key))
    assert a == b
    listed = await memory_stub.ListMemories(pb.ListMemoriesRequest(user_id="r"), metadata=md(key))
    assert listed.total_size == 3
