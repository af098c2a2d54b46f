"""client.simulations, eval_templates and eval_runs (sync and async) against the real server:
runs stream gapless events, resume by themselves through a connection that drops mid-run,
replay from any index, evaluate, re-score, cancel and delete."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from memgrpc.client import (
    AsyncMemgrpcClient,
    FailedPreconditionError,
    InvalidArgumentError,
    MemgrpcClient,
    NotFoundError,
)
from memgrpc.client.errors import MemgrpcError
from memgrpc.embed import Embedder
from memgrpc.server.app import start
from tests.client.conftest import FAST
from tests.conftest import NewKey, ServerHandle, make_config

MakeClient = Callable[..., MemgrpcClient]
ALEX = {
    "name": "Alex",
    "background": "Alex works as a nurse in Leeds. She has a dog named Pepper. "
    "She loves rock climbing on weekends.",
    "personality_traits": ["curious"],
    "communication_style": "casual",
}


@pytest.fixture(scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[ServerHandle]:
    data_dir = tmp_path_factory.mktemp("data")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    config = make_config(data_dir, admin_key, sim_heartbeat_s=0.2, sim_max_runs=3)
    running = await start(config, embedder=shared_embedder)
    try:
        yield ServerHandle(running.address, data_dir, admin_key, running.app, running)
    finally:
        await running.stop(1.0)


class Proxy:
    """A loopback TCP relay to the server whose connections can be cut mid-stream."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        """Drop every open connection (as a network failure would)."""
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def proxy(server: ServerHandle) -> AsyncIterator[Proxy]:
    p = Proxy(server.address)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def settled(client: MemgrpcClient, run_id: str) -> dict[str, Any]:
    """The run once its status is final (it is stored just after the terminal event)."""
    for _ in range(100):
        run = client.eval_runs.get(run_id)
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} stayed {run['status']}")


async def asettled(client: AsyncMemgrpcClient, run_id: str) -> dict[str, Any]:
    for _ in range(100):
        run = await client.eval_runs.get(run_id)
        if run["status"] not in ("queued", "running"):
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} stayed {run['status']}")


def gapless(events: list[dict[str, Any]]) -> None:
    assert [e["index"] for e in events] == list(range(len(events)))
    assert len({e["run_id"] for e in events}) == 1


async def test_simulate_streams_and_replays_from_any_index(
    new_key: NewKey, make_client: MakeClient
) -> None:
    _, key = await new_key()

    def body() -> None:
        with make_client(key) as client:
            agent = client.agents.create(display_name="Ava")
            events = list(
                client.simulations.simulate(
                    agent["id"],
                    user_persona=ALEX,
                    config={"max_sessions": 2, "max_turns_per_session": 2},
                )
            )
            gapless(events)
            types = [e["type"] for e in events]
            assert types[0] == "run_started" and types[-1] == "run_completed"
            assert types.count("session_started") == 2
            assert types.count("user_message") == types.count("agent_message") == 4
            assert "heartbeat" not in types and "evaluation" not in types
            assert "I work as a nurse in Leeds." in events[2]["message"]
            assert events[0]["data"]["sessions"] == 2  # Struct data as a dict
            run_id = events[0]["run_id"]
            for k in (0, 5, len(events) - 1):
                assert list(client.simulations.stream_events(run_id, from_index=k)) == events[k:]
            assert list(client.eval_runs.stream_events(run_id, 3)) == events[3:]
            run = settled(client, run_id)
            assert (run["kind"], run["status"], run["judge"]) == (
                "simulation",
                "completed",
                "offline",
            )
            assert (run["sessions_done"], run["turns_done"]) == (2, 4)
            assert run["event_count"] == len(events) and run["score"] is None
            with pytest.raises(MemgrpcError) as past:
                list(client.simulations.stream_events(run_id, from_index=len(events)))
            assert past.value.reason == "RUN_EVENT_INDEX_OUT_OF_RANGE"
            with pytest.raises(InvalidArgumentError) as bad:
                list(client.simulations.simulate(agent["id"], user_persona={"name": "x"}))
            assert "user_persona.background" in {v["field"] for v in bad.value.field_violations}
            with pytest.raises(InvalidArgumentError) as typo:
                client.simulations.simulate_async(
                    agent["id"], user_persona=ALEX, config={"sessions": 2}
                )
            assert typo.value.field_violations[0]["field"] == "config"

    await asyncio.to_thread(body)


async def test_simulate_resumes_through_a_dropped_connection(new_key: NewKey, proxy: Proxy) -> None:
    _, key = await new_key()
    loop = asyncio.get_running_loop()

    def body() -> list[dict[str, Any]]:
        with MemgrpcClient(proxy.address, api_key=key, **FAST) as client:
            agent = client.agents.create(display_name="Ava")
            out = []
            stream = client.simulations.simulate(
                agent["id"],
                user_persona=ALEX,
                config={"max_sessions": 3, "max_turns_per_session": 4},
            )
            for event in stream:
                out.append(event)
                if len(out) == 3:  # mid-run: the network drops every connection
                    loop.call_soon_threadsafe(proxy.cut)
            return out

    events = await asyncio.to_thread(body)
    gapless(events)
    assert events[-1]["type"] == "run_completed"
    assert sum(e["type"] == "agent_message" for e in events) == 12
    assert proxy.accepted >= 2  # it reconnected and resumed from the index after the last seen


async def test_run_eval_eval_only_and_evaluate(new_key: NewKey, make_client: MakeClient) -> None:
    _, key = await new_key()

    def body() -> None:
        with make_client(key) as client:
            agent = client.agents.create(display_name="Ava")
            events = list(
                client.simulations.run_eval(
                    agent["id"],
                    user_persona=ALEX,
                    simulation_config={
                        "max_sessions": 3,
                        "max_turns_per_session": 3,
                        "advance_time": 7 * 86400,
                    },
                )
            )
            gapless(events)
            evaluation = next(e for e in events if e["type"] == "evaluation")
            data = evaluation["data"]
            assert data["template_id"] == "tpl_memory_continuity" and data["judge"] == "offline"
            assert data["recall_total"] >= 3
            assert 0 <= data["recall_correct"] <= data["recall_total"]
            source = settled(client, events[0]["run_id"])
            assert source["kind"] == "run_eval"
            assert source["score"] == pytest.approx(data["score"])
            assert source["recall_total"] == data["recall_total"]

            tpl = client.eval_templates.create(
                name="Brevity",
                scoring_rubric="Short answers",
                categories=[
                    {"name": "length", "weight": 0.5, "criteria": "concise"},
                    {"name": "Empathy", "weight": 0.5, "criteria": "warmth"},
                ],
            )
            again = list(client.simulations.eval_only(source["id"], tpl["id"]))
            assert [e["type"] for e in again] == ["run_started", "evaluation", "run_completed"]
            rescored = client.eval_runs.get(again[0]["run_id"])
            assert rescored["id"] != source["id"] and rescored["kind"] == "eval_only"
            assert rescored["source_run_id"] == source["id"]
            assert rescored["agent_id"] == agent["id"] and rescored["template_id"] == tpl["id"]
            cats = {c["name"]: c for c in again[1]["data"]["categories"]}
            assert "no offline measure" in cats["Empathy"]["feedback"]
            queued = client.simulations.eval_only_async(source["id"], agent_id=agent["id"])
            assert queued["kind"] == "eval_only" and queued["template_id"] in (
                "",
                "tpl_memory_continuity",
            )
            tail = list(client.simulations.stream_events(queued["id"]))
            assert tail[-1]["type"] == "run_completed"
            listed = client.eval_runs.list(agent_id=agent["id"])
            assert listed["total_size"] == 3
            assert {r["id"] for r in listed["runs"]} == {source["id"], rescored["id"], queued["id"]}

            scored = client.simulations.evaluate(
                agent["id"],
                [
                    {"role": "user", "content": "I have a dog named Pepper."},
                    {"role": "assistant", "content": "Pepper sounds lovely."},
                    {"role": "user", "content": "Do you remember my dog's name?"},
                    {"role": "assistant", "content": "Your dog is Pepper."},
                ],
            )
            assert scored["template_id"] == "tpl_memory_continuity"
            assert 0 <= scored["score"] <= 1 and scored["category_scores"]
            with pytest.raises(InvalidArgumentError) as bad:
                client.simulations.evaluate(agent["id"], [{"role": "robot", "content": "hi"}])
            assert bad.value.field_violations[0]["field"] == "messages[0].role"

    await asyncio.to_thread(body)


async def test_templates_crud(new_key: NewKey, make_client: MakeClient) -> None:
    _, key = await new_key()

    def body() -> None:
        with make_client(key) as client:
            builtin = client.eval_templates.get("tpl_memory_continuity")
            assert builtin["builtin"] is True
            assert sum(c["weight"] for c in builtin["categories"]) == pytest.approx(1)
            with pytest.raises(InvalidArgumentError) as bad:
                client.eval_templates.create(
                    name="x",
                    categories=[{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.4}],
                )
            assert "template.categories" in {v["field"] for v in bad.value.field_violations}
            made = client.eval_templates.create(
                {
                    "name": "Empathy Check",
                    "scoring_rubric": "Emotional awareness",
                    "categories": [{"name": "a", "weight": 0.25}, {"name": "b", "weight": 0.75}],
                }
            )
            assert made["id"].startswith("tpl_") and made["builtin"] is False
            assert client.eval_templates.get(made["id"]) == made
            renamed = client.eval_templates.update(made["id"], name="Updated")
            assert (
                renamed["name"] == "Updated" and renamed["scoring_rubric"] == "Emotional awareness"
            )
            assert [c["name"] for c in renamed["categories"]] == ["a", "b"]
            cleared = client.eval_templates.update(
                made["id"], scoring_rubric="", update_mask=["scoring_rubric"]
            )
            assert cleared["scoring_rubric"] == "" and cleared["name"] == "Updated"
            listed = client.eval_templates.list()
            assert [t["id"] for t in listed["templates"]] == ["tpl_memory_continuity", made["id"]]
            page = client.eval_templates.list(page_size=1)
            assert len(page["templates"]) == 1 and page["next_page_token"]
            with pytest.raises(FailedPreconditionError) as builtin_err:
                client.eval_templates.delete("tpl_memory_continuity")
            assert builtin_err.value.reason == "EVAL_TEMPLATE_BUILTIN"
            client.eval_templates.delete(made["id"])
            with pytest.raises(NotFoundError):
                client.eval_templates.get(made["id"])

    await asyncio.to_thread(body)


async def test_async_simulate_cancel_delete_and_heartbeats(
    server: ServerHandle, new_key: NewKey
) -> None:
    _, key = await new_key()
    async with AsyncMemgrpcClient(server.address, api_key=key, **FAST) as client:
        agent = await client.agents.create(display_name="Ava")
        streamed = [
            e
            async for e in client.simulations.simulate(
                agent["id"],
                user_persona=ALEX,
                config={"max_sessions": 1, "max_turns_per_session": 2},
            )
        ]
        gapless(streamed)
        assert streamed[-1]["type"] == "run_completed"

        run = await client.simulations.simulate_async(
            agent["id"], user_persona=ALEX, config={"max_sessions": 2, "max_turns_per_session": 2}
        )
        assert run["id"].startswith("run_") and run["status"] in ("queued", "running")
        events = [e async for e in client.simulations.stream_events(run["id"])]
        gapless(events)
        assert events[-1]["type"] == "run_completed"
        assert [e async for e in client.eval_runs.stream_events(run["id"], 4)] == events[4:]
        done = await asettled(client, run["id"])
        assert done["status"] == "completed" and done["event_count"] == len(events)

        # a long run: cancel while following it, then delete
        long = await client.simulations.run_eval_async(
            agent["id"], user_persona=ALEX, config={"max_sessions": 10, "max_turns_per_session": 20}
        )
        assert long["kind"] == "run_eval"
        follow = client.simulations.stream_events(long["id"])
        first = await anext(follow)
        assert first["index"] == 0 and first["type"] == "run_started"
        cancelled = await client.eval_runs.cancel(long["id"])
        assert cancelled["status"] == "cancelled"
        stored = [first] + [e async for e in follow]
        gapless(stored)
        assert stored[-1]["type"] == "run_cancelled"
        listed = await client.eval_runs.list(agent_id=agent["id"], page_size=1)
        assert listed["total_size"] == 3 and listed["runs"][0]["id"] == long["id"]
        await client.eval_runs.delete(long["id"])
        with pytest.raises(NotFoundError):
            await client.eval_runs.get(long["id"])

        # heartbeats (every 0.2 s here) while nothing arrives: a follower of an index the run
        # has not reached yet sees them only when it asks for them
        slow = await client.simulations.simulate_async(
            agent["id"], user_persona=ALEX, config={"max_sessions": 10, "max_turns_per_session": 20}
        )
        ahead = 100_000
        beats = client.simulations.stream_events(slow["id"], ahead, heartbeats=True)
        async with asyncio.timeout(10):
            got = [await anext(beats) for _ in range(2)]
        await beats.aclose()  # type: ignore[attr-defined]
        assert [(e["type"], e["index"]) for e in got] == [("heartbeat", ahead)] * 2
        quiet = client.simulations.stream_events(slow["id"], ahead)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):  # five heartbeats come and are skipped
                await anext(quiet)
        await quiet.aclose()  # type: ignore[attr-defined]
        await client.eval_runs.cancel(slow["id"])

        with pytest.raises(InvalidArgumentError):
            client.simulations.stream_events(run["id"], from_index=-1)
        with pytest.raises(NotFoundError):
            await client.eval_runs.get("run_nope")
        tpl = await client.eval_templates.create(
            name="t", categories=[{"name": "memory", "weight": 1.0}]
        )
        assert (await client.eval_templates.get(tpl["id"]))["name"] == "t"
        await client.eval_templates.delete(tpl["id"])
