"""`client.simulations`, `client.eval_templates`, `client.eval_runs`: SimulationService, named
as in Sonzai's SDK (simulate, run_eval, eval_only, evaluate, eval_templates, eval_runs).

A run is `{"id": "run_...", "kind": "simulation"|"run_eval"|"eval_only", "status": "queued"|
"running"|"completed"|"failed"|"cancelled", "agent_id", "user_id", "sessions_done",
"turns_done", "score" (None until judged), "recall_correct", "recall_total", "error",
"event_count", ...}`; an event is `{"run_id", "index", "type", "message", "data", "time"}`.

The streaming calls start the run with StartRun (its request_id makes a retried start
idempotent: one run, never two) and then follow it with StreamRunEvents, which resumes by itself
from the last index seen + 1 when the connection drops: the run never depends on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import empty_pb2

from memgrpc.client import _convert as cv
from memgrpc.client._channel import Stream, Unary, method_path, new_request_id
from memgrpc.client._transport import AsyncCaller, Caller
from memgrpc.client.errors import MemgrpcError, invalid_argument
from memgrpc.v1 import simulation_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["SimulationService"]
_TEMPLATE = pb.EvalTemplate.DESCRIPTOR
_JUDGE = pb.DESCRIPTOR.enum_types_by_name["Judge"]

R = TypeVar("R")
Run = Callable[[Unary[Any, Any]], R]
Event = dict[str, Any]
Params = Mapping[str, Any] | None
Mask = Sequence[str] | str | None

TERMINAL = frozenset({"run_completed", "run_failed", "run_cancelled"})
HEARTBEAT = "heartbeat"
# a follow resumes after these: the connection dropped, the server went away or ended the
# stream, or the attempt's deadline (the client's `timeout`) passed while the run went on
_RESUMABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)


def _path(name: str) -> str:
    return method_path(_SERVICE, name)


def _none(_: empty_pb2.Empty) -> None:
    return None


def _judge(value: str | int | None) -> int:
    return 0 if value is None else cv.enum_number(_JUDGE, value, "judge")


class Calls:
    @staticmethod
    def start(
        kind: int,
        agent_id: str,
        *,
        user_persona: Params = None,
        config: Params = None,
        template_id: str | None = None,
        source_run_id: str | None = None,
        judge: str | int | None = None,
        request_id: str | None = None,
    ) -> Unary[pb.Run, dict[str, Any]]:
        rid = request_id or new_request_id()
        request = pb.StartRunRequest(
            kind=kind,  # type: ignore[arg-type]
            agent_id=agent_id,
            template_id=template_id or "",
            source_run_id=source_run_id or "",
            judge=_judge(judge),  # type: ignore[arg-type]
            request_id=rid,
        )
        if user_persona is not None:
            request.user_persona.CopyFrom(cv.build(pb.UserPersona, user_persona, "user_persona"))
        if config is not None:
            request.config.CopyFrom(cv.build(pb.SimulationConfig, config, "config"))
        return Unary(_path("StartRun"), request, pb.Run, cv.to_dict, rid)

    @staticmethod
    def events(run_id: str, from_index: int) -> Stream[pb.RunEvent]:
        request = pb.StreamRunEventsRequest(run_id=run_id, from_index=from_index)
        return Stream(_path("StreamRunEvents"), request, pb.RunEvent)

    @staticmethod
    def evaluate(
        agent_id: str,
        messages: Sequence[Mapping[str, Any]],
        template_id: str | None,
        judge: str | int | None,
    ) -> Unary[pb.EvaluateResponse, dict[str, Any]]:
        if isinstance(messages, (str, Mapping)):
            raise invalid_argument("messages", "expected a list of messages", wrong_type=True)
        request = pb.EvaluateRequest(
            agent_id=agent_id,
            messages=[
                cv.build(pb.EvalMessage, m, f"messages[{i}]") for i, m in enumerate(messages)
            ],
            template_id=template_id or "",
            judge=_judge(judge),  # type: ignore[arg-type]
        )
        return Unary(_path("Evaluate"), request, pb.EvaluateResponse, cv.to_dict)

    @staticmethod
    def get_run(run_id: str) -> Unary[pb.Run, dict[str, Any]]:
        return Unary(_path("GetRun"), pb.GetRunRequest(id=run_id), pb.Run, cv.to_dict)


def _write(name: str, request: Any, response: Any, convert: Any = cv.to_dict) -> Any:
    return Unary(_path(name), request, response, convert, request.request_id)


# -- resuming a run's event stream ---------------------------------------------------------------
class Follow:
    """Where a follow of a run is (the next index to ask for), and whether (after how long) to
    resume it: up to `max_retries` times in a row without an event in between, backing off."""

    def __init__(self, run_id: str, from_index: int, heartbeats: bool, max_retries: int) -> None:
        if from_index < 0:
            raise invalid_argument("from_index", "must be >= 0")
        self.run_id = run_id
        self.cursor = from_index
        self.heartbeats = heartbeats
        self.max_retries = max_retries
        self.failures = 0
        self.done = False

    def call(self) -> Stream[pb.RunEvent]:
        return Calls.events(self.run_id, self.cursor)

    def accept(self, event: pb.RunEvent) -> Event | None:
        """The event to yield, or None (a heartbeat not asked for, or one seen before)."""
        self.failures = 0
        if event.type == HEARTBEAT:
            self.cursor = max(self.cursor, event.index)
            return cv.to_dict(event) if self.heartbeats else None
        if event.index < self.cursor:
            return None
        self.cursor = event.index + 1
        self.done = event.type in TERMINAL
        return cv.to_dict(event)

    def delay(self, error: MemgrpcError | None) -> float | None:
        """Seconds to wait before resuming, or None: stop (and raise `error` if any)."""
        if self.done:
            return None
        if error is not None and error.status not in _RESUMABLE:
            return None
        if self.failures >= self.max_retries:
            return None
        self.failures += 1
        return float(min(8.0, 0.1 * 2**self.failures) * (0.5 + random.random() / 2))


def follow(caller: Caller, state: Follow) -> Iterator[Event]:
    while True:
        error: MemgrpcError | None = None
        try:
            with contextlib.closing(caller.stream(state.call())) as events:
                for event in events:
                    out = state.accept(event)
                    if out is not None:
                        yield out
                    if state.done:
                        return
        except MemgrpcError as exc:
            error = exc
        delay = state.delay(error)
        if delay is None:
            if error is not None:
                raise error
            raise MemgrpcError(
                f"the event stream of run {state.run_id} kept ending before the run did",
                status=grpc.StatusCode.UNAVAILABLE,
            )
        time.sleep(delay)


async def afollow(caller: AsyncCaller, state: Follow) -> AsyncIterator[Event]:
    while True:
        error: MemgrpcError | None = None
        try:
            async with contextlib.aclosing(caller.stream(state.call())) as events:
                async for event in events:
                    out = state.accept(event)
                    if out is not None:
                        yield out
                    if state.done:
                        return
        except MemgrpcError as exc:
            error = exc
        delay = state.delay(error)
        if delay is None:
            if error is not None:
                raise error
            raise MemgrpcError(
                f"the event stream of run {state.run_id} kept ending before the run did",
                status=grpc.StatusCode.UNAVAILABLE,
            )
        await asyncio.sleep(delay)


_SIMULATION, _RUN_EVAL, _EVAL_ONLY = (
    pb.RUN_KIND_SIMULATION,
    pb.RUN_KIND_RUN_EVAL,
    pb.RUN_KIND_EVAL_ONLY,
)


def _config(config: Params, simulation_config: Params) -> Params:
    """`simulation_config` is Sonzai's name for run_eval's `config`."""
    if config is not None and simulation_config is not None:
        raise invalid_argument("config", "give config or simulation_config, not both")
    return config if config is not None else simulation_config


class SimulationsResource:
    """`client.simulations`: runs that stream their events, and Evaluate.

    `user_persona`: `{"name", "background", "personality_traits", "communication_style"}`;
    `config`: `{"max_sessions": 1-10 (3), "max_turns_per_session": 1-20 (5), "advance_time":
    seconds or a timedelta}`; `judge`: "offline" (the default) or "llm"."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def simulate(
        self,
        agent_id: str,
        *,
        user_persona: Params,
        config: Params = None,
        request_id: str | None = None,
        heartbeats: bool = False,
    ) -> Iterator[Event]:
        """Start a SIMULATION run and yield its events, index 0 to the terminal one."""
        start = Calls.start(
            _SIMULATION, agent_id, user_persona=user_persona, config=config, request_id=request_id
        )
        return self._start_and_follow(start, heartbeats)

    def simulate_async(
        self,
        agent_id: str,
        *,
        user_persona: Params,
        config: Params = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Start a SIMULATION run in the background: the run (`stream_events(run["id"])`)."""
        start = Calls.start(
            _SIMULATION, agent_id, user_persona=user_persona, config=config, request_id=request_id
        )
        return self._c.unary(start)

    def run_eval(
        self,
        agent_id: str,
        *,
        user_persona: Params,
        config: Params = None,
        template_id: str | None = None,
        judge: str | int | None = None,
        simulation_config: Params = None,
        request_id: str | None = None,
        heartbeats: bool = False,
    ) -> Iterator[Event]:
        """A simulation, then an `evaluation` event with the template's scores."""
        start = Calls.start(
            _RUN_EVAL,
            agent_id,
            user_persona=user_persona,
            config=_config(config, simulation_config),
            template_id=template_id,
            judge=judge,
            request_id=request_id,
        )
        return self._start_and_follow(start, heartbeats)

    def run_eval_async(
        self,
        agent_id: str,
        *,
        user_persona: Params,
        config: Params = None,
        template_id: str | None = None,
        judge: str | int | None = None,
        simulation_config: Params = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        start = Calls.start(
            _RUN_EVAL,
            agent_id,
            user_persona=user_persona,
            config=_config(config, simulation_config),
            template_id=template_id,
            judge=judge,
            request_id=request_id,
        )
        return self._c.unary(start)

    def eval_only(
        self,
        source_run_id: str,
        template_id: str | None = None,
        *,
        agent_id: str | None = None,
        judge: str | int | None = None,
        request_id: str | None = None,
        heartbeats: bool = False,
    ) -> Iterator[Event]:
        """Re-score a COMPLETED run's transcript (with another template) as a new EVAL_ONLY run;
        `agent_id` defaults to the source run's (one GetRun)."""
        rid = request_id or new_request_id()

        def go() -> Iterator[Event]:
            agent = agent_id or self._c.unary(Calls.get_run(source_run_id))["agent_id"]
            start = Calls.start(
                _EVAL_ONLY,
                agent,
                template_id=template_id,
                source_run_id=source_run_id,
                judge=judge,
                request_id=rid,
            )
            yield from self._start_and_follow(start, heartbeats)

        return go()

    def eval_only_async(
        self,
        source_run_id: str,
        template_id: str | None = None,
        *,
        agent_id: str | None = None,
        judge: str | int | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        agent = agent_id or self._c.unary(Calls.get_run(source_run_id))["agent_id"]
        start = Calls.start(
            _EVAL_ONLY,
            agent,
            template_id=template_id,
            source_run_id=source_run_id,
            judge=judge,
            request_id=request_id,
        )
        return self._c.unary(start)

    def stream_events(
        self,
        run_id: str,
        from_index: int = 0,
        *,
        heartbeats: bool = False,
        max_retries: int = 5,
    ) -> Iterator[Event]:
        """The run's events from `from_index` until its terminal one (run_completed,
        run_failed, run_cancelled), from any replica. A dropped connection (or a server
        restart, or the client's per-attempt `timeout`) is resumed from the last index seen + 1,
        at most `max_retries` times in a row; `heartbeats` also yields the idle heartbeats
        (index = the next event's). A `from_index` past a finished run's end is OUT_OF_RANGE."""
        return follow(self._c, Follow(run_id, from_index, heartbeats, max_retries))

    def evaluate(
        self,
        agent_id: str,
        messages: Sequence[Mapping[str, Any]],
        template_id: str | None = None,
        *,
        judge: str | int | None = None,
    ) -> dict[str, Any]:
        """Score a conversation (`[{"role": "user"|"assistant", "content"}]`): `{"score",
        "feedback", "category_scores": [{"name", "score", "feedback"}], "judge",
        "template_id"}`."""
        return self._c.unary(Calls.evaluate(agent_id, messages, template_id, judge))

    def _start_and_follow(self, start: Unary[pb.Run, dict[str, Any]], hb: bool) -> Iterator[Event]:
        run = self._c.unary(start)
        yield from follow(self._c, Follow(run["id"], 0, hb, 5))


class AsyncSimulationsResource:
    """`client.simulations` of the async client (`async for ev in ...simulate(...)`)."""

    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    def simulate(
        self,
        agent_id: str,
        *,
        user_persona: Params,
        config: Params = None,
        request_id: str | None = None,
        heartbeats: bool = False,
    ) -> AsyncIterator[Event]:
        start = Calls.start(
            _SIMULATION, agent_id, user_persona=user_persona, config=config, request_id=request_id
        )
        return self._start_and_follow(start, heartbeats)

    async def simulate_async(
        self,
        agent_id: str,
        *,
        user_persona: Params,
        config: Params = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        start = Calls.start(
            _SIMULATION, agent_id, user_persona=user_persona, config=config, request_id=request_id
        )
        return await self._c.unary(start)

    def run_eval(
        self,
        agent_id: str,
        *,
        user_persona: Params,
        config: Params = None,
        template_id: str | None = None,
        judge: str | int | None = None,
        simulation_config: Params = None,
        request_id: str | None = None,
        heartbeats: bool = False,
    ) -> AsyncIterator[Event]:
        start = Calls.start(
            _RUN_EVAL,
            agent_id,
            user_persona=user_persona,
            config=_config(config, simulation_config),
            template_id=template_id,
            judge=judge,
            request_id=request_id,
        )
        return self._start_and_follow(start, heartbeats)

    async def run_eval_async(
        self,
        agent_id: str,
        *,
        user_persona: Params,
        config: Params = None,
        template_id: str | None = None,
        judge: str | int | None = None,
        simulation_config: Params = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        start = Calls.start(
            _RUN_EVAL,
            agent_id,
            user_persona=user_persona,
            config=_config(config, simulation_config),
            template_id=template_id,
            judge=judge,
            request_id=request_id,
        )
        return await self._c.unary(start)

    async def eval_only(
        self,
        source_run_id: str,
        template_id: str | None = None,
        *,
        agent_id: str | None = None,
        judge: str | int | None = None,
        request_id: str | None = None,
        heartbeats: bool = False,
    ) -> AsyncIterator[Event]:
        agent = agent_id or (await self._c.unary(Calls.get_run(source_run_id)))["agent_id"]
        start = Calls.start(
            _EVAL_ONLY,
            agent,
            template_id=template_id,
            source_run_id=source_run_id,
            judge=judge,
            request_id=request_id,
        )
        async for event in self._start_and_follow(start, heartbeats):
            yield event

    async def eval_only_async(
        self,
        source_run_id: str,
        template_id: str | None = None,
        *,
        agent_id: str | None = None,
        judge: str | int | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        agent = agent_id or (await self._c.unary(Calls.get_run(source_run_id)))["agent_id"]
        start = Calls.start(
            _EVAL_ONLY,
            agent,
            template_id=template_id,
            source_run_id=source_run_id,
            judge=judge,
            request_id=request_id,
        )
        return await self._c.unary(start)

    def stream_events(
        self,
        run_id: str,
        from_index: int = 0,
        *,
        heartbeats: bool = False,
        max_retries: int = 5,
    ) -> AsyncIterator[Event]:
        return afollow(self._c, Follow(run_id, from_index, heartbeats, max_retries))

    async def evaluate(
        self,
        agent_id: str,
        messages: Sequence[Mapping[str, Any]],
        template_id: str | None = None,
        *,
        judge: str | int | None = None,
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.evaluate(agent_id, messages, template_id, judge))

    async def _start_and_follow(
        self, start: Unary[pb.Run, dict[str, Any]], hb: bool
    ) -> AsyncIterator[Event]:
        run = await self._c.unary(start)
        async for event in afollow(self._c, Follow(run["id"], 0, hb, 5)):
            yield event


# -- templates and runs (one class serves both clients: `run` is the caller's `unary`) ------------
class EvalTemplates(Generic[R]):
    """`client.eval_templates`: `{"id": "tpl_...", "name", "scoring_rubric", "categories":
    [{"name", "weight", "criteria"}], "builtin", ...}`; weights in (0, 1] summing to 1. The
    built-in `tpl_memory_continuity` is readable everywhere and cannot change."""

    def __init__(self, run: Run[R]) -> None:
        self._run = run

    def create(self, params: Params = None, /, **fields: Any) -> R:
        """`create(name="Empathy Check", scoring_rubric=..., categories=[{"name": ...,
        "weight": 0.5, "criteria": ...}, ...])` -> the template."""
        data = cv.params(params, fields, "template")
        rid = cv.pop_request_id(data) or new_request_id()
        request = pb.CreateEvalTemplateRequest(
            template=cv.build(pb.EvalTemplate, data, "template"), request_id=rid
        )
        return self._run(_write("CreateEvalTemplate", request, pb.EvalTemplate))

    def get(self, template_id: str) -> R:
        request = pb.GetEvalTemplateRequest(id=template_id)
        return self._run(Unary(_path("GetEvalTemplate"), request, pb.EvalTemplate, cv.to_dict))

    def list(self, params: Params = None, /, **fields: Any) -> R:
        """`{"templates": [...], "next_page_token", "total_size"}`: the built-in first."""
        request = cv.build(pb.ListEvalTemplatesRequest, cv.params(params, fields, "list"), "list")
        return self._run(
            Unary(_path("ListEvalTemplates"), request, pb.ListEvalTemplatesResponse, cv.to_dict)
        )

    def update(
        self,
        template_id: str,
        params: Params = None,
        /,
        *,
        update_mask: Mask = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> R:
        """Overwrite the fields given (or those `update_mask` names): name, scoring_rubric,
        categories (replaced whole)."""
        data = cv.canonical(_TEMPLATE, cv.params(params, fields, "template"), "template")
        if data.pop("id", template_id) != template_id:
            raise invalid_argument("template.id", "differs from the template id argument")
        template = cv.build(pb.EvalTemplate, data, "template")
        template.id = template_id
        request = pb.UpdateEvalTemplateRequest(
            template=template, request_id=request_id or new_request_id()
        )
        cv.set_update_mask(request, data, update_mask)
        return self._run(_write("UpdateEvalTemplate", request, pb.EvalTemplate))

    def delete(self, template_id: str, *, request_id: str | None = None) -> R:
        request = pb.DeleteEvalTemplateRequest(
            id=template_id, request_id=request_id or new_request_id()
        )
        return self._run(_write("DeleteEvalTemplate", request, empty_pb2.Empty, _none))


class EvalRuns(Generic[R]):
    """`client.eval_runs`: the project's runs (`client.simulations` starts them)."""

    def __init__(self, run: Run[R]) -> None:
        self._run = run

    def get(self, run_id: str) -> R:
        return self._run(Calls.get_run(run_id))

    def list(self, params: Params = None, /, **fields: Any) -> R:
        """`list(agent_id=..., page_size=..., page_token=...)` -> `{"runs": [...],
        "next_page_token", "total_size"}`, newest first."""
        request = cv.build(pb.ListRunsRequest, cv.params(params, fields, "list"), "list")
        return self._run(Unary(_path("ListRuns"), request, pb.ListRunsResponse, cv.to_dict))

    def cancel(self, run_id: str, *, request_id: str | None = None) -> R:
        """Stop a QUEUED or RUNNING run (it ends CANCELLED); a finished run comes back as is."""
        request = pb.CancelRunRequest(id=run_id, request_id=request_id or new_request_id())
        return self._run(_write("CancelRun", request, pb.Run))

    def delete(self, run_id: str, *, request_id: str | None = None) -> R:
        """The run, its events and the simulated user's sessions, messages and memories."""
        request = pb.DeleteRunRequest(id=run_id, request_id=request_id or new_request_id())
        return self._run(_write("DeleteRun", request, empty_pb2.Empty, _none))


class EvalRunsResource(EvalRuns[Any]):
    """`client.eval_runs` of the sync client, with Sonzai's `stream_events`."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller.unary)
        self._sims = SimulationsResource(caller)

    def stream_events(
        self, run_id: str, from_index: int = 0, *, heartbeats: bool = False, max_retries: int = 5
    ) -> Iterator[Event]:
        """See SimulationsResource.stream_events."""
        return self._sims.stream_events(
            run_id, from_index, heartbeats=heartbeats, max_retries=max_retries
        )


class AsyncEvalRunsResource(EvalRuns[Any]):
    """`client.eval_runs` of the async client."""

    def __init__(self, caller: AsyncCaller) -> None:
        super().__init__(caller.unary)
        self._sims = AsyncSimulationsResource(caller)

    def stream_events(
        self, run_id: str, from_index: int = 0, *, heartbeats: bool = False, max_retries: int = 5
    ) -> AsyncIterator[Event]:
        return self._sims.stream_events(
            run_id, from_index, heartbeats=heartbeats, max_retries=max_retries
        )
