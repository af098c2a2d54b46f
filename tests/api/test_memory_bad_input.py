"""Bad input on write RPCs: INVALID_ARGUMENT with field violations, nothing written."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from memgrpc.v1 import memory_pb2 as pb
from tests.helpers import md
from tests.memhelpers import details, mem

BIG_META = struct_pb2.Struct()
BIG_META.update({f"k{i}": "v" * 400 for i in range(60)})

CREATE_CASES = [
    (pb.Memory(user_id="u", content=""), "memory.content"),
    (pb.Memory(user_id="u", content="   "), "memory.content"),
    (pb.Memory(user_id="u", content="x" * 40_000), "memory.content"),
    (pb.Memory(user_id="", content="hello"), "memory.user_id"),
    (pb.Memory(user_id="u\x00", content="hello"), "memory.user_id"),
    (pb.Memory(user_id="u", content="hello", type=77), "memory.type"),  # type: ignore[arg-type]
    (pb.Memory(user_id="u", content="hello", importance=1.5), "memory.importance"),
    (pb.Memory(user_id="u", content="hello", tags=["ok", ""]), "memory.tags[1]"),
    (pb.Memory(user_id="u", content="hello", tags=["t"] * 65), "memory.tags"),
    (pb.Memory(user_id="u", content="hello", metadata=BIG_META), "memory.metadata"),
    (pb.Memory(user_id="u", content="hello", session_id="s" * 300), "memory.session_id"),
]


@pytest.mark.parametrize(("memory", "field"), CREATE_CASES)
async def test_bad_create(memory_stub, new_key, memory: pb.Memory, field: str) -> None:
    _, key = await new_key()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.CreateMemory(pb.CreateMemoryRequest(memory=memory), metadata=md(key))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields, reason = details(e.value)
    assert field in fields
    assert reason
    listed = await memory_stub.ListMemories(pb.ListMemoriesRequest(), metadata=md(key))
    assert listed.total_size == 0  # nothing written


async def test_several_violations_reported_at_once(memory_stub, new_key) -> None:
    _, key = await new_key()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.CreateMemory(
            pb.CreateMemoryRequest(memory=pb.Memory(user_id="", content="", importance=-1)),
            metadata=md(key),
        )
    assert {"memory.user_id", "memory.content", "memory.importance"} <= details(e.value)[0]


@pytest.mark.parametrize(
    ("mask", "field"),
    [
        (["version"], "update_mask"),
        (["no_such_field"], "update_mask"),
        (["id"], "update_mask"),
        ([], "update_mask"),
    ],
)
async def test_bad_update_mask(memory_stub, new_key, mask: list[str], field: str) -> None:
    _, key = await new_key()
    m = await memory_stub.CreateMemory(mem("u", "hello"), metadata=md(key))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.UpdateMemory(
            pb.UpdateMemoryRequest(
                memory=pb.Memory(id=m.id, content="changed"),
                update_mask=field_mask_pb2.FieldMask(paths=mask),
            ),
            metadata=md(key),
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details(e.value)[0]
    got = await memory_stub.GetMemory(pb.GetMemoryRequest(id=m.id), metadata=md(key))
    assert got.content == "hello" and got.version == 1


async def test_update_clearing_content_is_rejected(memory_stub, new_key) -> None:
    _, key = await new_key()
    m = await memory_stub.CreateMemory(mem("u", "hello"), metadata=md(key))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.UpdateMemory(
            pb.UpdateMemoryRequest(
                memory=pb.Memory(id=m.id), update_mask=field_mask_pb2.FieldMask(paths=["content"])
            ),
            metadata=md(key),
        )
    assert "memory.content" in details(e.value)[0]


async def test_empty_ids(memory_stub, new_key) -> None:
    _, key = await new_key()
    for call in (
        memory_stub.GetMemory(pb.GetMemoryRequest(id=""), metadata=md(key)),
        memory_stub.DeleteMemory(pb.DeleteMemoryRequest(id=""), metadata=md(key)),
        memory_stub.ListMemoryVersions(pb.ListMemoryVersionsRequest(id=""), metadata=md(key)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "id" in details(e.value)[0]


async def test_server_unaffected_after_bad_input(memory_stub, new_key) -> None:
    _, key = await new_key()
    for memory, _ in CREATE_CASES:
        with pytest.raises(grpc.aio.AioRpcError):
            await memory_stub.CreateMemory(pb.CreateMemoryRequest(memory=memory), metadata=md(key))
    ok = await memory_stub.CreateMemory(mem("u", "still fine"), metadata=md(key))
    assert ok.id.startswith("mem_")
