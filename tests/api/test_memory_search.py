"""SearchMemories: ranking on a small realistic set, modes, filters, filter search, min_score."""

from __future__ import annotations

import grpc
import pytest

from memgrpc.v1 import memory_pb2 as pb
from tests.helpers import md
from tests.memhelpers import details, mem, struct

FACTS = [
    ("The user's dog is named Biscuit", ["pets"], pb.MEMORY_TYPE_FACT),
    ("User prefers dark mode in every app", ["ui", "settings"], pb.MEMORY_TYPE_PREFERENCE),
    ("Customer contacted support about a double charge on the March invoice", ["billing"], 0),
    ("User is allergic to peanuts and shellfish", ["health"], pb.MEMORY_TYPE_FACT),
    ("User moved to Kuching, Malaysia last spring", ["location"], pb.MEMORY_TYPE_FACT),
    ("Meeting with Dana on Tuesday to plan the Q3 product roadmap", ["work"], pb.MEMORY_TYPE_TASK),
    ("User enjoys playing jazz guitar on weekends", ["hobby"], pb.MEMORY_TYPE_INSIGHT),
    ("The user's daughter starts kindergarten in September", ["family"], pb.MEMORY_TYPE_FACT),
    (
        "User wants email notifications turned off, only push",
        ["settings"],
        pb.MEMORY_TYPE_PREFERENCE,
    ),
    ("Flight to Tokyo booked for 14 May, seat 22A", ["travel"], pb.MEMORY_TYPE_OBSERVATION),
]


@pytest.fixture(scope="module")
async def corpus(memory_stub, new_key_module) -> tuple[str, dict[str, str]]:
    _, key = await new_key_module()
    ops = [
        pb.BatchOperation(create=mem("sam", text, tags=tags, type=typ, metadata={"i": i}))
        for i, (text, tags, typ) in enumerate(FACTS)
    ]
    ops.append(pb.BatchOperation(create=mem("other", "The user's dog is named Rex", tags=["pets"])))
    # a category of the project (a filter by an unknown one is refused before the store)
    ops.append(pb.BatchOperation(create=mem("nobody", "odd", categories=["') OR TRUE OR ('"])))
    resp = await memory_stub.BatchMemories(
        pb.BatchMemoriesRequest(operations=ops), metadata=md(key)
    )
    assert resp.summary.succeeded == len(ops)
    return key, {r.memory.content: r.memory.id for r in resp.results}


QUESTIONS = [
    ("What is my dog's name?", "The user's dog is named Biscuit"),
    ("does the user like a dark theme", "User prefers dark mode in every app"),
    (
        "billing problem with an invoice",
        "Customer contacted support about a double charge on the March invoice",
    ),
    ("food allergies", "User is allergic to peanuts and shellfish"),
    ("where does the user live now", "User moved to Kuching, Malaysia last spring"),
    ("what music instrument does the user play", "User enjoys playing jazz guitar on weekends"),
    ("when is the trip to Japan", "Flight to Tokyo booked for 14 May, seat 22A"),
    ("notification settings", "User wants email notifications turned off, only push"),
]


@pytest.mark.parametrize("mode", [pb.SEARCH_MODE_HYBRID, pb.SEARCH_MODE_SEMANTIC])
async def test_ranking_top1(memory_stub, corpus, mode: int) -> None:
    key, ids = corpus
    correct = 0
    for question, expected in QUESTIONS:
        resp = await memory_stub.SearchMemories(
            pb.SearchMemoriesRequest(user_id="sam", query=question, limit=5, mode=mode),
            metadata=md(key),
        )
        assert all(r.memory.user_id == "sam" for r in resp.results)
        scores = [r.score for r in resp.results]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        correct += resp.results[0].memory.id == ids[expected]
    assert correct >= len(QUESTIONS) - 1, f"top-1 right for only {correct}/{len(QUESTIONS)}"


async def test_keyword_mode_matches_terms(memory_stub, corpus) -> None:
    key, ids = corpus
    resp = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id="sam", query="kindergarten", mode=pb.SEARCH_MODE_KEYWORD),
        metadata=md(key),
    )
    assert [r.memory.id for r in resp.results] == [
        ids["The user's daughter starts kindergarten in September"]
    ]
    assert resp.results[0].score == pytest.approx(1.0)


async def test_filters_apply_to_search(memory_stub, corpus) -> None:
    key, _ = corpus

    async def search(**kw: object) -> list[str]:
        resp = await memory_stub.SearchMemories(
            pb.SearchMemoriesRequest(user_id="sam", **kw), metadata=md(key)
        )
        return [r.memory.content for r in resp.results]

    got = await search(query="user preferences", types=[pb.MEMORY_TYPE_PREFERENCE])
    assert set(got) == {FACTS[1][0], FACTS[8][0]}
    got = await search(query="dog", tags=["settings"])
    assert "The user's dog is named Biscuit" not in got and len(got) == 2
    got = await search(query="dog", metadata=struct({"i": 0}))
    assert got == ["The user's dog is named Biscuit"]
    assert await search(query="dog", metadata=struct({"i": "0"})) == []  # exact: "0" is not 0
    got = await search(query="dog", limit=3)
    assert len(got) == 3


async def test_filter_search_with_empty_query(memory_stub, corpus) -> None:
    key, _ = corpus
    resp = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id="sam", tags=["settings", "ui"], limit=20), metadata=md(key)
    )
    assert {r.memory.content for r in resp.results} == {FACTS[1][0], FACTS[8][0]}


async def test_search_other_user_and_whole_project(memory_stub, corpus) -> None:
    key, _ = corpus
    resp = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id="other", query="dog name"), metadata=md(key)
    )
    assert [r.memory.content for r in resp.results] == ["The user's dog is named Rex"]
    resp = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(query="dog named"), metadata=md(key)
    )
    assert {r.memory.user_id for r in resp.results[:2]} == {"sam", "other"}


async def test_min_score(memory_stub, corpus) -> None:
    key, _ = corpus

    async def search(min_score: float) -> list[float]:
        resp = await memory_stub.SearchMemories(
            pb.SearchMemoriesRequest(user_id="sam", query="dog", min_score=min_score, limit=10),
            metadata=md(key),
        )
        return [r.score for r in resp.results]

    everything = await search(0.0)
    assert len(everything) == 10
    cut = (everything[0] + everything[1]) / 2
    assert await search(cut) == everything[:1]
    assert await search(min(1.0, everything[0] + 1e-3)) == []


async def test_quotes_and_sql_in_values_are_just_values(memory_stub, corpus) -> None:
    key, _ = corpus
    nasty = "x' OR '1'='1"
    for kw in (
        {"user_id": nasty},
        {"user_id": "sam", "tags": [nasty]},
        {"user_id": "sam", "session_id": "a'); DROP TABLE memories; --"},
        {"user_id": "sam", "metadata": struct({"i": nasty})},
        {"user_id": "sam", "categories": ["') OR TRUE OR ('"]},
    ):
        resp = await memory_stub.SearchMemories(
            pb.SearchMemoriesRequest(query="dog", **kw),
            metadata=md(key),  # type: ignore[arg-type]
        )
        assert list(resp.results) == []
    resp = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(
            user_id="sam", query="what's the user's dog's name? 'Biscuit' OR 1=1"
        ),
        metadata=md(key),
    )
    assert resp.results[0].memory.content == "The user's dog is named Biscuit"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"limit": -1}, "limit"),
        ({"min_score": 1.5}, "min_score"),
        ({"mode": 42}, "mode"),
        ({"query": "x" * 40000}, "query"),
        ({"types": [0]}, "types[0]"),
    ],
)
async def test_bad_search_requests(memory_stub, corpus, kw: dict, field: str) -> None:
    key, _ = corpus
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await memory_stub.SearchMemories(
            pb.SearchMemoriesRequest(user_id="sam", **kw), metadata=md(key)
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details(e.value)[0]
