"""Tenant isolation: project B cannot see or touch project A's users, sessions, messages or jobs
(NOT_FOUND, never data), even for the same user ids."""

from __future__ import annotations

import grpc
import pytest

from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import sessions_pb2_grpc, users_pb2_grpc
from memgrpc.v1 import users_pb2 as upb
from tests.convhelpers import add, msg, new_session, new_user
from tests.helpers import md
from tests.memhelpers import mem, struct


@pytest.fixture(scope="module")
def users(channel: grpc.aio.Channel) -> users_pb2_grpc.UserServiceStub:
    return users_pb2_grpc.UserServiceStub(channel)


@pytest.fixture(scope="module")
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


async def test_project_b_cannot_reach_a(users, sessions, memory_stub, new_key) -> None:
    _, key_a = await new_key()
    _, key_b = await new_key()
    a = md(key_a)
    b = md(key_b)
    await users.CreateUser(new_user("shared", {"tier": "gold"}), metadata=a)
    s = await sessions.CreateSession(new_session("shared", metadata={"t": 1}), metadata=a)
    added = await sessions.AddMessages(
        add(s.id, msg("A's secret: the launch code is 1234", id="c1")), metadata=a
    )
    job = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id, wait=True), metadata=a
    )
    b_session = await sessions.CreateSession(new_session("shared"), metadata=b)
    b_memory = await memory_stub.CreateMemory(mem("shared", "B's own note"), metadata=b)

    # B's "shared" is B's own (implicit) user: none of A's metadata or messages
    theirs = await users.GetUser(upb.GetUserRequest(id="shared"), metadata=b)
    assert len(theirs.metadata) == 0
    recent = await users.ListRecentMessages(
        upb.ListRecentMessagesRequest(user_id="shared"), metadata=b
    )
    assert list(recent.messages) == []
    for call in (
        sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=b),
        sessions.UpdateSession(
            spb.UpdateSessionRequest(session=spb.Session(id=s.id, title="hacked")), metadata=b
        ),
        sessions.DeleteSession(spb.DeleteSessionRequest(id=s.id), metadata=b),
        sessions.AddMessages(add(s.id, msg("injected")), metadata=b),
        sessions.ListMessages(spb.ListMessagesRequest(session_id=s.id), metadata=b),
        sessions.ProcessSession(spb.ProcessSessionRequest(session_id=s.id), metadata=b),
        sessions.GetJob(spb.GetJobRequest(id=job.id), metadata=b),
        # A's session with B's memory, and B's session with A's memory
        sessions.LinkMemory(
            spb.LinkMemoryRequest(session_id=s.id, memory_id=b_memory.id), metadata=b
        ),
        sessions.LinkMemory(
            spb.LinkMemoryRequest(session_id=b_session.id, memory_id=added.messages[0].memory_id),
            metadata=b,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

    # B's lists never show A's rows, even with matching filters
    listed = await users.ListUsers(upb.ListUsersRequest(), metadata=b)
    assert [u.id for u in listed.users] == ["shared"]  # B's implicit user, not A's
    assert len(listed.users[0].metadata) == 0
    gold = await users.ListUsers(
        upb.ListUsersRequest(metadata_filter=struct({"tier": "gold"})), metadata=b
    )
    assert gold.total_size == 0
    b_sessions = await sessions.ListSessions(spb.ListSessionsRequest(user_id="shared"), metadata=b)
    assert [x.id for x in b_sessions.sessions] == [b_session.id]
    found = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(user_id="shared", query="launch code secret"), metadata=b
    )
    assert [r.memory.id for r in found.results] == [b_memory.id]
    # deleting B's user of the same id leaves A's alone
    await users.DeleteUser(upb.DeleteUserRequest(id="shared"), metadata=b)
    still = await sessions.ListMessages(spb.ListMessagesRequest(session_id=s.id), metadata=a)
    assert [m.id for m in still.messages] == ["c1"]
    mine = await users.GetUser(upb.GetUserRequest(id="shared"), metadata=a)
    assert mine.metadata == struct({"tier": "gold"})


async def test_read_key_cannot_write(users, sessions, new_key) -> None:
    project, key = await new_key()
    _, read_only = await new_key(scopes=("read",), project_id=project)
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    for call in (
        users.CreateUser(new_user("v"), metadata=md(read_only)),
        sessions.AddMessages(add(s.id, msg("hi")), metadata=md(read_only)),
        sessions.ProcessSession(spb.ProcessSessionRequest(session_id=s.id), metadata=md(read_only)),
        users.DeleteUser(upb.DeleteUserRequest(id="u"), metadata=md(read_only)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(read_only))
    assert got.id == s.id
    listed = await users.ListUsers(upb.ListUsersRequest(), metadata=md(read_only))
    assert listed.total_size == 1
