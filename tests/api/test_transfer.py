"""ExportMemories / ImportMemories: round trips between servers and projects, re-imports,
precomputed vectors, per-record errors, scopes and tenant isolation."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import grpc
import numpy as np
import pytest

from memgrpc.core.memory.transfer import IMPORT_BATCH
from memgrpc.embed import Embedder
from memgrpc.server.app import start
from memgrpc.store.filters import Where
from memgrpc.v1 import admin_pb2_grpc, memory_pb2_grpc
from memgrpc.v1 import memory_pb2 as pb
from tests.conftest import ServerHandle, make_config, new_key
from tests.helpers import md
from tests.memhelpers import mem, struct

MODEL = "all-MiniLM-L6-v2-int8"
DIM = 384


# -- fixtures: a second server, a source project --------------------------------------------
@pytest.fixture(scope="module")
async def other(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[ServerHandle]:
    """A second server with its own data: the target of cross-server round trips."""
    data_dir = tmp_path_factory.mktemp("other")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    running = await start(make_config(data_dir, admin_key), embedder=shared_embedder)
    try:
        yield ServerHandle(running.address, data_dir, admin_key, running.app, running)
    finally:
        await running.stop(1.0)


@pytest.fixture(scope="module")
async def other_stubs(
    other: ServerHandle,
) -> AsyncIterator[tuple[memory_pb2_grpc.MemoryServiceStub, admin_pb2_grpc.AdminServiceStub]]:
    async with grpc.aio.insecure_channel(other.address) as ch:
        yield memory_pb2_grpc.MemoryServiceStub(ch), admin_pb2_grpc.AdminServiceStub(ch)


@pytest.fixture
def other_key(other: ServerHandle, other_stubs):  # type: ignore[no-untyped-def]
    return new_key.__wrapped__(other_stubs[1], other.admin_key)


@pytest.fixture
def other_memory(other_stubs) -> memory_pb2_grpc.MemoryServiceStub:  # type: ignore[no-untyped-def]
    return other_stubs[0]


@pytest.fixture(scope="module")
async def source(memory_stub, new_key_module) -> tuple[str, list[str]]:
    """Project A: two users, tags, metadata, times, a session, versions, an archived memory."""
    _, key = await new_key_module()
    ids = []
    specs = [
        (
            "alice",
            "The user's dog is named Biscuit",
            {"tags": ["pets"], "type": pb.MEMORY_TYPE_FACT},
        ),
        (
            "alice",
            "User prefers dark mode in every app",
            {
                "tags": ["ui", "settings"],
                "metadata": {"confidence": 0.9, "source": {"kind": "chat", "n": [1, 2]}},
                "categories": ["preferences"],
                "importance": 0.8,
                "type": pb.MEMORY_TYPE_PREFERENCE,
            },
        ),
        (
            "alice",
            "Flight to Tokyo booked for 14 May, seat 22A",
            {"session_id": "trip-1", "speaker": "alice", "source_message_ids": ["m1"]},
        ),
        ("alice", "User lives in Paris", {}),
        ("alice", "Old note about a cancelled gym membership", {}),
        ("bob", "Bob is allergic to peanuts", {"tags": ["health"]}),
    ]
    for user, text, kw in specs:
        req = mem(user, text, **kw)
        req.memory.event_time.FromSeconds(1_600_000_000 + len(ids))
        ids.append((await memory_stub.CreateMemory(req, metadata=md(key))).id)
    for city in ("Berlin", "Kuching"):  # two more versions
        await memory_stub.UpdateMemory(
            pb.UpdateMemoryRequest(
                memory=pb.Memory(id=ids[3], content=f"User lives in {city}"), reason="MOVED"
            ),
            metadata=md(key),
        )
    await memory_stub.UpdateMemory(
        pb.UpdateMemoryRequest(memory=pb.Memory(id=ids[4], archived=True)), metadata=md(key)
    )
    return key, ids


async def export_all(
    stub: memory_pb2_grpc.MemoryServiceStub, key: str, **fields: object
) -> list[pb.MemoryRecord]:
    out: list[pb.MemoryRecord] = []
    async for resp in stub.ExportMemories(pb.ExportMemoriesRequest(**fields), metadata=md(key)):
        assert resp.records
        out.extend(resp.records)
    return out


async def import_records(
    stub: memory_pb2_grpc.MemoryServiceStub,
    key: str,
    records: Sequence[pb.MemoryRecord],
    per_request: int = 100,
) -> pb.ImportMemoriesResponse:
    async def requests() -> AsyncIterator[pb.ImportMemoriesRequest]:
        for i in range(0, len(records), per_request):
            yield pb.ImportMemoriesRequest(records=records[i : i + per_request])

    resp: pb.ImportMemoriesResponse = await stub.ImportMemories(requests(), metadata=md(key))
    return resp


FULL = {"include_archived": True, "include_vectors": True, "include_versions": True}


async def total(stub: memory_pb2_grpc.MemoryServiceStub, key: str) -> int:
    resp = await stub.ListMemories(
        pb.ListMemoriesRequest(include_archived=True, page_size=1), metadata=md(key)
    )
    return resp.total_size


# -- export ---------------------------------------------------------------------------------
async def test_export_carries_everything(memory_stub, source) -> None:
    key, ids = source
    records = await export_all(memory_stub, key, **FULL)
    by_id = {r.memory.id: r for r in records}
    assert sorted(by_id) == sorted(ids)
    for r in records:
        assert len(r.vector) == DIM and r.model == MODEL
        assert abs(float(np.linalg.norm(r.vector)) - 1.0) < 1e-3
        assert r.versions[0].version == r.memory.version
        assert not r.versions[0].HasField("expire_time")
    moved = by_id[ids[3]]
    assert moved.memory.version == 3
    assert [(v.version, v.content, v.expire_reason) for v in moved.versions] == [
        (3, "User lives in Kuching", ""),
        (2, "User lives in Berlin", "MOVED"),
        (1, "User lives in Paris", "MOVED"),
    ]
    got = await memory_stub.GetMemory(pb.GetMemoryRequest(id=ids[1]), metadata=md(key))
    assert by_id[ids[1]].memory == got
    # plain export: no vectors, no versions, no archived memories
    plain = await export_all(memory_stub, key)
    assert sorted(r.memory.id for r in plain) == sorted(set(ids) - {ids[4]})
    assert all(not r.vector and not r.model and not r.versions for r in plain)


async def test_export_filters_and_batches(memory_stub, source) -> None:
    key, ids = source
    bob = await export_all(memory_stub, key, user_id="bob")
    assert [r.memory.id for r in bob] == [ids[5]]
    tagged = await export_all(memory_stub, key, tags=["settings", "pets"])
    assert sorted(r.memory.id for r in tagged) == sorted([ids[0], ids[1]])
    in_session = await export_all(memory_stub, key, session_id="trip-1")
    assert [r.memory.id for r in in_session] == [ids[2]]
    assert in_session[0].memory.speaker == "alice"
    responses = [
        resp
        async for resp in memory_stub.ExportMemories(
            pb.ExportMemoriesRequest(batch_size=2, include_archived=True), metadata=md(key)
        )
    ]
    assert [len(r.records) for r in responses] == [2, 2, 2]
    for bad in (pb.ExportMemoriesRequest(batch_size=1001), pb.ExportMemoriesRequest(tags=[""])):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await export_all(memory_stub, key, **{f.name: v for f, v in bad.ListFields()})
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_export_of_an_empty_project(memory_stub, new_key) -> None:
    _, key = await new_key()
    assert await export_all(memory_stub, key, **FULL) == []


# -- round trips ---------------------------------------------------------------------------------
async def test_round_trip_to_another_server_keeps_everything(
    memory_stub, source, other, other_memory, other_key
) -> None:
    key_a, ids = source
    records = await export_all(memory_stub, key_a, **FULL)
    _, key_b = await other_key()
    # warm the target's recall cache for alice (empty): the import must update it in place
    warm = await other_memory.SearchMemories(
        pb.SearchMemoriesRequest(user_id="alice", query="dog name"), metadata=md(key_b)
    )
    assert list(warm.results) == []
    loads = other.app.memories.cache.loads
    texts = other.app.embedder.texts

    summary = await import_records(other_memory, key_b, records, per_request=4)
    assert (summary.imported, summary.skipped, summary.failed) == (len(ids), 0, 0)
    assert (summary.embedded, summary.renamed) == (0, 0)
    assert (summary.model, summary.dimension) == (MODEL, DIM)
    assert other.app.embedder.texts == texts  # precomputed vectors of this model: no embedding

    copied = {r.memory.id: r for r in await export_all(other_memory, key_b, **FULL)}
    assert sorted(copied) == sorted(ids)
    for r in records:
        c = copied[r.memory.id]
        assert c.memory == r.memory  # content, times, version, metadata, tags, archived, ...
        assert list(c.versions) == list(r.versions)
        assert np.array_equal(np.asarray(c.vector, np.float32), np.asarray(r.vector, np.float32))
        assert c.seq == r.seq and c.HasField("seq") == r.HasField("seq")

    # search right away: hybrid per user (the recall cache), and across users (the store)
    for query in ("what is the dog called?", "where does the user live", "dark theme"):
        req = pb.SearchMemoriesRequest(user_id="alice", query=query, limit=3)
        a = await memory_stub.SearchMemories(req, metadata=md(key_a))
        b = await other_memory.SearchMemories(req, metadata=md(key_b))
        assert [x.memory.id for x in b.results] == [x.memory.id for x in a.results]
        assert [x.score for x in b.results] == pytest.approx([x.score for x in a.results])
    assert other.app.memories.cache.loads == loads  # served from the warmed cache
    found = await other_memory.SearchMemories(
        pb.SearchMemoriesRequest(query="peanut allergy", mode=pb.SEARCH_MODE_SEMANTIC),
        metadata=md(key_b),
    )
    assert found.results[0].memory.id == ids[5]
    versions = await other_memory.ListMemoryVersions(
        pb.ListMemoryVersionsRequest(id=ids[3]), metadata=md(key_b)
    )
    assert [v.content for v in versions.versions] == [
        "User lives in Kuching",
        "User lives in Berlin",
        "User lives in Paris",
    ]

    # the same records again: nothing changes
    again = await import_records(other_memory, key_b, records)
    assert (again.imported, again.skipped, again.failed) == (0, len(ids), 0)
    assert await total(other_memory, key_b) == len(ids)


async def test_import_into_another_project_of_the_same_server(memory_stub, source, new_key) -> None:
    """Ids are unique per server: another project gets ids derived from them, stable across
    re-imports, and the source project is untouched."""
    key_a, ids = source
    records = await export_all(memory_stub, key_a, **FULL)
    before = {r.memory.id: r.memory for r in records}
    _, key_c = await new_key()
    summary = await import_records(memory_stub, key_c, records)
    assert (summary.imported, summary.renamed, summary.failed) == (len(ids), len(ids), 0)
    copied = await export_all(memory_stub, key_c, **FULL)
    assert len(copied) == len(ids)
    assert not {r.memory.id for r in copied} & set(ids)
    assert all(r.memory.id.startswith("mem_") for r in copied)
    assert sorted(r.memory.content for r in copied) == sorted(m.content for m in before.values())
    moved = next(r for r in copied if r.memory.content == "User lives in Kuching")
    assert [v.version for v in moved.versions] == [3, 2, 1]
    assert {v.memory_id for v in moved.versions} == {moved.memory.id}

    again = await import_records(memory_stub, key_c, records)
    assert (again.imported, again.skipped, again.renamed) == (0, len(ids), 0)
    assert await total(memory_stub, key_c) == len(ids)
    after = {r.memory.id: r.memory for r in await export_all(memory_stub, key_a, **FULL)}
    assert after == before


async def test_imported_versions_are_stored_as_updates_store_them(
    server, memory_stub, source, new_key
) -> None:
    """The memory_versions rows an import writes from a record's history are the rows the
    updates that made that history wrote (but for the project and the derived memory id)."""
    key_a, ids = source
    records = await export_all(memory_stub, key_a, **FULL)
    _, key_c = await new_key()
    await import_records(memory_stub, key_c, [r for r in records if r.memory.id == ids[3]])
    (copy,) = await export_all(memory_stub, key_c, **FULL)
    tbl = server.app.store.table("memory_versions")

    async def history(memory_id: str) -> list[dict[str, object]]:
        found = await tbl.query().where(str(Where().eq("memory_id", memory_id))).to_arrow()
        rows = sorted(found.to_pylist(), key=lambda r: r["version"])
        for r in rows:
            assert r.pop("pk") == f"{memory_id}@{r['version']}"
            assert r.pop("memory_id") == memory_id
            r.pop("project_id")
        return rows

    made = await history(ids[3])
    assert [r["version"] for r in made] == [1, 2]
    assert [r["expire_reason"] for r in made] == ["MOVED", "MOVED"]
    assert await history(copy.memory.id) == made


# -- vectors ---------------------------------------------------------------------------------------
async def test_foreign_vectors_are_embedded_here(server, memory_stub, new_key) -> None:
    _, key = await new_key()
    unit = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    records = [
        pb.MemoryRecord(
            memory=pb.Memory(
                id="v-other-model", user_id="u", content="The user owns a red bicycle"
            ),
            vector=unit.tolist(),
            model="text-embedding-3-small",
        ),
        pb.MemoryRecord(
            memory=pb.Memory(id="v-short", user_id="u", content="The user plays the cello"),
            vector=[0.5, 0.5, 0.5, 0.5],
            model=MODEL,
        ),
        pb.MemoryRecord(
            memory=pb.Memory(id="v-none", user_id="u", content="The user drinks oat milk")
        ),
        pb.MemoryRecord(
            memory=pb.Memory(id="v-nan", user_id="u", content="The user lives near a lake"),
            vector=[float("nan")] * DIM,
            model=MODEL,
        ),
        pb.MemoryRecord(
            memory=pb.Memory(id="v-own", user_id="u", content="kept vector"),
            vector=(unit * 3).tolist(),  # the right model and size: normalised, not embedded
            model=MODEL,
        ),
    ]
    texts = server.app.embedder.texts
    summary = await import_records(memory_stub, key, records)
    assert (summary.imported, summary.embedded, summary.failed) == (5, 4, 0)
    assert server.app.embedder.texts - texts == 4
    stored = {r.memory.id: np.asarray(r.vector) for r in await export_all(memory_stub, key, **FULL)}
    assert np.allclose(stored["v-own"], unit, atol=1e-6)
    for mid, rec in zip(("v-other-model", "v-short", "v-none", "v-nan"), records, strict=False):
        own = server.app.embedder.embed_sync([rec.memory.content])[0]
        assert float(np.dot(stored[mid], own)) > 0.999
    hit = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id="u", query="what kind of bike does the user have?"),
        metadata=md(key),
    )
    assert hit.results[0].memory.id == "v-other-model"


async def test_bulk_import_with_precomputed_vectors(server, memory_stub, new_key) -> None:
    """More than one import batch, vectors used as is, exported bit for bit."""
    _, key = await new_key()
    rng = np.random.default_rng(7)
    n = IMPORT_BATCH * 2 + 345
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [
        pb.MemoryRecord(
            memory=pb.Memory(id=f"bulk-{i:05d}", user_id=f"user-{i % 7}", content=f"note {i}"),
            vector=vectors[i].tolist(),
            model=MODEL,
        )
        for i in range(n)
    ]
    texts = server.app.embedder.texts
    summary = await import_records(memory_stub, key, records, per_request=500)
    assert (summary.imported, summary.embedded, summary.failed) == (n, 0, 0)
    assert server.app.embedder.texts == texts
    assert await total(memory_stub, key) == n
    out = await export_all(memory_stub, key, include_vectors=True, batch_size=1000)
    assert len(out) == n
    got = {r.memory.id: np.asarray(r.vector, np.float32) for r in out}
    assert all(np.array_equal(got[f"bulk-{i:05d}"], vectors[i]) for i in range(n))
    users = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(user_id="user-3", page_size=1), metadata=md(key)
    )
    assert users.total_size == len(range(3, n, 7))


# -- bad records --------------------------------------------------------------------------------
async def test_bad_records_are_reported_and_the_rest_imported(memory_stub, new_key) -> None:
    _, key = await new_key()

    def rec(mid: str, content: str = "fine", user: str = "u", **kw: object) -> pb.MemoryRecord:
        return pb.MemoryRecord(memory=pb.Memory(id=mid, user_id=user, content=content, **kw))

    bad_version = rec("bad-version", version=2)
    bad_version.versions.add(version=5, content="from the future")
    time_travel = rec("old-times")
    time_travel.memory.create_time.FromSeconds(1_500_000_000)
    records = [
        rec("ok-1", "The user likes tea"),  # 0
        rec("empty", "   "),  # 1
        rec("has space"),  # 2
        rec("-leading-dash"),  # 3
        rec("no-user", user=""),  # 4
        rec("too-important", importance=2.0),  # 5
        bad_version,  # 6
        rec("bad-type", type=99),  # 7  (an enum value this server does not know)
        rec("ok-1", "a duplicate id later in the stream"),  # 8
        rec("", "no id: a new one is assigned"),  # 9
        time_travel,  # 10
        rec("x" * 129),  # 11
    ]
    summary = await import_records(memory_stub, key, records, per_request=5)
    assert (summary.imported, summary.skipped, summary.failed) == (3, 1, 8)
    errors = {e.index: e for e in summary.errors}
    assert sorted(errors) == [1, 2, 3, 4, 5, 6, 7, 11]
    assert all(e.reason == "INVALID_ARGUMENT" for e in summary.errors)
    assert "memory.content" in errors[1].message
    assert "memory.id" in errors[2].message and errors[2].id == "has space"
    assert "memory.user_id" in errors[4].message
    assert "importance" in errors[5].message
    assert "versions[0].version" in errors[6].message
    assert "type" in errors[7].message
    listed = await memory_stub.ListMemories(pb.ListMemoriesRequest(), metadata=md(key))
    contents = sorted(m.content for m in listed.memories)
    assert contents == ["The user likes tea", "fine", "no id: a new one is assigned"]
    assert {m.id for m in listed.memories} >= {"ok-1", "old-times"}
    old = await memory_stub.GetMemory(pb.GetMemoryRequest(id="old-times"), metadata=md(key))
    assert old.create_time.seconds == old.update_time.seconds == old.event_time.seconds
    assert old.create_time.seconds == 1_500_000_000
    assert old.version == 1


async def test_defaults_of_sparse_records(memory_stub, new_key) -> None:
    _, key = await new_key()
    before = datetime.now(UTC)
    r = pb.MemoryRecord(memory=pb.Memory(id="sparse", user_id="u", content="just text"))
    assert (await import_records(memory_stub, key, [r])).imported == 1
    got = await memory_stub.GetMemory(pb.GetMemoryRequest(id="sparse"), metadata=md(key))
    assert got.type == pb.MEMORY_TYPE_OBSERVATION
    assert got.importance == pytest.approx(0.5)
    assert got.version == 1
    assert got.create_time.ToDatetime(tzinfo=UTC) >= before.replace(microsecond=0)
    assert got.event_time == got.create_time == got.update_time
    meta = pb.MemoryRecord(
        memory=pb.Memory(id="meta", user_id="u", content="x", metadata=struct({"a": {"b": [1]}}))
    )
    await import_records(memory_stub, key, [meta])
    found = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(metadata=struct({"a": {"b": [1]}})), metadata=md(key)
    )
    assert [m.id for m in found.memories] == ["meta"]


# -- scopes and tenants -----------------------------------------------------------------------------
async def test_scopes_and_tenant_isolation(memory_stub, source, new_key) -> None:
    _, ids = source
    project_b, key_b = await new_key()
    await memory_stub.CreateMemory(mem("alice", "B's own memory"), metadata=md(key_b))
    mine = await export_all(memory_stub, key_b, **FULL)
    assert [r.memory.content for r in mine] == ["B's own memory"]
    assert not {r.memory.id for r in mine} & set(ids)

    _, read_only = await new_key(scopes=("read",), project_id=project_b)
    _, write_only = await new_key(scopes=("write",), project_id=project_b)
    assert len(await export_all(memory_stub, read_only)) == 1
    record = pb.MemoryRecord(memory=pb.Memory(user_id="u", content="x"))
    for call in (
        import_records(memory_stub, read_only, [record]),
        export_all(memory_stub, write_only),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await export_all(memory_stub, "mgk_wrong_key_0123456789")
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
