"""ChatService end to end: a real server (LanceDB in a tmp dir, local embedder) whose `openai`
provider points at a real loopback SSE server started by the test (tests/llm/fakellm.py)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import lancedb
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from memgrpc.core.chat.replay import fingerprint
from memgrpc.core.chat.turn import ChatRequest
from memgrpc.core.kernel.ids import derived_id
from memgrpc.embed import Embedder
from memgrpc.server.app import start
from memgrpc.store.filters import Where
from memgrpc.v1 import chat_pb2 as pb
from memgrpc.v1 import chat_pb2_grpc, sessions_pb2_grpc
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from tests.conftest import ServerHandle, make_config
from tests.convhelpers import add, eventually, msg, new_session
from tests.helpers import md
from tests.llm.fakellm import FAST_TEXT, SLOW_DELTAS, FakeLLM
from tests.memhelpers import details, mem

DOG = "The user's dog is named Biscuit."


@pytest.fixture(scope="module")
async def fake_llm() -> AsyncIterator[FakeLLM]:
    server = await FakeLLM(slow_interval_s=0.1).start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, fake_llm: FakeLLM
) -> AsyncIterator[ServerHandle]:
    """The shared server fixture, with the openai provider configured (default stays local)."""
    data_dir = tmp_path_factory.mktemp("data")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    config = make_config(
        data_dir,
        admin_key,
        openai_base_url=fake_llm.base_url,
        openai_api_key="sk-test",
        openai_model="fast",
        openai_timeout_s=0.5,
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
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


async def turn(stub, key: str, **kw: object) -> list[pb.ChatEvent]:
    return [ev async for ev in stub.Chat(pb.ChatRequest(**kw), metadata=md(key))]  # type: ignore[arg-type]


def text_of(events: list[pb.ChatEvent]) -> str:
    return "".join(e.delta.text for e in events if e.HasField("delta"))


def kinds(events: list[pb.ChatEvent]) -> list[str]:
    return [str(e.WhichOneof("event")) for e in events]


async def messages_of(sessions, key: str, session_id: str) -> list[spb.Message]:
    r = await sessions.ListMessages(
        spb.ListMessagesRequest(session_id=session_id), metadata=md(key)
    )
    return list(r.messages)


def retry_delay_s(err: grpc.aio.AioRpcError) -> float | None:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for d in status.details:
        if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            d.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    return None


# -- stream shape, grounding, storage ---------------------------------------------------------
async def test_stream_shape_and_order(chat, new_key) -> None:
    _, key = await new_key()
    events = await turn(chat, key, user_id="ana", message="Hello!")
    k = kinds(events)
    assert k[0] == "started" and k[1] == "context" and k[-1] == "done"
    assert set(k[2:-1]) == {"delta"} and len(k) > 4  # word by word
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert all(e.create_time.seconds > 0 for e in events)
    times = [e.create_time.ToNanoseconds() for e in events]
    assert times == sorted(times)
    started, done = events[0].started, events[-1].done
    assert started.session_id.startswith("ses_") and started.user_message_id.startswith("msg_")
    assert done.assistant_message_id.startswith("msg_")
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    assert done.latency.ToTimedelta().total_seconds() > 0
    assert "built-in responder" in text_of(events)  # nothing stored about ana yet


async def test_memory_grounding(chat, memory_stub, new_key) -> None:
    _, key = await new_key()
    for content in (DOG, "The user lives in Porto.", "The user is allergic to peanuts."):
        await memory_stub.CreateMemory(mem("bo", content), metadata=md(key))
    events = await turn(chat, key, user_id="bo", message="What is my dog's name?")
    assert "Biscuit" in text_of(events)
    recalled = [h.memory.content for h in events[1].context.memories]
    assert recalled[0] == DOG
    # the turn's own message is not recalled as a memory
    assert "What is my dog's name?" not in recalled
    # use_memory=false: no recall, so the built-in responder has nothing to ground on
    plain = await turn(chat, key, user_id="bo", message="What is my dog's name?", use_memory=False)
    assert len(plain[1].context.memories) == 0
    assert "Biscuit" not in text_of(plain) and "built-in responder" in text_of(plain)


async def test_both_messages_stored_and_searchable(chat, sessions, memory_stub, new_key) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(mem("cy", DOG), metadata=md(key))
    events = await turn(chat, key, user_id="cy", message="Do you know my dog's name?")
    started, done = events[0].started, events[-1].done
    stored = await messages_of(sessions, key, started.session_id)
    assert [(m.id, m.role) for m in stored] == [
        (started.user_message_id, "user"),
        (done.assistant_message_id, "assistant"),
    ]
    assert stored[0].content == "Do you know my dog's name?"
    assert stored[1].content == text_of(events) and not stored[1].interrupted
    s = await sessions.GetSession(spb.GetSessionRequest(id=started.session_id), metadata=md(key))
    assert s.user_id == "cy" and s.message_count == 2
    assert s.title == "Do you know my dog's name?"
    # the user's message is indexed; the built-in responder's reply (it only restates what
    # recall found) is kept in the session but not indexed, so it never crowds out the memory
    assert stored[0].memory_id and not stored[1].memory_id
    found = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(
            user_id="cy", query="Biscuit", types=[mpb.MEMORY_TYPE_MESSAGE], limit=5
        ),
        metadata=md(key),
    )
    sources = {i for r in found.results for i in r.memory.source_message_ids}
    assert started.user_message_id in sources and done.assistant_message_id not in sources
    # a model's reply is indexed like any message
    other = await turn(
        chat, key, session_id=started.session_id, message="Say hello", provider="openai"
    )
    found = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(user_id="cy", query="fake model", limit=5), metadata=md(key)
    )
    assert other[-1].done.assistant_message_id in {
        i for r in found.results for i in r.memory.source_message_ids
    }


async def test_a_turn_runs_the_model_once_per_message(chat, new_key, server) -> None:
    """The user message is embedded once for its store, its recall and the summaries; the reply
    once, ahead of its store (which first waits for the session's lock) and shared with it."""
    _, key = await new_key()
    first = await turn(chat, key, user_id="fi", message="I adopted a cat named Miso.")
    embedder = server.app.embedder
    before = embedder.texts
    events = await turn(
        chat, key, session_id=first[0].started.session_id, message="What is my cat called?"
    )
    assert kinds(events)[-1] == "done" and events[-1].done.assistant_message_id
    assert "Miso" in text_of(events)
    assert embedder.texts - before == 1  # the built-in responder's reply is not indexed
    before = embedder.texts
    events = await turn(
        chat,
        key,
        session_id=first[0].started.session_id,
        message="What else?",
        provider="openai",
    )
    assert kinds(events)[-1] == "done" and embedder.texts - before == 2


async def test_session_continues_with_history(chat, sessions, new_key) -> None:
    _, key = await new_key()
    first = await turn(chat, key, user_id="di", message="My favourite colour is teal.")
    session_id = first[0].started.session_id
    second = await turn(
        chat, key, session_id=session_id, user_id="di", message="What is my favourite colour?"
    )
    assert second[0].started.session_id == session_id
    assert "teal" in text_of(second)
    assert len(await messages_of(sessions, key, session_id)) == 4


async def test_openai_prompt_carries_the_recalled_context(
    chat, memory_stub, new_key, fake_llm: FakeLLM
) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(mem("ed", "The user's cat is called Miso."), metadata=md(key))
    events = await turn(
        chat, key, user_id="ed", message="What is my cat called?", provider="openai"
    )
    assert text_of(events) == "".join(FAST_TEXT)
    assert (events[-1].done.usage.prompt_tokens, events[-1].done.usage.completion_tokens) == (11, 5)
    body = fake_llm.last("fast").body
    system, user = body["messages"][0], body["messages"][-1]
    assert system["role"] == "system" and "Miso" in system["content"]
    assert user == {"role": "user", "content": "What is my cat called?"}
    await turn(
        chat,
        key,
        session_id=events[0].started.session_id,
        message="And my dog?",
        provider="openai",
        system_prompt="You are Captain Memo.",
    )
    body = fake_llm.last("fast").body
    assert body["messages"][0]["content"].startswith("You are Captain Memo.")
    # the earlier turn goes as chat turns
    assert body["messages"][1:] == [
        {"role": "user", "content": "What is my cat called?"},
        {"role": "assistant", "content": "".join(FAST_TEXT)},
        {"role": "user", "content": "And my dog?"},
    ]


async def test_temperature_on_the_wire(chat, new_key, fake_llm: FakeLLM) -> None:
    _, key = await new_key()
    await turn(chat, key, user_id="fi", message="hi", provider="openai")
    assert "temperature" not in fake_llm.last("fast").body
    assert "max_tokens" not in fake_llm.last("fast").body
    await turn(chat, key, user_id="fi", message="hi", provider="openai", temperature=0.0)
    assert fake_llm.last("fast").body["temperature"] == 0.0
    await turn(
        chat, key, user_id="fi", message="hi", provider="openai", temperature=0.7, max_tokens=32
    )
    body = fake_llm.last("fast").body
    assert body["temperature"] == 0.7 and body["max_tokens"] == 32
    await turn(chat, key, user_id="fi", message="hi", provider="openai", model="nousage")
    assert fake_llm.last("nousage").body["model"] == "nousage"


# -- cancellation and deadlines ----------------------------------------------------------------
async def _closed_within(fake_llm: FakeLLM, since: float, limit_s: float) -> float:
    seen = fake_llm.last("slow")

    async def closed() -> bool:
        return seen.closed_at is not None

    await eventually(closed, timeout_s=limit_s + 1, every_s=0.01)
    assert seen.closed_at is not None and not seen.finished
    return seen.closed_at - since


async def test_cancel_stops_the_provider_and_stores_the_partial_reply(
    chat, sessions, new_key, fake_llm: FakeLLM
) -> None:
    _, key = await new_key()
    call = chat.Chat(
        pb.ChatRequest(
            user_id="gu", message="Tell me a long story", provider="openai", model="slow"
        ),
        metadata=md(key),
    )
    session_id, deltas = "", []
    async for ev in call:
        if ev.HasField("started"):
            session_id = ev.started.session_id
        if ev.HasField("delta"):
            deltas.append(ev.delta.text)
            if len(deltas) == 3:
                break
    cancelled = time.monotonic()
    call.cancel()
    took = await _closed_within(fake_llm, cancelled, 1.0)
    assert took < 1.0, f"the provider connection closed {took:.3f} s after the cancel"
    assert fake_llm.last("slow").chunks_sent < SLOW_DELTAS

    async def partial_stored() -> bool:
        return len(await messages_of(sessions, key, session_id)) == 2

    await eventually(partial_stored, timeout_s=5)
    user, reply = await messages_of(sessions, key, session_id)
    assert user.content == "Tell me a long story" and not user.interrupted
    assert reply.role == "assistant" and reply.interrupted
    assert reply.content.startswith("".join(deltas))
    assert len(reply.content.split()) < SLOW_DELTAS


async def test_deadline_stops_the_provider_and_stores_the_partial_reply(
    chat, sessions, new_key, fake_llm: FakeLLM
) -> None:
    _, key = await new_key()
    session = await sessions.CreateSession(new_session("ha"), metadata=md(key))
    call = chat.Chat(
        pb.ChatRequest(session_id=session.id, message="Go on", provider="openai", model="slow"),
        metadata=md(key),
        timeout=2.0,  # the slow reply takes 4 s: cut mid-stream, with room for the turn's start
    )
    deltas = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for ev in call:
            if ev.HasField("delta"):
                deltas.append(ev.delta.text)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert deltas  # some text came before the deadline
    ended = time.monotonic()
    took = await _closed_within(fake_llm, ended, 1.0)
    assert took < 1.0

    async def partial_stored() -> bool:
        return len(await messages_of(sessions, key, session.id)) == 2

    await eventually(partial_stored, timeout_s=5)
    reply = (await messages_of(sessions, key, session.id))[1]
    assert reply.interrupted and reply.content.startswith("".join(deltas))


# -- provider errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "code", "reason"),
    [
        ("auth", grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_AUTH_FAILED"),
        ("ratelimit", grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_RATE_LIMITED"),
        ("stall", grpc.StatusCode.DEADLINE_EXCEEDED, "PROVIDER_TIMEOUT"),
        ("broken", grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    ],
)
async def test_provider_errors_map_to_statuses(
    chat, sessions, new_key, model: str, code: grpc.StatusCode, reason: str
) -> None:
    _, key = await new_key()
    call = chat.Chat(
        pb.ChatRequest(user_id="ida", message="hi", provider="openai", model=model),
        metadata=md(key),
    )
    events = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for ev in call:
            events.append(ev)
    assert err.value.code() == code
    assert details(err.value)[1] == reason
    # the stream told it too, after `started`: the user message is stored, no reply
    assert kinds(events) == ["started", "context", "error"]
    assert events[-1].error.reason == reason and events[-1].error.code == code.value[0]
    stored = await messages_of(sessions, key, events[0].started.session_id)
    assert [m.role for m in stored] == ["user"]
    if model == "ratelimit":
        assert retry_delay_s(err.value) == 7.0
    if model == "auth":
        assert "Incorrect API key" in (err.value.details() or "")


# -- async chat ----------------------------------------------------------------------------------
async def result(chat, key: str, processing_id: str) -> pb.ChatResult:
    return await chat.GetChatResult(
        pb.GetChatResultRequest(processing_id=processing_id), metadata=md(key)
    )


async def test_async_chat_lifecycle(chat, sessions, new_key, server: ServerHandle) -> None:
    _, key = await new_key()
    results = server.app.store.writer("chat_results").stats
    commits = results.commits
    queued = await chat.ChatAsync(
        pb.ChatRequest(user_id="jo", message="Tell me a story", provider="openai", model="slow"),
        metadata=md(key),
    )
    assert queued.processing_id.startswith("chat_")
    first = await result(chat, key, queued.processing_id)
    assert first.status in (pb.CHAT_STATUS_QUEUED, pb.CHAT_STATUS_RUNNING)
    assert first.session_id.startswith("ses_")
    # a poll cancelled mid-flight changes nothing
    poll = chat.GetChatResult(
        pb.GetChatResultRequest(processing_id=queued.processing_id), metadata=md(key)
    )
    poll.cancel()
    partials: list[str] = []
    while True:
        r = await result(chat, key, queued.processing_id)
        if r.status == pb.CHAT_STATUS_RUNNING and r.response:
            partials.append(r.response)
        if r.status in (pb.CHAT_STATUS_COMPLETE, pb.CHAT_STATUS_FAILED):
            break
        await asyncio.sleep(0.1)
    assert r.status == pb.CHAT_STATUS_COMPLETE, r.error
    assert r.response == "".join(f"w{i} " for i in range(SLOW_DELTAS))
    assert len(set(partials)) >= 3  # it grew while running
    # the hot row is written at most every 250 ms: ~4 s of deltas, not one commit per delta
    assert results.commits - commits <= 4 / 0.25 + 5
    assert all(r.response.startswith(p) for p in partials)
    assert min(len(p) for p in partials) < len(r.response)
    assert r.user_message_id.startswith("msg_") and r.assistant_message_id.startswith("msg_")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (11, 5)
    stored = await messages_of(sessions, key, r.session_id)
    assert [m.id for m in stored] == [r.user_message_id, r.assistant_message_id]


async def test_async_chat_local_grounding_and_failure(chat, memory_stub, new_key) -> None:
    _, key = await new_key()
    await memory_stub.CreateMemory(mem("ka", DOG), metadata=md(key))
    ok = await chat.ChatAsync(
        pb.ChatRequest(user_id="ka", message="What's my dog called?"), metadata=md(key)
    )
    bad = await chat.ChatAsync(
        pb.ChatRequest(user_id="ka", message="hi", provider="openai", model="ratelimit"),
        metadata=md(key),
    )

    async def settled(pid: str) -> pb.ChatResult:
        for _ in range(300):
            r = await result(chat, key, pid)
            if r.status in (pb.CHAT_STATUS_COMPLETE, pb.CHAT_STATUS_FAILED):
                return r
            await asyncio.sleep(0.05)
        raise AssertionError(f"chat {pid} did not finish")

    good = await settled(ok.processing_id)
    assert good.status == pb.CHAT_STATUS_COMPLETE and "Biscuit" in good.response
    assert good.memories[0].memory.content == DOG and good.memories[0].score > 0
    failed = await settled(bad.processing_id)
    assert failed.status == pb.CHAT_STATUS_FAILED
    assert failed.error.code == code_pb2.RESOURCE_EXHAUSTED
    assert failed.error.reason == "PROVIDER_RATE_LIMITED"
    assert failed.user_message_id and not failed.assistant_message_id


async def test_async_chat_request_id_and_not_found(chat, new_key) -> None:
    _, key = await new_key()
    req = pb.ChatRequest(user_id="lu", message="hi", request_id="retry-1")
    a = await chat.ChatAsync(req, metadata=md(key))
    b = await chat.ChatAsync(req, metadata=md(key))
    assert a.processing_id == b.processing_id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await result(chat, key, "chat_nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert details(err.value)[1] == "CHAT_NOT_FOUND"
    _, other = await new_key()  # another project's result is not found either
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await result(chat, other, a.processing_id)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# -- providers, input checks, scopes --------------------------------------------------------------
async def test_list_providers(chat, new_key) -> None:
    _, key = await new_key(scopes=("read",))
    r = await chat.ListProviders(pb.ListProvidersRequest(), metadata=md(key))
    by_name = {p.name: p for p in r.providers}
    assert set(by_name) == {"local", "openai"}
    assert by_name["local"].is_default and by_name["local"].available
    assert by_name["local"].default_model == "memgrpc-local"
    assert not by_name["openai"].is_default and by_name["openai"].available
    assert by_name["openai"].default_model == "fast" and list(by_name["openai"].models) == ["fast"]


async def test_read_key_cannot_chat(chat, new_key) -> None:
    _, key = await new_key(scopes=("read",))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await turn(chat, key, user_id="mo", message="hi")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("request_kw", "field"),
    [
        ({"user_id": "u", "message": ""}, "message"),
        ({"user_id": "u", "message": "   "}, "message"),
        ({"message": "hi"}, "session_id"),
        ({"user_id": "u", "message": "hi", "provider": "claude"}, "provider"),
        ({"user_id": "u", "message": "hi", "max_tokens": 0}, "max_tokens"),
        ({"user_id": "u", "message": "hi", "max_tokens": -5}, "max_tokens"),
        ({"user_id": "u", "message": "hi", "temperature": -0.1}, "temperature"),
        ({"user_id": "u", "message": "hi", "temperature": 2.5}, "temperature"),
        ({"user_id": "u", "message": "hi", "temperature": float("nan")}, "temperature"),
        ({"user_id": "u", "message": "hi", "model": "two words"}, "model"),
    ],
)
async def test_bad_input(chat, new_key, request_kw: dict[str, object], field: str) -> None:
    _, key = await new_key()
    for method in ("Chat", "ChatAsync"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            if method == "Chat":
                await turn(chat, key, **request_kw)
            else:
                await chat.ChatAsync(pb.ChatRequest(**request_kw), metadata=md(key))  # type: ignore[arg-type]
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert field in details(err.value)[0], method


async def test_sessions_are_checked_before_anything_is_stored(chat, sessions, new_key) -> None:
    _, key = await new_key()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await turn(chat, key, session_id="ses_missing", message="hi")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    s = await sessions.CreateSession(new_session("nia"), metadata=md(key))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await turn(chat, key, session_id=s.id, user_id="someone-else", message="hi")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id" in details(err.value)[0]
    await sessions.AddMessages(add(s.id, msg("I moved to Oslo.")), metadata=md(key))
    await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id, wait=True), metadata=md(key)
    )
    for call in (
        turn(chat, key, session_id=s.id, message="hi"),
        chat.ChatAsync(pb.ChatRequest(session_id=s.id, message="hi"), metadata=md(key)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert details(err.value)[1] == "SESSION_PROCESSED"
    assert len(await messages_of(sessions, key, s.id)) == 1


# -- request_id on the streamed Chat ----------------------------------------------------------------
async def chat_result_rows(data_dir: Path, project_id: str, session_id: str = "") -> int:
    """Rows of the project (or session) in `chat_results`, read by a fresh connection."""
    db = await lancedb.connect_async(str(data_dir))
    tbl = await db.open_table("chat_results")
    where = Where().eq("project_id", project_id)
    if session_id:
        where.eq("session_id", session_id)
    return int(await tbl.count_rows(str(where)))


async def test_chat_retry_with_request_id_replays_the_turn(
    chat, sessions, new_key, fake_llm: FakeLLM, server: ServerHandle
) -> None:
    project, key = await new_key()
    await turn(chat, key, user_id="rio", message="hi")  # no request_id: nothing recorded
    assert await chat_result_rows(server.data_dir, project) == 0
    asked = len(fake_llm.seen)
    req = {"user_id": "rio", "message": "Hello there", "provider": "openai", "request_id": "r-1"}
    first = await turn(chat, key, **req)
    second = await turn(chat, key, **req)
    assert len(fake_llm.seen) == asked + 1  # one generation
    assert kinds(first)[0] == "started" and kinds(first)[-1] == "done"
    assert kinds(second) == ["started", "context", "delta", "done"]
    assert second[0].started == first[0].started  # same user message, same (new) session
    assert second[-1].done.assistant_message_id == first[-1].done.assistant_message_id
    assert second[-1].done.usage == first[-1].done.usage
    assert text_of(second) == text_of(first) == "".join(FAST_TEXT)
    session_id = first[0].started.session_id
    stored = await messages_of(sessions, key, session_id)
    assert [m.id for m in stored] == [
        first[0].started.user_message_id,
        first[-1].done.assistant_message_id,
    ]
    listed = await sessions.ListSessions(spb.ListSessionsRequest(user_id="rio"), metadata=md(key))
    assert listed.total_size == 2  # the turn without request_id, and this one (made once)
    assert await chat_result_rows(server.data_dir, project, session_id) == 1
    # the same request_id in another project is another request
    _, other = await new_key()
    elsewhere = await turn(chat, other, **req)
    assert elsewhere[0].started.session_id != session_id
    assert len(fake_llm.seen) == asked + 2


async def test_chat_request_id_reused_for_another_request(chat, new_key) -> None:
    _, key = await new_key()
    await turn(chat, key, user_id="reu", message="first question", request_id="r-2")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await turn(chat, key, user_id="reu", message="another question", request_id="r-2")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(err.value) == ({"request_id"}, "REQUEST_ID_REUSED")


async def test_chat_retry_replays_a_failed_turn(chat, sessions, new_key, fake_llm: FakeLLM) -> None:
    _, key = await new_key()
    req = pb.ChatRequest(
        user_id="fay", message="hi", provider="openai", model="ratelimit", request_id="r-3"
    )
    asked = len(fake_llm.seen)
    attempts: list[list[pb.ChatEvent]] = []
    for _ in range(2):
        events: list[pb.ChatEvent] = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for ev in chat.Chat(req, metadata=md(key)):
                events.append(ev)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details(err.value)[1] == "PROVIDER_RATE_LIMITED"
        attempts.append(events)
    first, second = attempts
    assert len(fake_llm.seen) == asked + 1
    assert kinds(second) == kinds(first) == ["started", "context", "error"]
    assert second[0].started == first[0].started
    assert second[-1].error.reason == "PROVIDER_RATE_LIMITED"
    stored = await messages_of(sessions, key, first[0].started.session_id)
    assert [m.role for m in stored] == ["user"]  # stored once


async def test_chat_retry_while_the_first_runs_waits_for_it(
    chat, sessions, new_key, fake_llm: FakeLLM
) -> None:
    """The retry waits for the first attempt; that one is cancelled by its client, so the retry
    replays it as interrupted (the user message is not stored twice, nothing runs again)."""
    _, key = await new_key()
    req = pb.ChatRequest(
        user_id="wes", message="Tell me a story", provider="openai", model="slow", request_id="r-4"
    )
    asked = len(fake_llm.seen)
    call = chat.Chat(req, metadata=md(key))
    deltas: list[str] = []
    async for ev in call:
        if ev.HasField("delta"):
            deltas.append(ev.delta.text)
            if len(deltas) == 2:
                break
    retry = asyncio.ensure_future(turn(chat, key, **{"request_id": "r-4"} | _kw(req)))
    await asyncio.sleep(0.3)
    assert not retry.done()  # waiting for the first attempt
    call.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(retry, 5)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(err.value)[1] == "CHAT_TURN_INTERRUPTED"
    assert len(fake_llm.seen) == asked + 1

    async def partial_stored() -> bool:
        return len(await messages_of(sessions, key, session_id)) == 2

    listed = await sessions.ListSessions(spb.ListSessionsRequest(user_id="wes"), metadata=md(key))
    assert listed.total_size == 1
    session_id = listed.sessions[0].id
    await eventually(partial_stored, timeout_s=5)
    user, reply = await messages_of(sessions, key, session_id)
    assert user.content == "Tell me a story" and reply.interrupted
    # the replayed stream, read event by event: started (same ids), the partial text, error
    events: list[pb.ChatEvent] = []
    with pytest.raises(grpc.aio.AioRpcError):
        async for ev in chat.Chat(req, metadata=md(key)):
            events.append(ev)
    assert kinds(events) == ["started", "context", "delta", "error"]
    assert events[0].started.user_message_id == user.id
    assert reply.content.startswith(text_of(events)) and text_of(events).startswith("".join(deltas))
    assert events[-1].error.reason == "CHAT_TURN_INTERRUPTED"


def _kw(req: pb.ChatRequest) -> dict[str, object]:
    return {"user_id": req.user_id, "message": req.message, "provider": req.provider,
            "model": req.model}  # fmt: skip


async def test_delete_session_removes_its_chat_results(
    chat, sessions, new_key, server: ServerHandle
) -> None:
    project, key = await new_key()
    s = await sessions.CreateSession(new_session("del"), metadata=md(key))
    keep = await sessions.CreateSession(new_session("del"), metadata=md(key))
    queued = [
        await chat.ChatAsync(pb.ChatRequest(session_id=sid, message=m), metadata=md(key))
        for sid, m in ((s.id, "one"), (s.id, "two"), (keep.id, "kept"))
    ]
    await turn(chat, key, session_id=s.id, message="streamed", request_id="r-5")

    async def settled() -> bool:
        found = [await result(chat, key, q.processing_id) for q in queued]
        return all(r.status == pb.CHAT_STATUS_COMPLETE for r in found)

    await eventually(settled, timeout_s=10, every_s=0.05)
    assert await chat_result_rows(server.data_dir, project, s.id) == 3
    assert await chat_result_rows(server.data_dir, project, keep.id) == 1
    await sessions.DeleteSession(spb.DeleteSessionRequest(id=s.id), metadata=md(key))
    assert await chat_result_rows(server.data_dir, project, s.id) == 0
    assert await chat_result_rows(server.data_dir, project, keep.id) == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await result(chat, key, queued[0].processing_id)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await result(chat, key, queued[2].processing_id)).response


async def test_chat_retry_of_a_turn_running_elsewhere(chat, new_key, server: ServerHandle) -> None:
    """A turn recorded as running that this server does not run (another replica's, or one
    whose server died mid-turn) is not run again."""
    project, key = await new_key()
    req = ChatRequest(message="hi", user_id="eli")
    row_id = derived_id("chat", project, "Chat", "r-6") + "_" + fingerprint(req)
    now = datetime.now(UTC)
    await server.app.store.writer("chat_results").insert(
        [{"id": row_id, "project_id": project, "user_id": "eli", "session_id": "ses_x",
          "status": "running", "create_time": now, "update_time": now}]
    )  # fmt: skip
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await turn(chat, key, message="hi", user_id="eli", request_id="r-6")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(err.value)[1] == "CHAT_TURN_IN_PROGRESS"
