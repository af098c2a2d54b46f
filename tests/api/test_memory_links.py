"""ListMemories' include_previous_versions and include_connected_memories (RecallrAI's
list_memories): filled per memory, from one batched read per page."""

from __future__ import annotations

from typing import Any

import pytest

from memgrpc.v1 import memory_pb2 as pb
from tests.conftest import ServerHandle
from tests.helpers import md
from tests.memhelpers import mem


async def _update(memory_stub, key: str, memory_id: str, **fields: Any) -> pb.Memory:
    return await memory_stub.UpdateMemory(  # type: ignore[no-any-return]
        pb.UpdateMemoryRequest(memory=pb.Memory(id=memory_id, **fields)), metadata=md(key)
    )


async def _listed(memory_stub, key: str, **kw: Any) -> dict[str, pb.Memory]:
    got = await memory_stub.ListMemories(pb.ListMemoriesRequest(**kw), metadata=md(key))
    return {m.content: m for m in got.memories}


async def test_previous_versions_newest_first_without_the_current(memory_stub, new_key) -> None:
    _, key = await new_key()
    m = await memory_stub.CreateMemory(mem("u", "lives in Berlin"), metadata=md(key))
    await _update(memory_stub, key, m.id, content="lives in Hamburg")
    await _update(memory_stub, key, m.id, tags=["moved"])  # no new version
    await _update(memory_stub, key, m.id, content="lives in Toronto")
    await memory_stub.CreateMemory(mem("u", "has a cat"), metadata=md(key))
    got = await _listed(memory_stub, key, include_previous_versions=True)
    toronto = got["lives in Toronto"]
    assert toronto.version == 3
    assert [(v.version, v.content) for v in toronto.previous_versions] == [
        (2, "lives in Hamburg"),
        (1, "lives in Berlin"),
    ]
    assert toronto.previous_versions[0].expire_reason == "UPDATED"
    assert list(got["has a cat"].previous_versions) == []
    plain = await _listed(memory_stub, key)
    assert list(plain["lives in Toronto"].previous_versions) == []


async def test_connected_memories_share_an_entity_of_the_same_user(memory_stub, new_key) -> None:
    _, key = await new_key()
    _, other_key = await new_key()

    async def make(user: str, content: str, entities: list[str], k: str = key) -> pb.Memory:
        return await memory_stub.CreateMemory(  # type: ignore[no-any-return]
            mem(user, content, entities=entities), metadata=md(k)
        )

    await make("u", "met Anna in Berlin", ["anna", "berlin"])
    await make("u", "Berlin is rainy", ["berlin"])
    await make("u", "Anna lives in Berlin", ["anna", "berlin"])
    await make("u", "visited Paris", ["paris"])
    archived = await make("u", "old Berlin note", ["berlin"])
    await _update(memory_stub, key, archived.id, archived=True)
    await make("u2", "u2 loves Berlin", ["berlin"])  # another user: never connected
    await make("u", "other project's Berlin", ["berlin"], other_key)  # another project: never
    got = await _listed(memory_stub, key, include_connected_memories=True)

    def names(content: str) -> list[str]:
        return [c.content for c in got[content].connected_memories]

    assert names("met Anna in Berlin") == ["Anna lives in Berlin", "Berlin is rainy"]
    assert names("Anna lives in Berlin") == ["met Anna in Berlin", "Berlin is rainy"]
    # one shared entity each: the most recently updated first
    assert names("Berlin is rainy") == ["Anna lives in Berlin", "met Anna in Berlin"]
    assert names("visited Paris") == []
    assert names("u2 loves Berlin") == []
    for m in got.values():
        for c in m.connected_memories:
            assert c.user_id == m.user_id
            assert not c.connected_memories and not c.previous_versions
    other = await _listed(memory_stub, other_key, include_connected_memories=True)
    assert list(other["other project's Berlin"].connected_memories) == []
    plain = await _listed(memory_stub, key)
    assert all(not m.connected_memories for m in plain.values())


async def test_at_most_ten_connected_and_one_read_per_page(
    memory_stub, new_key, server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = await new_key()
    for i in range(13):
        m = await memory_stub.CreateMemory(
            mem("u", f"note {i} about the lake", entities=["lake", f"thing{i}"]), metadata=md(key)
        )
        await _update(memory_stub, key, m.id, content=f"note {i} about the lake, edited")
    svc = server.app.memories
    reads = {"keys": 0, "versions": 0}

    def counting(name: str, real: Any) -> Any:
        async def rows(*args: Any, **kw: Any) -> Any:
            reads[name] += 1
            return await real(*args, **kw)

        return rows

    monkeypatch.setattr(svc._keys_tbl, "rows", counting("keys", svc._keys_tbl.rows))
    monkeypatch.setattr(svc._versions_tbl, "rows", counting("versions", svc._versions_tbl.rows))
    got = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(
            user_id="u", include_connected_memories=True, include_previous_versions=True
        ),
        metadata=md(key),
    )
    assert len(got.memories) == 13
    assert reads == {"keys": 1, "versions": 1}
    for m in got.memories:
        assert len(m.connected_memories) == 10
        assert m.id not in {c.id for c in m.connected_memories}
        assert [v.version for v in m.previous_versions] == [1]
