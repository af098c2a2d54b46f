"""The README's first hour through the real server (local provider, local embedder): what a new
user storing a preference, a session about Berlin and two chat turns then finds again."""

from __future__ import annotations

import grpc
import pytest

from memgrpc.llm.local import NOTHING_TO_GROUND
from memgrpc.v1 import chat_pb2 as chpb
from memgrpc.v1 import chat_pb2_grpc, context_pb2_grpc, sessions_pb2_grpc
from memgrpc.v1 import context_pb2 as cpb
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from tests.convhelpers import add, msg, new_session
from tests.helpers import md
from tests.memhelpers import mem

DARK = "User prefers dark mode"
BERLIN = "For team scheduling, use Berlin when I mention Europe."
THEME_Q = "What theme do I like?"


@pytest.fixture(scope="module")
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


@pytest.fixture(scope="module")
def context(channel: grpc.aio.Channel) -> context_pb2_grpc.ContextServiceStub:
    return context_pb2_grpc.ContextServiceStub(channel)


async def chat_turn(channel: grpc.aio.Channel, key: str, session_id: str, text: str) -> str:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    request = chpb.ChatRequest(session_id=session_id, message=text)
    events = [e async for e in stub.Chat(request, metadata=md(key))]
    return "".join(e.delta.text for e in events if e.HasField("delta"))


@pytest.fixture(scope="module")
async def readme(channel, memory_stub, sessions, new_key_module) -> tuple[str, str, list[str]]:
    """The README's flow: a memory, a session with two messages, two chat turns."""
    _, key = await new_key_module()
    await memory_stub.CreateMemory(
        mem("alice", DARK, type=mpb.MEMORY_TYPE_PREFERENCE, tags=["ui", "settings"]),
        metadata=md(key),
    )
    s = await sessions.CreateSession(
        new_session("alice", title="Team scheduling"), metadata=md(key)
    )
    await sessions.AddMessages(
        add(s.id, msg(BERLIN, role="user"), msg("Got it: Berlin for Europe.", role="assistant")),
        metadata=md(key),
    )
    replies = [
        await chat_turn(channel, key, s.id, text)
        for text in ("Which city do I use for Europe?", THEME_Q)
    ]
    return key, s.id, replies


async def test_the_built_in_responder_answers_from_what_recall_found(readme) -> None:
    _, _, (city, theme) = readme
    assert "Berlin" in city
    assert "dark mode" in theme and theme != NOTHING_TO_GROUND
    assert "not a language model" in theme and "not a language model" in city


async def test_the_stored_fact_outranks_the_question_and_replies_are_not_indexed(
    readme, memory_stub, sessions
) -> None:
    key, session_id, _ = readme
    found = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(user_id="alice", query="what theme does the user like?", limit=3),
        metadata=md(key),
    )
    contents = [h.memory.content for h in found.results]
    assert contents[0] == DARK
    scores = {h.memory.content: h.score for h in found.results}
    assert scores[DARK] > scores.get(THEME_Q, 0.0)
    everything = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(
            user_id="alice", query="what theme does the user like?", limit=50
        ),
        metadata=md(key),
    )
    assert not any("built-in responder" in h.memory.content for h in everything.results), [
        (h.memory.content, h.memory.type, h.memory.speaker) for h in everything.results
    ]
    assert len(everything.results) == 5  # the fact, two messages, the two chat questions
    # the replies are kept as messages of the session, without a memory
    listed = await sessions.ListMessages(
        spb.ListMessagesRequest(session_id=session_id), metadata=md(key)
    )
    replies = [m for m in listed.messages if m.role == "assistant"][1:]
    assert len(replies) == 2 and all(not m.memory_id for m in replies)
    assert all(m.memory_id for m in listed.messages if m.role == "user")


async def test_get_context_leaves_out_what_misses_its_threshold(readme, context) -> None:
    key, session_id, _ = readme
    # README's call: the session's messages are recent messages; the unrelated preference,
    # scoring far below the default threshold, is no longer listed as a memory
    r = await context.GetContext(
        cpb.GetContextRequest(
            user_id="alice",
            session_id=session_id,
            query="which city for Europe scheduling?",
            last_n_messages=10,
            token_budget=800,
        ),
        metadata=md(key),
    )
    assert [h.memory.content for h in r.memories] == []
    assert BERLIN in r.context and "## Relevant memories" not in r.context
    # across the user's messages: the Berlin turns, not the preference
    everywhere = await context.GetContext(
        cpb.GetContextRequest(user_id="alice", query="which city for Europe scheduling?"),
        metadata=md(key),
    )
    shown = [h.memory.content for h in everywhere.memories]
    assert BERLIN in shown and DARK not in shown
    assert all(h.score >= 0.1 for h in everywhere.memories)
    # and the question about the theme gets the preference first
    theme = await context.GetContext(
        cpb.GetContextRequest(user_id="alice", query="what theme does the user like?"),
        metadata=md(key),
    )
    assert theme.memories[0].memory.content == DARK


async def test_identical_texts_stored_apart_are_separate_results(memory_stub, new_key) -> None:
    _, key = await new_key()
    for tag in ("work", "home", "travel"):
        await memory_stub.CreateMemory(
            mem("bea", "Bea drinks oat milk", tags=[tag]), metadata=md(key)
        )
    for mode in (mpb.SEARCH_MODE_HYBRID, mpb.SEARCH_MODE_SEMANTIC, mpb.SEARCH_MODE_KEYWORD):
        r = await memory_stub.SearchMemories(
            mpb.SearchMemoriesRequest(user_id="bea", query="oat milk", mode=mode),
            metadata=md(key),
        )
        assert len(r.results) == 3, mode


async def test_a_two_message_summary_is_shorter_and_shown_once(
    memory_stub, sessions, context, new_key
) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("cai"), metadata=md(key))
    texts = (BERLIN, "Got it: Berlin for Europe.")
    await sessions.AddMessages(
        add(s.id, msg(texts[0], role="user"), msg(texts[1], role="assistant")), metadata=md(key)
    )
    await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id, wait=True), metadata=md(key)
    )
    summary = (
        await memory_stub.ListMemories(
            mpb.ListMemoriesRequest(session_id=s.id, types=[mpb.MEMORY_TYPE_SUMMARY]),
            metadata=md(key),
        )
    ).memories[0]
    assert len(summary.content.split()) < sum(len(t.split()) for t in texts)
    r = await context.GetContext(
        cpb.GetContextRequest(user_id="cai", query="which city for Europe?"), metadata=md(key)
    )
    quoted = [t for t in texts if t in r.context]
    assert quoted and all(r.context.count(t) == 1 for t in quoted)
    # shown as a summary only if it adds to the messages shown as memories
    shown = {i for h in r.memories for i in h.memory.source_message_ids}
    assert not r.summaries or not set(summary.source_message_ids) <= shown
