"""UserService/RecordAction (GUMem user actions): memories of origin ACTION, searchable and
filterable by their metadata, idempotent by log_id and request_id, purged with their user, and
read back for extraction as a session's actions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from memgrpc.core.intelligence.actions import session_actions
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2_grpc, users_pb2_grpc
from memgrpc.v1 import users_pb2 as upb
from tests.conftest import ServerHandle
from tests.convhelpers import add, count_rows, msg, new_session
from tests.helpers import md
from tests.memhelpers import details, struct

WHEN = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def users(channel: grpc.aio.Channel) -> users_pb2_grpc.UserServiceStub:
    return users_pb2_grpc.UserServiceStub(channel)


@pytest.fixture(scope="module")
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


def ts(when: datetime = WHEN) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def action(user: str = "u", content: str = "User viewed the Berlin hotels page", **kw: Any):  # type: ignore[no-untyped-def]
    if "metadata" in kw:
        kw["metadata"] = struct(kw["metadata"])
    kw.setdefault("timestamp", ts())
    return upb.RecordActionRequest(user_id=user, content=content, **kw)


async def test_an_action_is_a_memory_of_origin_action(users, memory_stub, new_key) -> None:
    _, key = await new_key()
    got = await users.RecordAction(
        action(
            event_type="page_view",
            page="/hotels/berlin",
            app="travelapp",
            platform="web",
            device_id="dev-1",
            log_id="log-1",
            anchors={"city": "Berlin", "region": "EU"},
            metadata={"campaign": "spring"},
            entities=["Berlin", "hotel"],
        ),
        metadata=md(key),
    )
    m = got.memory
    assert not got.duplicate
    assert m.origin == mpb.MEMORY_ORIGIN_ACTION
    assert m.type == mpb.MEMORY_TYPE_OBSERVATION
    assert m.event_time.ToDatetime(tzinfo=UTC) == WHEN
    assert list(m.entities) == ["berlin", "hotel"]
    meta = dict(m.metadata)
    assert meta == {
        "campaign": "spring",
        "action.event_type": "page_view",
        "action.page": "/hotels/berlin",
        "action.app": "travelapp",
        "action.platform": "web",
        "action.device_id": "dev-1",
        "action.log_id": "log-1",
        "anchor.city": "Berlin",
        "anchor.region": "EU",
    }
    stored = await memory_stub.GetMemory(mpb.GetMemoryRequest(id=m.id), metadata=md(key))
    assert stored == m


async def test_a_preference_update_is_a_preference(users, new_key) -> None:
    _, key = await new_key()
    got = await users.RecordAction(
        action(content="User switched the theme to dark", event_type="preference_update"),
        metadata=md(key),
    )
    assert got.memory.type == mpb.MEMORY_TYPE_PREFERENCE


async def test_actions_are_searchable_and_filterable(users, memory_stub, new_key) -> None:
    _, key = await new_key()
    view = await users.RecordAction(
        action(event_type="page_view", anchors={"city": "Berlin"}), metadata=md(key)
    )
    await users.RecordAction(
        action(content="User bought a ticket to Lisbon", event_type="purchase",
               anchors={"city": "Lisbon"}),
        metadata=md(key),
    )  # fmt: skip
    await memory_stub.CreateMemory(
        mpb.CreateMemoryRequest(memory=mpb.Memory(user_id="u", content="Berlin hotels are nice")),
        metadata=md(key),
    )
    hits = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(query="Berlin hotels page", user_id="u"), metadata=md(key)
    )
    assert view.memory.id in [h.memory.id for h in hits.results]

    async def listed(**kw: Any) -> list[str]:
        if "metadata" in kw:
            kw["metadata"] = struct(kw["metadata"])
        got = await memory_stub.ListMemories(mpb.ListMemoriesRequest(**kw), metadata=md(key))
        return [m.id for m in got.memories]

    assert await listed(metadata={"action.event_type": "page_view"}) == [view.memory.id]
    assert await listed(metadata={"anchor.city": "Berlin"}) == [view.memory.id]
    assert len(await listed(origins=[mpb.MEMORY_ORIGIN_ACTION])) == 2
    assert len(await listed(origins=[mpb.MEMORY_ORIGIN_CLIENT])) == 1
    filtered = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(
            query="Berlin", user_id="u", metadata=struct({"anchor.city": "Berlin"})
        ),
        metadata=md(key),
    )
    assert [h.memory.id for h in filtered.results] == [view.memory.id]


async def test_a_repeated_log_id_returns_the_first_action(users, memory_stub, new_key) -> None:
    _, key = await new_key()
    first = await users.RecordAction(action(log_id="evt-42"), metadata=md(key))
    again = await users.RecordAction(
        action(log_id="evt-42", content="something else"), metadata=md(key)
    )
    assert again.duplicate and again.memory == first.memory
    other_user = await users.RecordAction(action("u2", log_id="evt-42"), metadata=md(key))
    assert not other_user.duplicate and other_user.memory.id != first.memory.id
    # without a log_id every call is a new action
    a = await users.RecordAction(action(content="clicked"), metadata=md(key))
    b = await users.RecordAction(action(content="clicked"), metadata=md(key))
    assert a.memory.id != b.memory.id and not b.duplicate
    # a request_id replays the first reply
    r1 = await users.RecordAction(action(content="tapped", request_id="rq-1"), metadata=md(key))
    r2 = await users.RecordAction(action(content="tapped", request_id="rq-1"), metadata=md(key))
    assert r1 == r2
    listed = await memory_stub.ListMemories(mpb.ListMemoriesRequest(), metadata=md(key))
    assert listed.total_size == 5


async def test_the_session_must_be_the_users(users, sessions, memory_stub, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    mine = await users.RecordAction(action(session_id=s.id), metadata=md(key))
    assert mine.memory.session_id == s.id
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.RecordAction(action("u2", session_id=s.id), metadata=md(key))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(e.value) == ({"session_id"}, "SESSION_USER_MISMATCH")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.RecordAction(action(session_id="ses_missing"), metadata=md(key))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await memory_stub.ListMemories(mpb.ListMemoriesRequest(), metadata=md(key))
    assert listed.total_size == 1


BAD = [
    (action(timestamp=None), "timestamp"),
    (action(content=""), "content"),
    (action(content="x" * 40_000), "content"),
    (action(user=""), "user_id"),
    (action(log_id="l" * 300), "log_id"),
    (action(session_id="s\x01"), "session_id"),
    (action(event_type="e" * 200), "event_type"),
    (action(page="/p" * 2000), "page"),
    (action(entities=["ok", ""]), "entities[1]"),
    (action(anchors={"": "x"}), "anchors."),
    (action(anchors={"a=b": "x"}), "anchors.a=b"),
    (action(metadata={"action.event_type": "spoof"}), "metadata.action.event_type"),
    (action(metadata={"anchor.city": "spoof"}), "metadata.anchor.city"),
    (action(metadata={"big": "x" * 17_000}), "metadata"),
]


@pytest.mark.parametrize(("request_", "field"), BAD)
async def test_bad_input_writes_nothing(
    users, memory_stub, new_key, request_: upb.RecordActionRequest, field: str
) -> None:
    _, key = await new_key()
    if field == "timestamp":
        request_.ClearField("timestamp")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.RecordAction(request_, metadata=md(key))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details(e.value)[0]
    listed = await memory_stub.ListMemories(mpb.ListMemoriesRequest(), metadata=md(key))
    assert listed.total_size == 0


async def test_projects_are_isolated(users, memory_stub, new_key) -> None:
    _, key_a = await new_key()
    _, key_b = await new_key()
    a = await users.RecordAction(action(log_id="same"), metadata=md(key_a))
    b = await users.RecordAction(action(log_id="same"), metadata=md(key_b))
    assert not b.duplicate and a.memory.id != b.memory.id
    for key, mine in ((key_a, a), (key_b, b)):
        got = await memory_stub.ListMemories(
            mpb.ListMemoriesRequest(origins=[mpb.MEMORY_ORIGIN_ACTION]), metadata=md(key)
        )
        assert [m.id for m in got.memories] == [mine.memory.id]
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.GetMemory(mpb.GetMemoryRequest(id=a.memory.id), metadata=md(key_b))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_read_key_cannot_record(users, new_key) -> None:
    project, _ = await new_key()
    _, reader = await new_key(scopes=("read",), project_id=project)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.RecordAction(action(), metadata=md(reader))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_delete_user_purges_actions(users, server: ServerHandle, new_key) -> None:
    project, key = await new_key()
    await users.RecordAction(action(log_id="gone"), metadata=md(key))
    await users.RecordAction(action("keep"), metadata=md(key))
    await users.DeleteUser(upb.DeleteUserRequest(id="u"), metadata=md(key))
    assert sum((await count_rows(server.data_dir, project, "u")).values()) == 0
    assert (await count_rows(server.data_dir, project, "keep"))["memories"] == 1
    again = await users.RecordAction(action(log_id="gone"), metadata=md(key))
    assert not again.duplicate  # the purged action is not found any more


async def test_session_actions_read_as_messages_for_extraction(
    users, sessions, server: ServerHandle, new_key
) -> None:
    project, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    await sessions.AddMessages(add(s.id, msg("I like dark colours.")), metadata=md(key))
    late = await users.RecordAction(
        action(content="User switched the theme to dark", session_id=s.id,
               timestamp=ts(datetime(2024, 5, 2, tzinfo=UTC)), event_type="preference_update"),
        metadata=md(key),
    )  # fmt: skip
    early = await users.RecordAction(
        action(content="User opened settings", session_id=s.id), metadata=md(key)
    )
    await users.RecordAction(action(content="elsewhere"), metadata=md(key))  # no session
    got = await session_actions(server.app.memories, project, "u", s.id)
    assert [(m.role, m.id, m.content) for m in got] == [
        ("action", early.memory.id, "User opened settings"),
        ("action", late.memory.id, "User switched the theme to dark"),
    ]
    assert got[0].create_time == WHEN and got[0].memory_id == early.memory.id
    assert got[1].metadata["action.event_type"] == "preference_update"
    assert await session_actions(server.app.memories, project, "u2", s.id) == []
