"""Runs across server lifetimes and the LLM path: a stopping server fails its running run
("server shutdown"), a starting server fails a run whose owner is gone (stale lease),
advance_time dates each session's messages, and with an LLM configured the LLM plays the
persona and judges (a fake OpenAI-compatible server on loopback), bad judge output failing
clearly."""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from memgrpc.embed import Embedder
from memgrpc.server.app import RunningServer, start
from memgrpc.store.filters import Where
from memgrpc.v1 import admin_pb2, admin_pb2_grpc, agents_pb2, agents_pb2_grpc, simulation_pb2_grpc
from memgrpc.v1 import simulation_pb2 as pb
from tests.api.test_simulation import ALEX, collect, config, fails
from tests.conftest import make_config
from tests.helpers import md
from tests.llm.fakellm import FakeLLM, Seen


class PersonaJudgeLLM(FakeLLM):
    """Plays the persona (echoes the scripted line, marked), judges in JSON (or prose when
    `judge_ok` is False) and answers chat turns with FakeLLM's fixed text."""

    def __init__(self) -> None:
        super().__init__()
        self.judge_ok = True
        self.persona_calls = 0
        self.judge_calls = 0
        self._texts: dict[str, str] = {}

    async def _respond(self, seen: Seen, reader: Any, writer: Any) -> bool:
        msgs = seen.body.get("messages", [])
        system = msgs[0]["content"] if msgs else ""
        text = None
        if system.startswith("You play a user"):
            self.persona_calls += 1
            line = re.search(r': "(.*)"\. Keep', system, re.S)
            text = f"(in character) {line.group(1) if line else ''}"
        elif system.startswith("You are an evaluation judge"):
            self.judge_calls += 1
            cats = json.loads(msgs[-1]["content"])["categories"]
            text = (
                json.dumps(
                    {
                        "feedback": "judged by the fake",
                        "categories": [
                            {"name": c["name"], "score": 0.5, "feedback": "ok"} for c in cats
                        ],
                    }
                )
                if self.judge_ok
                else "Looks great to me!"
            )
        if text is not None:
            seen.body["model"] = f"answer-{len(self._texts)}"
            self._texts[seen.body["model"]] = text
        return await super()._respond(seen, reader, writer)

    def _script(self, model: str) -> list[str | float]:
        if model not in self._texts:
            return super()._script(model)
        text = self._texts[model]
        return [
            json.dumps({"choices": [{"index": 0, "delta": {"content": text[i : i + 7]}}]})
            for i in range(0, len(text), 7)
        ] + ["[DONE]"]


async def _key_and_agent(ch: grpc.aio.Channel, admin_key: str) -> tuple[str, str]:
    admin = admin_pb2_grpc.AdminServiceStub(ch)
    project = await admin.CreateProject(
        admin_pb2.CreateProjectRequest(project=admin_pb2.Project(display_name="t")),
        metadata=md(admin_key),
    )
    made = await admin.CreateApiKey(
        admin_pb2.CreateApiKeyRequest(
            project_id=project.id,
            api_key=admin_pb2.ApiKey(
                name="t", scopes=[admin_pb2.API_KEY_SCOPE_READ, admin_pb2.API_KEY_SCOPE_WRITE]
            ),
        ),
        metadata=md(admin_key),
    )
    agent = await agents_pb2_grpc.AgentServiceStub(ch).CreateAgent(
        agents_pb2.CreateAgentRequest(agent=agents_pb2.Agent(display_name="Ava")),
        metadata=md(made.secret),
    )
    return made.secret, agent.id


async def _serve(data: Path, admin_key: str, embedder: Embedder, **kw: Any) -> RunningServer:
    return await start(make_config(data, admin_key, sim_heartbeat_s=0.3, **kw), embedder=embedder)


async def test_shutdown_fails_the_run_and_a_new_server_reaps_stale_ones(
    tmp_path: Path, shared_embedder: Embedder
) -> None:
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    running = await _serve(tmp_path, admin_key, shared_embedder)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            key, agent_id = await _key_and_agent(ch, admin_key)
            sim = simulation_pb2_grpc.SimulationServiceStub(ch)
            run = await sim.StartRun(
                pb.StartRunRequest(
                    kind=pb.RUN_KIND_SIMULATION,
                    agent_id=agent_id,
                    user_persona=ALEX,
                    config=config(10, 20),
                ),
                metadata=md(key),
            )
            async for e in sim.StreamRunEvents(
                pb.StreamRunEventsRequest(run_id=run.id), metadata=md(key)
            ):
                if e.type == "agent_message":
                    break
    finally:
        await running.stop(1.0)
    # a run left RUNNING by a server that died: its lease is an hour old
    stale_id = "run_stale"
    store = running.app.store
    orphan = {
        **{
            f.name: None
            for f in store.specs["runs"].schema  # every column, mostly null
        },
        "id": stale_id,
        "project_id": "prj_x",
        "agent_id": agent_id,
        "kind": "simulation",
        "status": "running",
        "spec": "{}",
        "lease_time": datetime.now(UTC) - timedelta(hours=1),
        "create_time": datetime.now(UTC) - timedelta(hours=1),
    }
    again = await _serve(tmp_path, admin_key, shared_embedder)
    try:
        await again.app.store.writer("runs").insert([orphan])
        assert await again.app.runs.recover() == 1
        async with grpc.aio.insecure_channel(again.address) as ch:
            sim = simulation_pb2_grpc.SimulationServiceStub(ch)
            stopped = await sim.GetRun(pb.GetRunRequest(id=run.id), metadata=md(key))
            assert stopped.status == pb.RUN_STATUS_FAILED and stopped.error == "server shutdown"
            events = await collect(
                sim.StreamRunEvents(pb.StreamRunEventsRequest(run_id=run.id), metadata=md(key))
            )
            assert events[-1].type == "run_failed"
            assert dict(events[-1].data)["error"] == "server shutdown"
            assert [e.index for e in events] == list(range(len(events)))
        rows = (
            await again.app.store.table("runs")
            .query()
            .where(str(Where().eq("id", stale_id)))
            .to_list()
        )
        assert rows[0]["status"] == "failed" and "lease" in rows[0]["error"]
    finally:
        await again.stop(1.0)


async def test_advance_time_dates_each_session(tmp_path: Path, shared_embedder: Embedder) -> None:
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    running = await _serve(tmp_path, admin_key, shared_embedder)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            key, agent_id = await _key_and_agent(ch, admin_key)
            sim = simulation_pb2_grpc.SimulationServiceStub(ch)
            week = duration_pb2.Duration(seconds=7 * 86400)
            events = await collect(
                sim.Simulate(
                    pb.SimulateRequest(
                        agent_id=agent_id,
                        user_persona=ALEX,
                        config=pb.SimulationConfig(
                            max_sessions=3, max_turns_per_session=1, advance_time=week
                        ),
                    ),
                    metadata=md(key),
                )
            )
            run = await sim.GetRun(pb.GetRunRequest(id=events[0].run_id), metadata=md(key))
        rows = (
            await running.app.store.table("messages")
            .query()
            .where(str(Where().eq("user_id", run.user_id)))
            .to_list()
        )
        now = datetime.now(UTC)
        ages = sorted(round((now - r["create_time"]) / timedelta(days=1)) for r in rows)
        assert ages == [0, 0, 7, 7, 14, 14]
    finally:
        await running.stop(1.0)


@pytest.fixture
async def llm() -> Any:
    fake = await PersonaJudgeLLM().start()
    yield fake
    await fake.stop()


async def test_llm_plays_the_persona_and_judges(
    tmp_path: Path, shared_embedder: Embedder, llm: PersonaJudgeLLM
) -> None:
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    running = await _serve(
        tmp_path,
        admin_key,
        shared_embedder,
        openai_base_url=llm.base_url,
        openai_api_key="sk-test",
        openai_model="fast",
        chat_provider="openai",
    )
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            key, agent_id = await _key_and_agent(ch, admin_key)
            sim = simulation_pb2_grpc.SimulationServiceStub(ch)
            events = await collect(
                sim.RunEval(
                    pb.RunEvalRequest(
                        agent_id=agent_id,
                        user_persona=ALEX,
                        config=config(2, 2),
                        judge=pb.JUDGE_LLM,
                    ),
                    metadata=md(key),
                )
            )
            said = [e.message for e in events if e.type == "user_message"]
            assert len(said) == 4 and all(s.startswith("(in character)") for s in said)
            assert "I work as a nurse" in said[0]
            replies = [e.message for e in events if e.type == "agent_message"]
            assert replies == ["Hello from the fake model."] * 4  # the agent is the LLM too
            ev = next(e for e in events if e.type == "evaluation")
            assert dict(ev.data)["judge"] == "llm" and dict(ev.data)["score"] == 0.5
            assert llm.persona_calls == 4 and llm.judge_calls == 1
            msgs = [
                pb.EvalMessage(role="user", content="I live in Lisbon."),
                pb.EvalMessage(role="assistant", content="Nice."),
            ]
            judged = await sim.Evaluate(
                pb.EvaluateRequest(agent_id=agent_id, messages=msgs, judge=pb.JUDGE_LLM),
                metadata=md(key),
            )
            assert judged.judge == pb.JUDGE_LLM and judged.feedback == "judged by the fake"
            llm.judge_ok = False
            assert "JUDGE_BAD_OUTPUT" in await fails(
                sim.Evaluate(
                    pb.EvaluateRequest(agent_id=agent_id, messages=msgs, judge=pb.JUDGE_LLM),
                    metadata=md(key),
                ),
                grpc.StatusCode.UNAVAILABLE,
            )
            source = events[0].run_id
            failed = await collect(
                sim.EvalOnly(
                    pb.EvalOnlyRequest(agent_id=agent_id, source_run_id=source, judge=pb.JUDGE_LLM),
                    metadata=md(key),
                )
            )
            assert failed[-1].type == "run_failed" and "JUDGE_BAD_OUTPUT" in failed[-1].message
    finally:
        await running.stop(1.0)
