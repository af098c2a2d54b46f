"""CreateMemory / GetMemory / UpdateMemory / ReplaceMemory / DeleteMemory / versions / retries."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import field_mask_pb2

from memgrpc.v1 import memory_pb2 as pb
from tests.helpers import md
from tests.memhelpers import details, mem, struct


async def test_create_get_roundtrip(memory_stub, new_key) -> None:
    _, key = await new_key()
    created = await memory_stub.CreateMemory(
        mem(
            "alice",
            "User prefers dark mode",
            type=pb.MEMORY_TYPE_PREFERENCE,
            tags=["ui", "settings"],
            metadata={"confidence": 0.95, "source": "explicit"},
            categories=["settings"],
            importance=0.8,
        ),
        metadata=md(key),
    )
    assert created.id.startswith("mem_")
    assert created.version == 1
    assert created.type == pb.MEMORY_TYPE_PREFERENCE
    assert created.create_time.seconds > 0
    assert created.event_time == created.create_time
    got = await memory_stub.GetMemory(pb.GetMemoryRequest(id=created.id), metadata=md(key))
    assert got == created
    assert got.metadata["confidence"] == pytest.approx(0.95)
    assert list(got.tags) == ["ui", "settings"]
    assert got.importance == pytest.approx(0.8)


async def test_defaults_and_client_event_time(memory_stub, new_key) -> None:
    _, key = await new_key()
    req = mem("bob", "Went hiking on Mount Kinabalu")
    req.memory.event_time.FromSeconds(1_600_000_000)
    created = await memory_stub.CreateMemory(req, metadata=md(key))
    assert created.type == pb.MEMORY_TYPE_OBSERVATION
    assert created.importance == pytest.approx(0.5)
    assert created.event_time.seconds == 1_600_000_000
    assert created.create_time.seconds > 1_600_000_000


async def test_patch_without_mask_updates_set_fields_only(memory_stub, new_key) -> None:
    _, key = await new_key()
    m = await memory_stub.CreateMemory(
        mem("u", "Customer contacted support about billing", tags=["support"], metadata={"t": 1}),
        metadata=md(key),
    )
    upd = await memory_stub.UpdateMemory(
        pb.UpdateMemoryRequest(memory=pb.Memory(id=m.id, tags=["support", "billing", "resolved"])),
        metadata=md(key),
    )
    assert list(upd.tags) == ["support", "billing", "resolved"]
    assert upd.content == m.content
    assert upd.metadata == m.metadata
    assert upd.version == 1  # no content change, no new version
    assert upd.update_time.ToDatetime() >= m.update_time.ToDatetime()


async def test_patch_with_mask_archives_and_clears(memory_stub, new_key) -> None:
    _, key = await new_key()
    m = await memory_stub.CreateMemory(mem("u", "Old note", tags=["a"]), metadata=md(key))
    upd = await memory_stub.UpdateMemory(
        pb.UpdateMemoryRequest(
            memory=pb.Memory(id=m.id, archived=True),
            update_mask=field_mask_pb2.FieldMask(paths=["archived", "tags"]),
        ),
        metadata=md(key),
    )
    assert upd.archived is True
    assert list(upd.tags) == []  # in the mask and empty: cleared
    listed = await memory_stub.ListMemories(pb.ListMemoriesRequest(user_id="u"), metadata=md(key))
    assert [x.id for x in listed.memories] == []
    listed = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(user_id="u", include_archived=True), metadata=md(key)
    )
    assert [x.id for x in listed.memories] == [m.id]


async def test_content_change_makes_a_version(memory_stub, new_key) -> None:
    _, key = await new_key()
    m = await memory_stub.CreateMemory(mem("u", "User lives in Paris"), metadata=md(key))
    u1 = await memory_stub.UpdateMemory(
        pb.UpdateMemoryRequest(
            memory=pb.Memory(id=m.id, content="User lives in Berlin"), reason="MOVED"
        ),
        metadata=md(key),
    )
    u2 = await memory_stub.ReplaceMemory(
        pb.ReplaceMemoryRequest(memory=pb.Memory(id=m.id, content="User lives in Kuching")),
        metadata=md(key),
    )
    assert (u1.version, u2.version) == (2, 3)
    vs = await memory_stub.ListMemoryVersions(
        pb.ListMemoryVersionsRequest(id=m.id), metadata=md(key)
    )
    assert [(v.version, v.content) for v in vs.versions] == [
        (3, "User lives in Kuching"),
        (2, "User lives in Berlin"),
        (1, "User lives in Paris"),
    ]
    assert not vs.versions[0].HasField("expire_time")
    assert [v.expire_reason for v in vs.versions[1:]] == ["REPLACED", "MOVED"]
    assert vs.versions[1].expire_time.ToDatetime() >= vs.versions[2].expire_time.ToDatetime()
    # search finds the new content, not the old
    res = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id="u", query="Kuching"), metadata=md(key)
    )
    assert [r.memory.id for r in res.results] == [m.id]
    assert res.results[0].memory.content == "User lives in Kuching"


async def test_replace_clears_unset_fields_and_needs_content(memory_stub, new_key) -> None:
    _, key = await new_key()
    m = await memory_stub.CreateMemory(
        mem("u", "Task: call the bank", type=pb.MEMORY_TYPE_TASK, tags=["todo"], metadata={"p": 1}),
        metadata=md(key),
    )
    r = await memory_stub.ReplaceMemory(
        pb.ReplaceMemoryRequest(
            memory=pb.Memory(id=m.id, content="Task: call the bank", tags=["x"])
        ),
        metadata=md(key),
    )
    assert r.type == pb.MEMORY_TYPE_OBSERVATION
    assert list(r.tags) == ["x"]
    assert not r.HasField("metadata") or len(r.metadata) == 0
    assert r.version == 1  # same content
    assert r.create_time == m.create_time
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.ReplaceMemory(
            pb.ReplaceMemoryRequest(memory=pb.Memory(id=m.id, tags=["y"])), metadata=md(key)
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "memory.content" in details(e.value)[0]


async def test_delete_then_not_found(memory_stub, new_key) -> None:
    _, key = await new_key()
    m = await memory_stub.CreateMemory(mem("u", "Ephemeral"), metadata=md(key))
    await memory_stub.UpdateMemory(
        pb.UpdateMemoryRequest(memory=pb.Memory(id=m.id, content="Ephemeral 2")), metadata=md(key)
    )
    await memory_stub.DeleteMemory(pb.DeleteMemoryRequest(id=m.id), metadata=md(key))
    for call in (
        memory_stub.GetMemory(pb.GetMemoryRequest(id=m.id), metadata=md(key)),
        memory_stub.DeleteMemory(pb.DeleteMemoryRequest(id=m.id), metadata=md(key)),
        memory_stub.ListMemoryVersions(pb.ListMemoryVersionsRequest(id=m.id), metadata=md(key)),
        memory_stub.UpdateMemory(
            pb.UpdateMemoryRequest(memory=pb.Memory(id=m.id, content="x")), metadata=md(key)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert details(e.value)[1] == "MEMORY_NOT_FOUND"


async def test_request_id_retry_returns_first_result(memory_stub, new_key) -> None:
    _, key = await new_key()
    req = mem("u", "Retry me", request_id="req-123")
    first, second = await asyncio.gather(
        memory_stub.CreateMemory(req, metadata=md(key)),
        memory_stub.CreateMemory(req, metadata=md(key)),
    )
    third = await memory_stub.CreateMemory(req, metadata=md(key))
    assert first == second == third
    listed = await memory_stub.ListMemories(pb.ListMemoriesRequest(user_id="u"), metadata=md(key))
    assert listed.total_size == 1
    # a different request id is a different write
    other = await memory_stub.CreateMemory(
        mem("u", "Retry me", request_id="req-124"), metadata=md(key)
    )
    assert other.id != first.id
    # retried update and delete return the first outcome too
    upd = pb.UpdateMemoryRequest(memory=pb.Memory(id=first.id, content="v2"), request_id="u-1")
    a = await memory_stub.UpdateMemory(upd, metadata=md(key))
    b = await memory_stub.UpdateMemory(upd, metadata=md(key))
    assert a == b and a.version == 2
    dele = pb.DeleteMemoryRequest(id=first.id, request_id="d-1")
    await memory_stub.DeleteMemory(dele, metadata=md(key))
    await memory_stub.DeleteMemory(
        dele, metadata=md(key)
    )  # not NOT_FOUND: same result as the first


async def test_request_ids_are_per_project(memory_stub, new_key) -> None:
    _, key_a = await new_key()
    _, key_b = await new_key()
    a = await memory_stub.CreateMemory(mem("u", "A's", request_id="same"), metadata=md(key_a))
    b = await memory_stub.CreateMemory(mem("u", "B's", request_id="same"), metadata=md(key_b))
    assert a.id != b.id and b.content == "B's"


async def test_metadata_struct_roundtrip(memory_stub, new_key) -> None:
    _, key = await new_key()
    meta = {"ticket_id": "12345", "nested": {"a": [1, "two", None, True]}, "n": 3}
    m = await memory_stub.CreateMemory(mem("u", "With metadata", metadata=meta), metadata=md(key))
    got = await memory_stub.GetMemory(pb.GetMemoryRequest(id=m.id), metadata=md(key))
    assert got.metadata == struct(meta)
