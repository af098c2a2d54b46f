"""SimulationService servicer: translates between protos and core.simulation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from google.protobuf import empty_pb2

from memgrpc.api import convert
from memgrpc.core.access import principal
from memgrpc.core.kernel import Idempotency, PageRequest, Violations, validation
from memgrpc.core.simulation import (
    BUILTIN_TEMPLATE_ID,
    JUDGES,
    RUN_KINDS,
    RUN_STATUSES,
    Category,
    Persona,
    Run,
    RunEvent,
    RunService,
    RunSpec,
    SimConfig,
    Template,
    TemplateService,
    Turn,
)
from memgrpc.core.simulation.model import MAX_EVAL_MESSAGES, JudgeName, RunKind
from memgrpc.v1 import simulation_pb2 as pb
from memgrpc.v1 import simulation_pb2_grpc

ScopeCheck = Callable[[str, str, str], Awaitable[None]]


def _judge(v: Violations, name: str, value: int) -> JudgeName:
    if value == 0:
        return "offline"
    if 1 <= value <= len(JUDGES):
        return JUDGES[value - 1]
    v.add(name, f"unknown Judge value {value}")
    return "offline"


def _judge_pb(name: str) -> int:
    return JUDGES.index(name) + 1  # type: ignore[arg-type]


def template_from_pb(t: pb.EvalTemplate) -> Template:
    return Template(
        id=t.id,
        name=t.name,
        scoring_rubric=t.scoring_rubric,
        categories=tuple(Category(c.name, c.weight, c.criteria) for c in t.categories),
    )


def template_to_pb(t: Template) -> pb.EvalTemplate:
    return pb.EvalTemplate(
        id=t.id,
        name=t.name,
        scoring_rubric=t.scoring_rubric,
        categories=[
            pb.EvalCategory(name=c.name, weight=c.weight, criteria=c.criteria) for c in t.categories
        ],
        builtin=t.builtin,
        create_time=convert.to_ts(t.create_time),
        update_time=convert.to_ts(t.update_time),
    )


def persona_from_pb(p: pb.UserPersona) -> Persona:
    return Persona(p.name, p.background, tuple(p.personality_traits), p.communication_style)


def config_from_pb(v: Violations, c: pb.SimulationConfig) -> SimConfig:
    adv = (
        convert.duration(v, "config.advance_time", c.advance_time)
        if c.HasField("advance_time")
        else None
    )
    return SimConfig(c.max_sessions, c.max_turns_per_session, adv)


def run_to_pb(r: Run) -> pb.Run:
    s = r.spec
    out = pb.Run(
        id=r.id,
        kind=RUN_KINDS.index(s.kind) + 1,  # type: ignore[arg-type]
        status=RUN_STATUSES.index(r.status) + 1,  # type: ignore[arg-type]
        agent_id=s.agent_id,
        template_id=s.template_id,
        source_run_id=s.source_run_id,
        judge=_judge_pb(s.judge),  # type: ignore[arg-type]
        user_id=r.user_id,
        sessions_done=r.sessions_done,
        turns_done=r.turns_done,
        recall_correct=r.recall_correct,
        recall_total=r.recall_total,
        error=r.error,
        event_count=r.event_count,
        create_time=convert.to_ts(r.create_time),
        update_time=convert.to_ts(r.update_time),
        end_time=convert.to_ts(r.end_time),
    )
    if s.kind != "eval_only":
        out.user_persona.CopyFrom(
            pb.UserPersona(
                name=s.persona.name,
                background=s.persona.background,
                personality_traits=list(s.persona.personality_traits),
                communication_style=s.persona.communication_style,
            )
        )
        c = s.config
        out.config.CopyFrom(
            pb.SimulationConfig(
                max_sessions=c.sessions,
                max_turns_per_session=c.turns,
                advance_time=convert.to_duration(c.advance_time),
            )
        )
    if r.score is not None:
        out.score = r.score
    return out


def event_to_pb(e: RunEvent) -> pb.RunEvent:
    return pb.RunEvent(
        run_id=e.run_id,
        index=e.index,
        type=e.type,
        message=e.message,
        data=convert.dict_to_struct(e.data),
        time=convert.to_ts(e.time),
    )


def _kind(v: Violations, value: int) -> RunKind:
    if 1 <= value <= len(RUN_KINDS):
        return RUN_KINDS[value - 1]
    v.add("kind", "is required (SIMULATION, RUN_EVAL or EVAL_ONLY)" if value == 0 else "unknown")
    return "simulation"


class SimulationServicer(simulation_pb2_grpc.SimulationServiceServicer):
    def __init__(
        self,
        templates: TemplateService,
        runs: RunService,
        check_agent: ScopeCheck,
        idempotency: Idempotency,
    ) -> None:
        self._templates = templates
        self._runs = runs
        self._check_agent = check_agent
        self._idem = idempotency

    async def _once(
        self, method: str, request_id: str, compute: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        project = principal.current().project_id
        return await self._idem.run(project, method, request_id, compute)

    # -- templates ------------------------------------------------------------------------------
    async def CreateEvalTemplate(
        self, request: pb.CreateEvalTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvalTemplate:
        project = principal.current().project_id

        async def compute() -> bytes:
            made = await self._templates.create(project, template_from_pb(request.template))
            return template_to_pb(made).SerializeToString()

        return pb.EvalTemplate.FromString(
            await self._once("CreateEvalTemplate", request.request_id, compute)
        )

    async def GetEvalTemplate(
        self, request: pb.GetEvalTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvalTemplate:
        t = await self._templates.get(principal.current().project_id, request.id)
        return template_to_pb(t)

    async def ListEvalTemplates(
        self, request: pb.ListEvalTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEvalTemplatesResponse:
        page = await self._templates.list(
            principal.current().project_id, PageRequest(request.page_size, request.page_token)
        )
        return pb.ListEvalTemplatesResponse(
            templates=[template_to_pb(t) for t in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def UpdateEvalTemplate(
        self, request: pb.UpdateEvalTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvalTemplate:
        project = principal.current().project_id

        async def compute() -> bytes:
            t = request.template
            if request.HasField("update_mask"):
                fields = frozenset(request.update_mask.paths)
            else:
                fields = frozenset(
                    f
                    for f, given in (
                        ("name", bool(t.name)),
                        ("scoring_rubric", bool(t.scoring_rubric)),
                        ("categories", bool(t.categories)),
                    )
                    if given
                )
            changed = await self._templates.update(project, template_from_pb(t), fields)
            return template_to_pb(changed).SerializeToString()

        return pb.EvalTemplate.FromString(
            await self._once("UpdateEvalTemplate", request.request_id, compute)
        )

    async def DeleteEvalTemplate(
        self, request: pb.DeleteEvalTemplateRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        project = principal.current().project_id

        async def compute() -> bytes:
            await self._templates.delete(project, request.id)
            return b""

        await self._once("DeleteEvalTemplate", request.request_id, compute)
        return empty_pb2.Empty()

    # -- evaluate -------------------------------------------------------------------------------
    async def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> pb.EvaluateResponse:
        project = principal.current().project_id
        v = Violations()
        validation.check_id(v, "agent_id", request.agent_id, required=True)
        validation.check_id(v, "template_id", request.template_id, required=False)
        judge = _judge(v, "judge", request.judge)
        if not request.messages:
            v.add("messages", "must not be empty")
        elif len(request.messages) > MAX_EVAL_MESSAGES:
            v.add("messages", f"at most {MAX_EVAL_MESSAGES} messages")
        turns = []
        for i, m in enumerate(request.messages[:MAX_EVAL_MESSAGES]):
            if m.role not in ("user", "assistant"):
                v.add(f"messages[{i}].role", "must be user or assistant")
            validation.check_content(v, f"messages[{i}].content", m.content)
            turns.append(Turn(m.role, m.content))
        v.raise_if_any()
        await self._check_agent(project, request.agent_id, "")
        template = await self._templates.get(
            project, request.template_id or BUILTIN_TEMPLATE_ID, "template_id"
        )
        ev = await self._runs.evaluate(project, template, turns, judge)
        return pb.EvaluateResponse(
            score=ev.score,
            feedback=ev.feedback,
            category_scores=[
                pb.CategoryScore(name=c.name, score=c.score, feedback=c.feedback)
                for c in ev.categories
            ],
            judge=_judge_pb(ev.judge),  # type: ignore[arg-type]
            template_id=ev.template_id,
        )

    # -- runs -----------------------------------------------------------------------------------
    async def _start(self, method: str, request_id: str, spec: RunSpec) -> Run:
        project = principal.current().project_id

        async def compute() -> bytes:
            return run_to_pb(await self._runs.start(project, spec)).SerializeToString()

        made = pb.Run.FromString(await self._once(method, request_id, compute))
        return await self._runs.get(project, made.id)

    async def StartRun(
        self, request: pb.StartRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.Run:
        v = Violations()
        spec = RunSpec(
            kind=_kind(v, request.kind),
            agent_id=request.agent_id,
            persona=persona_from_pb(request.user_persona),
            config=config_from_pb(v, request.config),
            template_id=request.template_id,
            source_run_id=request.source_run_id,
            judge=_judge(v, "judge", request.judge),
        )
        v.raise_if_any()
        return run_to_pb(await self._start("StartRun", request.request_id, spec))

    async def GetRun(self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext) -> pb.Run:
        return run_to_pb(await self._runs.get(principal.current().project_id, request.id))

    async def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunsResponse:
        page = await self._runs.list(
            principal.current().project_id,
            request.agent_id,
            PageRequest(request.page_size, request.page_token),
        )
        return pb.ListRunsResponse(
            runs=[run_to_pb(r) for r in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.Run:
        project = principal.current().project_id

        async def compute() -> bytes:
            return run_to_pb(await self._runs.cancel(project, request.id)).SerializeToString()

        return pb.Run.FromString(await self._once("CancelRun", request.request_id, compute))

    async def DeleteRun(
        self, request: pb.DeleteRunRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        project = principal.current().project_id

        async def compute() -> bytes:
            await self._runs.delete(project, request.id)
            return b""

        await self._once("DeleteRun", request.request_id, compute)
        return empty_pb2.Empty()

    # -- streams --------------------------------------------------------------------------------
    async def _follow(self, run_id: str, from_index: int) -> AsyncIterator[pb.RunEvent]:
        project = principal.current().project_id
        async for e in self._runs.stream(project, run_id, from_index):
            yield event_to_pb(e)

    async def _start_and_follow(self, spec: RunSpec) -> AsyncIterator[pb.RunEvent]:
        run = await self._runs.start(principal.current().project_id, spec)
        async for e in self._follow(run.id, 0):
            yield e

    async def Simulate(
        self, request: pb.SimulateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunEvent]:
        v = Violations()
        spec = RunSpec(
            "simulation",
            request.agent_id,
            persona_from_pb(request.user_persona),
            config_from_pb(v, request.config),
        )
        v.raise_if_any()
        async for e in self._start_and_follow(spec):
            yield e

    async def RunEval(
        self, request: pb.RunEvalRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunEvent]:
        v = Violations()
        spec = RunSpec(
            "run_eval",
            request.agent_id,
            persona_from_pb(request.user_persona),
            config_from_pb(v, request.config),
            template_id=request.template_id,
            judge=_judge(v, "judge", request.judge),
        )
        v.raise_if_any()
        async for e in self._start_and_follow(spec):
            yield e

    async def EvalOnly(
        self, request: pb.EvalOnlyRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunEvent]:
        v = Violations()
        spec = RunSpec(
            "eval_only",
            request.agent_id,
            template_id=request.template_id,
            source_run_id=request.source_run_id,
            judge=_judge(v, "judge", request.judge),
        )
        v.raise_if_any()
        async for e in self._start_and_follow(spec):
            yield e

    async def StreamRunEvents(
        self, request: pb.StreamRunEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunEvent]:
        async for e in self._follow(request.run_id, request.from_index):
            yield e
