"""Runs: start, read, list, cancel and delete them; each runs as a background task of the
server that started it (its owner).

A run is bounded: at most MAX_SESSIONS x MAX_TURNS turns, a wall-clock cap, and at most
`max_runs_per_project` queued or running at once per project. The owner renews the run's lease
while it runs and reads its `cancel_requested` flag then, so CancelRun works from any replica.
Nothing is left RUNNING: a stopping server fails its runs ("server shutdown", a `run_failed`
event), and a run whose lease went stale (its server died) is failed by the next server that
starts, or by any replica streaming it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from memgrpc.core.chat.events import Delta, Done, Failed
from memgrpc.core.chat.turn import ChatRequest, ChatService
from memgrpc.core.conversation.jobs import JobRunner
from memgrpc.core.conversation.messages import TIME_SHIFT
from memgrpc.core.conversation.records import Session
from memgrpc.core.conversation.sessions import SessionService
from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import (
    DomainError,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    Violations,
)
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.paging import Page, PageRequest
from memgrpc.core.simulation import judge
from memgrpc.core.simulation.events import EventLog
from memgrpc.core.simulation.model import (
    ACTIVE,
    BUILTIN_TEMPLATE_ID,
    Evaluation,
    Run,
    RunEvent,
    RunSpec,
    RunStatus,
    Template,
    Turn,
    check_spec,
    run_from_row,
    run_row,
)
from memgrpc.core.simulation.persona import Script, build_script
from memgrpc.core.simulation.persona_llm import phrase
from memgrpc.core.simulation.templates import TemplateService
from memgrpc.llm import Provider, Providers
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Table

log = structlog.get_logger(__name__)
SHUTDOWN = "server shutdown"


class ScopeCheck(Protocol):
    async def __call__(self, project_id: str, agent_id: str, instance_id: str) -> None: ...


class UserPurge(Protocol):
    async def __call__(self, project_id: str, user_id: str) -> None: ...


@dataclass(frozen=True)
class Limits:
    max_runs_per_project: int = 2
    max_run_s: float = 900.0  # wall-clock cap of one run
    lease_s: float = 30.0  # a RUNNING run whose lease is older than this has lost its owner


class _Cancelled(Exception):
    """The run was asked to stop (CancelRun on any replica)."""


@dataclass
class _Live:
    """A run this server drives."""

    project_id: str
    task: asyncio.Task[None]
    next_index: int = 0
    stop_reason: str = ""  # set before the task is cancelled: "" = CancelRun


# the status a run's terminal event means
ENDED_BY: dict[str, RunStatus] = {
    "run_completed": "completed",
    "run_failed": "failed",
    "run_cancelled": "cancelled",
}


class RunService:
    def __init__(
        self,
        store: Store,
        events: EventLog,
        templates: TemplateService,
        sessions: SessionService,
        chat: ChatService,
        jobs: JobRunner,
        providers: Providers,
        check_agent: ScopeCheck,
        purge_user: UserPurge,
        limits: Limits = Limits(),
        llm_model: str = "",
    ) -> None:
        self._table = Table(store, "runs")
        self.events = events
        self._templates = templates
        self._sessions = sessions
        self._chat = chat
        self._jobs = jobs
        self._providers = providers
        self._check_agent = check_agent
        self._purge_user = purge_user
        self.limits = limits
        self._llm_model = llm_model
        self._live: dict[str, _Live] = {}
        self._locks = KeyedLocks()
        self._stopping = False

    # -- reads ----------------------------------------------------------------------------------
    @staticmethod
    def _where(project_id: str, run_id: str) -> Where:
        return Where().eq("project_id", project_id).eq("id", run_id)

    async def get(self, project_id: str, run_id: str, name: str = "id") -> Run:
        v = Violations()
        validation.check_id(v, name, run_id, required=True)
        v.raise_if_any()
        row = await self._table.first(self._where(project_id, run_id))
        if row is None:
            raise NotFound(
                f"run {run_id} not found", reason="RUN_NOT_FOUND", metadata={"id": run_id}
            )
        run = replace(run_from_row(row), event_count=await self.events.count(project_id, run_id))
        if run.status in ACTIVE and run.event_count:
            # the terminal event is stored before the row's status: report what it says
            last = await self.events.read(project_id, run_id, run.event_count - 1, 1)
            if last and last[0].type in ENDED_BY:
                run = replace(run, status=ENDED_BY[last[0].type])
        return run

    async def list(self, project_id: str, agent_id: str, page: PageRequest) -> Page[Run]:
        v = Violations()
        size = paging.page_size(v, page.size)
        validation.check_id(v, "agent_id", agent_id, required=False)
        v.raise_if_any()
        where = Where().eq("project_id", project_id)
        if agent_id:
            where = where.eq("agent_id", agent_id)
        fp = paging.fingerprint(project_id, "runs", agent_id)
        return await paging.newest_first(self._table, where, size, page.token, fp, run_from_row)

    async def stream(
        self, project_id: str, run_id: str, from_index: int
    ) -> AsyncIterator[RunEvent]:
        v = Violations()
        validation.check_id(v, "run_id", run_id, required=True)
        if from_index < 0:
            v.add("from_index", "must not be negative")
        v.raise_if_any()
        await self.get(project_id, run_id, "run_id")

        async def idle() -> None:
            await self._reap_if_orphaned(project_id, run_id)

        async for e in self.events.follow(project_id, run_id, from_index, idle):
            yield e

    # -- start ----------------------------------------------------------------------------------
    async def _provider(self, what: str) -> Provider:
        p = self._providers.get("openai")
        if p is None or not p.available:
            raise FailedPrecondition(
                f"the llm {what} needs an OpenAI-compatible provider (MEMGRPC_OPENAI_BASE_URL)",
                reason="PROVIDER_NOT_CONFIGURED",
                metadata={"provider": "openai"},
            )
        return p

    async def start(self, project_id: str, spec: RunSpec) -> Run:
        """Check everything, store the run QUEUED and start it; returns at once."""
        v = Violations()
        check_spec(v, spec)
        v.raise_if_any()
        await self._check_agent(project_id, spec.agent_id, "")
        if spec.kind != "simulation":
            await self._templates.get(
                project_id, spec.template_id or BUILTIN_TEMPLATE_ID, "template_id"
            )
        if spec.judge == "llm":
            await self._provider("judge")
        if spec.kind == "eval_only":
            source = await self.get(project_id, spec.source_run_id, "source_run_id")
            if source.spec.kind == "eval_only" or source.status != "completed":
                raise FailedPrecondition(
                    f"run {source.id} is {source.status} {source.spec.kind}: only a COMPLETED "
                    "simulation or run_eval can be evaluated again",
                    reason="RUN_NOT_EVALUABLE",
                    metadata={"source_run_id": source.id, "status": source.status},
                )
            if source.spec.agent_id != spec.agent_id:
                raise FailedPrecondition(
                    f"run {source.id} was with agent {source.spec.agent_id}, not {spec.agent_id}",
                    reason="RUN_AGENT_MISMATCH",
                    metadata={"source_run_id": source.id},
                )
        async with self._locks.hold(project_id):
            active = Where().eq("project_id", project_id).is_in("status", list(ACTIVE))
            if await self._table.count(active) >= self.limits.max_runs_per_project:
                raise ResourceExhausted(
                    f"at most {self.limits.max_runs_per_project} runs per project at once; "
                    "retry when one has finished",
                    reason="TOO_MANY_RUNS",
                    retry_after_s=5.0,
                )
            now = datetime.now(UTC)
            run_id = new_id("run")
            run = Run(
                id=run_id,
                spec=spec,
                user_id=f"{run_id}-user" if spec.kind != "eval_only" else "",
                lease_time=now,
                create_time=now,
                update_time=now,
            )
            await self._table.writer.insert([run_row(project_id, run)])
        task = asyncio.get_running_loop().create_task(self._drive(project_id, run), name=run_id)
        self._live[run_id] = _Live(project_id, task)
        task.add_done_callback(lambda _: self._ended(run_id))
        return run

    def _ended(self, run_id: str) -> None:
        self._live.pop(run_id, None)
        self.events.forget(run_id)

    # -- cancel / delete --------------------------------------------------------------------------
    async def cancel(self, project_id: str, run_id: str) -> Run:
        run = await self.get(project_id, run_id)
        if run.status not in ACTIVE:
            return run
        live = self._live.get(run_id)
        if live is not None:
            live.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({live.task})
        else:  # its owner reads the flag when it next renews the lease
            await self._table.writer.patch([{"id": run_id, "cancel_requested": True}])
            await self._reap_if_orphaned(project_id, run_id)
        return await self.get(project_id, run_id)

    async def delete(self, project_id: str, run_id: str) -> None:
        run = await self.cancel(project_id, run_id)
        if run.status in ACTIVE:
            raise FailedPrecondition(
                f"run {run_id} runs on another server: it has been asked to stop; delete it "
                "once it has ended",
                reason="RUN_ACTIVE",
                metadata={"id": run_id},
            )
        async with self._locks.hold(f"{project_id}/{run_id}"):
            if run.user_id:
                with contextlib.suppress(NotFound):
                    await self._purge_user(project_id, run.user_id)
            await self.events.delete(project_id, run_id)
            await self._table.writer.delete(str(self._where(project_id, run_id)))

    async def purge_agent(self, project_id: str, agent_id: str) -> None:
        """Delete every run of the agent (DeleteAgent): FAILED_PRECONDITION while one is still
        running on another server (it is asked to stop; the delete can be retried)."""
        where = Where().eq("project_id", project_id).eq("agent_id", agent_id)
        for row in await self._table.rows(where, ["id"]):
            with contextlib.suppress(NotFound):  # deleted meanwhile
                await self.delete(project_id, row["id"])

    # -- lifecycle ------------------------------------------------------------------------------
    async def recover(self) -> int:
        """Fail the runs left RUNNING or QUEUED by a server that is gone (stale lease)."""
        rows = await self._table.rows(Where().is_in("status", list(ACTIVE)))
        failed = 0
        for r in rows:
            if await self._reap_if_orphaned(r["project_id"], r["id"]):
                failed += 1
        return failed

    async def _reap_if_orphaned(self, project_id: str, run_id: str) -> bool:
        if run_id in self._live:
            return False
        row = await self._table.first(self._where(project_id, run_id))
        if row is None or row["status"] not in ACTIVE:
            return False
        lease = row["lease_time"]
        if lease is not None and datetime.now(UTC) - lease < timedelta(seconds=self.limits.lease_s):
            return False
        reason = f"its server stopped renewing the run (no lease for {self.limits.lease_s:g} s)"
        async with self._locks.hold(f"reap/{run_id}"):
            n = await self.events.finished_count(project_id, run_id)
            if n is None:
                index = await self.events.count(project_id, run_id)
                await self.events.append(
                    project_id,
                    run_id,
                    index,
                    "run_failed",
                    f"run failed: {reason}",
                    {"error": reason},
                )
            await self._finish(project_id, run_id, "failed", reason)
        log.warning("run_reaped", run_id=run_id, reason=reason)
        return True

    async def stop(self) -> None:
        """Fail every run this server drives ("server shutdown"), so none is left RUNNING."""
        self._stopping = True
        live = list(self._live.values())
        for lv in live:
            lv.stop_reason = SHUTDOWN
            lv.task.cancel()
        if live:
            await asyncio.wait({lv.task for lv in live}, timeout=10.0)

    # -- the run --------------------------------------------------------------------------------
    async def _emit(
        self, project_id: str, run_id: str, event: str, message: str, **data: Any
    ) -> None:
        live = self._live[run_id]
        await self.events.append(project_id, run_id, live.next_index, event, message, data)
        live.next_index += 1

    async def _patch(self, run_id: str, **values: Any) -> None:
        now = datetime.now(UTC)
        await self._table.writer.patch([{"id": run_id, "update_time": now, **values}])

    async def _finish(self, project_id: str, run_id: str, status: str, error: str = "") -> None:
        now = datetime.now(UTC)
        await self._patch(run_id, status=status, error=error or None, end_time=now)

    async def _lease(self, project_id: str, run_id: str, task: asyncio.Task[None]) -> None:
        every = self.limits.lease_s / 3
        while True:
            await asyncio.sleep(every)
            await self._patch(run_id, lease_time=datetime.now(UTC))
            row = await self._table.first(self._where(project_id, run_id))
            if row is not None and row["cancel_requested"]:
                task.cancel()
                return

    async def _drive(self, project_id: str, run: Run) -> None:
        live = self._live.get(run.id)
        while live is None:  # registered right after the task is made
            await asyncio.sleep(0)
            live = self._live.get(run.id)
        me = asyncio.current_task()
        assert me is not None
        lease = asyncio.ensure_future(self._lease(project_id, run.id, me))
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.limits.max_run_s):
                await self._patch(run.id, status="running", lease_time=datetime.now(UTC))
                await self._emit(
                    project_id,
                    run.id,
                    "run_started",
                    f"{run.spec.kind} run started with agent {run.spec.agent_id}",
                    kind=run.spec.kind,
                    agent_id=run.spec.agent_id,
                    user_id=run.user_id,
                    sessions=run.spec.config.sessions,
                    turns_per_session=run.spec.config.turns,
                )
                if run.spec.kind == "eval_only":
                    turns = await self._transcript(project_id, run.spec.source_run_id)
                else:
                    turns = await self._simulate(project_id, run)
                if run.spec.kind != "simulation":
                    await self._evaluate(project_id, run, turns)
                await self._emit(
                    project_id,
                    run.id,
                    "run_completed",
                    "run completed",
                    seconds=round(time.monotonic() - started, 3),
                )
                await self._finish(project_id, run.id, "completed")
        except asyncio.CancelledError:
            await asyncio.shield(self._stopped(project_id, run.id, live.stop_reason))
        except TimeoutError:
            reason = f"the run hit its wall-clock cap of {self.limits.max_run_s:g} s"
            await asyncio.shield(self._failed(project_id, run.id, reason))
        except Exception as exc:
            log.warning("run_failed", run_id=run.id, error=str(exc))
            await asyncio.shield(self._failed(project_id, run.id, str(exc) or type(exc).__name__))
        finally:
            lease.cancel()

    async def _stopped(self, project_id: str, run_id: str, reason: str) -> None:
        if reason:
            await self._failed(project_id, run_id, reason)
            return
        try:
            await self._emit(project_id, run_id, "run_cancelled", "run cancelled")
            await self._finish(project_id, run_id, "cancelled")
        except Exception as exc:
            log.warning("run_cancel_not_recorded", run_id=run_id, error=str(exc))

    async def _failed(self, project_id: str, run_id: str, reason: str) -> None:
        try:
            await self._emit(
                project_id, run_id, "run_failed", f"run failed: {reason}", error=reason
            )
            await self._finish(project_id, run_id, "failed", reason)
        except Exception as exc:  # the next server's recovery fails it on its stale lease
            log.warning("run_failure_not_recorded", run_id=run_id, error=str(exc))

    # -- simulation -------------------------------------------------------------------------------
    async def _simulate(self, project_id: str, run: Run) -> builtins.list[Turn]:
        spec = run.spec
        sessions, turns_per = spec.config.sessions, spec.config.turns
        script: Script = build_script(spec.persona, sessions, turns_per)
        persona_llm = self._providers.get("openai")
        if persona_llm is not None and not persona_llm.available:
            persona_llm = None
        step = spec.config.advance_time or timedelta(0)
        transcript: builtins.list[Turn] = []
        turns_done = 0
        for s in range(sessions):
            shift = -(sessions - 1 - s) * step
            session = await self._sessions.create(
                project_id,
                Session(
                    user_id=run.user_id,
                    agent_id=spec.agent_id,
                    title=f"{spec.persona.name}: simulated session {s + 1} of run {run.id}",
                    metadata={"run_id": run.id, "session_index": s},
                ),
            )
            await self._emit(
                project_id,
                run.id,
                "session_started",
                f"session {s + 1} of {sessions}",
                session=s,
                session_id=session.id,
                time_shift_s=shift.total_seconds(),
            )
            for t, ut in enumerate(script.sessions[s]):
                text = ut.text
                if persona_llm is not None:
                    text = await phrase(persona_llm, self._llm_model, spec.persona, ut, transcript)
                await self._emit(
                    project_id,
                    run.id,
                    "user_message",
                    text,
                    session=s,
                    turn=t,
                    intent=ut.intent,
                    facts=list(ut.facts),
                    probe=ut.probe,
                )
                transcript.append(Turn("user", text, s, ut.facts, ut.probe))
                reply, message_id = await self._agent_turn(project_id, session.id, text, shift)
                await self._emit(
                    project_id,
                    run.id,
                    "agent_message",
                    reply,
                    session=s,
                    turn=t,
                    message_id=message_id,
                )
                transcript.append(Turn("assistant", reply, s))
                turns_done += 1
                await self._patch(run.id, turns_done=turns_done)
            job = await self._jobs.process(project_id, session.id, wait=True)
            st = job.stats
            await self._emit(
                project_id,
                run.id,
                "facts_extracted",
                f"{st.facts_extracted} facts extracted ({job.state})",
                session=s,
                job_id=job.id,
                state=job.state,
                error=job.error,
                facts_extracted=st.facts_extracted,
                facts_added=st.facts_added,
                versions_made=st.versions_made,
            )
            await self._emit(
                project_id, run.id, "session_ended", f"session {s + 1} ended", session=s
            )
            await self._patch(run.id, sessions_done=s + 1)
        return transcript

    async def _agent_turn(
        self, project_id: str, session_id: str, text: str, shift: timedelta
    ) -> tuple[str, str]:
        """The real chat turn (recall, provider, storage), dated `shift` from now."""
        token = TIME_SHIFT.set(shift)
        try:
            turn = await self._chat.stream(
                project_id, ChatRequest(message=text, session_id=session_id)
            )
        finally:
            TIME_SHIFT.reset(token)
        parts: builtins.list[str] = []
        message_id = ""
        try:
            async for ev in turn.events():
                if isinstance(ev.body, Delta):
                    parts.append(ev.body.text)
                elif isinstance(ev.body, Done):
                    message_id = ev.body.assistant_message_id
                elif isinstance(ev.body, Failed):
                    raise ev.body.error
        except BaseException:
            turn.cancel()
            raise
        return "".join(parts), message_id

    # -- evaluation -------------------------------------------------------------------------------
    async def _transcript(self, project_id: str, run_id: str) -> builtins.list[Turn]:
        out: builtins.list[Turn] = []
        for e in await self.events.all(project_id, run_id):
            if e.type == "user_message":
                facts = tuple(e.data.get("facts") or ())
                out.append(
                    Turn("user", e.message, e.data.get("session", 0), facts, e.data.get("probe"))
                )
            elif e.type == "agent_message":
                out.append(Turn("assistant", e.message, e.data.get("session", 0)))
        return out

    async def evaluate(
        self, project_id: str, template: Template, turns: builtins.list[Turn], judge_name: str
    ) -> Evaluation:
        if judge_name == "llm":
            provider = await self._provider("judge")
            return await judge.with_llm(provider, self._llm_model, template, turns)
        return judge.offline(template, turns)

    async def _evaluate(self, project_id: str, run: Run, turns: builtins.list[Turn]) -> None:
        template = await self._templates.get(
            project_id, run.spec.template_id or BUILTIN_TEMPLATE_ID, "template_id"
        )
        try:
            ev = await self.evaluate(project_id, template, turns, run.spec.judge)
        except DomainError as exc:
            raise RuntimeError(f"evaluation failed: {exc.reason}: {exc}") from exc
        await self._emit(
            project_id,
            run.id,
            "evaluation",
            ev.feedback,
            score=ev.score,
            judge=ev.judge,
            template_id=template.id,
            recall_correct=ev.recall_correct,
            recall_total=ev.recall_total,
            categories=[
                {"name": c.name, "score": c.score, "feedback": c.feedback} for c in ev.categories
            ],
        )
        await self._patch(
            run.id, score=ev.score, recall_correct=ev.recall_correct, recall_total=ev.recall_total
        )
