"""DeleteUser is a purge: every row of the user in every table is gone, others stay."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from memgrpc.store.owned import USER_COLUMNS
from memgrpc.v1 import agent_state_pb2 as sapb
from memgrpc.v1 import agents_pb2 as apb
from memgrpc.v1 import agents_pb2_grpc, chat_pb2_grpc, sessions_pb2_grpc, users_pb2_grpc
from memgrpc.v1 import chat_pb2 as cpb
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import users_pb2 as upb
from tests.conftest import ServerHandle
from tests.convhelpers import USER_TABLES, add, count_rows, msg, new_session, new_user
from tests.helpers import md
from tests.memhelpers import mem


@pytest.fixture(scope="module")
def users(channel: grpc.aio.Channel) -> users_pb2_grpc.UserServiceStub:
    return users_pb2_grpc.UserServiceStub(channel)


@pytest.fixture(scope="module")
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


async def _populate(
    users, sessions, memory_stub, channel, key: str, user: str
) -> tuple[str, str, str]:
    """A user with a row in every table; returns (session id, memory id, job id)."""
    await users.CreateUser(
        new_user(user, {"plan": "pro"}, request_id=f"cu-{user}"), metadata=md(key)
    )
    s = await sessions.CreateSession(new_session(user, request_id=f"cs-{user}"), metadata=md(key))
    await sessions.AddMessages(
        add(s.id, msg(f"{user} likes sailing in Croatia."), msg("Noted.", role="assistant"),
            # two homes without a change marker: extraction opens a merge conflict
            msg("I live in Oslo."), msg("I live in Bergen."), request_id=f"am-{user}"),
        metadata=md(key),
    )  # fmt: skip
    m = await memory_stub.CreateMemory(mem(user, f"{user} has a dog"), metadata=md(key))
    await memory_stub.UpdateMemory(
        mpb.UpdateMemoryRequest(memory=mpb.Memory(id=m.id, content=f"{user} has two dogs")),
        metadata=md(key),
    )
    job = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id, wait=True, request_id=f"ps-{user}"),
        metadata=md(key),
    )
    assert job.state == spb.JOB_STATE_DONE
    chat = chat_pb2_grpc.ChatServiceStub(channel)  # a recorded turn: a chat_results row
    events = chat.Chat(
        cpb.ChatRequest(user_id=user, message="hello", request_id=f"ch-{user}"), metadata=md(key)
    )
    assert [ev async for ev in events][-1].HasField("done")
    await _agent_state(channel, sessions, key, user)
    return s.id, m.id, job.id


async def _agent_state(channel, sessions, key: str, user: str) -> None:
    """Rows in the agent tables: a past-dated agent session (relation, events), processed
    (a diary row), and its notification checks run (notifications)."""
    agents = agents_pb2_grpc.AgentServiceStub(channel)
    agent = await agents.CreateAgent(
        apb.CreateAgentRequest(agent=apb.Agent(display_name="Ava")), metadata=md(key)
    )
    s = await sessions.CreateSession(new_session(user, agent_id=agent.id), metadata=md(key))
    said = msg("My exam is tomorrow.")
    said.create_time.FromDatetime(datetime.now(UTC) - timedelta(days=30))
    await sessions.AddMessages(add(s.id, said), metadata=md(key))
    await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id, wait=True), metadata=md(key)
    )
    await agents.RunNotificationChecks(
        sapb.RunNotificationChecksRequest(agent_id=agent.id), metadata=md(key)
    )
    await agents.CreateState(  # a USER-scoped custom state
        sapb.CreateStateRequest(
            state=sapb.CustomState(
                agent_id=agent.id, scope=sapb.STATE_SCOPE_USER, user_id=user, key="k", text="x"
            )
        ),
        metadata=md(key),
    )


async def test_purge_removes_every_row(
    users, sessions, memory_stub, channel, new_key, server: ServerHandle
) -> None:
    project, key = await new_key()
    populate = functools.partial(_populate, users, sessions, memory_stub, channel, key)
    gone_session, gone_memory, gone_job = await populate("gone")
    await populate("stays")
    before = await count_rows(server.data_dir, project, "gone")
    assert all(n > 0 for n in before.values()), before  # every table holds some of it
    kept = await count_rows(server.data_dir, project, "stays")

    await users.DeleteUser(upb.DeleteUserRequest(id="gone"), metadata=md(key))

    after = await count_rows(server.data_dir, project, "gone")
    assert after == dict.fromkeys(after, 0), after
    assert await count_rows(server.data_dir, project, "stays") == kept
    # and no RPC finds anything of it
    for call in (
        users.GetUser(upb.GetUserRequest(id="gone"), metadata=md(key)),
        users.ListRecentMessages(upb.ListRecentMessagesRequest(user_id="gone"), metadata=md(key)),
        users.DeleteUser(upb.DeleteUserRequest(id="gone"), metadata=md(key)),
        sessions.GetSession(spb.GetSessionRequest(id=gone_session), metadata=md(key)),
        sessions.ListMessages(spb.ListMessagesRequest(session_id=gone_session), metadata=md(key)),
        sessions.GetJob(spb.GetJobRequest(id=gone_job), metadata=md(key)),
        memory_stub.GetMemory(mpb.GetMemoryRequest(id=gone_memory), metadata=md(key)),
        memory_stub.ListMemoryVersions(
            mpb.ListMemoryVersionsRequest(id=gone_memory), metadata=md(key)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    found = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(query="sailing in Croatia dogs"), metadata=md(key)
    )
    assert {r.memory.user_id for r in found.results} == {"stays"}
    listed = await users.ListUsers(upb.ListUsersRequest(), metadata=md(key))
    assert [u.id for u in listed.users] == ["stays"]
    listed_sessions = await sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(key))
    assert {s.user_id for s in listed_sessions.sessions} == {"stays"}
    # a replayed request id does not resurrect the purged session
    again = await sessions.CreateSession(
        new_session("gone", request_id="cs-gone"), metadata=md(key)
    )
    assert again.id != gone_session
    # which brought the user back (implicitly), fresh: no metadata, no old data
    back = await users.GetUser(upb.GetUserRequest(id="gone"), metadata=md(key))
    assert len(back.metadata) == 0
    listed = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(user_id="gone"), metadata=md(key)
    )
    assert listed.total_size == 0


async def test_purge_of_a_user_with_only_implicit_rows(users, memory_stub, new_key) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(mem("implicit", "A note"), metadata=md(key))
    await users.DeleteUser(upb.DeleteUserRequest(id="implicit"), metadata=md(key))
    listed = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(user_id="implicit"), metadata=md(key)
    )
    assert listed.total_size == 0
    # writing again after the purge re-creates the user (the registry forgot it)
    await memory_stub.CreateMemory(mem("implicit", "Back again"), metadata=md(key))
    got = await users.GetUser(upb.GetUserRequest(id="implicit"), metadata=md(key))
    assert got.id == "implicit"


async def test_purge_forgets_replayable_memory_replies(users, memory_stub, new_key) -> None:
    """A retried CreateMemory after a purge must not hand back the purged memory."""
    _, key = await new_key()
    req = mem("gone", "Secret: the safe code is 4711", request_id="create-1")
    first = await memory_stub.CreateMemory(req, metadata=md(key))
    assert (await memory_stub.CreateMemory(req, metadata=md(key))).id == first.id  # replay
    await users.DeleteUser(upb.DeleteUserRequest(id="gone"), metadata=md(key))
    again = await memory_stub.CreateMemory(req, metadata=md(key))
    assert again.id != first.id
    listed = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(user_id="gone"), metadata=md(key)
    )
    assert [m.id for m in listed.memories] == [again.id]


def test_the_purge_check_covers_every_user_table() -> None:
    """A table that holds users' rows is purged (store/owned.py) and checked by these tests."""
    assert set(USER_TABLES) == set(USER_COLUMNS)
