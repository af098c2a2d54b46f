"""SubmitTurn and EndSession (Sonzai sessions.turn / sessions.end) through the stubs against a
real server: messages stored and indexed, mood moved through the TurnHook, an extract_turn job
(GetJob) that leaves the session ACTIVE, the next context, request_id replay, bad input with
nothing written, another project's session NOT_FOUND, and an idempotent end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2

from memgrpc.v1 import agents_pb2 as apb
from memgrpc.v1 import (
    agents_pb2_grpc,
    context_pb2,
    context_pb2_grpc,
    memory_pb2_grpc,
    sessions_pb2_grpc,
)
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from tests.api.test_chat_options import RecordingHook
from tests.conftest import NewKey, ServerHandle
from tests.convhelpers import eventually, msg
from tests.helpers import md
from tests.memhelpers import details, mem


@pytest.fixture(scope="module")
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


@pytest.fixture
async def hook(server: ServerHandle) -> AsyncIterator[RecordingHook]:
    h = RecordingHook()
    server.app.chat.set_turn_hook(h)
    yield h
    server.app.chat.set_turn_hook(None)


async def agent_session(channel: grpc.aio.Channel, key: str, user: str = "u1") -> spb.Session:
    agents = agents_pb2_grpc.AgentServiceStub(channel)
    ava = await agents.CreateAgent(
        apb.CreateAgentRequest(agent=apb.Agent(display_name="Ava")), metadata=md(key)
    )
    stub = sessions_pb2_grpc.SessionServiceStub(channel)
    return await stub.CreateSession(
        spb.CreateSessionRequest(session=spb.Session(user_id=user, agent_id=ava.id)),
        metadata=md(key),
    )


async def job_done(stub: sessions_pb2_grpc.SessionServiceStub, key: str, job_id: str) -> spb.Job:
    async def done() -> bool:
        j = await stub.GetJob(spb.GetJobRequest(id=job_id), metadata=md(key))
        return j.state in (spb.JOB_STATE_DONE, spb.JOB_STATE_FAILED)

    await eventually(done)
    return await stub.GetJob(spb.GetJobRequest(id=job_id), metadata=md(key))


async def test_turn_stores_moves_mood_extracts_and_returns_next_context(
    channel: grpc.aio.Channel,
    sessions: sessions_pb2_grpc.SessionServiceStub,
    memory_stub: memory_pb2_grpc.MemoryServiceStub,
    new_key: NewKey,
    hook: RecordingHook,
) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(mem("u1", "The user's dog is named Biscuit."), metadata=md(key))
    s = await agent_session(channel, key)
    resp = await sessions.SubmitTurn(
        spb.SubmitTurnRequest(
            session_id=s.id,
            messages=[
                msg("I live in Bergen and my dog Biscuit loves the snow."),
                msg("Bergen sounds lovely!", role="assistant"),
            ],
            fetch_next_context=True,
            next_context_query="What is my dog called?",
        ),
        metadata=md(key),
    )
    assert [m.role for m in resp.messages] == ["user", "assistant"]
    assert all(m.memory_id for m in resp.messages)  # indexed like AddMessages
    assert resp.mood.turns == 1 and resp.mood.valence > 0
    assert hook.turns[-1][0].startswith("I live in Bergen")
    assert "Biscuit" in resp.next_context.context
    recalled = [r.memory.content for r in resp.next_context.memories]
    assert "The user's dog is named Biscuit." in recalled
    assert resp.next_context.token_count > 0
    same = await context_pb2_grpc.ContextServiceStub(channel).GetContext(
        context_pb2.GetContextRequest(
            user_id="u1", session_id=s.id, query="What is my dog called?", agent_id=s.agent_id
        ),
        metadata=md(key),
    )
    assert same.context == resp.next_context.context  # rendered as GetContext renders it
    job = await job_done(sessions, key, resp.extraction_job_id)
    assert job.kind == "extract_turn" and job.state == spb.JOB_STATE_DONE
    assert job.stats.facts_extracted >= 1 and job.stats.facts_added >= 1
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got.status == spb.SESSION_STATUS_ACTIVE and got.message_count == 2
    facts = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(user_id="u1", origins=[mpb.MEMORY_ORIGIN_EXTRACTED]),
        metadata=md(key),
    )
    assert any("Bergen" in m.content for m in facts.memories)
    # a second turn: the mood moves on; a budget bounds the context; no context unless asked
    resp = await sessions.SubmitTurn(
        spb.SubmitTurnRequest(session_id=s.id, messages=[msg("Thanks, bye!")]),
        metadata=md(key),
    )
    assert resp.mood.turns == 2 and not resp.HasField("next_context")


async def test_turn_without_agent_has_no_mood(
    sessions: sessions_pb2_grpc.SessionServiceStub, new_key: NewKey, hook: RecordingHook
) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(
        spb.CreateSessionRequest(session=spb.Session(user_id="u1")), metadata=md(key)
    )
    resp = await sessions.SubmitTurn(
        spb.SubmitTurnRequest(
            session_id=s.id,
            messages=[msg("hello")],
            fetch_next_context=True,
            next_context_query="anything",
            token_budget=50,
        ),
        metadata=md(key),
    )
    assert not resp.HasField("mood") and resp.extraction_job_id
    assert resp.next_context.token_count <= 50


async def test_turn_request_id_replays(
    channel: grpc.aio.Channel, sessions: sessions_pb2_grpc.SessionServiceStub, new_key: NewKey
) -> None:
    _, key = await new_key()
    s = await agent_session(channel, key)
    req = spb.SubmitTurnRequest(session_id=s.id, messages=[msg("once")], request_id="turn-1")
    first = await sessions.SubmitTurn(req, metadata=md(key))
    again = await sessions.SubmitTurn(req, metadata=md(key))
    assert again == first
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got.message_count == 1


async def test_bad_turns_write_nothing(
    channel: grpc.aio.Channel, sessions: sessions_pb2_grpc.SessionServiceStub, new_key: NewKey
) -> None:
    _, key = await new_key()
    _, other = await new_key()
    s = await agent_session(channel, key)
    bad = [
        (spb.SubmitTurnRequest(session_id=s.id), {"messages"}),
        (
            spb.SubmitTurnRequest(session_id=s.id, messages=[msg("x")] * 101, token_budget=-1),
            {"messages", "token_budget"},
        ),
        (
            spb.SubmitTurnRequest(session_id=s.id, messages=[msg("ok"), msg("  ")]),
            {"messages[1].content"},
        ),
        (spb.SubmitTurnRequest(messages=[msg("x")]), {"session_id"}),
    ]
    for req, fields in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await sessions.SubmitTurn(req, metadata=md(key))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(err.value)[0] >= fields
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got.message_count == 0
    for call in (
        sessions.SubmitTurn(
            spb.SubmitTurnRequest(session_id=s.id, messages=[msg("x")]), metadata=md(other)
        ),
        sessions.EndSession(spb.EndSessionRequest(session_id=s.id), metadata=md(other)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got.message_count == 0 and got.status == spb.SESSION_STATUS_ACTIVE


async def test_end_session_processes_records_and_is_idempotent(
    channel: grpc.aio.Channel, sessions: sessions_pb2_grpc.SessionServiceStub, new_key: NewKey
) -> None:
    _, key = await new_key()
    s = await agent_session(channel, key)
    await sessions.SubmitTurn(
        spb.SubmitTurnRequest(
            session_id=s.id,
            messages=[msg("I'm a nurse and I work nights."), msg("Noted!", role="assistant")],
        ),
        metadata=md(key),
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sessions.EndSession(
            spb.EndSessionRequest(session_id=s.id, total_messages=-1), metadata=md(key)
        )
    assert details(err.value)[0] == {"total_messages"}
    took = duration_pb2.Duration()
    took.FromTimedelta(timedelta(minutes=5))
    ended = await sessions.EndSession(
        spb.EndSessionRequest(session_id=s.id, total_messages=2, duration=took, wait=True),
        metadata=md(key),
    )
    assert ended.job.state == spb.JOB_STATE_DONE and ended.job.kind == "process_session"
    assert ended.session.status == spb.SESSION_STATUS_PROCESSED
    end = dict(ended.session.metadata["session_end"])
    assert end["total_messages"] == 2 and end["duration_seconds"] == 300
    assert end["stored_messages"] == 2
    again = await sessions.EndSession(
        spb.EndSessionRequest(session_id=s.id, total_messages=99), metadata=md(key)
    )
    assert again.job.id == ended.job.id
    assert dict(again.session.metadata["session_end"])["total_messages"] == 2
    # an ended session takes no more turns
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sessions.SubmitTurn(
            spb.SubmitTurnRequest(session_id=s.id, messages=[msg("more")]), metadata=md(key)
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
