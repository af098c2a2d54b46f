"""Session processing jobs, run in the background, and the sweeper that starts them when idle.

A job row lives in the `jobs` table, so any replica answers GetJob. Starting a job moves the
session ACTIVE/FAILED -> PROCESSING with a conditional update, so among replicas (and the
sweeper) exactly one job runs per session. The job ends the session PROCESSED, or FAILED with
the failing step's error.

An `extract_turn` job (SubmitTurn) runs only the extraction step over one turn's messages and
leaves the session as it is (ACTIVE: more turns follow); GetJob reports it like any job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from memgrpc.core.conversation.messages import MessageService
from memgrpc.core.conversation.records import (
    EXTRACT_TURN,
    PROCESS_SESSION,
    Job,
    JobStats,
    Message,
    Session,
    SessionStatus,
    job_from_row,
    job_row,
    job_stats_row,
)
from memgrpc.core.conversation.session_store import SessionStore, session_key
from memgrpc.core.intelligence.processing import ProcessingStep, SessionWork
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import DomainError, FailedPrecondition, NotFound, Violations
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.periodic import Periodic
from memgrpc.core.memory.service import MemoryService
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Table

log = structlog.get_logger(__name__)

_POLL_S = 0.2  # how often a waiter polls a job that runs on another replica
_CLAIM_ATTEMPTS = 3


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Running:
    project_id: str
    user_id: str
    session_id: str
    task: asyncio.Task[None]


class JobRunner:
    def __init__(
        self,
        store: Store,
        sessions: SessionStore,
        messages: MessageService,
        memories: MemoryService,
        steps: Sequence[ProcessingStep],
        *,
        max_concurrent: int = 2,
    ) -> None:
        self._jobs = Table(store, "jobs")
        self._sessions = sessions
        self._messages = messages
        self._memories = memories
        # the processing pipeline (core/processing.default_steps); later issues append to it
        self.steps = list(steps)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._running: dict[str, _Running] = {}  # job id -> its task

    # -- read ---------------------------------------------------------------------------------
    async def get(self, project_id: str, job_id: str) -> Job:
        v = Violations()
        validation.check_id(v, "id", job_id, required=True)
        v.raise_if_any()
        row = await self._jobs.first(Where().eq("project_id", project_id).eq("id", job_id))
        if row is None:
            raise NotFound(
                f"job {job_id} not found", reason="JOB_NOT_FOUND", metadata={"id": job_id}
            )
        return job_from_row(row)

    # -- start --------------------------------------------------------------------------------
    async def process(
        self, project_id: str, session_id: str, *, wait: bool = False, force: bool = False
    ) -> Job:
        """Start processing the session (or join the job already at it); `wait` = until done;
        `force` = a PROCESSED session too (its steps are idempotent: nothing is duplicated)."""
        job = await self._start(project_id, session_id, force)
        if wait:
            job = await self.wait(project_id, job.id)
        return job

    async def _start(self, project_id: str, session_id: str, force: bool) -> Job:
        startable: tuple[SessionStatus, ...] = ("active", "failed")
        if force:
            startable += ("processed",)
        for _ in range(_CLAIM_ATTEMPTS):
            async with self._sessions.locks.hold(session_key(project_id, session_id)):
                s = await self._sessions.require(project_id, session_id, "session_id")
                if s.status == "processed" and not force:
                    raise FailedPrecondition(
                        f"session {session_id} is already processed",
                        reason="SESSION_PROCESSED",
                        metadata={"session_id": session_id},
                    )
                if s.status == "processing":
                    return await self.get(project_id, s.job_id)
                now = _now()
                job = Job(
                    id=new_id("job"),
                    session_id=s.id,
                    user_id=s.user_id,
                    kind=PROCESS_SESSION,
                    create_time=now,
                    update_time=now,
                )
                await self._jobs.writer.insert([job_row(project_id, job)])
                values = {"status": "processing", "job_id": job.id, "update_time": now}
                if await self._sessions.claim(project_id, s.id, startable, values):
                    self._spawn(project_id, s, job)
                    return job
                # another replica moved the session first: drop our job, look again
                await self._jobs.writer.delete(str(Where().eq("id", job.id)))
        raise FailedPrecondition(
            f"session {session_id} keeps changing state; retry",
            reason="SESSION_BUSY",
            metadata={"session_id": session_id},
        )

    def _spawn(self, project_id: str, s: Session, job: Job) -> None:
        task = asyncio.get_running_loop().create_task(
            self._run(project_id, s, job), name=f"job-{job.id}"
        )
        self._running[job.id] = _Running(project_id, s.user_id, s.id, task)
        task.add_done_callback(lambda _: self._running.pop(job.id, None))

    async def wait(self, project_id: str, job_id: str) -> Job:
        """Until the job is DONE or FAILED; a cancelled waiter leaves the job running."""
        running = self._running.get(job_id)
        if running is not None:
            try:
                await asyncio.shield(running.task)
            except asyncio.CancelledError:
                if not running.task.done():  # the waiter was cancelled, not the job
                    raise
        while True:
            job = await self.get(project_id, job_id)
            if job.state in ("done", "failed"):
                return job
            await asyncio.sleep(_POLL_S)

    # -- one turn's extraction ----------------------------------------------------------------
    @property
    def extracts(self) -> bool:
        """Whether extraction is configured (MEMGRPC_EXTRACTOR is not `none`)."""
        return any(step.name == "extract" for step in self.steps)

    async def extract_now(
        self, project_id: str, s: Session, messages: Sequence[Message]
    ) -> SessionWork:
        """Run the extraction step over `messages` now (a chat turn's side effects)."""
        work = SessionWork(project_id, s, list(messages), self._memories)
        for step in self.steps:
            if step.name == "extract":
                await step.run(work)
        return work

    async def extract_turn(
        self, project_id: str, s: Session, messages: Sequence[Message]
    ) -> Job | None:
        """Start an `extract_turn` job over one turn's messages (None when extraction is off);
        the session keeps its status."""
        if not self.extracts:
            return None
        now = _now()
        job = Job(
            id=new_id("job"),
            session_id=s.id,
            user_id=s.user_id,
            kind=EXTRACT_TURN,
            create_time=now,
            update_time=now,
        )
        await self._jobs.writer.insert([job_row(project_id, job)])
        task = asyncio.get_running_loop().create_task(
            self._run_turn(project_id, s, job, list(messages)), name=f"job-{job.id}"
        )
        self._running[job.id] = _Running(project_id, s.user_id, s.id, task)
        task.add_done_callback(lambda _: self._running.pop(job.id, None))
        return job

    async def _run_turn(
        self, project_id: str, s: Session, job: Job, messages: list[Message]
    ) -> None:
        try:
            async with self._slots:
                await self._set_state(project_id, job, "running")
                work = await self.extract_now(project_id, s, messages)
                await self._set_state(project_id, job, "done", stats=work.stats)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._set_state(project_id, job, "failed", "cancelled before it finished")
            raise
        except Exception as exc:
            log.warning("turn_extraction_failed", job_id=job.id, error=str(exc))
            with contextlib.suppress(Exception):
                await self._set_state(project_id, job, "failed", f"extract: {exc}")

    # -- run ----------------------------------------------------------------------------------
    async def _set_state(
        self, project_id: str, job: Job, state: str, error: str = "", stats: JobStats | None = None
    ) -> None:
        row = {"id": job.id, "state": state, "error": error or None, "update_time": _now()}
        # stats stay zero until the job is DONE (a failed job wrote nothing)
        await self._jobs.writer.patch([row | job_stats_row(stats or JobStats())])

    async def _run(self, project_id: str, s: Session, job: Job) -> None:
        step_name = "load"
        try:
            async with self._slots:
                await self._set_state(project_id, job, "running")
                messages = await self._messages.all_in_session(project_id, s.id)
                work = SessionWork(project_id, s, messages, self._memories)
                for step in self.steps:
                    step_name = step.name
                    await step.run(work)
                step_name = "finish"
                values = {"status": "processed", "update_time": _now()}
                await self._sessions.claim(project_id, s.id, ("processing",), values, job_id=job.id)
                await self._set_state(project_id, job, "done", stats=work.stats)
                log.info("session_processed", session_id=s.id, job_id=job.id)
        except asyncio.CancelledError:
            await self._fail(project_id, s, job, "cancelled before it finished")
            raise
        except Exception as exc:
            log.warning("session_processing_failed", job_id=job.id, step=step_name, error=str(exc))
            await self._fail(project_id, s, job, f"{step_name}: {exc}")

    async def _fail(self, project_id: str, s: Session, job: Job, error: str) -> None:
        try:
            values = {"status": "failed", "update_time": _now()}
            await self._sessions.claim(project_id, s.id, ("processing",), values, job_id=job.id)
            await self._set_state(project_id, job, "failed", error)
        except Exception as exc:  # the sweeper's stale check will fail the job later
            log.warning("job_fail_write_failed", job_id=job.id, error=str(exc))

    # -- stop / cancel ------------------------------------------------------------------------
    def is_running(self, job_id: str) -> bool:
        return job_id in self._running

    async def _cancel(self, match: Callable[[_Running], bool]) -> None:
        tasks = [r.task for r in self._running.values() if match(r)]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def cancel_session(self, project_id: str, session_id: str) -> None:
        await self._cancel(lambda r: (r.project_id, r.session_id) == (project_id, session_id))

    async def cancel_user(self, project_id: str, user_id: str) -> None:
        await self._cancel(lambda r: (r.project_id, r.user_id) == (project_id, user_id))

    async def drain_user(self, project_id: str, user_id: str) -> None:
        """Until this replica runs no job of the user (a rename must not race its writes)."""
        tasks = [
            r.task
            for r in self._running.values()
            if (r.project_id, r.user_id) == (project_id, user_id)
        ]
        await asyncio.gather(*(asyncio.shield(t) for t in tasks), return_exceptions=True)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Let running jobs finish for up to `timeout_s`, then cancel (they end FAILED)."""
        tasks = [r.task for r in self._running.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def delete_session(self, project_id: str, session_id: str) -> None:
        """Drop the job rows of a deleted session (cancel its running job first)."""
        where = Where().eq("project_id", project_id).eq("session_id", session_id)
        if await self._jobs.count(where):
            await self._jobs.writer.delete(str(where))

    async def abandon(self, project_id: str, session_id: str, job_id: str) -> None:
        """Fail a job whose replica died mid-run (its session was left PROCESSING)."""
        values = {"status": "failed", "update_time": _now()}
        if await self._sessions.claim(
            project_id, session_id, ("processing",), values, job_id=job_id
        ):
            await self._jobs.writer.patch(
                [
                    {
                        "id": job_id,
                        "state": "failed",
                        "error": "abandoned: the server running it stopped",
                        "update_time": _now(),
                    }
                ]
            )


class AutoProcessor(Periodic):
    """Every `interval_s`: start jobs for sessions idle past their auto_process_after (at most
    `batch` per tick), and fail jobs left PROCESSING by a dead replica."""

    name = "auto-process"

    def __init__(
        self,
        sessions: SessionStore,
        jobs: JobRunner,
        *,
        interval_s: float = 2.0,
        batch: int = 8,
        stale_after_s: float = 600.0,
    ) -> None:
        super().__init__(interval_s)
        self._sessions = sessions
        self._jobs = jobs
        self.batch = batch
        self.stale_after_s = stale_after_s

    async def run_once(self) -> int:
        """One sweep; returns how many jobs it started."""
        now = _now()
        started = 0
        for project_id, session_id in await self._sessions.due(now, self.batch):
            try:
                await self._jobs.process(project_id, session_id)
                started += 1
            except DomainError as exc:  # processed or deleted meanwhile
                log.info("auto_process_skipped", session_id=session_id, reason=exc.reason)
        cutoff = now - timedelta(seconds=self.stale_after_s)
        for row in await self._sessions.stale(cutoff, self.batch):
            if row["job_id"] and not self._jobs.is_running(row["job_id"]):
                await self._jobs.abandon(row["project_id"], row["id"], row["job_id"])
        return started
