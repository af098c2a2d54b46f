"""ContextService.GetContext: contents per strategy, thresholds, budget, timezone, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import timestamp_pb2

from memgrpc.embed import Embedder
from memgrpc.v1 import context_pb2 as cpb
from memgrpc.v1 import context_pb2_grpc, memory_pb2_grpc, sessions_pb2_grpc
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from tests.convhelpers import add, msg, new_session
from tests.helpers import md
from tests.memhelpers import details

CHAT = [
    ("Ana", "Hi! I just got back from my trip to Portugal."),
    ("Bot", "Welcome back! How was it?"),
    ("Ana", "Amazing. We spent most of the time surfing in Ericeira."),
    ("Bot", "Surfing sounds fun. Did you take lessons?"),
    ("Ana", "Yes, three lessons with a local school called Ribamar Surf."),
    ("Bot", "Nice. Anything else planned?"),
    ("Ana", "Next month I start a pottery class on Thursdays."),
    ("Bot", "Good luck with the pottery class!"),
    ("Ana", "My sister Lena is visiting from Vienna in October."),
    ("Bot", "Lovely, enjoy the visit."),
]


@pytest.fixture(scope="module")
def context_stub(channel: grpc.aio.Channel) -> context_pb2_grpc.ContextServiceStub:
    return context_pb2_grpc.ContextServiceStub(channel)


@pytest.fixture(scope="module")
async def convo(channel, new_key_module) -> tuple[str, str, list[str]]:
    """One user, one session of ten turns on 2024-06-03 12:00 UTC."""
    sessions = sessions_pb2_grpc.SessionServiceStub(channel)
    _, key = await new_key_module()
    s = await sessions.CreateSession(new_session("ana", title="trip"), metadata=md(key))
    when = timestamp_pb2.Timestamp()
    when.FromDatetime(datetime(2024, 6, 3, 12, 0, tzinfo=UTC))
    msgs = [
        msg(
            text,
            id=f"t{i}",
            role="user" if who == "Ana" else "assistant",
            name=who,
            create_time=when,
        )
        for i, (who, text) in enumerate(CHAT)
    ]
    await sessions.AddMessages(add(s.id, *msgs), metadata=md(key))
    return key, s.id, [m.id for m in msgs]


async def ctx(stub, key: str, **kw: object) -> cpb.GetContextResponse:
    return await stub.GetContext(cpb.GetContextRequest(user_id="ana", **kw), metadata=md(key))  # type: ignore[arg-type]


async def test_balanced_context_has_memories_and_recent_messages(context_stub, convo) -> None:
    key, session_id, _ = convo
    r = await ctx(
        context_stub,
        key,
        session_id=session_id,
        query="Where did Ana go surfing?",
        last_n_messages=2,
    )
    assert any("Ericeira" in h.memory.content for h in r.memories[:3])
    assert [m.content for m in r.recent_messages] == [CHAT[8][1], CHAT[9][1]]
    assert "Ericeira" in r.context and CHAT[9][1] in r.context
    assert r.context.startswith("You are talking with a user")
    # what is shown as a recent message is not repeated as a memory
    assert all(h.memory.source_message_ids[0] not in ("t8", "t9") for h in r.memories)
    assert r.token_count > 0


async def test_strategies_differ(context_stub, convo) -> None:
    key, _, _ = convo
    q = "What class is Ana starting next month?"
    low = await ctx(
        context_stub, key, query=q, strategy=cpb.CONTEXT_STRATEGY_LOW_LATENCY, min_top_k=3
    )
    bal = await ctx(context_stub, key, query=q, max_top_k=10)
    deep = await ctx(context_stub, key, query=q, strategy=cpb.CONTEXT_STRATEGY_DEEP, max_top_k=4)
    assert len(low.memories) == 3  # one leg, small k
    assert "pottery" in low.memories[0].memory.content
    assert "pottery" in bal.memories[0].memory.content and len(bal.memories) == 10
    deep_ids = [h.memory.source_message_ids[0] for h in deep.memories]
    assert deep_ids[0] == "t6" and "t7" in deep_ids  # the hit and its neighbouring turn
    assert len(set(deep_ids)) == len(deep_ids)


async def test_threshold_drops_every_memory_below_it(context_stub, convo) -> None:
    """min_top_k is the least asked for, not a quota filled with what misses the threshold."""
    key, _, _ = convo
    r = await ctx(
        context_stub, key, query="surf school", min_top_k=2, max_top_k=10, memory_threshold=1.0
    )
    assert len(r.memories) == 0
    some = await ctx(context_stub, key, query="surf school", min_top_k=2, memory_threshold=0.3)
    assert some.memories and all(h.score >= 0.3 for h in some.memories)
    assert len(some.memories) < len(CHAT)


async def test_token_budget(context_stub, convo, shared_embedder: Embedder) -> None:
    key, session_id, _ = convo
    full = await ctx(
        context_stub, key, session_id=session_id, query="family visiting", last_n_messages=10
    )
    assert full.token_count == shared_embedder.count_tokens(full.context)
    for budget in (200, 80, 30):
        r = await ctx(
            context_stub,
            key,
            session_id=session_id,
            query="family visiting",
            last_n_messages=10,
            token_budget=budget,
        )
        assert r.token_count <= budget
        assert r.token_count == shared_embedder.count_tokens(r.context)
        assert r.token_count < full.token_count


async def test_timezone_and_no_system_prompt(context_stub, convo) -> None:
    key, _, _ = convo
    r = await ctx(
        context_stub, key, query="sister", timezone="Asia/Tokyo", include_system_prompt=False
    )
    assert "2024-06-03 21:00 JST" in r.context
    assert not r.context.startswith("You are talking")
    utc = await ctx(context_stub, key, query="sister")
    assert "2024-06-03 12:00 UTC" in utc.context


async def test_summaries_after_processing(context_stub, convo, channel) -> None:
    key, session_id, _ = convo
    sessions = sessions_pb2_grpc.SessionServiceStub(channel)
    job = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=session_id, wait=True), metadata=md(key)
    )
    assert job.state == spb.JOB_STATE_DONE
    r = await ctx(context_stub, key, query="trip to Portugal", max_top_k=2)
    assert len(r.summaries) == 1 and r.summaries[0].session_id == session_id
    assert "Earlier conversations" in r.context
    assert all(h.memory.type != 8 for h in r.memories)  # summaries are not listed as memories
    # at most half the session's words: a summary, not the transcript again
    words = sum(len(text.split()) for _, text in CHAT)
    assert len(r.summaries[0].content.split()) <= words // 2 + len(CHAT)  # + "Ana:" labels
    # once every message it quotes is shown (here as memories), it would say it all twice
    full = await ctx(context_stub, key, query="trip to Portugal", max_top_k=20)
    assert {i for h in full.memories for i in h.memory.source_message_ids} >= set(
        await summary_sources(channel, key, session_id)
    )
    assert len(full.summaries) == 0 and "Earlier conversations" not in full.context


async def summary_sources(channel: grpc.aio.Channel, key: str, session_id: str) -> list[str]:
    memories = memory_pb2_grpc.MemoryServiceStub(channel)
    found = await memories.ListMemories(
        mpb.ListMemoriesRequest(session_id=session_id, types=[mpb.MEMORY_TYPE_SUMMARY]),
        metadata=md(key),
    )
    return list(found.memories[0].source_message_ids)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"min_top_k": 20, "max_top_k": 5}, "min_top_k"),
        ({"max_top_k": 500}, "max_top_k"),
        ({"memory_threshold": 1.5}, "memory_threshold"),
        ({"summary_threshold": -0.1}, "summary_threshold"),
        ({"token_budget": -5}, "token_budget"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"strategy": 9}, "strategy"),
        ({"last_n_messages": 1000}, "last_n_messages"),
        ({"types": [42]}, "types[0]"),
    ],
)
async def test_bad_input(context_stub, convo, kw: dict, field: str) -> None:
    key, _, _ = convo
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ctx(context_stub, key, query="x", **kw)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details(e.value)[0]


async def test_user_and_session_checks(context_stub, convo, new_key) -> None:
    key, session_id, _ = convo
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await context_stub.GetContext(
            cpb.GetContextRequest(user_id="", query="x"), metadata=md(key)
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await context_stub.GetContext(
            cpb.GetContextRequest(user_id="someone-else", session_id=session_id), metadata=md(key)
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, other = await new_key()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await ctx(context_stub, other, session_id=session_id, query="surf")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    r = await ctx(context_stub, other, query="surfing in Ericeira")
    assert list(r.memories) == []
