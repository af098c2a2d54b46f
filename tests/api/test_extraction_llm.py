"""The LLM extraction path end to end: a real server configured with MEMGRPC_EXTRACTOR=llm
against the fake OpenAI-compatible server on loopback, which answers with JSON this module
scripts from the request (so it can cite the real message and memory ids). Its failures (bad
JSON, 429, a stall past the timeout) fail the job with nothing written, or fall back to the
rules when configured."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from memgrpc.config import ConfigError, ServerConfig
from memgrpc.embed import Embedder
from memgrpc.server.app import RunningServer, start
from memgrpc.v1 import admin_pb2, admin_pb2_grpc
from memgrpc.v1 import sessions_pb2 as spb
from tests.conftest import make_config
from tests.helpers import md
from tests.intelhelpers import Conv
from tests.llm.fakellm import FakeLLM, Seen

Answer = Callable[[dict[str, Any]], dict[str, Any]]


class ScriptedLLM(FakeLLM):
    """Answers every request as `mode` says: "script" = `answer(payload)` as JSON (payload =
    the extractor's request: messages and known facts with their ids); any other mode is one of
    FakeLLM's behaviours (ratelimit, stall, broken, ...) or "prose" (not JSON)."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "script"
        self.answer: Answer = lambda payload: {"facts": []}
        self._texts: dict[str, str] = {}  # answers by the model name their request got

    async def _respond(self, seen: Seen, reader: Any, writer: Any) -> bool:
        if seen.path.endswith("/chat/completions"):
            seen.body["model"] = self.mode
            if self.mode in ("script", "prose"):
                # answered now: concurrent requests each get the answer to their own payload
                payload = json.loads(seen.body["messages"][-1]["content"])
                text = (
                    "Here are the facts!"
                    if self.mode == "prose"
                    else json.dumps(self.answer(payload))
                )
                seen.body["model"] = f"answer-{len(self._texts)}"
                self._texts[seen.body["model"]] = text
        return await super()._respond(seen, reader, writer)

    def _script(self, model: str) -> list[str | float]:
        if model not in self._texts:
            return super()._script(model)
        text = self._texts[model]
        chunks = [text[i : i + 9] for i in range(0, len(text), 9)]
        deltas = [json.dumps({"choices": [{"index": 0, "delta": {"content": c}}]}) for c in chunks]
        return [*deltas, "[DONE]"]


def fact(content: str, source: str, **kw: Any) -> dict[str, Any]:
    return {"content": content, "type": "fact", "source_message_ids": [source], **kw}


def ids(payload: dict[str, Any]) -> list[str]:
    return [m["id"] for m in payload["messages"] if m["role"] == "user"]


def known(payload: dict[str, Any], slot: str) -> str:
    return next(k["memory_id"] for k in payload["known_facts"] if k["slot"] == slot)


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[ScriptedLLM]:
    server = await ScriptedLLM().start()
    yield server
    await server.stop()


async def _serve(
    tmp: Path, embedder: Embedder, fake: ScriptedLLM, **extra: object
) -> RunningServer:
    config = make_config(
        tmp,
        "mgk_test_" + secrets.token_urlsafe(24),
        extractor="llm",
        openai_base_url=fake.base_url,
        openai_model="extract",
        openai_timeout_s=1.0,
        **extra,
    )
    return await start(config, embedder=embedder)


async def _conv(running: RunningServer) -> AsyncIterator[Conv]:
    key = running.app.config.admin_key
    assert key is not None
    async with grpc.aio.insecure_channel(running.address) as ch:
        admin = admin_pb2_grpc.AdminServiceStub(ch)
        project = await admin.CreateProject(
            admin_pb2.CreateProjectRequest(project=admin_pb2.Project(display_name="llm")),
            metadata=md(key),
        )
        created = await admin.CreateApiKey(
            admin_pb2.CreateApiKeyRequest(
                project_id=project.id,
                api_key=admin_pb2.ApiKey(
                    name="t",
                    scopes=[
                        admin_pb2.API_KEY_SCOPE_READ,
                        admin_pb2.API_KEY_SCOPE_WRITE,
                        admin_pb2.API_KEY_SCOPE_ADMIN,
                    ],
                ),
            ),
            metadata=md(key),
        )
        yield Conv(ch, created.secret)


@pytest.fixture(scope="module")
async def llm_conv(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, fake: ScriptedLLM
) -> AsyncIterator[Conv]:
    running = await _serve(tmp_path_factory.mktemp("llm"), shared_embedder, fake)
    try:
        async for conv in _conv(running):
            yield conv
    finally:
        await running.stop(1.0)


@pytest.fixture(scope="module")
async def fallback_conv(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, fake: ScriptedLLM
) -> AsyncIterator[Conv]:
    running = await _serve(
        tmp_path_factory.mktemp("fallback"), shared_embedder, fake, extractor_fallback="rules"
    )
    try:
        async for conv in _conv(running):
            yield conv
    finally:
        await running.stop(1.0)


@pytest.fixture(autouse=True)
def _script_mode(fake: ScriptedLLM) -> None:
    fake.mode = "script"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_llm_facts_are_written_with_their_sources_and_an_update_versions(
    llm_conv: Conv, fake: ScriptedLLM
) -> None:
    user = uid("llm")
    fake.answer = lambda p: {
        "facts": [
            fact("User lives in Quito.", ids(p)[0], slot="location", value="quito"),
            fact("User collects vinyl records.", ids(p)[1], type="preference"),
        ]
    }
    job = await llm_conv.talk(user, "Quito has been home for years.", "Vinyl is my thing.")
    assert job.stats.extractor == "llm"
    assert (job.stats.facts_extracted, job.stats.facts_added) == (2, 2)
    profile = await llm_conv.profile(user)
    assert profile["location"].value == "Quito"
    vinyl = await llm_conv.matching(user, "vinyl")
    assert len(vinyl) == 1 and vinyl[0].type == 5  # MEMORY_TYPE_PREFERENCE
    # the model is shown the current facts and says which one a new fact updates
    fake.answer = lambda p: {
        "facts": [
            fact(
                "User lives in Cuenca.",
                ids(p)[0],
                slot="location",
                value="cuenca",
                updates=known(p, "location"),
            )
        ]
    }
    job = await llm_conv.talk(user, "Cuenca is where you'll find me now.")
    assert job.stats.versions_made == 1 and job.stats.facts_added == 0
    now = (await llm_conv.profile(user))["location"]
    assert now.value == "Cuenca" and now.memory_id == profile["location"].memory_id
    versions = await llm_conv.versions(now.memory_id)
    assert versions[1].expire_reason == "SUPERSEDED" and "Quito" in versions[1].content
    assert fake.seen[-1].body["messages"][-1]["content"].count("User lives in Quito.") == 1


@pytest.mark.parametrize(
    ("mode", "words"),
    [("prose", "answer"), ("ratelimit", "rate"), ("stall", ""), ("broken", "")],
)
async def test_llm_failure_fails_the_job_with_nothing_written(
    llm_conv: Conv, fake: ScriptedLLM, mode: str, words: str
) -> None:
    user = uid(f"fail-{mode}")
    fake.mode = mode
    s = await llm_conv.session(user, "I'm a glassblower in Murano.")
    job = await llm_conv.process(s.id)
    assert job.state == spb.JOB_STATE_FAILED
    assert job.error.startswith("extract: ") and words in job.error.lower()
    assert job.stats.facts_extracted == 0 and job.stats.extractor == ""
    assert await llm_conv.extracted(user) == []
    session = await llm_conv.sessions.GetSession(
        spb.GetSessionRequest(id=s.id), metadata=md(llm_conv.key)
    )
    assert session.status == spb.SESSION_STATUS_FAILED
    # once the model answers again, processing the failed session again writes the facts
    fake.mode = "script"
    fake.answer = lambda p: {
        "facts": [
            fact("User works as a glassblower.", ids(p)[0], slot="occupation", value="glassblower")
        ]
    }
    again = await llm_conv.process(s.id)
    assert again.state == spb.JOB_STATE_DONE, again.error
    assert [m.content for m in await llm_conv.extracted(user)] == ["User works as a glassblower."]


async def test_fallback_to_rules_when_the_llm_fails(fallback_conv: Conv, fake: ScriptedLLM) -> None:
    user = uid("fallback")
    fake.mode = "prose"
    job = await fallback_conv.talk(user, "I live in Tartu.")
    assert job.stats.extractor == "rules"
    assert (await fallback_conv.profile(user))["location"].value == "Tartu"
    fake.mode = "script"
    fake.answer = lambda p: {"facts": [fact("User enjoys chess.", ids(p)[0], type="preference")]}
    job = await fallback_conv.talk(user, "Chess keeps me sharp.")
    assert job.stats.extractor == "llm" and job.stats.facts_added == 1


async def test_llm_contradiction_opens_a_conflict(llm_conv: Conv, fake: ScriptedLLM) -> None:
    user = uid("contra")
    fake.answer = lambda p: {
        "facts": [fact("User is vegan.", ids(p)[0], slot="diet", value="vegan", topic="diet")]
    }
    await llm_conv.talk(user, "Plants only for me.")
    fake.answer = lambda p: {
        "facts": [
            fact(
                "User eats fish.",
                ids(p)[0],
                topic="diet",
                contradicts=known(p, "diet"),
            )
        ]
    }
    job = await llm_conv.talk(user, "Grilled sardines tonight, can't wait.")
    assert job.stats.conflicts_opened == 1 and job.stats.facts_added == 0
    vegan = await llm_conv.matching(user, "vegan")
    assert vegan[0].merge_conflict_in_progress
    assert await llm_conv.matching(user, "fish") == []  # the new fact waits in the conflict


def test_llm_extractor_needs_an_endpoint() -> None:
    with pytest.raises(ConfigError, match="MEMGRPC_OPENAI_BASE_URL"):
        ServerConfig(extractor="llm")
    with pytest.raises(ConfigError, match="MEMGRPC_EXTRACTOR"):
        ServerConfig(extractor="magic")
    with pytest.raises(ConfigError, match="MEMGRPC_EXTRACTOR_FALLBACK"):
        ServerConfig(extractor_fallback="rules")  # falls back only from llm
    cfg = ServerConfig.load(
        env={
            "MEMGRPC_EXTRACTOR": "LLM",
            "MEMGRPC_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "MEMGRPC_EXTRACTOR_FALLBACK": "rules",
        }
    )
    assert (cfg.extractor, cfg.extractor_fallback) == ("llm", "rules")
    assert ServerConfig().extractor == "rules"


async def test_concurrent_sessions_of_one_user_do_not_duplicate(
    llm_conv: Conv, fake: ScriptedLLM
) -> None:
    """Two sessions of one user processed at once: the per-user lock serialises their writes,
    so the fact both state is one memory mentioned twice."""
    user = uid("race")
    fake.answer = lambda p: {
        "facts": [fact("User keeps bees.", ids(p)[0], type="fact", entities=["bees"])]
    }
    a = await llm_conv.session(user, "My bees made honey.")
    b = await llm_conv.session(user, "The bees are buzzing today.")
    jobs = await asyncio.gather(llm_conv.process(a.id), llm_conv.process(b.id))
    assert all(j.state == spb.JOB_STATE_DONE for j in jobs)
    bees = await llm_conv.matching(user, "bees")
    assert len(bees) == 1 and bees[0].mention_count == 2


async def test_extractor_none_processes_without_extraction(
    tmp_path: Path, shared_embedder: Embedder
) -> None:
    config = make_config(tmp_path, "mgk_test_" + secrets.token_urlsafe(24), extractor="none")
    running = await start(config, embedder=shared_embedder)
    try:
        async for conv in _conv(running):
            job = await conv.talk("no-extraction", "I live in Graz and I love hiking.")
            assert job.stats.extractor == "" and job.stats.facts_extracted == 0
            assert await conv.extracted("no-extraction") == []
    finally:
        await running.stop(1.0)
