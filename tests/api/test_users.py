"""UserService: CRUD, implicit users, rename, list paging and filters, activity, recent messages."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.protobuf import field_mask_pb2

from memgrpc.core.conversation.records import user_from_row, user_row
from memgrpc.store.filters import Where
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import sessions_pb2_grpc, users_pb2_grpc
from memgrpc.v1 import users_pb2 as upb
from tests.convhelpers import add, msg, new_session, new_user
from tests.helpers import md
from tests.memhelpers import details, mem, struct


@pytest.fixture(scope="module")
def users(channel: grpc.aio.Channel) -> users_pb2_grpc.UserServiceStub:
    return users_pb2_grpc.UserServiceStub(channel)


@pytest.fixture(scope="module")
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


async def test_implicit_user_then_create_is_already_exists(users, memory_stub, new_key) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(mem("implicit", "Likes tea"), metadata=md(key))
    got = await users.GetUser(upb.GetUserRequest(id="implicit"), metadata=md(key))
    assert got.id == "implicit" and len(got.metadata) == 0 and got.create_time.seconds > 0
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.CreateUser(new_user("implicit"), metadata=md(key))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_every_way_to_a_user_stores_the_builders_row(
    users, memory_stub, new_key, server
) -> None:
    """Implicit creation, CreateUser and a rename all write what records.user_row makes."""
    project, key = await new_key()
    await memory_stub.CreateMemory(mem("implicit", "Likes tea"), metadata=md(key))
    await users.CreateUser(new_user("explicit", {"b": 1.0, "a": [1, "x"]}), metadata=md(key))
    await users.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(id="explicit"), new_id="renamed"), metadata=md(key)
    )
    tbl = server.app.store.table("users")
    stored = await tbl.query().where(str(Where().eq("project_id", project))).to_arrow()
    rows = stored.to_pylist()
    assert sorted(r["id"] for r in rows) == ["implicit", "renamed"]
    for row in rows:
        assert row == user_row(project, user_from_row(row))
    renamed = next(r for r in rows if r["id"] == "renamed")
    assert renamed["metadata_kv"] == ['a=[1,"x"]', "b=1"]


async def test_update_metadata_with_and_without_mask(users, new_key) -> None:
    _, key = await new_key()
    await users.CreateUser(new_user("u", {"a": 1, "b": "x"}), metadata=md(key))
    no_mask = await users.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(id="u", metadata=struct({"c": True}))),
        metadata=md(key),
    )
    assert no_mask.metadata == struct({"c": True})  # metadata is replaced as a whole
    star = await users.UpdateUser(
        upb.UpdateUserRequest(
            user=upb.User(id="u", metadata=struct({"d": 2})),
            update_mask=field_mask_pb2.FieldMask(paths=["*"]),
        ),
        metadata=md(key),
    )
    assert star.metadata == struct({"d": 2})
    got = await users.GetUser(upb.GetUserRequest(id="u"), metadata=md(key))
    assert got.metadata == struct({"d": 2})


async def test_rename_conflicts_and_same_id(users, new_key) -> None:
    _, key = await new_key()
    await users.CreateUser(new_user("a"), metadata=md(key))
    await users.CreateUser(new_user("b"), metadata=md(key))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.UpdateUser(
            upb.UpdateUserRequest(user=upb.User(id="a"), new_id="b"), metadata=md(key)
        )
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.UpdateUser(
            upb.UpdateUserRequest(user=upb.User(id="ghost"), new_id="c"), metadata=md(key)
        )
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    same = await users.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(id="a"), new_id="a"), metadata=md(key)
    )
    assert same.id == "a"


async def test_rename_carries_every_kind_of_row(users, sessions, memory_stub, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("old"), metadata=md(key))
    await sessions.AddMessages(add(s.id, msg("I play the cello on Sundays.")), metadata=md(key))
    m = await memory_stub.CreateMemory(mem("old", "Owns a cat named Miso"), metadata=md(key))
    await memory_stub.UpdateMemory(
        mpb.UpdateMemoryRequest(memory=mpb.Memory(id=m.id, content="Owns two cats")),
        metadata=md(key),
    )
    job = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id, wait=True), metadata=md(key)
    )
    await users.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(id="old"), new_id="new"), metadata=md(key)
    )
    listed = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(user_id="new"), metadata=md(key)
    )
    assert listed.total_size == 4  # message, summary, the fact extracted from it, the cat
    assert {x.user_id for x in listed.memories} == {"new"}
    versions = await memory_stub.ListMemoryVersions(
        mpb.ListMemoryVersionsRequest(id=m.id), metadata=md(key)
    )
    assert [v.content for v in versions.versions] == ["Owns two cats", "Owns a cat named Miso"]
    msgs = await sessions.ListMessages(spb.ListMessagesRequest(session_id=s.id), metadata=md(key))
    assert [x.user_id for x in msgs.messages] == ["new"]
    got_s = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got_s.user_id == "new"
    assert (await sessions.GetJob(spb.GetJobRequest(id=job.id), metadata=md(key))).id == job.id
    listed_sessions = await sessions.ListSessions(
        spb.ListSessionsRequest(user_id="old"), metadata=md(key)
    )
    assert listed_sessions.total_size == 0
    recent = await users.ListRecentMessages(
        upb.ListRecentMessagesRequest(user_id="new"), metadata=md(key)
    )
    assert [x.content for x in recent.messages] == ["I play the cello on Sundays."]


async def test_list_users_pages_every_row_once(users, memory_stub, new_key) -> None:
    _, key = await new_key()
    # same create_time for the implicit batch: ties are broken by id
    await memory_stub.BatchMemories(
        mpb.BatchMemoriesRequest(
            operations=[mpb.BatchOperation(create=mem(f"batch-{i:02d}", "x")) for i in range(7)]
        ),
        metadata=md(key),
    )
    for i in range(6):
        role = "admin" if i % 2 else "member"
        await users.CreateUser(new_user(f"named-{i}", {"role": role, "n": i}), metadata=md(key))
    seen: list[str] = []
    token = ""
    while True:
        page = await users.ListUsers(
            upb.ListUsersRequest(page_size=4, page_token=token), metadata=md(key)
        )
        assert page.total_size == 13
        assert len(page.users) <= 4
        seen += [u.id for u in page.users]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted({*seen}) and len(seen) == 13
    assert seen[-6:] == [f"named-{i}" for i in range(6)]  # oldest first
    admins = await users.ListUsers(
        upb.ListUsersRequest(page_size=2, metadata_filter=struct({"role": "admin"})),
        metadata=md(key),
    )
    assert admins.total_size == 3 and len(admins.users) == 2 and admins.next_page_token
    rest = await users.ListUsers(
        upb.ListUsersRequest(
            page_size=2,
            metadata_filter=struct({"role": "admin"}),
            page_token=admins.next_page_token,
        ),
        metadata=md(key),
    )
    assert [u.id for u in [*admins.users, *rest.users]] == ["named-1", "named-3", "named-5"]
    both = await users.ListUsers(
        upb.ListUsersRequest(metadata_filter=struct({"role": "admin", "n": 3})), metadata=md(key)
    )
    assert [u.id for u in both.users] == ["named-3"]
    # a token belongs to its filters
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.ListUsers(
            upb.ListUsersRequest(page_token=admins.next_page_token), metadata=md(key)
        )
    assert "page_token" in details(e.value)[0]


async def test_last_active_is_coalesced_then_flushed(users, memory_stub, new_key, server) -> None:
    project, key = await new_key()
    created = await users.CreateUser(new_user("busy"), metadata=md(key))
    registry = server.app.memories.users
    writer = server.app.store.writer("users")
    commits, started = writer.stats.commits, time.monotonic()
    await asyncio.gather(
        *(memory_stub.CreateMemory(mem("busy", f"note {i}"), metadata=md(key)) for i in range(20))
    )
    # no commit per write: only the periodic flushes that fell in meanwhile (one per started
    # interval; a slow machine may take more than one)
    flushes = 1 + int((time.monotonic() - started) / registry.flush_interval_s)
    assert writer.stats.commits - commits <= min(flushes, 10)
    got = await users.GetUser(upb.GetUserRequest(id="busy"), metadata=md(key))
    assert got.last_active_time.ToDatetime() > created.last_active_time.ToDatetime()
    await registry.flush()
    assert registry.pending(project, "busy") is None
    # what the store now holds (this replica's pending value is gone after the flush)
    again = await users.GetUser(upb.GetUserRequest(id="busy"), metadata=md(key))
    assert again.last_active_time == got.last_active_time


async def test_recent_messages_across_sessions(users, sessions, new_key) -> None:
    _, key = await new_key()
    s1 = await sessions.CreateSession(new_session("r"), metadata=md(key))
    s2 = await sessions.CreateSession(new_session("r"), metadata=md(key))
    other = await sessions.CreateSession(new_session("someone-else"), metadata=md(key))
    await sessions.AddMessages(add(s1.id, msg("one"), msg("two")), metadata=md(key))
    await sessions.AddMessages(add(s2.id, msg("three")), metadata=md(key))
    await sessions.AddMessages(add(other.id, msg("not mine")), metadata=md(key))
    await sessions.AddMessages(add(s1.id, msg("four"), msg("five")), metadata=md(key))
    got = await users.ListRecentMessages(
        upb.ListRecentMessagesRequest(user_id="r", n=4), metadata=md(key)
    )
    assert [m.content for m in got.messages] == ["two", "three", "four", "five"]
    assert [m.session_id for m in got.messages] == [s1.id, s2.id, s1.id, s1.id]
    many = await users.ListRecentMessages(
        upb.ListRecentMessagesRequest(user_id="r", n=1000), metadata=md(key)
    )
    assert len(many.messages) == 5
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.ListRecentMessages(
            upb.ListRecentMessagesRequest(user_id="nobody"), metadata=md(key)
        )
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert details(e.value)[1] == "USER_NOT_FOUND"


async def test_create_user_retry_with_request_id(users, new_key) -> None:
    _, key = await new_key()
    req = new_user("retry", {"k": "v"})
    req.request_id = "create-1"
    first = await users.CreateUser(req, metadata=md(key))
    second = await users.CreateUser(req, metadata=md(key))  # not ALREADY_EXISTS
    assert first == second
