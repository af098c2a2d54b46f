"""SimulationService through the real server: runs stream numbered events with no gaps, resume
from any index (also on a second server process over the same data), EvalOnly re-scores into a
new run, cancel, delete, OUT_OF_RANGE, heartbeats, bad input and project isolation."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from memgrpc.embed import Embedder
from memgrpc.server.app import start
from memgrpc.store.filters import Where
from memgrpc.v1 import agents_pb2, agents_pb2_grpc, simulation_pb2_grpc
from memgrpc.v1 import simulation_pb2 as pb
from tests.conftest import NewKey, ServerHandle, make_config
from tests.helpers import md
from tests.memhelpers import details
from tests.procs import free_port, start_memgrpc, stop_server, wait_serving

Stub = simulation_pb2_grpc.SimulationServiceStub
TERMINAL = {"run_completed", "run_failed", "run_cancelled"}
ALEX = pb.UserPersona(
    name="Alex",
    background=(
        "Alex works as a nurse at St Mary hospital in Leeds. She has a dog named Pepper. "
        "She loves rock climbing on weekends."
    ),
    personality_traits=["curious", "friendly"],
    communication_style="casual",
)


@pytest.fixture(scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[ServerHandle]:
    data_dir = tmp_path_factory.mktemp("data")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    config = make_config(data_dir, admin_key, sim_heartbeat_s=0.3, sim_max_runs=3)
    running = await start(config, embedder=shared_embedder)
    try:
        yield ServerHandle(running.address, data_dir, admin_key, running.app, running)
    finally:
        await running.stop(1.0)


@pytest.fixture(scope="module")
def sim(channel: grpc.aio.Channel) -> Stub:
    return simulation_pb2_grpc.SimulationServiceStub(channel)


async def new_agent(channel: grpc.aio.Channel, key: str) -> str:
    stub = agents_pb2_grpc.AgentServiceStub(channel)
    made = await stub.CreateAgent(
        agents_pb2.CreateAgentRequest(agent=agents_pb2.Agent(display_name="Ava")),
        metadata=md(key),
    )
    return made.id


async def fails(call: Any, code: grpc.StatusCode) -> set[str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    fields, reason = details(err.value)
    return fields | {reason}  # the fields in violation and the ErrorInfo reason


async def collect(stream: Any, *, heartbeats: bool = False) -> list[pb.RunEvent]:
    out = []
    async for e in stream:
        if e.type == "heartbeat" and not heartbeats:
            continue
        out.append(e)
    return out


def config(sessions: int, turns: int) -> pb.SimulationConfig:
    return pb.SimulationConfig(max_sessions=sessions, max_turns_per_session=turns)


async def wait_status(sim: Stub, key: str, run_id: str, *statuses: int) -> pb.Run:
    for _ in range(600):
        run = await sim.GetRun(pb.GetRunRequest(id=run_id), metadata=md(key))
        if run.status in statuses:
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} stayed {run.status}")


async def test_simulate_streams_gapless_events_and_replays_from_any_index(
    sim: Stub, channel: grpc.aio.Channel, new_key: NewKey, server: ServerHandle
) -> None:
    _, key = await new_key()
    agent_id = await new_agent(channel, key)
    events = await collect(
        sim.Simulate(
            pb.SimulateRequest(agent_id=agent_id, user_persona=ALEX, config=config(2, 3)),
            metadata=md(key),
        )
    )
    assert [e.index for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[0] == "run_started" and types[-1] == "run_completed"
    assert types.count("session_started") == 2 and types.count("session_ended") == 2
    assert types.count("user_message") == 6 and types.count("agent_message") == 6
    assert types.count("facts_extracted") == 2
    assert "evaluation" not in types  # a SIMULATION is not judged
    run_id = events[0].run_id
    # the user's facts come from the persona's background, in the first person
    said = [e.message for e in events if e.type == "user_message"]
    assert any("I work as a nurse" in s for s in said) and any("Pepper" in s for s in said)
    assert any("remember" in s.lower() for s in said)
    for k in (0, 3, len(events) - 1):
        again = await collect(
            sim.StreamRunEvents(
                pb.StreamRunEventsRequest(run_id=run_id, from_index=k), metadata=md(key)
            )
        )
        assert [(e.index, e.type, e.message) for e in again] == [
            (e.index, e.type, e.message) for e in events[k:]
        ]
    run = await sim.GetRun(pb.GetRunRequest(id=run_id), metadata=md(key))
    assert run.status == pb.RUN_STATUS_COMPLETED
    assert (run.sessions_done, run.turns_done, run.event_count) == (2, 6, len(events))
    # the agent side was the real chat turn: the simulated user's messages are stored
    where = Where().eq("user_id", run.user_id)
    assert await server.app.store.table("messages").count_rows(str(where)) == 12
    # past the end of a finished run
    assert "RUN_EVENT_INDEX_OUT_OF_RANGE" in await fails(
        collect(
            sim.StreamRunEvents(
                pb.StreamRunEventsRequest(run_id=run_id, from_index=len(events)), metadata=md(key)
            )
        ),
        grpc.StatusCode.OUT_OF_RANGE,
    )


async def test_a_stream_past_the_end_stops_when_the_run_ends_and_getrun_agrees(
    sim: Stub, channel: grpc.aio.Channel, new_key: NewKey
) -> None:
    """A follower asked for an index the run never reaches is told so once the run ends (not
    kept on heartbeats forever); GetRun read right after the terminal event says it ended."""
    _, key = await new_key()
    agent_id = await new_agent(channel, key)
    run = await sim.StartRun(
        pb.StartRunRequest(
            kind=pb.RUN_KIND_SIMULATION, agent_id=agent_id, user_persona=ALEX, config=config(1, 1)
        ),
        metadata=md(key),
    )
    far = sim.StreamRunEvents(
        pb.StreamRunEventsRequest(run_id=run.id, from_index=1000), metadata=md(key)
    )
    assert "RUN_EVENT_INDEX_OUT_OF_RANGE" in await fails(
        asyncio.wait_for(collect(far, heartbeats=True), 30), grpc.StatusCode.OUT_OF_RANGE
    )
    events = await collect(
        sim.StreamRunEvents(pb.StreamRunEventsRequest(run_id=run.id), metadata=md(key))
    )
    assert events[-1].type == "run_completed"
    got = await sim.GetRun(pb.GetRunRequest(id=run.id), metadata=md(key))
    assert got.status == pb.RUN_STATUS_COMPLETED


async def test_disconnect_and_resume_misses_nothing(
    sim: Stub, channel: grpc.aio.Channel, new_key: NewKey
) -> None:
    _, key = await new_key()
    agent_id = await new_agent(channel, key)
    call = sim.Simulate(
        pb.SimulateRequest(agent_id=agent_id, user_persona=ALEX, config=config(3, 3)),
        metadata=md(key),
    )
    first: list[pb.RunEvent] = []
    async for e in call:
        if e.type != "heartbeat":
            first.append(e)
        if len(first) == 4:
            break
    call.cancel()  # the client goes away mid-run; the run goes on
    rest = await collect(
        sim.StreamRunEvents(
            pb.StreamRunEventsRequest(run_id=first[0].run_id, from_index=4), metadata=md(key)
        )
    )
    got = first + rest
    assert [e.index for e in got] == list(range(len(got)))
    assert got[-1].type == "run_completed"
    assert sum(e.type == "agent_message" for e in got) == 9


async def test_run_eval_measures_recall_and_eval_only_rescores(
    sim: Stub, channel: grpc.aio.Channel, new_key: NewKey
) -> None:
    _, key = await new_key()
    agent_id = await new_agent(channel, key)
    advance = duration_pb2.Duration(seconds=7 * 86400)
    events = await collect(
        sim.RunEval(
            pb.RunEvalRequest(
                agent_id=agent_id,
                user_persona=ALEX,
                config=pb.SimulationConfig(
                    max_sessions=3, max_turns_per_session=3, advance_time=advance
                ),
            ),
            metadata=md(key),
        )
    )
    evaluation = next(e for e in events if e.type == "evaluation")
    data = dict(evaluation.data)
    assert data["template_id"] == "tpl_memory_continuity"
    assert data["recall_total"] >= 3
    assert 0 <= data["recall_correct"] <= data["recall_total"]
    assert "recall questions answered with the right fact" in evaluation.message
    source = await sim.GetRun(pb.GetRunRequest(id=events[0].run_id), metadata=md(key))
    assert source.HasField("score") and source.recall_total == data["recall_total"]
    # another template: only what the offline judge can measure is weighted in
    tpl = await sim.CreateEvalTemplate(
        pb.CreateEvalTemplateRequest(
            template=pb.EvalTemplate(
                name="Brevity",
                scoring_rubric="Short, non-repetitive answers",
                categories=[
                    pb.EvalCategory(name="length", weight=0.5, criteria="concise"),
                    pb.EvalCategory(name="Empathy", weight=0.5, criteria="warmth"),
                ],
            )
        ),
        metadata=md(key),
    )
    again = await collect(
        sim.EvalOnly(
            pb.EvalOnlyRequest(agent_id=agent_id, source_run_id=source.id, template_id=tpl.id),
            metadata=md(key),
        )
    )
    assert [e.type for e in again] == ["run_started", "evaluation", "run_completed"]
    assert again[0].run_id != source.id
    cats = {c["name"]: c for c in dict(again[1].data)["categories"]}
    assert set(cats) == {"length", "Empathy"}
    assert "no offline measure" in cats["Empathy"]["feedback"]
    rescored = await sim.GetRun(pb.GetRunRequest(id=again[0].run_id), metadata=md(key))
    assert rescored.kind == pb.RUN_KIND_EVAL_ONLY and rescored.source_run_id == source.id
    listed = await sim.ListRuns(pb.ListRunsRequest(agent_id=agent_id), metadata=md(key))
    assert {r.id for r in listed.runs} == {source.id, rescored.id} and listed.total_size == 2


async def test_cancel_delete_and_heartbeats(
    sim: Stub, channel: grpc.aio.Channel, new_key: NewKey, server: ServerHandle
) -> None:
    project, key = await new_key()
    agent_id = await new_agent(channel, key)
    run = await sim.StartRun(
        pb.StartRunRequest(
            kind=pb.RUN_KIND_SIMULATION,
            agent_id=agent_id,
            user_persona=ALEX,
            config=config(10, 20),
        ),
        metadata=md(key),
    )
    assert run.id.startswith("run_") and run.status in (
        pb.RUN_STATUS_QUEUED,
        pb.RUN_STATUS_RUNNING,
    )
    await asyncio.sleep(0.5)
    cancelled = await sim.CancelRun(pb.CancelRunRequest(id=run.id), metadata=md(key))
    assert cancelled.status == pb.RUN_STATUS_CANCELLED
    events = await collect(
        sim.StreamRunEvents(pb.StreamRunEventsRequest(run_id=run.id), metadata=md(key))
    )
    assert events[-1].type == "run_cancelled"
    assert [e.index for e in events] == list(range(len(events)))
    user = Where().eq("project_id", project).eq("user_id", cancelled.user_id)
    assert await server.app.store.table("sessions").count_rows(str(user)) >= 1
    await sim.DeleteRun(pb.DeleteRunRequest(id=run.id), metadata=md(key))
    await fails(
        sim.GetRun(pb.GetRunRequest(id=run.id), metadata=md(key)), grpc.StatusCode.NOT_FOUND
    )
    for table in ("sessions", "messages", "memories"):
        assert await server.app.store.table(table).count_rows(str(user)) == 0, table
    ev = Where().eq("run_id", run.id)
    assert await server.app.store.table("run_events").count_rows(str(ev)) == 0


async def test_delete_agent_deletes_its_runs(
    sim: Stub, channel: grpc.aio.Channel, new_key: NewKey, server: ServerHandle
) -> None:
    project, key = await new_key()
    agent_id = await new_agent(channel, key)
    other = await new_agent(channel, key)
    runs = []
    for a in (agent_id, other):
        run = await sim.StartRun(
            pb.StartRunRequest(
                kind=pb.RUN_KIND_SIMULATION, agent_id=a, user_persona=ALEX, config=config(1, 2)
            ),
            metadata=md(key),
        )
        runs.append(await wait_status(sim, key, run.id, pb.RUN_STATUS_COMPLETED))
    agents = agents_pb2_grpc.AgentServiceStub(channel)
    await agents.DeleteAgent(agents_pb2.DeleteAgentRequest(id=agent_id), metadata=md(key))
    await fails(
        sim.GetRun(pb.GetRunRequest(id=runs[0].id), metadata=md(key)), grpc.StatusCode.NOT_FOUND
    )
    gone = Where().eq("run_id", runs[0].id)
    assert await server.app.store.table("run_events").count_rows(str(gone)) == 0
    user = Where().eq("project_id", project).eq("user_id", runs[0].user_id)
    assert await server.app.store.table("messages").count_rows(str(user)) == 0
    kept = await sim.GetRun(pb.GetRunRequest(id=runs[1].id), metadata=md(key))
    assert kept.status == pb.RUN_STATUS_COMPLETED  # another agent's run stays


async def test_concurrent_run_cap(sim: Stub, channel: grpc.aio.Channel, new_key: NewKey) -> None:
    _, key = await new_key()
    agent_id = await new_agent(channel, key)
    req = pb.StartRunRequest(
        kind=pb.RUN_KIND_SIMULATION, agent_id=agent_id, user_persona=ALEX, config=config(10, 20)
    )
    runs = [await sim.StartRun(req, metadata=md(key)) for _ in range(3)]
    assert "TOO_MANY_RUNS" in await fails(
        sim.StartRun(req, metadata=md(key)), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    for r in runs:
        await sim.CancelRun(pb.CancelRunRequest(id=r.id), metadata=md(key))


async def test_heartbeats_while_idle(sim: Stub, channel: grpc.aio.Channel, new_key: NewKey) -> None:
    _, key = await new_key()
    agent_id = await new_agent(channel, key)
    run = await sim.StartRun(
        pb.StartRunRequest(
            kind=pb.RUN_KIND_SIMULATION, agent_id=agent_id, user_persona=ALEX, config=config(1, 1)
        ),
        metadata=md(key),
    )
    done = await wait_status(sim, key, run.id, pb.RUN_STATUS_COMPLETED)
    # a follower of a future index waits (heartbeats) ... and a finished run's end is final
    call = sim.StreamRunEvents(
        pb.StreamRunEventsRequest(run_id=run.id, from_index=done.event_count - 1),
        metadata=md(key),
    )
    got = await collect(call, heartbeats=True)
    assert [e.type for e in got] == ["run_completed"]


async def test_templates_crud_weights_and_builtin(sim: Stub, new_key: NewKey) -> None:
    _, key = await new_key()
    builtin = await sim.GetEvalTemplate(
        pb.GetEvalTemplateRequest(id="tpl_memory_continuity"), metadata=md(key)
    )
    assert builtin.builtin and abs(sum(c.weight for c in builtin.categories) - 1) < 1e-9
    bad = pb.EvalTemplate(
        name="x",
        categories=[pb.EvalCategory(name="a", weight=0.5), pb.EvalCategory(name="b", weight=0.4)],
    )
    fields = await fails(
        sim.CreateEvalTemplate(pb.CreateEvalTemplateRequest(template=bad), metadata=md(key)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "template.categories" in fields
    ok = pb.EvalTemplate(
        name="Empathy Check",
        categories=[
            pb.EvalCategory(name="a", weight=0.3333333),
            pb.EvalCategory(name="b", weight=0.6666667),
        ],
    )
    made = await sim.CreateEvalTemplate(pb.CreateEvalTemplateRequest(template=ok), metadata=md(key))
    assert made.id.startswith("tpl_")
    renamed = await sim.UpdateEvalTemplate(
        pb.UpdateEvalTemplateRequest(template=pb.EvalTemplate(id=made.id, name="Updated")),
        metadata=md(key),
    )
    assert renamed.name == "Updated" and len(renamed.categories) == 2
    listed = await sim.ListEvalTemplates(pb.ListEvalTemplatesRequest(), metadata=md(key))
    assert [t.id for t in listed.templates] == ["tpl_memory_continuity", made.id]
    page = await sim.ListEvalTemplates(pb.ListEvalTemplatesRequest(page_size=1), metadata=md(key))
    assert len(page.templates) == 1 and page.next_page_token and page.total_size == 2
    assert "EVAL_TEMPLATE_BUILTIN" in await fails(
        sim.DeleteEvalTemplate(
            pb.DeleteEvalTemplateRequest(id="tpl_memory_continuity"), metadata=md(key)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    await sim.DeleteEvalTemplate(pb.DeleteEvalTemplateRequest(id=made.id), metadata=md(key))
    await fails(
        sim.GetEvalTemplate(pb.GetEvalTemplateRequest(id=made.id), metadata=md(key)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_evaluate_offline_names_its_evidence(
    sim: Stub, channel: grpc.aio.Channel, new_key: NewKey
) -> None:
    _, key = await new_key()
    agent_id = await new_agent(channel, key)

    def msgs(answer: str) -> list[pb.EvalMessage]:
        return [
            pb.EvalMessage(role="user", content="I live in Lisbon with my cat."),
            pb.EvalMessage(role="assistant", content="Lisbon sounds lovely, tell me more."),
            pb.EvalMessage(role="user", content="Do you remember where I said I live?"),
            pb.EvalMessage(role="assistant", content=answer),
        ]

    good = await sim.Evaluate(
        pb.EvaluateRequest(agent_id=agent_id, messages=msgs("You live in Lisbon.")),
        metadata=md(key),
    )
    bad = await sim.Evaluate(
        pb.EvaluateRequest(agent_id=agent_id, messages=msgs("Sorry, I have no idea.")),
        metadata=md(key),
    )
    assert good.score > bad.score
    cont = {c.name: c for c in good.category_scores}["memory_continuity"]
    assert cont.score == 1.0 and "1/1" in cont.feedback and "lisbon" in cont.feedback
    assert {c.name: c for c in bad.category_scores}["memory_continuity"].score == 0.0


async def test_bad_input_and_isolation(
    sim: Stub, channel: grpc.aio.Channel, new_key: NewKey
) -> None:
    _, key = await new_key()
    _, other = await new_key()
    agent_id = await new_agent(channel, key)
    run = await sim.StartRun(
        pb.StartRunRequest(
            kind=pb.RUN_KIND_SIMULATION, agent_id=agent_id, user_persona=ALEX, config=config(1, 1)
        ),
        metadata=md(key),
    )
    await wait_status(sim, key, run.id, pb.RUN_STATUS_COMPLETED)
    nf = grpc.StatusCode.NOT_FOUND
    await fails(sim.GetRun(pb.GetRunRequest(id=run.id), metadata=md(other)), nf)
    await fails(sim.CancelRun(pb.CancelRunRequest(id=run.id), metadata=md(other)), nf)
    await fails(sim.DeleteRun(pb.DeleteRunRequest(id=run.id), metadata=md(other)), nf)
    await fails(
        collect(sim.StreamRunEvents(pb.StreamRunEventsRequest(run_id=run.id), metadata=md(other))),
        nf,
    )
    await fails(
        collect(
            sim.EvalOnly(
                pb.EvalOnlyRequest(agent_id=agent_id, source_run_id=run.id), metadata=md(other)
            )
        ),
        nf,
    )
    assert (await sim.ListRuns(pb.ListRunsRequest(), metadata=md(other))).total_size == 0
    ia = grpc.StatusCode.INVALID_ARGUMENT
    cases: list[tuple[Any, str]] = [
        (
            sim.StartRun(
                pb.StartRunRequest(agent_id=agent_id, user_persona=ALEX), metadata=md(key)
            ),
            "kind",
        ),
        (
            sim.StartRun(
                pb.StartRunRequest(kind=pb.RUN_KIND_SIMULATION, agent_id=agent_id),
                metadata=md(key),
            ),
            "user_persona.name",
        ),
        (
            sim.StartRun(
                pb.StartRunRequest(
                    kind=pb.RUN_KIND_RUN_EVAL,
                    agent_id=agent_id,
                    user_persona=ALEX,
                    config=config(11, 21),
                ),
                metadata=md(key),
            ),
            "config.max_sessions",
        ),
        (
            collect(sim.Simulate(pb.SimulateRequest(user_persona=ALEX), metadata=md(key))),
            "agent_id",
        ),
        (
            collect(sim.RunEval(pb.RunEvalRequest(agent_id=agent_id, judge=9), metadata=md(key))),
            "judge",
        ),
        (
            collect(sim.EvalOnly(pb.EvalOnlyRequest(agent_id=agent_id), metadata=md(key))),
            "source_run_id",
        ),
        (
            collect(
                sim.StreamRunEvents(
                    pb.StreamRunEventsRequest(run_id=run.id, from_index=-1), metadata=md(key)
                )
            ),
            "from_index",
        ),
        (sim.GetRun(pb.GetRunRequest(), metadata=md(key)), "id"),
        (sim.ListRuns(pb.ListRunsRequest(page_size=-1), metadata=md(key)), "page_size"),
        (sim.CancelRun(pb.CancelRunRequest(), metadata=md(key)), "id"),
        (sim.DeleteRun(pb.DeleteRunRequest(), metadata=md(key)), "id"),
        (sim.Evaluate(pb.EvaluateRequest(agent_id=agent_id), metadata=md(key)), "messages"),
        (sim.GetEvalTemplate(pb.GetEvalTemplateRequest(), metadata=md(key)), "id"),
        (
            sim.ListEvalTemplates(pb.ListEvalTemplatesRequest(page_size=-2), metadata=md(key)),
            "page_size",
        ),
        (sim.DeleteEvalTemplate(pb.DeleteEvalTemplateRequest(), metadata=md(key)), "id"),
        (
            sim.UpdateEvalTemplate(
                pb.UpdateEvalTemplateRequest(template=pb.EvalTemplate(name="x")), metadata=md(key)
            ),
            "template.id",
        ),
    ]
    for call, field in cases:
        assert field in await fails(call, ia), field
    # an unknown agent is NOT_FOUND before anything is stored
    before = (await sim.ListRuns(pb.ListRunsRequest(), metadata=md(key))).total_size
    await fails(
        sim.StartRun(
            pb.StartRunRequest(kind=pb.RUN_KIND_SIMULATION, agent_id="agt_nope", user_persona=ALEX),
            metadata=md(key),
        ),
        nf,
    )
    assert (await sim.ListRuns(pb.ListRunsRequest(), metadata=md(key))).total_size == before


async def test_second_server_process_serves_the_resume(
    sim: Stub, channel: grpc.aio.Channel, new_key: NewKey, server: ServerHandle, tmp_path: Path
) -> None:
    _, key = await new_key()
    agent_id = await new_agent(channel, key)
    port = free_port()
    proc = start_memgrpc(
        str(server.data_dir),
        port,
        tmp_path / "replica.log",
        server.admin_key,
        MEMGRPC_READ_CONSISTENCY="0.2",
        MEMGRPC_SIM_HEARTBEAT="0.3",
    )
    try:
        await wait_serving(f"127.0.0.1:{port}", proc)
        call = sim.Simulate(
            pb.SimulateRequest(agent_id=agent_id, user_persona=ALEX, config=config(6, 6)),
            metadata=md(key),
        )
        first: list[pb.RunEvent] = []
        async for e in call:
            if e.type != "heartbeat":
                first.append(e)
            if len(first) == 3:
                break
        call.cancel()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            replica = simulation_pb2_grpc.SimulationServiceStub(ch)
            running = await replica.GetRun(pb.GetRunRequest(id=first[0].run_id), metadata=md(key))
            assert running.status == pb.RUN_STATUS_RUNNING  # still running on the first server
            rest = await collect(
                replica.StreamRunEvents(
                    pb.StreamRunEventsRequest(run_id=first[0].run_id, from_index=3),
                    metadata=md(key),
                )
            )
        got = first + rest
        assert [e.index for e in got] == list(range(len(got)))
        assert got[-1].type == "run_completed"
        assert sum(e.type == "agent_message" for e in got) == 36
    finally:
        stop_server(proc)
