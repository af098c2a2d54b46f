"""Categories per project (AdminService List/SetCategories): the defaults, a chosen set, the
categories memories carry, and filters naming a category the project does not have."""

from __future__ import annotations

import json

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from memgrpc.core.memory.categories import DEFAULT_CATEGORIES
from memgrpc.v1 import admin_pb2 as apb
from memgrpc.v1 import memory_pb2 as pb
from tests.helpers import md
from tests.memhelpers import details, mem

DEFAULT_NAMES = [n for n, _ in DEFAULT_CATEGORIES]


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


async def _list(admin_stub, key: str, project_id: str = "") -> list[tuple[str, str, bool]]:
    got = await admin_stub.ListCategories(
        apb.ListCategoriesRequest(project_id=project_id), metadata=md(key)
    )
    return [(c.name, c.description, c.from_memories) for c in got.categories]


async def _set(
    admin_stub, key: str, *names: str, project_id: str = ""
) -> apb.ListCategoriesResponse:
    return await admin_stub.SetCategories(  # type: ignore[no-any-return]
        apb.SetCategoriesRequest(
            project_id=project_id,
            categories=[apb.Category(name=n, description=f"about {n}") for n in names],
        ),
        metadata=md(key),
    )


async def test_a_new_project_lists_the_defaults(admin_stub, new_key) -> None:
    _, key = await new_key()
    assert await _list(admin_stub, key) == [(n, d, False) for n, d in DEFAULT_CATEGORIES]


async def test_set_replaces_the_set_and_filters_follow(admin_stub, memory_stub, new_key) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(
        mem("u", "trip to Rome", categories=["travel"]), metadata=md(key)
    )
    answer = await _set(admin_stub, key, "travel", "finance")
    names = [(c.name, c.description, c.from_memories) for c in answer.categories]
    assert names == [("travel", "about travel", False), ("finance", "about finance", False)]
    assert await _list(admin_stub, key) == names  # defaults are gone
    # a default no memory carries is now unknown to filters; the chosen ones are fine
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.ListMemories(
            pb.ListMemoriesRequest(categories=["work"]), metadata=md(key)
        )
    assert error_info(e.value).reason == "INVALID_CATEGORIES"
    listed = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(categories=["finance", "travel"]), metadata=md(key)
    )
    assert [m.content for m in listed.memories] == ["trip to Rome"]
    # and set again: replaced, not merged
    await _set(admin_stub, key, "finance")
    assert [n for n, _, _ in await _list(admin_stub, key)] == ["finance", "travel"]
    assert (await _list(admin_stub, key))[1] == ("travel", "", True)  # only a memory has it now


async def test_a_memory_category_is_registered_on_every_write_path(
    admin_stub, memory_stub, new_key
) -> None:
    _, key = await new_key()
    m = await memory_stub.CreateMemory(
        mem("u", "likes jazz", categories=["music", "preferences"]), metadata=md(key)
    )
    await memory_stub.UpdateMemory(
        pb.UpdateMemoryRequest(memory=pb.Memory(id=m.id, categories=["music", "nightlife"])),
        metadata=md(key),
    )
    await memory_stub.ReplaceMemory(
        pb.ReplaceMemoryRequest(
            memory=pb.Memory(id=m.id, content="loves jazz", categories=["Loud Music"])
        ),
        metadata=md(key),
    )
    await memory_stub.BatchMemories(
        pb.BatchMemoriesRequest(
            operations=[
                pb.BatchOperation(
                    create=pb.CreateMemoryRequest(
                        memory=pb.Memory(user_id="u2", content="x", categories=["batched"])
                    )
                )
            ]
        ),
        metadata=md(key),
    )

    async def records():  # type: ignore[no-untyped-def]
        yield pb.ImportMemoriesRequest(
            records=[
                pb.MemoryRecord(
                    memory=pb.Memory(
                        id="mem_imp1", user_id="u3", content="y", categories=["imported"]
                    )
                )
            ]
        )

    await memory_stub.ImportMemories(records(), metadata=md(key))
    listed = await _list(admin_stub, key)
    extra = [(n, f) for n, _, f in listed if n not in DEFAULT_NAMES]
    assert extra == [
        ("Loud Music", True),
        ("batched", True),
        ("imported", True),
        ("music", True),
        ("nightlife", True),
    ]
    assert ("preferences", True) not in [(n, f) for n, _, f in listed]  # a default, listed once
    for name in ("music", "nightlife", "Loud Music", "batched", "imported"):
        got = await memory_stub.ListMemories(
            pb.ListMemoriesRequest(categories=[name]), metadata=md(key)
        )
        assert got.total_size == (0 if name in ("music", "nightlife") else 1), name


async def test_a_memory_category_stays_valid_after_the_set_drops_it(
    admin_stub, memory_stub, new_key
) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(
        mem("u", "works at a bank", categories=["work"]), metadata=md(key)
    )
    await _set(admin_stub, key, "travel")
    assert await _list(admin_stub, key) == [
        ("travel", "about travel", False),
        ("work", "", True),
    ]
    got = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(categories=["work"]), metadata=md(key)
    )
    assert [m.content for m in got.memories] == ["works at a bank"]


async def test_filtering_by_an_unknown_category_names_it(admin_stub, memory_stub, new_key) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(
        mem("u", "plays chess", categories=["hobbies"]), metadata=md(key)
    )
    before = await _list(admin_stub, key)
    calls = [
        memory_stub.ListMemories(
            pb.ListMemoriesRequest(categories=["hobbies", "nope", "zilch"]), metadata=md(key)
        ),
        memory_stub.SearchMemories(
            pb.SearchMemoriesRequest(query="chess", categories=["hobbies", "nope", "zilch"]),
            metadata=md(key),
        ),
        memory_stub.SearchMemories(
            pb.SearchMemoriesRequest(
                query="chess", user_id="u", categories=["hobbies", "nope", "zilch"]
            ),
            metadata=md(key),
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        fields, reason = details(e.value)
        assert reason == "INVALID_CATEGORIES"
        assert fields == {"categories[1]", "categories[2]"}
        info = error_info(e.value)
        assert json.loads(info.metadata["invalid_categories"]) == ["nope", "zilch"]
        assert "nope" in e.value.details() and "zilch" in e.value.details()
    # nothing else changed: no category was registered by the filters
    assert await _list(admin_stub, key) == before
    hits = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(query="chess", categories=["hobbies"]), metadata=md(key)
    )
    assert [h.memory.content for h in hits.results] == ["plays chess"]


async def test_a_malformed_category_filter_is_a_field_violation(memory_stub, new_key) -> None:
    _, key = await new_key()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.SearchMemories(
            pb.SearchMemoriesRequest(query="x", categories=["ok", ""]), metadata=md(key)
        )
    fields, reason = details(e.value)
    assert "categories[1]" in fields and reason == "INVALID_ARGUMENT"


BAD_SETS = [
    (["Upper"], "categories[0].name"),
    (["has space"], "categories[0].name"),
    ([""], "categories[0].name"),
    (["x" * 65], "categories[0].name"),
    (["ok", "caf\u00e9"], "categories[1].name"),
    (["dup", "dup"], "categories[1].name"),
    ([f"c{i}" for i in range(101)], "categories"),
]


@pytest.mark.parametrize(("names", "field"), BAD_SETS)
async def test_bad_set_writes_nothing(admin_stub, new_key, names: list[str], field: str) -> None:
    _, key = await new_key()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await _set(admin_stub, key, *names)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details(e.value)[0]
    assert [n for n, _, _ in await _list(admin_stub, key)] == DEFAULT_NAMES


async def test_a_description_over_1kib_is_refused(admin_stub, new_key) -> None:
    _, key = await new_key()
    ok = apb.Category(name="fine", description="d" * 1024)
    big = apb.Category(name="big", description="\u00e9" * 513)  # 1026 bytes
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await admin_stub.SetCategories(
            apb.SetCategoriesRequest(categories=[ok, big]), metadata=md(key)
        )
    assert details(e.value)[0] == {"categories[1].description"}
    await admin_stub.SetCategories(apb.SetCategoriesRequest(categories=[ok]), metadata=md(key))
    assert await _list(admin_stub, key) == [("fine", "d" * 1024, False)]


async def test_an_empty_set_leaves_only_what_memories_carry(
    admin_stub, memory_stub, new_key
) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(mem("u", "x", categories=["kept"]), metadata=md(key))
    await admin_stub.SetCategories(apb.SetCategoriesRequest(), metadata=md(key))
    assert await _list(admin_stub, key) == [("kept", "", True)]


async def test_projects_are_isolated(admin_stub, memory_stub, new_key) -> None:
    _, key_a = await new_key()
    _, key_b = await new_key()
    await memory_stub.CreateMemory(mem("u", "a", categories=["only_in_a"]), metadata=md(key_a))
    await _set(admin_stub, key_a, "alpha")
    assert [n for n, _, _ in await _list(admin_stub, key_b)] == DEFAULT_NAMES
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.ListMemories(
            pb.ListMemoriesRequest(categories=["only_in_a"]), metadata=md(key_b)
        )
    assert details(e.value)[1] == "INVALID_CATEGORIES"
    # the same name written in B is B's own registration
    await memory_stub.CreateMemory(mem("u", "b", categories=["only_in_a"]), metadata=md(key_b))
    got = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(categories=["only_in_a"]), metadata=md(key_b)
    )
    assert [m.content for m in got.memories] == ["b"]


async def test_scopes_and_other_projects(admin_stub, new_key, admin_key: str) -> None:
    project, admin = await new_key()
    _, reader = await new_key(scopes=("read",), project_id=project)
    _, writer = await new_key(scopes=("write",), project_id=project)
    other, other_admin = await new_key()
    assert [n for n, _, _ in await _list(admin_stub, reader)] == DEFAULT_NAMES
    for key in (reader, writer):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await _set(admin_stub, key, "nope")
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # another project's categories: NOT_FOUND for a project key, allowed for the bootstrap key
    for call in (
        _list(admin_stub, admin, project_id=other),
        _set(admin_stub, admin, "x", project_id=other),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    await _set(admin_stub, admin_key, "from_bootstrap", project_id=other)
    assert [n for n, _, _ in await _list(admin_stub, other_admin)] == ["from_bootstrap"]
    assert [n for n, _, _ in await _list(admin_stub, admin_key, project_id=other)] == [
        "from_bootstrap"
    ]
    assert [n for n, _, _ in await _list(admin_stub, admin)] == DEFAULT_NAMES
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await _list(admin_stub, admin_key, project_id="prj_missing")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_set_with_a_request_id_runs_once(admin_stub, new_key) -> None:
    _, key = await new_key()
    first = await admin_stub.SetCategories(
        apb.SetCategoriesRequest(categories=[apb.Category(name="one")], request_id="r1"),
        metadata=md(key),
    )
    await _set(admin_stub, key, "two")
    again = await admin_stub.SetCategories(
        apb.SetCategoriesRequest(categories=[apb.Category(name="one")], request_id="r1"),
        metadata=md(key),
    )
    assert again == first
    assert [n for n, _, _ in await _list(admin_stub, key)] == ["two"]
