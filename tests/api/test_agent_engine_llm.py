"""The context engine's LLM path: a server with MEMGRPC_EXTRACTOR=llm against the fake
OpenAI-compatible server, which answers the engine's JSON tasks as this module scripts. A
valid answer is written with source `llm`; an invalid one falls back to the lexicon whole."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from memgrpc.embed import Embedder
from memgrpc.server.app import start
from memgrpc.v1 import admin_pb2, admin_pb2_grpc
from memgrpc.v1 import agent_state_pb2 as apb
from memgrpc.v1 import sessions_pb2 as spb
from tests.api.agenthelpers import AgentConv, days_ago
from tests.api.test_extraction_llm import ScriptedLLM
from tests.conftest import make_config
from tests.helpers import md
from tests.intelhelpers import Conv, uid

GOOD_MOOD = {
    "mood": {"label": "delighted", "valence": 0.9, "arousal": 0.7},
    "relationship": {"affinity": 0.6, "description": "A warm new friend."},
}


class EngineLLM(ScriptedLLM):
    def __init__(self) -> None:
        super().__init__()
        self.mood: dict[str, Any] = GOOD_MOOD
        self.tasks: list[str] = []
        self.answer = self._answer

    def _answer(self, payload: dict[str, Any]) -> dict[str, Any]:
        task = payload.get("task", "extract")
        self.tasks.append(task)
        if task == "mood":
            return self.mood
        if task == "insights":
            ids = [s["id"] for s in payload["statements"] if "marathon" in s["text"]]
            return {
                "habits": [],
                "goals": [{"text": "finish a marathon", "source_ids": ids, "status": "active"}],
                "interests": [],
            }
        if task == "diary":
            return {"text": f"Dear diary, I met {payload['user_id']} today."}
        if task == "notification":
            return {"message": f"LLM check-in ({payload['check_type']})"}
        return {"facts": []}


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[EngineLLM]:
    server = await EngineLLM().start()
    yield server
    await server.stop()


async def _serve(config: Any, shared_embedder: Embedder) -> AsyncIterator[AgentConv]:
    """The server of `config`, and a new project's read/write key on it."""
    running = await start(config, embedder=shared_embedder)
    key = config.admin_key
    assert key is not None
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            admin = admin_pb2_grpc.AdminServiceStub(ch)
            project = await admin.CreateProject(
                admin_pb2.CreateProjectRequest(project=admin_pb2.Project(display_name="e")),
                metadata=md(key),
            )
            created = await admin.CreateApiKey(
                admin_pb2.CreateApiKeyRequest(
                    project_id=project.id,
                    api_key=admin_pb2.ApiKey(
                        name="t",
                        scopes=[admin_pb2.API_KEY_SCOPE_READ, admin_pb2.API_KEY_SCOPE_WRITE],
                    ),
                ),
                metadata=md(key),
            )
            admin_key = await admin.CreateApiKey(
                admin_pb2.CreateApiKeyRequest(
                    project_id=project.id,
                    api_key=admin_pb2.ApiKey(name="a", scopes=[admin_pb2.API_KEY_SCOPE_ADMIN]),
                ),
                metadata=md(key),
            )
            ac = AgentConv(Conv(ch, created.secret))
            ac.admin_key = admin_key.secret
            yield ac
    finally:
        await running.stop(1.0)


@pytest.fixture(scope="module")
async def ac(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, fake: EngineLLM
) -> AsyncIterator[AgentConv]:
    config = make_config(
        tmp_path_factory.mktemp("engine-llm"),
        "mgk_test_" + secrets.token_urlsafe(24),
        extractor="llm",
        openai_base_url=fake.base_url,
        openai_model="engine",
        openai_timeout_s=2.0,
    )
    async for conv in _serve(config, shared_embedder):
        yield conv


@pytest.fixture(scope="module")
async def byok(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, fake: EngineLLM
) -> AsyncIterator[AgentConv]:
    """A rules server (no LLM of its own) whose BYOK openai endpoint is the fake."""
    config = make_config(
        tmp_path_factory.mktemp("engine-byok"),
        "mgk_test_" + secrets.token_urlsafe(24),
        provider_base_urls={"openai": fake.base_url},
    )
    async for conv in _serve(config, shared_embedder):
        yield conv


async def test_a_projects_own_key_drives_the_engine_on_a_rules_server(
    byok: AgentConv, fake: EngineLLM
) -> None:
    agent, user = await byok.agent(), uid("byok")
    await byok.talk(agent, user, "Hi, nice to meet you.")
    assert (await byok.mood(agent, user)).source == "lexicon"  # no key yet: offline
    admin = admin_pb2_grpc.AdminServiceStub(byok.conv.channel)
    own = "sk-own-" + secrets.token_urlsafe(12)
    await admin.SetProviderKey(
        admin_pb2.SetProviderKeyRequest(provider="openai", api_key=own, default_model="m"),
        metadata=md(byok.admin_key),
    )
    fake.mood = GOOD_MOOD
    since = len(fake.seen)
    await byok.talk(agent, user, "Thanks, that was lovely.")
    mood = await byok.mood(agent, user)
    assert (mood.label, mood.source) == ("delighted", "llm")
    asked = [r for r in fake.seen[since:] if r.path.endswith("/chat/completions")]
    assert asked and {r.headers["authorization"] for r in asked} == {f"Bearer {own}"}


async def test_the_llm_writes_mood_and_relationship(ac: AgentConv, fake: EngineLLM) -> None:
    fake.mood = GOOD_MOOD
    agent, user = await ac.agent(), uid("llm")
    await ac.talk(agent, user, "Hi, nice to meet you.")
    mood = await ac.mood(agent, user)
    assert (mood.label, mood.source) == ("delighted", "llm")
    assert mood.valence == pytest.approx(0.9) and mood.arousal == pytest.approx(0.7)
    rel = await ac.relationship(agent, user)
    assert (rel.affinity, rel.description, rel.source) == (
        pytest.approx(0.6),
        "A warm new friend.",
        "llm",
    )
    assert rel.messages == 1 and rel.familiarity > 0  # counts stay the engine's own


@pytest.mark.parametrize(
    "bad",
    [
        {"mood": {"label": "x", "valence": 5, "arousal": 0.5}, "relationship": {}},
        {"mood": {"label": "ok", "valence": 0.1, "arousal": 0.5}},
        {"something": "else"},
    ],
)
async def test_bad_llm_json_falls_back_to_the_lexicon(
    ac: AgentConv, fake: EngineLLM, bad: dict[str, Any]
) -> None:
    fake.mood = bad
    agent, user = await ac.agent(), uid("bad")
    await ac.talk(agent, user, "You are stupid and useless!")
    mood = await ac.mood(agent, user)
    assert mood.source == "lexicon" and mood.valence < 0 and mood.label in ("annoyed", "hurt")
    rel = await ac.relationship(agent, user)
    assert rel.source == "lexicon" and rel.affinity < 0  # nothing of the bad answer was kept


async def test_the_llm_classifies_goals_and_writes_the_diary_and_notifications(
    ac: AgentConv, fake: EngineLLM
) -> None:
    fake.mood = GOOD_MOOD
    agent, user = await ac.agent(), uid("llm2")
    s = await ac.talk(agent, user, "I am thinking about a marathon someday.", at=days_ago(10))
    goals = await ac.agents.ListGoals(ac.who(agent, user), metadata=md(ac.key))
    assert [g.text for g in goals.insights] == ["finish a marathon"]
    assert goals.insights[0].memory_ids
    job = await ac.conv.process(s.id)
    assert job.state == spb.JOB_STATE_DONE, job.error
    diary = await ac.agents.ListDiaryEntries(
        apb.ListDiaryEntriesRequest(agent_id=agent), metadata=md(ac.key)
    )
    assert f"Dear diary, I met {user} today." in diary.entries[0].text
    made = await ac.agents.RunNotificationChecks(
        apb.RunNotificationChecksRequest(agent_id=agent), metadata=md(ac.key)
    )
    assert [n.generated_message for n in made.created] == ["LLM check-in (inactivity)"]
