"""The per-turn session loop (Sonzai sessions.turn / sessions.end) for clients that run their
own LLM: a turn's messages are stored (through MessageService.add, so they are indexed like any
others), the agent's mood is moved (TurnHook), the turn's facts are extracted in a background
`extract_turn` job (GetJob is its status; the session stays ACTIVE), and the context for the
next LLM call comes back, as GetContext renders it, in the same round-trip. Ending a session
processes it (summary, facts) and records what the client counted.

EndSession is idempotent: ending an ended session (PROCESSING or PROCESSED) returns the job that
processes (or processed) it, and changes nothing; a session whose processing FAILED is
processed again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from memgrpc.core.agents.turns import Mood, TurnHook
from memgrpc.core.chat.context import Context, ContextRequest, ContextService
from memgrpc.core.conversation.jobs import JobRunner
from memgrpc.core.conversation.messages import MessageService, check_message
from memgrpc.core.conversation.records import Job, Message, Session
from memgrpc.core.conversation.sessions import SessionService
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import Violations

MAX_TURN_MESSAGES = 100
MAX_DURATION = timedelta(days=365)
# where EndSession records what the client counted, in the session's metadata
END_KEY = "session_end"


@dataclass(frozen=True)
class TurnRequest:
    session_id: str
    messages: Sequence[Message]
    fetch_next_context: bool = False
    next_context_query: str = ""
    token_budget: int = 0


@dataclass(frozen=True)
class TurnResult:
    messages: list[Message]
    mood: Mood | None
    extraction_job: Job | None
    next_context: Context | None


@dataclass(frozen=True)
class EndRequest:
    session_id: str
    total_messages: int = 0
    duration: timedelta | None = None
    wait: bool = False


class SessionLoop:
    def __init__(
        self,
        sessions: SessionService,
        messages: MessageService,
        jobs: JobRunner,
        context: ContextService,
        hook: TurnHook | None = None,
    ) -> None:
        self._sessions = sessions
        self._messages = messages
        self._jobs = jobs
        self._context = context
        # the context engine's seam; None = turns move no mood
        self.hook = hook

    @staticmethod
    def _check_turn(r: TurnRequest) -> None:
        v = Violations()
        validation.check_id(v, "session_id", r.session_id, required=True)
        if not r.messages:
            v.add("messages", "must not be empty")
        elif len(r.messages) > MAX_TURN_MESSAGES:
            v.add("messages", f"at most {MAX_TURN_MESSAGES} messages per turn")
        for i, m in enumerate(r.messages):
            check_message(v, m, f"messages[{i}]")
        if len(r.next_context_query.encode("utf-8")) > validation.MAX_CONTENT_BYTES:
            v.add("next_context_query", f"must be at most {validation.MAX_CONTENT_BYTES} bytes")
        if r.token_budget < 0:
            v.add("token_budget", "must be positive (0 = no budget)")
        v.raise_if_any()

    async def submit_turn(self, project_id: str, r: TurnRequest) -> TurnResult:
        self._check_turn(r)
        s = await self._sessions.get(project_id, r.session_id)  # NOT_FOUND across projects
        added = await self._messages.add(project_id, s.id, r.messages)
        mood, job, ctx = await asyncio.gather(
            self._observe(project_id, s, added),
            self._jobs.extract_turn(project_id, s, added),
            self._next_context(project_id, s, r, added) if r.fetch_next_context else _nothing(),
        )
        return TurnResult(added, mood, job, ctx)

    async def _observe(self, project_id: str, s: Session, added: list[Message]) -> Mood | None:
        if not s.agent_id or self.hook is None:
            return None
        return await self.hook.observe_turn(project_id, s, added)

    async def _next_context(
        self, project_id: str, s: Session, r: TurnRequest, added: list[Message]
    ) -> Context:
        users = [m.content for m in added if m.role == "user"]
        query = r.next_context_query or (users[-1] if users else added[-1].content)
        request = ContextRequest(
            user_id=s.user_id,
            session_id=s.id,
            query=query,
            token_budget=r.token_budget,
            agent_id=s.agent_id,
            instance_id=s.instance_id,
        )
        return await self._context.get(project_id, request)

    async def end_session(self, project_id: str, r: EndRequest) -> tuple[Session, Job]:
        v = Violations()
        validation.check_id(v, "session_id", r.session_id, required=True)
        if r.total_messages < 0:
            v.add("total_messages", "must not be negative")
        seconds = r.duration.total_seconds() if r.duration is not None else 0.0
        if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DURATION.total_seconds():
            v.add("duration", "must be between 0 and 365 days")
        v.raise_if_any()
        s = await self._sessions.get(project_id, r.session_id)
        if s.status in ("processing", "processed") and s.job_id:  # ended already
            job = await self._jobs.get(project_id, s.job_id)
            if r.wait and job.state not in ("done", "failed"):
                job = await self._jobs.wait(project_id, job.id)
            return await self._sessions.get(project_id, s.id), job
        end: dict[str, Any] = {
            "total_messages": r.total_messages,
            "stored_messages": s.message_count,
            "end_time": datetime.now(UTC).isoformat(),
        }
        if r.duration is not None:
            end["duration_seconds"] = seconds
        noted = Session(id=s.id, metadata={**s.metadata, END_KEY: end})
        await self._sessions.update(project_id, noted, frozenset({"metadata"}))
        job = await self._jobs.process(project_id, s.id, wait=r.wait)
        return await self._sessions.get(project_id, s.id), job


async def _nothing() -> None:
    return None
