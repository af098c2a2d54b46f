"""Tenant isolation: project B cannot see or touch project A's memories (NOT_FOUND, never data)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from memgrpc.v1 import memory_pb2 as pb
from tests.helpers import md
from tests.memhelpers import mem


async def test_project_b_cannot_reach_a(memory_stub, new_key) -> None:
    _, key_a = await new_key()
    _, key_b = await new_key()
    a = await memory_stub.CreateMemory(
        mem("shared-user", "A's secret plan: launch in June"), metadata=md(key_a)
    )
    b_own = await memory_stub.CreateMemory(mem("shared-user", "B's own note"), metadata=md(key_b))

    for call in (
        memory_stub.GetMemory(pb.GetMemoryRequest(id=a.id), metadata=md(key_b)),
        memory_stub.UpdateMemory(
            pb.UpdateMemoryRequest(memory=pb.Memory(id=a.id, content="hacked")), metadata=md(key_b)
        ),
        memory_stub.ReplaceMemory(
            pb.ReplaceMemoryRequest(memory=pb.Memory(id=a.id, content="hacked")), metadata=md(key_b)
        ),
        memory_stub.UpdateMemory(
            pb.UpdateMemoryRequest(
                memory=pb.Memory(id=a.id, archived=True),
                update_mask=field_mask_pb2.FieldMask(paths=["archived"]),
            ),
            metadata=md(key_b),
        ),
        memory_stub.DeleteMemory(pb.DeleteMemoryRequest(id=a.id), metadata=md(key_b)),
        memory_stub.ListMemoryVersions(pb.ListMemoryVersionsRequest(id=a.id), metadata=md(key_b)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

    listed = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(user_id="shared-user"), metadata=md(key_b)
    )
    assert [m.id for m in listed.memories] == [b_own.id]
    found = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id="shared-user", query="secret plan launch June"),
        metadata=md(key_b),
    )
    assert [r.memory.id for r in found.results] == [b_own.id]
    found = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(query="secret plan"), metadata=md(key_b)
    )
    assert a.id not in [r.memory.id for r in found.results]
    batch = await memory_stub.BatchMemories(
        pb.BatchMemoriesRequest(
            operations=[pb.BatchOperation(delete=pb.DeleteMemoryRequest(id=a.id))]
        ),
        metadata=md(key_b),
    )
    assert batch.results[0].code == grpc.StatusCode.NOT_FOUND.value[0]

    still = await memory_stub.GetMemory(pb.GetMemoryRequest(id=a.id), metadata=md(key_a))
    assert still == a
