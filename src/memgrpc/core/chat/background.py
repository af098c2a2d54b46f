"""Background chat turns (Sonzai chat_async + poll): submit returns a `chat_...` id at once, the
turn runs in a task of its own, and its state lives in the `chat_results` table so any replica
answers a poll.

The row is hot while the turn runs, so its partial reply is written at most every
`flush_every_s` (each write is a LanceDB commit), and the final state once at the end. Polls
are never tied to the work: cancelling one changes nothing. While it runs the row says its
phase; once complete, its side effects (facts extracted, the agent's mood before and after)
and the model's tool calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from memgrpc.core.agents.turns import Mood
from memgrpc.core.chat.events import (
    ContextUsed,
    Delta,
    Done,
    EventBody,
    Failed,
    Phase,
    SideEffects,
    Started,
    ToolCalled,
)
from memgrpc.core.chat.turn import ChatRequest, ChatService, Plan
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import DomainError, NotFound, Violations
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.memory.model import SearchHit
from memgrpc.core.memory.service import MemoryService
from memgrpc.llm import ToolCall, Usage
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table
from memgrpc.store.writer import TableWriter

log = structlog.get_logger(__name__)

ChatStatus = Literal["queued", "running", "complete", "failed"]
FLUSH_EVERY_S = 0.25
MAX_CONCURRENT = 8


@dataclass(frozen=True)
class ChatFailure:
    code: str  # canonical status name, e.g. RESOURCE_EXHAUSTED
    message: str
    reason: str

    @classmethod
    def of(cls, exc: BaseException) -> ChatFailure:
        if isinstance(exc, DomainError):
            return cls(exc.code, exc.message, exc.reason)
        return cls("INTERNAL", "internal error", "INTERNAL")

    @classmethod
    def of_row(cls, row: Row) -> ChatFailure | None:
        if not row.get("error_code"):
            return None
        return cls(row["error_code"], row.get("error_message") or "", row["error_reason"] or "")


def usage_of_row(row: Row) -> Usage | None:
    if row.get("prompt_tokens") is None:
        return None
    return Usage(row["prompt_tokens"], row["completion_tokens"] or 0)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _mood_json(m: Mood | None) -> dict[str, Any] | None:
    if m is None:
        return None
    out = asdict(m)
    out["update_time"] = m.update_time.isoformat() if m.update_time else None
    return out


def _mood_of(raw: dict[str, Any] | None) -> Mood | None:
    if raw is None:
        return None
    when = raw.get("update_time")
    return Mood(**(raw | {"update_time": datetime.fromisoformat(when) if when else None}))


def effects_json(e: SideEffects) -> str:
    return json.dumps(
        {
            "facts_extracted": e.facts_extracted,
            "memory_ids": list(e.memory_ids),
            "mood_before": _mood_json(e.mood_before),
            "mood_after": _mood_json(e.mood_after),
        }
    )


def effects_of_row(row: Row) -> SideEffects | None:
    raw = row.get("side_effects")
    if not raw:
        return None
    d = json.loads(raw)
    return SideEffects(
        d["facts_extracted"],
        tuple(d["memory_ids"]),
        _mood_of(d.get("mood_before")),
        _mood_of(d.get("mood_after")),
    )


def calls_json(calls: list[ToolCall]) -> str:
    return json.dumps([asdict(c) for c in calls])


def calls_of_row(row: Row) -> list[ToolCall]:
    return [ToolCall(**c) for c in json.loads(row.get("tool_calls") or "[]")]


def first_values(
    result_id: str, project_id: str, user_id: str, session_id: str, status: str, **more: str
) -> Row:
    """A new `chat_results` row (a queued async turn, a recorded streamed one)."""
    now = utc_now()
    return {
        "id": result_id,
        "project_id": project_id,
        "user_id": user_id,
        "session_id": session_id,
        "status": status,
        "response": "",
        "create_time": now,
        "update_time": now,
        **more,
    }


def final_values(
    result_id: str,
    *,
    failure: ChatFailure | None,
    response: str,
    user_message_id: str,
    assistant_message_id: str,
    memories: list[tuple[str, float]] | None,
    usage: Usage | None,
) -> Row:
    """The columns of a `chat_results` row once its turn has ended (async and replayed turns)."""
    return {
        "id": result_id,
        "status": "failed" if failure else "complete",
        "response": response,
        "user_message_id": user_message_id or None,
        "assistant_message_id": assistant_message_id or None,
        "memories": json.dumps(memories) if memories is not None else None,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "error_code": failure.code if failure else None,
        "error_message": failure.message if failure else None,
        "error_reason": failure.reason if failure else None,
        "update_time": utc_now(),
    }


@dataclass
class ChatResult:
    id: str
    status: ChatStatus
    session_id: str = ""
    user_id: str = ""
    response: str = ""
    user_message_id: str = ""
    assistant_message_id: str = ""
    usage: Usage | None = None
    memories: list[SearchHit] = field(default_factory=list)
    error: ChatFailure | None = None
    phase: str = ""
    side_effects: SideEffects | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


class _Progress:
    """What a running turn has produced, and the throttled writes that publish it."""

    def __init__(self, writer: TableWriter, result_id: str, every_s: float) -> None:
        self._writer = writer
        self._id = result_id
        self._every_s = every_s
        self._parts: list[str] = []
        self._dirty = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self.user_message_id = ""
        self.assistant_message_id = ""
        self.memories: list[tuple[str, float]] = []
        self.usage: Usage | None = None
        self.phase = ""
        self.tool_calls: list[ToolCall] = []
        self.effects: SideEffects | None = None

    def on_event(self, body: EventBody) -> None:
        match body:
            case Phase():
                self.phase = body.name
            case ToolCalled():
                self.tool_calls.append(body.call)
            case SideEffects():
                self.effects = body
            case Started():
                self.user_message_id = body.user_message_id
            case ContextUsed():
                self.memories = [(h.memory.id, h.score) for h in body.memories]
            case Delta():
                self._parts.append(body.text)
            case Done():
                self.assistant_message_id = body.assistant_message_id
                self.usage = body.usage
            case Failed():
                return
        self._dirty.set()

    async def running(self) -> None:
        await self._writer.patch([{"id": self._id, "status": "running", "update_time": utc_now()}])
        self._flusher = asyncio.ensure_future(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._writer.patch(
                [
                    {
                        "id": self._id,
                        "response": "".join(self._parts),
                        "user_message_id": self.user_message_id or None,
                        "memories": json.dumps(self.memories),
                        "phase": self.phase or None,
                        "tool_calls": calls_json(self.tool_calls),
                        "update_time": utc_now(),
                    }
                ]
            )
            await asyncio.sleep(self._every_s)

    async def finish(self, failure: ChatFailure | None) -> None:
        """The final state. A partial write already queued commits first (one writer, FIFO)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
        await self._writer.patch(
            [
                final_values(
                    self._id,
                    failure=failure,
                    response="".join(self._parts),
                    user_message_id=self.user_message_id,
                    assistant_message_id=self.assistant_message_id,
                    memories=self.memories,
                    usage=self.usage,
                )
                | {
                    "phase": None,
                    "side_effects": effects_json(self.effects) if self.effects else None,
                    "tool_calls": calls_json(self.tool_calls),
                }
            ]
        )


class BackgroundChats:
    def __init__(
        self,
        store: Store,
        chat: ChatService,
        memories: MemoryService,
        *,
        max_concurrent: int = MAX_CONCURRENT,
        flush_every_s: float = FLUSH_EVERY_S,
    ) -> None:
        self._table = Table(store, "chat_results")
        self._chat = chat
        self._memories = memories
        self._slots = asyncio.Semaphore(max_concurrent)
        self.flush_every_s = flush_every_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, project_id: str, r: ChatRequest) -> ChatResult:
        """Validate and resolve the session now (errors go to the caller), run the turn later."""
        plan = await self._chat.plan(project_id, r)  # looks the session up: errors now
        s = plan.session
        assert s is not None
        result = ChatResult(id=new_id("chat"), status="queued", session_id=s.id, user_id=s.user_id)
        await self._table.writer.insert(
            [first_values(result.id, project_id, s.user_id, s.id, "queued")]
        )
        self._spawn(self._run(plan, result.id), result.id)
        return result

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, plan: Plan, result_id: str) -> None:
        progress = _Progress(self._table.writer, result_id, self.flush_every_s)
        try:
            async with self._slots:
                await progress.running()
                await self._chat.run(plan, progress.on_event, side_effects=True)
        except asyncio.CancelledError:
            failure = ChatFailure(
                "UNAVAILABLE", "the server stopped before the turn ended", "STOPPED"
            )
            await asyncio.shield(self._finish(progress, failure))
            raise
        except Exception as exc:
            if not isinstance(exc, DomainError):
                log.error("chat_async_failed", chat_id=result_id, exc_info=exc)
            await self._finish(progress, ChatFailure.of(exc))
        else:
            await self._finish(progress, None)

    @staticmethod
    async def _finish(progress: _Progress, failure: ChatFailure | None) -> None:
        try:
            await progress.finish(failure)
        except Exception as exc:  # the row stays RUNNING; nothing else can be done
            log.warning("chat_result_write_failed", error=str(exc))

    async def get(self, project_id: str, result_id: str) -> ChatResult:
        v = Violations()
        validation.check_id(v, "processing_id", result_id, required=True)
        v.raise_if_any()
        row = await self._table.first(Where().eq("project_id", project_id).eq("id", result_id))
        if row is None:
            raise NotFound(
                f"chat {result_id} not found",
                reason="CHAT_NOT_FOUND",
                metadata={"processing_id": result_id},
            )
        scored = [(str(i), float(s)) for i, s in json.loads(row.get("memories") or "[]")]
        found = {m.id: m for m in await self._memories.get_many(project_id, [i for i, _ in scored])}
        return ChatResult(
            id=row["id"],
            status=row.get("status") or "queued",
            session_id=row.get("session_id") or "",
            user_id=row.get("user_id") or "",
            response=row.get("response") or "",
            user_message_id=row.get("user_message_id") or "",
            assistant_message_id=row.get("assistant_message_id") or "",
            usage=usage_of_row(row),
            memories=[SearchHit(found[i], s) for i, s in scored if i in found],
            error=ChatFailure.of_row(row),
            phase=row.get("phase") or "",
            side_effects=effects_of_row(row),
            tool_calls=calls_of_row(row),
        )

    async def delete_session(self, project_id: str, session_id: str) -> None:
        """The session's chat turns as recorded for polls and replays (they quote its messages),
        when the session is deleted; a turn still running patches nothing back (patches skip
        deleted rows)."""
        where = Where().eq("project_id", project_id).eq("session_id", session_id)
        if await self._table.count(where):
            await self._table.writer.delete(str(where))

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Let running turns end for up to `timeout_s`, then cancel them (they end FAILED)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
