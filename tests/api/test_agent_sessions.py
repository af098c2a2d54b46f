"""Sessions that name an agent: the scope is stored and returned, checked on create (format,
existence, project) and fixed afterwards."""

from __future__ import annotations

import grpc
import pytest

from memgrpc.v1 import agents_pb2 as apb
from memgrpc.v1 import agents_pb2_grpc, sessions_pb2_grpc
from memgrpc.v1 import sessions_pb2 as spb
from tests.conftest import NewKey
from tests.helpers import md
from tests.memhelpers import details


async def test_session_keeps_its_agent_and_chat_defaults(
    channel: grpc.aio.Channel, new_key: NewKey
) -> None:
    _, key = await new_key()
    agents = agents_pb2_grpc.AgentServiceStub(channel)
    sessions = sessions_pb2_grpc.SessionServiceStub(channel)
    ava = await agents.CreateAgent(
        apb.CreateAgentRequest(agent=apb.Agent(display_name="Ava")), metadata=md(key)
    )
    made = await sessions.CreateSession(
        spb.CreateSessionRequest(
            session=spb.Session(user_id="u1", agent_id=ava.id, provider="local", model="m1")
        ),
        metadata=md(key),
    )
    assert (made.agent_id, made.provider, made.model) == (ava.id, "local", "m1")
    got = await sessions.GetSession(spb.GetSessionRequest(id=made.id), metadata=md(key))
    assert got.agent_id == ava.id and got.model == "m1"
    plain = await sessions.CreateSession(
        spb.CreateSessionRequest(session=spb.Session(user_id="u1")), metadata=md(key)
    )
    assert plain.agent_id == "" and plain.instance_id == ""


async def test_session_scope_is_checked(channel: grpc.aio.Channel, new_key: NewKey) -> None:
    _, key = await new_key()
    _, other = await new_key()
    agents = agents_pb2_grpc.AgentServiceStub(channel)
    sessions = sessions_pb2_grpc.SessionServiceStub(channel)
    theirs = await agents.CreateAgent(
        apb.CreateAgentRequest(agent=apb.Agent(display_name="Bo")), metadata=md(other)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sessions.CreateSession(
            spb.CreateSessionRequest(session=spb.Session(user_id="u1", agent_id=theirs.id)),
            metadata=md(key),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert details(err.value)[1] == "AGENT_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sessions.CreateSession(
            spb.CreateSessionRequest(
                session=spb.Session(user_id="u1", instance_id="ins_1", model="m" * 201)
            ),
            metadata=md(key),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(err.value)[0] == {"session.instance_id", "session.model"}
    listed = await sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(key))
    assert listed.total_size == 0
