"""ListMemories: paging (every row exactly once), filters, order, total_size."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import timestamp_pb2

from memgrpc.v1 import memory_pb2 as pb
from tests.helpers import md
from tests.memhelpers import details, mem, struct


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


async def test_paging_every_row_exactly_once(memory_stub, new_key) -> None:
    _, key = await new_key()
    batch = pb.BatchMemoriesRequest(
        operations=[pb.BatchOperation(create=mem("pager", f"note {i}")) for i in range(57)]
    )
    await memory_stub.BatchMemories(batch, metadata=md(key))
    for order in ("", "create_time asc", "event_time desc"):
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            resp = await memory_stub.ListMemories(
                pb.ListMemoriesRequest(
                    user_id="pager", page_size=10, page_token=token, order_by=order
                ),
                metadata=md(key),
            )
            assert resp.total_size == 57 + (pages and 0)
            seen += [m.id for m in resp.memories]
            pages += 1
            # rows added while paging must not shift the remaining pages
            if pages == 2 and order == "create_time asc":
                await memory_stub.CreateMemory(mem("pager-other", "late"), metadata=md(key))
            token = resp.next_page_token
            if not token:
                break
        assert len(seen) == len(set(seen)) == 57
        assert pages == 6


async def test_order_by(memory_stub, new_key) -> None:
    _, key = await new_key()
    ids = []
    for i, t in enumerate((300, 100, 200)):
        r = mem("o", f"event {i}")
        r.memory.event_time.CopyFrom(_ts(1_700_000_000 + t))
        ids.append((await memory_stub.CreateMemory(r, metadata=md(key))).id)
    newest = await memory_stub.ListMemories(pb.ListMemoriesRequest(user_id="o"), metadata=md(key))
    assert [m.id for m in newest.memories] == ids[::-1]
    by_event = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(user_id="o", order_by="event_time asc"), metadata=md(key)
    )
    assert [m.id for m in by_event.memories] == [ids[1], ids[2], ids[0]]


async def test_filters(memory_stub, new_key) -> None:
    _, key = await new_key()

    async def create(content: str, **kw: object) -> str:
        event = kw.pop("event", None)
        r = mem(str(kw.pop("user", "f")), content, **kw)
        if event is not None:
            r.memory.event_time.CopyFrom(_ts(int(event)))  # type: ignore[call-overload]
        return (await memory_stub.CreateMemory(r, metadata=md(key))).id

    a = await create("a", type=pb.MEMORY_TYPE_PREFERENCE, tags=["ui", "settings"], event=1000)
    b = await create("b", type=pb.MEMORY_TYPE_TASK, tags=["ui"], session_id="ses_1", event=2000)
    c = await create(
        "c", type=pb.MEMORY_TYPE_FACT, categories=["food"], metadata={"k": "v"}, event=3000
    )
    d = await create("d", archived=True, tags=["ui"], event=4000)
    await create("other user", tags=["ui"], user="g")

    async def ids(**kw: object) -> set[str]:
        resp = await memory_stub.ListMemories(
            pb.ListMemoriesRequest(user_id="f", **kw), metadata=md(key)
        )
        assert resp.total_size == len(resp.memories)
        return {m.id for m in resp.memories}

    assert await ids() == {a, b, c}
    assert await ids(include_archived=True) == {a, b, c, d}
    assert await ids(types=[pb.MEMORY_TYPE_PREFERENCE, pb.MEMORY_TYPE_TASK]) == {a, b}
    assert await ids(tags=["ui"]) == {a, b}
    assert await ids(tags=["ui", "settings"], tag_match=pb.TAG_MATCH_ALL) == {a}
    assert await ids(tags=["settings", "nope"]) == {a}
    assert await ids(session_id="ses_1") == {b}
    assert await ids(categories=["food"]) == {c}
    assert await ids(metadata=struct({"k": "v"})) == {c}
    assert await ids(metadata=struct({"k": "other"})) == set()
    assert await ids(start_time=_ts(2000), end_time=_ts(3001)) == {b, c}
    assert await ids(start_time=_ts(2000), include_archived=True) == {b, c, d}
    everyone = await memory_stub.ListMemories(pb.ListMemoriesRequest(tags=["ui"]), metadata=md(key))
    assert everyone.total_size == 3


@pytest.mark.parametrize(
    ("request_kw", "field"),
    [
        ({"page_size": -1}, "page_size"),
        ({"page_token": "garbage!!"}, "page_token"),
        ({"order_by": "content; DROP TABLE memories"}, "order_by"),
        ({"types": [99]}, "types[0]"),
        ({"user_id": "x" * 300}, "user_id"),
        ({"tags": [""]}, "tags[0]"),
    ],
)
async def test_bad_list_requests(memory_stub, new_key, request_kw: dict, field: str) -> None:
    _, key = await new_key()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.ListMemories(pb.ListMemoriesRequest(**request_kw), metadata=md(key))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details(e.value)[0]


async def test_page_token_bound_to_its_query(memory_stub, new_key) -> None:
    _, key = await new_key()
    await asyncio.gather(
        *(memory_stub.CreateMemory(mem("t", f"n{i}"), metadata=md(key)) for i in range(3))
    )
    first = await memory_stub.ListMemories(
        pb.ListMemoriesRequest(user_id="t", page_size=1), metadata=md(key)
    )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.ListMemories(
            pb.ListMemoriesRequest(user_id="other", page_size=1, page_token=first.next_page_token),
            metadata=md(key),
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
