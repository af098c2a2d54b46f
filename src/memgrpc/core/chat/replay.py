"""Streamed chat turns with a request_id: a retry replays the first attempt, never runs twice.

Without a request_id a turn goes straight to `ChatService.stream` (no read, no write here).
With one, the turn's outcome is recorded in `chat_results` (the ChatAsync table), in a row whose
id is `<key>_<fingerprint>`: the key is derived from (project, request_id), the fingerprint from
the request body, so one read of the key's id range finds the first attempt and tells whether
the retry asked the same thing. A retry

- of a finished turn replays it: `started` (same user message and session), `context` (the
  memories that still exist), the reply as one `delta`, the model's tool calls, then `done` (same assistant message,
  usage; latency 0) or the first attempt's error (its status ends the call again);
- of a turn still running on this server waits for it to end, then replays it;
- of a turn running elsewhere (or whose server stopped mid-turn) is FAILED_PRECONDITION
  `CHAT_TURN_IN_PROGRESS`;
- with another request body is INVALID_ARGUMENT `REQUEST_ID_REUSED`.

A first attempt cancelled after `started` (the client left) is remembered as
FAILED_PRECONDITION `CHAT_TURN_INTERRUPTED` (its partial reply is stored, marked interrupted): the
user message is not stored again, so asking again needs a new request_id. A turn that fails
before `started` stored nothing and is not remembered (a retry runs it).

The row is written after `started` (off the path to the first delta) and completed at the end;
a crash between the user message's commit and that write is the one window in which a retry
runs the turn again. Deleting the session or purging its user removes the rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Protocol

import structlog

from memgrpc.core.chat.background import (
    ChatFailure,
    calls_json,
    calls_of_row,
    final_values,
    first_values,
    usage_of_row,
    utc_now,
)
from memgrpc.core.chat.events import (
    ChatEvent,
    ContextUsed,
    Delta,
    Done,
    EventBody,
    Failed,
    Started,
    ToolCalled,
)
from memgrpc.core.chat.turn import ChatRequest, ChatService, Plan
from memgrpc.core.conversation.sessions import SessionService
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Violations,
    error_for,
)
from memgrpc.core.kernel.ids import derived_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.memory.model import SearchHit
from memgrpc.core.memory.service import MemoryService
from memgrpc.llm import ToolCall, Usage
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table

log = structlog.get_logger(__name__)

INTERRUPTED = ChatFailure(
    "FAILED_PRECONDITION",
    "the first attempt with this request_id was cancelled before the reply was complete "
    "(the partial reply is stored, marked interrupted); send a new request_id to ask again",
    "CHAT_TURN_INTERRUPTED",
)


class ChatStream(Protocol):
    """What the servicer reads: a live `Turn`, or a replay."""

    def events(self) -> AsyncIterator[ChatEvent]: ...

    def cancel(self) -> None: ...


def fingerprint(r: ChatRequest) -> str:
    body = json.dumps(dataclasses.asdict(r), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass
class Outcome:
    """A turn as recorded (in memory while it runs here, or read back from its row)."""

    fingerprint: str
    status: str  # running | complete | failed
    session_id: str = ""
    user_message_id: str = ""
    assistant_message_id: str = ""
    response: str = ""
    memories: list[tuple[str, float]] | None = None  # None: no `context` event was sent
    usage: Usage | None = None
    failure: ChatFailure | None = None
    tool_calls: list[ToolCall] = dataclasses.field(default_factory=list)

    @classmethod
    def of_row(cls, row: Row) -> Outcome:
        memories = row.get("memories")
        return cls(
            fingerprint=str(row["id"]).rsplit("_", 1)[-1],
            status=row.get("status") or "running",
            session_id=row.get("session_id") or "",
            user_message_id=row.get("user_message_id") or "",
            assistant_message_id=row.get("assistant_message_id") or "",
            response=row.get("response") or "",
            memories=(
                [(str(i), float(s)) for i, s in json.loads(memories)]
                if memories is not None
                else None
            ),
            usage=usage_of_row(row),
            failure=ChatFailure.of_row(row),
            tool_calls=calls_of_row(row),
        )


class _Record:
    """A running turn's outcome, and the two writes that record it (after `started`, at the end):
    the `TurnObserver` of a turn with a request_id."""

    def __init__(self, replays: ChatReplays, plan: Plan, key: str, fp: str) -> None:
        self._replays = replays
        self._plan = plan
        self.key = key
        self.row_id = f"{key}_{fp}"
        self.outcome = Outcome(fp, "running", session_id=plan.session_id)
        self._parts: list[str] = []
        self._insert: asyncio.Future[None] | None = None
        self.settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def started(self) -> bool:
        return self._insert is not None

    def on_event(self, body: EventBody) -> None:
        o = self.outcome
        match body:
            case Started():
                o.user_message_id, o.session_id = body.user_message_id, body.session_id
                self._insert = self._replays.chat.track(asyncio.ensure_future(self._insert_row()))
            case ContextUsed():
                o.memories = [(h.memory.id, h.score) for h in body.memories]
            case Delta():
                self._parts.append(body.text)
            case ToolCalled():
                o.tool_calls.append(body.call)
            case Done():
                o.assistant_message_id, o.usage = body.assistant_message_id, body.usage
            case Failed():
                o.failure = ChatFailure.of(body.error)

    async def _insert_row(self) -> None:
        plan, o = self._plan, self.outcome
        user_id = plan.session.user_id if plan.session is not None else plan.request.user_id
        if not user_id:  # a purge of the user must find the row
            user_id = (await self._replays.sessions.get(plan.project_id, o.session_id)).user_id
        row = first_values(
            self.row_id,
            plan.project_id,
            user_id,
            o.session_id,
            "running",
            user_message_id=o.user_message_id,
        )
        await self._replays.table.writer.insert([row])

    def on_end(self, error: BaseException | None) -> None:
        """The turn is over; record it (in a task of its own: nothing may cancel that write)."""
        if isinstance(error, asyncio.CancelledError):
            failure: ChatFailure | None = INTERRUPTED
        else:
            failure = ChatFailure.of(error) if error is not None else None
        o = self.outcome
        o.response = "".join(self._parts)
        if failure is not None and o.failure is None:
            o.failure = failure
        o.status = "failed" if o.failure is not None else "complete"
        self._replays.chat.track(asyncio.ensure_future(self._settle()))

    async def _settle(self) -> None:
        try:
            if self._insert is not None:  # nothing was stored before `started`: no record
                await self._insert
                await self._patch_row()
        except Exception as exc:  # a retry may then run the turn again; nothing else to do
            log.warning("chat_replay_write_failed", row_id=self.row_id, error=str(exc))
        finally:
            self._replays.live.pop(self.key, None)
            self.settled.set_result(None)

    async def _patch_row(self) -> None:
        o = self.outcome
        values = final_values(
            self.row_id,
            failure=o.failure,
            response=o.response,
            user_message_id=o.user_message_id,
            assistant_message_id=o.assistant_message_id,
            memories=o.memories,
            usage=o.usage,
        )
        values["tool_calls"] = calls_json(o.tool_calls)
        await self._replays.table.writer.patch([values])


class Replayed:
    """The events of a recorded turn, sent again."""

    def __init__(self, bodies: list[EventBody], error: DomainError | None) -> None:
        self._bodies = bodies
        self._error = error

    async def events(self) -> AsyncIterator[ChatEvent]:
        for i, body in enumerate(self._bodies, start=1):
            yield ChatEvent(i, utc_now(), body)
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        return None


class ChatReplays:
    def __init__(
        self, store: Store, chat: ChatService, sessions: SessionService, memories: MemoryService
    ) -> None:
        self.table = Table(store, "chat_results")
        self.chat = chat
        self.sessions = sessions
        self._memories = memories
        self._locks = KeyedLocks()
        self.live: dict[str, _Record] = {}  # key -> the turn running here

    async def stream(self, project_id: str, r: ChatRequest, request_id: str) -> ChatStream:
        """`ChatService.stream`, run at most once per (project, request_id); see the module."""
        if not request_id:
            return await self.chat.stream(project_id, r)
        v = Violations()
        validation.check_id(v, "request_id", request_id, required=False)
        v.raise_if_any()
        key = derived_id("chat", project_id, "Chat", request_id)
        fp = fingerprint(r)
        while True:
            async with self._locks.hold(key):
                live = self.live.get(key)
                if live is None:
                    found = await self._find(project_id, key)
                    if found is None:
                        plan = await self.chat.plan(project_id, r, look_up=False)
                        record = _Record(self, plan, key, fp)
                        self.live[key] = record
                        return self.chat.start(plan, observer=record)
                    break
            _same_request(live.outcome.fingerprint, fp)
            await asyncio.shield(live.settled)  # the first attempt runs here: wait for it
            if live.started:
                found = live.outcome
                break
            # it failed before storing anything, and is not remembered: this attempt runs
        _same_request(found.fingerprint, fp)
        if found.status == "running":
            raise FailedPrecondition(
                "a chat turn with this request_id is still running on another server (or its "
                "server stopped mid-turn); send a new request_id to ask again",
                reason="CHAT_TURN_IN_PROGRESS",
                metadata={"request_id": request_id},
            )
        return await self._replay(project_id, found)

    async def _find(self, project_id: str, key: str) -> Outcome | None:
        # every row of the key: ids `<key>_<fingerprint>`, i.e. in [key + "_", key + "`")
        where = Where().eq("project_id", project_id).cmp("id", ">=", key + "_")
        row = await self.table.first(where.cmp("id", "<", key + "`"))
        return Outcome.of_row(row) if row is not None else None

    async def _replay(self, project_id: str, o: Outcome) -> Replayed:
        bodies: list[EventBody] = [Started(o.user_message_id, o.session_id)]
        if o.memories is not None:
            scores = dict(o.memories)
            found = await self._memories.get_many(project_id, [i for i, _ in o.memories])
            bodies.append(ContextUsed([SearchHit(m, scores[m.id]) for m in found]))
        if o.response:
            bodies.append(Delta(o.response))
        bodies.extend(ToolCalled(c) for c in o.tool_calls)
        if o.failure is None:
            usage = o.usage or Usage(prompt_tokens=0, completion_tokens=0)
            bodies.append(Done(o.assistant_message_id, usage, timedelta(0)))
            return Replayed(bodies, None)
        f = o.failure
        error = error_for(f.code, f.message, f.reason)
        bodies.append(Failed(error))
        return Replayed(bodies, error)


def _same_request(recorded: str, given: str) -> None:
    if recorded != given:
        what = "was used for another chat request (a retry must repeat the request as it was)"
        raise InvalidArgument(
            f"request_id: {what}",
            reason="REQUEST_ID_REUSED",
            violations=[FieldViolation("request_id", what)],
        )
