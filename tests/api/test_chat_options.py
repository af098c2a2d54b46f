"""Chat options (Sonzai chat): agent, history messages, user details, tools, session defaults,
memory_mode, and a background turn's phase and side effects. A real server whose `openai`
provider is a loopback fake (tests/llm/fakellm.py); the default provider stays local."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import grpc
import pytest

from memgrpc.core.agents.turns import Mood, Scope
from memgrpc.core.conversation.records import Message, Session
from memgrpc.embed import Embedder
from memgrpc.server.app import start
from memgrpc.v1 import agents_pb2 as apb
from memgrpc.v1 import agents_pb2_grpc, chat_pb2_grpc, memory_pb2_grpc, sessions_pb2_grpc
from memgrpc.v1 import chat_pb2 as pb
from memgrpc.v1 import sessions_pb2 as spb
from tests.conftest import NewKey, ServerHandle, make_config
from tests.convhelpers import eventually
from tests.helpers import md
from tests.llm.fakellm import TOOL_CALLS, FakeLLM
from tests.memhelpers import details, mem, struct

DOG = "The user's dog is named Biscuit."


@pytest.fixture(scope="module")
async def fake_llm() -> AsyncIterator[FakeLLM]:
    server = await FakeLLM(slow_interval_s=0.05).start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, fake_llm: FakeLLM
) -> AsyncIterator[ServerHandle]:
    data_dir = tmp_path_factory.mktemp("data")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    config = make_config(
        data_dir,
        admin_key,
        openai_base_url=fake_llm.base_url,
        openai_model="fast",
        openai_timeout_s=2.0,
        async_recall_deadline_ms=50.0,
    )
    running = await start(config, embedder=shared_embedder)
    try:
        yield ServerHandle(running.address, data_dir, admin_key, running.app, running)
    finally:
        await running.stop(1.0)


@pytest.fixture(scope="module")
def chat(channel: grpc.aio.Channel) -> chat_pb2_grpc.ChatServiceStub:
    return chat_pb2_grpc.ChatServiceStub(channel)


@pytest.fixture(scope="module")
def agents(channel: grpc.aio.Channel) -> agents_pb2_grpc.AgentServiceStub:
    return agents_pb2_grpc.AgentServiceStub(channel)


@pytest.fixture(scope="module")
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


async def new_agent(stub: agents_pb2_grpc.AgentServiceStub, key: str, **kw: object) -> apb.Agent:
    agent = apb.Agent(display_name="Ava", **kw)  # type: ignore[arg-type]
    return await stub.CreateAgent(apb.CreateAgentRequest(agent=agent), metadata=md(key))


async def events(stub: chat_pb2_grpc.ChatServiceStub, key: str, **kw: object) -> list[pb.ChatEvent]:
    return [ev async for ev in stub.Chat(pb.ChatRequest(**kw), metadata=md(key))]  # type: ignore[arg-type]


def text_of(evs: Sequence[pb.ChatEvent]) -> str:
    return "".join(e.delta.text for e in evs if e.HasField("delta"))


def system_of(fake: FakeLLM, model: str) -> str:
    first = fake.last(model).body["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


async def test_agent_persona_user_details_and_history_reach_the_model(
    chat: chat_pb2_grpc.ChatServiceStub,
    agents: agents_pb2_grpc.AgentServiceStub,
    sessions: sessions_pb2_grpc.SessionServiceStub,
    new_key: NewKey,
    fake_llm: FakeLLM,
) -> None:
    _, key = await new_key()
    ava = await new_agent(
        agents,
        key,
        system_prompt="You are a ship's cook who loves stew.",
        personality=apb.Personality(
            big_five=apb.BigFive(extraversion=0.9, agreeableness=0.1), dimensions={"humor": 7}
        ),
    )
    evs = await events(
        chat,
        key,
        user_id="u1",
        agent_id=ava.id,
        provider="openai",
        messages=[
            pb.ChatMessage(role="user", content="Earlier question"),
            pb.ChatMessage(role="assistant", content="Earlier answer"),
            pb.ChatMessage(role="user", content="What's for dinner?"),
        ],
        user_display_name="Kim",
        language="de",
        timezone="Europe/Berlin",
        tool_capabilities=["web_search"],
    )
    assert text_of(evs) == "Hello from the fake model."
    session_id = evs[0].started.session_id
    system = system_of(fake_llm, "fast")
    for part in (
        "You are a ship's cook who loves stew.",
        "You are Ava.",
        "outgoing and talkative",
        "frank and direct",
        "humor 7/10",
        "Kim",
        "code de",
        "Europe/Berlin",
        "web_search",
    ):
        assert part in system, part
    sent = fake_llm.last("fast").body["messages"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "Earlier question"),
        ("assistant", "Earlier answer"),
        ("user", "What's for dinner?"),
    ]
    # the session was made for the agent; the history was sent, not stored
    got = await sessions.GetSession(spb.GetSessionRequest(id=session_id), metadata=md(key))
    assert got.agent_id == ava.id
    listed = await sessions.ListMessages(
        spb.ListMessagesRequest(session_id=session_id), metadata=md(key)
    )
    assert [(m.role, m.content) for m in listed.messages] == [
        ("user", "What's for dinner?"),
        ("assistant", "Hello from the fake model."),
    ]
    # the next turn in the session needs no agent_id: the session's agent speaks
    await events(chat, key, session_id=session_id, message="And dessert?", provider="openai")
    assert "You are Ava." in system_of(fake_llm, "fast")
    # an update shows in the very next turn (turns read the agent through a short cache)
    await agents.UpdateAgent(
        apb.UpdateAgentRequest(agent=apb.Agent(id=ava.id, system_prompt="You bake bread.")),
        metadata=md(key),
    )
    await events(chat, key, session_id=session_id, message="And now?", provider="openai")
    system = system_of(fake_llm, "fast")
    assert "You bake bread." in system and "stew" not in system


async def test_bad_options_are_field_violations_and_write_nothing(
    chat: chat_pb2_grpc.ChatServiceStub,
    sessions: sessions_pb2_grpc.SessionServiceStub,
    new_key: NewKey,
) -> None:
    _, key = await new_key()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await events(
            chat,
            key,
            user_id="u1",
            messages=[
                pb.ChatMessage(role="wizard", content="x"),
                pb.ChatMessage(role="assistant", content="last is not the user's"),
            ],
            language="not a language",
            timezone="Mars/Olympus",
            tool_capabilities=["has space"],
            tool_definitions=[
                pb.ToolDefinition(name="bad name!"),
                pb.ToolDefinition(name="ok", parameters=struct({"type": "string"})),
                pb.ToolDefinition(name="ok"),
            ],
            agent_id="agt\x01bad",
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields, _ = details(err.value)
    assert fields >= {
        "messages[0].role",
        "messages",
        "message",
        "language",
        "timezone",
        "tool_capabilities[0]",
        "tool_definitions[0].name",
        "tool_definitions[1].parameters",
        "tool_definitions[2].name",
        "agent_id",
    }
    listed = await sessions.ListSessions(spb.ListSessionsRequest(user_id="u1"), metadata=md(key))
    assert listed.total_size == 0


async def test_agent_scope_is_checked(
    chat: chat_pb2_grpc.ChatServiceStub,
    agents: agents_pb2_grpc.AgentServiceStub,
    sessions: sessions_pb2_grpc.SessionServiceStub,
    new_key: NewKey,
) -> None:
    _, key = await new_key()
    _, other = await new_key()
    theirs = await new_agent(agents, other)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await events(chat, key, user_id="u1", agent_id=theirs.id, message="hi")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert details(err.value)[1] == "AGENT_NOT_FOUND"
    listed = await sessions.ListSessions(spb.ListSessionsRequest(user_id="u1"), metadata=md(key))
    assert listed.total_size == 0
    ava, bo = await new_agent(agents, key), await new_agent(agents, key)
    made = await sessions.CreateSession(
        spb.CreateSessionRequest(session=spb.Session(user_id="u1", agent_id=ava.id)),
        metadata=md(key),
    )
    plain = await sessions.CreateSession(
        spb.CreateSessionRequest(session=spb.Session(user_id="u1")), metadata=md(key)
    )
    for session_id in (made.id, plain.id):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await events(chat, key, session_id=session_id, agent_id=bo.id, message="hi")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "agent_id" in details(err.value)[0]
    # the same agent is fine; nothing was stored by the refused turns
    await events(chat, key, session_id=made.id, agent_id=ava.id, message="hi")
    for s, n in ((made.id, 2), (plain.id, 0)):
        got = await sessions.GetSession(spb.GetSessionRequest(id=s), metadata=md(key))
        assert got.message_count == n


async def test_tool_calls_stream_as_events_and_are_recorded(
    chat: chat_pb2_grpc.ChatServiceStub,
    sessions: sessions_pb2_grpc.SessionServiceStub,
    new_key: NewKey,
    fake_llm: FakeLLM,
) -> None:
    _, key = await new_key()
    weather = pb.ToolDefinition(
        name="get_weather",
        description="Weather in a city",
        parameters=struct({"type": "object", "properties": {"city": {"type": "string"}}}),
    )
    evs = await events(
        chat,
        key,
        user_id="u1",
        message="Weather in Paris?",
        provider="openai",
        model="tools",
        tool_definitions=[weather],
    )
    calls = [
        (e.tool_call.id, e.tool_call.name, e.tool_call.arguments)
        for e in evs
        if e.HasField("tool_call")
    ]
    assert calls == TOOL_CALLS
    kinds = [e.WhichOneof("event") for e in evs]
    assert kinds[-1] == "done" and kinds.index("tool_call") < kinds.index("done")
    tools = fake_llm.last("tools").body["tools"]
    assert tools[0]["type"] == "function" and tools[0]["function"]["name"] == "get_weather"
    assert tools[0]["function"]["parameters"]["properties"] == {"city": {"type": "string"}}
    listed = await sessions.ListMessages(
        spb.ListMessagesRequest(session_id=evs[0].started.session_id), metadata=md(key)
    )
    reply = listed.messages[-1]
    assert reply.role == "assistant" and reply.content == "Let me check."
    recorded = [dict(c) for c in reply.metadata["tool_calls"]]
    assert [(c["id"], c["name"], c["arguments"]) for c in recorded] == TOOL_CALLS


async def test_session_defaults_pick_provider_and_model(
    chat: chat_pb2_grpc.ChatServiceStub,
    sessions: sessions_pb2_grpc.SessionServiceStub,
    new_key: NewKey,
    fake_llm: FakeLLM,
) -> None:
    _, key = await new_key()
    made = await sessions.CreateSession(
        spb.CreateSessionRequest(
            session=spb.Session(user_id="u1", provider="openai", model="nousage")
        ),
        metadata=md(key),
    )
    before = len(fake_llm.seen)
    evs = await events(chat, key, session_id=made.id, message="hi")
    assert text_of(evs) == "two words"
    assert fake_llm.seen[before].body["model"] == "nousage"
    # the request's own choice wins
    evs = await events(chat, key, session_id=made.id, message="hi", provider="local")
    assert "built-in responder" in text_of(evs)


async def test_async_memory_mode_does_not_wait_and_the_late_recall_serves_the_next_turn(
    chat: chat_pb2_grpc.ChatServiceStub,
    agents: agents_pb2_grpc.AgentServiceStub,
    memory_stub: memory_pb2_grpc.MemoryServiceStub,
    new_key: NewKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(mem("u1", DOG), metadata=md(key))
    fast = await new_agent(
        agents, key, capabilities=apb.Capabilities(memory_mode=apb.MEMORY_MODE_ASYNC)
    )
    waits = await new_agent(
        agents, key, capabilities=apb.Capabilities(memory_mode=apb.MEMORY_MODE_SYNC)
    )
    monkeypatch.setenv("MEMGRPC_TEST_RECALL_DELAY_MS", "600")

    async def timed(**kw: object) -> tuple[float, list[pb.ChatEvent]]:
        t0 = time.perf_counter()
        first, out = 0.0, []
        async for ev in chat.Chat(pb.ChatRequest(**kw), metadata=md(key)):  # type: ignore[arg-type]
            if ev.HasField("delta") and not first:
                first = time.perf_counter() - t0
            out.append(ev)
        return first, out

    def recalled(evs: list[pb.ChatEvent]) -> list[str]:
        ctx = next(e.context for e in evs if e.HasField("context"))
        return [r.memory.content for r in ctx.memories]

    first, evs = await timed(user_id="u1", agent_id=fast.id, message="What is my dog's name?")
    assert first < 0.5  # did not wait for the 600 ms recall
    assert DOG not in recalled(evs)
    session_id = evs[0].started.session_id
    await asyncio.sleep(0.8)  # the late recall lands
    _, evs = await timed(session_id=session_id, message="Is my dog named Biscuit?")
    assert DOG in recalled(evs)  # the previous turn's late memories
    assert "Biscuit" in text_of(evs)
    first, evs = await timed(user_id="u1", agent_id=waits.id, message="What is my dog's name?")
    assert first >= 0.6  # SYNC waits for recall
    assert DOG in recalled(evs)


class RecordingHook:
    """A TurnHook of this test (the context engine is built elsewhere): a mood that warms by
    0.1 valence per observed turn."""

    def __init__(self) -> None:
        self.moods: dict[Scope, Mood] = {}
        self.turns: list[list[str]] = []

    async def observe_turn(
        self, project_id: str, session: Session, messages: Sequence[Message]
    ) -> Mood | None:
        if not session.agent_id:
            return None
        scope = Scope(session.agent_id, session.user_id, session.instance_id)
        self.turns.append([m.content for m in messages])
        m = self.moods.get(scope, Mood())
        now = datetime.now(UTC)
        self.moods[scope] = replace(m, valence=m.valence + 0.1, turns=m.turns + 1, update_time=now)
        return self.moods[scope]

    async def mood(self, project_id: str, scope: Scope) -> Mood:
        return self.moods.get(scope, Mood())


async def test_background_turn_reports_phase_and_side_effects(
    server: ServerHandle,
    chat: chat_pb2_grpc.ChatServiceStub,
    agents: agents_pb2_grpc.AgentServiceStub,
    new_key: NewKey,
    fake_llm: FakeLLM,
) -> None:
    _, key = await new_key()
    hook = RecordingHook()
    server.app.chat.service.hook = hook
    try:
        ava = await new_agent(agents, key)
        queued = await chat.ChatAsync(
            pb.ChatRequest(
                user_id="u1",
                agent_id=ava.id,
                message="I live in Bergen and I love kayaking.",
                provider="openai",
                model="slow",
            ),
            metadata=md(key),
        )
        req = pb.GetChatResultRequest(processing_id=queued.processing_id)
        phases: set[str] = set()

        async def complete() -> bool:
            got = await chat.GetChatResult(req, metadata=md(key))
            phases.add(got.phase)
            return got.status == pb.CHAT_STATUS_COMPLETE

        await eventually(complete, every_s=0.05)
        assert "generating" in phases
        done = await chat.GetChatResult(req, metadata=md(key))
        assert done.phase == ""
        fx = done.side_effects
        assert fx.facts_extracted >= 1 and len(fx.memory_ids) >= 1
        assert fx.HasField("mood_before") and fx.HasField("mood_after")
        assert fx.mood_before.turns == 0 and fx.mood_after.turns == 1
        assert fx.mood_after.valence > fx.mood_before.valence
        assert hook.turns[-1][0] == "I live in Bergen and I love kayaking."
        # a plain session's background turn has no side effects
        queued = await chat.ChatAsync(
            pb.ChatRequest(user_id="u2", message="hello"), metadata=md(key)
        )
        req = pb.GetChatResultRequest(processing_id=queued.processing_id)
        await eventually(complete, every_s=0.05)
        plain = await chat.GetChatResult(req, metadata=md(key))
        assert not plain.side_effects.HasField("mood_after")
        assert plain.side_effects.facts_extracted == 0
    finally:
        server.app.chat.service.hook = None


async def test_background_turn_records_tool_calls(
    chat: chat_pb2_grpc.ChatServiceStub, new_key: NewKey
) -> None:
    _, key = await new_key()
    queued = await chat.ChatAsync(
        pb.ChatRequest(
            user_id="u1",
            message="Weather?",
            provider="openai",
            model="tools",
            tool_definitions=[pb.ToolDefinition(name="get_weather")],
        ),
        metadata=md(key),
    )
    req = pb.GetChatResultRequest(processing_id=queued.processing_id)

    async def complete() -> bool:
        got = await chat.GetChatResult(req, metadata=md(key))
        return got.status == pb.CHAT_STATUS_COMPLETE

    await eventually(complete, every_s=0.05)
    done = await chat.GetChatResult(req, metadata=md(key))
    assert [(c.id, c.name, c.arguments) for c in done.tool_calls] == TOOL_CALLS


async def test_a_replayed_turn_replays_its_tool_calls(
    chat: chat_pb2_grpc.ChatServiceStub, new_key: NewKey, fake_llm: FakeLLM
) -> None:
    _, key = await new_key()
    req = {
        "user_id": "u1",
        "message": "Weather?",
        "provider": "openai",
        "model": "tools",
        "tool_definitions": [pb.ToolDefinition(name="get_weather")],
        "request_id": "tools-1",
    }
    first = await events(chat, key, **req)
    calls = [e.tool_call for e in first if e.HasField("tool_call")]
    asked = len(fake_llm.seen)

    async def replayed() -> bool:
        again = await events(chat, key, **req)
        return [e.tool_call for e in again if e.HasField("tool_call")] == calls

    await eventually(replayed)  # once the first attempt's row is complete
    assert len(fake_llm.seen) == asked  # replayed, not run again
    assert [(c.id, c.name, c.arguments) for c in calls] == TOOL_CALLS
