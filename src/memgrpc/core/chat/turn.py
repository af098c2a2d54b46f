"""A chat turn with memory (Sovant send_message, Sonzai chat): store the user's message, recall,
stream the provider's reply as it is produced, store the reply.

Order and durability: the user message is committed before generation starts (`started` carries
its id); recall runs meanwhile, so the turn pays max(store, recall), not their sum. The message's
memory (its search index entry) commits once recall is done (it is not recalled in its own turn,
and on two cores its commit slowed both legs) and before the reply is stored; a crash in between
is repaired by the session's next write (MessageService._heal). The turn runs the model once, as
soon as the request is valid: the message as stored is embedded and serves as the query vector
too. The reply is stored when the provider finishes (`done` carries its id). A turn that is
cancelled (the client went away or its deadline passed) closes the provider stream at once, which
for HTTP providers closes the connection, and stores what was generated marked `interrupted`;
that write is shielded from the cancellation.

A streamed turn runs in its own task (`Turn`), so the caller's cancellation reaches it wherever
the caller was (awaiting an event or writing one to the network).

A turn of an agent session speaks as the agent: its system prompt, personality and current mood
(read through the `TurnHook`, when one is wired) lead the system prompt; recall is scoped to
it; its `memory_mode` decides whether the context waits for recall (SYNC) or recall races a
deadline (ASYNC: a late result is kept for the session's next turn, see `LateRecalls`). The
turn is then told to the hook (mood, relationship); a background turn waits for that and, in
an agent session, extracts the turn's facts, and reports both as its side effects.

Test hook: MEMGRPC_TEST_RECALL_DELAY_MS delays each turn's context fetch (ASYNC tests and the
benchmark). Unset in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog

from memgrpc.core.agents.model import Agent
from memgrpc.core.agents.persona import persona
from memgrpc.core.agents.turns import Mood, Scope, TurnHook
from memgrpc.core.chat.context import Context, ContextRequest, ContextService
from memgrpc.core.chat.events import (
    _OBSERVED_ONLY,
    ChatEvent,
    ContextUsed,
    Delta,
    Done,
    Emit,
    EventBody,
    Failed,
    Phase,
    ProviderInfo,
    SideEffects,
    Started,
    ToolCalled,
)
from memgrpc.core.chat.late import LateRecalls, recall_delay_s
from memgrpc.core.chat.options import PriorMessage, check_options, zone_of
from memgrpc.core.conversation.messages import AddHooks, MessageService, embedded_text
from memgrpc.core.conversation.records import Message, Session
from memgrpc.core.conversation.sessions import SessionService
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    Violations,
)
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.provider_errors import provider_failure
from memgrpc.embed.base import Vectors
from memgrpc.embed.shared import Memo, Row, row_of, shared_embeddings
from memgrpc.llm import (
    ChatMessage,
    Fact,
    Provider,
    ProviderError,
    Providers,
    Tool,
    ToolCall,
    Usage,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")
# project id -> its own provider (a BYOK key, core/providers), None = the server's
OwnProvider = Callable[[str], Awaitable[Provider | None]]

MAX_TEMPERATURE = 2.0
MAX_MODEL_CHARS = 256
HISTORY_TURNS = 10  # earlier messages of the session sent as chat turns
TITLE_CHARS = 80  # a session made for a turn is titled with the message's start
DEFAULT_INSTRUCTIONS = "You are a helpful assistant."
COALESCE_AFTER_S = 0.02  # a delta that waited this long for the consumer takes the next along
_CLOSED = {"processing": "SESSION_PROCESSING", "processed": "SESSION_PROCESSED"}
ASYNC_RECALL_DEADLINE_S = 0.05


@dataclass(frozen=True)
class ChatRequest:
    message: str
    session_id: str = ""
    user_id: str = ""
    use_memory: bool = True
    provider: str = ""
    model: str = ""
    temperature: float | None = None
    system_prompt: str = ""
    max_tokens: int | None = None
    agent_id: str = ""
    instance_id: str = ""
    # the conversation so far, sent to the model as history (not stored); when `message` is
    # empty, the last one (a user message) is the turn's message
    messages: tuple[PriorMessage, ...] = ()
    user_display_name: str = ""
    language: str = ""
    timezone: str = ""
    tool_capabilities: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()


class AgentSource(Protocol):
    async def recent(self, project_id: str, agent_id: str) -> Agent:
        """The agent, as read at most a few seconds ago (it is read on every turn)."""
        ...


class TurnExtraction(Protocol):
    """Fact extraction over one turn's messages (core/conversation/jobs.JobRunner)."""

    @property
    def extracts(self) -> bool: ...

    async def extract_now(self, project_id: str, s: Session, messages: Sequence[Message]) -> Any:
        """A SessionWork: `stats` and `written` (the memories it wrote)."""
        ...


@dataclass(frozen=True)
class Recalled:
    """What a turn knows before generating."""

    session: Session
    context: Context | None
    history: list[Message]
    agent: Agent | None = None
    mood: Mood | None = None


class TurnEmbedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> Vectors: ...

    def count_tokens(self, text: str) -> int: ...

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]: ...


@dataclass(frozen=True)
class Plan:
    """A validated turn, ready to run; nothing of it is stored yet (but a session made for it).

    `session` is None when only its id is known yet (a streamed turn in an existing session:
    storing the message checks the session anyway, and recall looks it up meanwhile)."""

    project_id: str
    request: ChatRequest
    session_id: str
    session: Session | None
    provider: Provider
    model: str
    started: float  # perf_counter() when the request arrived
    user_message: Message
    # the turn's embeddings, computed ahead (see shared_embeddings)
    embeddings: Memo = field(default_factory=dict)
    # what recall searches with: the message as stored, embedded once (None without memory)
    query_vector: asyncio.Future[Row] | None = None


@dataclass(frozen=True)
class TurnTiming:
    """Where a turn's time to first delta went (for benchmarks and diagnostics)."""

    to_first_delta_s: float  # from the request to the first delta handed on
    provider_first_token_s: float  # the provider's own part of it


@dataclass(frozen=True)
class _Queued:
    create_time: datetime
    at: float  # perf_counter() when emitted
    body: EventBody


def _reply(text: str, calls: Sequence[ToolCall] = (), *, interrupted: bool) -> Message:
    """The assistant's message; its tool calls go in its metadata (and, for a reply that is
    only tool calls, are its content too: a message is never empty)."""
    if not calls:
        return Message(role="assistant", content=text, interrupted=interrupted)
    listed = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
    content = (
        text if text.strip() else "\n".join(f"[tool call] {c.name}({c.arguments})" for c in calls)
    )
    return Message(
        role="assistant", content=content, metadata={"tool_calls": listed}, interrupted=interrupted
    )


class _UserMessageWrite(AddHooks):
    """The turn's part in storing its user message: generation starts at the message's commit
    (`stored`), and its memory commits after recall (it is not recalled in its own turn, and on
    two cores the two commits slowed each other)."""

    fresh_ids = True  # minted in plan()

    def __init__(self, recall: asyncio.Future[Any]) -> None:
        self.stored: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._recall = recall

    def committed(self, messages: Sequence[Message]) -> None:
        if not self.stored.done():
            self.stored.set_result(messages[0])

    async def before_indexing(self) -> None:
        await asyncio.wait([self._recall])  # whatever its outcome


def _settle_store(
    done: asyncio.Future[list[Message]], stored: asyncio.Future[Message], session_id: str
) -> None:
    """Hand the store's failure to the turn, or log it when the turn had already started."""
    if done.cancelled():
        if not stored.done():
            stored.cancel()
        return
    exc = done.exception()
    if exc is None:
        return
    if not stored.done():
        stored.set_exception(exc)
    else:  # the message is stored; the next write to the session indexes it and recounts
        log.warning("user_message_not_indexed", session_id=session_id, error=str(exc))


class TurnObserver(Protocol):
    """Sees a streamed turn as it runs (a replayable turn records itself through one)."""

    def on_event(self, body: EventBody) -> None:
        """Each event as it is emitted (before deltas are coalesced for the consumer)."""

    def on_end(self, error: BaseException | None) -> None:
        """The turn is over: None when it completed, `asyncio.CancelledError` when it was
        cancelled, else what ended it."""


class Turn:
    """A streamed turn running in its own task; iterate `events()`, `cancel()` to stop it.

    The task is kept by the service until it ends, so an interrupted reply is still stored
    after the caller is gone. Deltas that waited `COALESCE_AFTER_S` or more for the consumer
    go out as one with those queued behind them: a loaded server would otherwise send a reply
    word by word, each write waiting its turn on the event loop. Nothing waits for more text,
    and an idle server streams word by word.
    """

    def __init__(
        self, service: ChatService, plan: Plan, observer: TurnObserver | None = None
    ) -> None:
        self._queue: deque[_Queued | BaseException | None] = deque()
        self._ready = asyncio.Event()
        self._sequence = 0
        self._cancelled = False
        self._observer = observer
        self._task = service.track(asyncio.ensure_future(self._drive(service, plan)))

    def _put(self, item: _Queued | BaseException | None) -> None:
        self._queue.append(item)
        self._ready.set()

    def _emit(self, body: EventBody) -> None:
        if self._observer is not None:
            self._observer.on_event(body)
        if not isinstance(body, _OBSERVED_ONLY):
            self._put(_Queued(datetime.now(UTC), time.perf_counter(), body))

    async def _drive(self, service: ChatService, plan: Plan) -> None:
        try:
            await service.run(plan, self._emit)
        except asyncio.CancelledError as exc:
            self._ended(exc)
            raise  # only its consumer cancels it, and that consumer is gone
        except BaseException as exc:
            self._ended(exc)
            self._put(exc)
        else:
            self._ended(None)
            self._put(None)

    def _ended(self, error: BaseException | None) -> None:
        if self._observer is not None:
            self._observer.on_end(error)

    async def events(self) -> AsyncIterator[ChatEvent]:
        """Events as they happen; raises the error that ended the turn (after its `Failed`)."""
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            item = self._queue.popleft()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            body = item.body
            if isinstance(body, Delta) and time.perf_counter() - item.at >= COALESCE_AFTER_S:
                parts = [body.text]
                while (
                    self._queue
                    and isinstance(nxt := self._queue[0], _Queued)
                    and isinstance(nxt.body, Delta)
                ):
                    parts.append(nxt.body.text)
                    self._queue.popleft()
                body = Delta("".join(parts))
            self._sequence += 1
            yield ChatEvent(self._sequence, item.create_time, body)

    def cancel(self) -> None:
        """Stop the turn (once: a second cancellation would interrupt its clean-up)."""
        if not self._cancelled:
            self._cancelled = True
            self._task.cancel()


class ChatService:
    def __init__(
        self,
        sessions: SessionService,
        messages: MessageService,
        context: ContextService,
        providers: Providers,
        embedder: TurnEmbedder,
        *,
        own_provider: OwnProvider | None = None,
        agents: AgentSource | None = None,
        hook: TurnHook | None = None,
        extraction: TurnExtraction | None = None,
        async_recall_deadline_s: float = ASYNC_RECALL_DEADLINE_S,
    ) -> None:
        self._sessions = sessions
        self._messages = messages
        self._context = context
        self._providers = providers
        self._own_provider = own_provider
        self._embedder = embedder
        self.agents = agents
        # the context engine's seam (mood, relationship); None = turns move no mood
        self.hook = hook
        self.extraction = extraction
        self.async_recall_deadline_s = async_recall_deadline_s
        self.late = LateRecalls()
        self._tasks: set[asyncio.Future[Any]] = set()
        # called once per turn at its first delta (benchmarks read the provider's share)
        self.on_first_delta: Callable[[TurnTiming], None] | None = None

    # -- providers --------------------------------------------------------------------------
    def providers(self) -> list[ProviderInfo]:
        return [
            ProviderInfo(
                p.name,
                p.models,
                p.default_model,
                p.name == self._providers.default,
                p.available,
            )
            for p in self._providers.all()
        ]

    # -- plan: validate, pick the provider, resolve the session ------------------------------
    def _validate(
        self, r: ChatRequest, own: Provider | None = None
    ) -> tuple[ChatRequest, Provider]:
        """The request with its message resolved (from `messages` when `message` is empty),
        and its provider: the project's own (`own`, BYOK) when the request names none or names
        it, else the server's provider of that name."""
        v = Violations()
        r = check_options(v, r)
        validation.check_content(v, "message", r.message)
        validation.check_id(v, "session_id", r.session_id, required=False)
        validation.check_id(v, "user_id", r.user_id, required=False)
        if not r.session_id and not r.user_id:
            v.add("session_id", "give session_id, or user_id to start a new session")
        if r.temperature is not None and not (
            math.isfinite(r.temperature) and 0.0 <= r.temperature <= MAX_TEMPERATURE
        ):
            v.add("temperature", f"must be between 0 and {MAX_TEMPERATURE}")
        if r.max_tokens is not None and r.max_tokens <= 0:
            v.add("max_tokens", "must be positive (leave it unset for the provider's default)")
        if len(r.system_prompt.encode("utf-8")) > validation.MAX_CONTENT_BYTES:
            v.add("system_prompt", f"must be at most {validation.MAX_CONTENT_BYTES} bytes")
        elif "\x00" in r.system_prompt:
            v.add("system_prompt", "must not contain NUL characters")
        if len(r.model) > MAX_MODEL_CHARS or any(c.isspace() for c in r.model):
            v.add("model", f"must be at most {MAX_MODEL_CHARS} characters without whitespace")
        use_own = own is not None and r.provider in ("", own.name)
        provider = own if use_own else self._providers.get(r.provider)
        if provider is None:
            names = ", ".join(p.name for p in self._providers.all())
            v.add("provider", f"unknown provider {r.provider!r} (configured: {names})")
        v.raise_if_any()
        assert provider is not None  # a violation otherwise
        return r, provider

    async def plan(self, project_id: str, r: ChatRequest, *, look_up: bool = True) -> Plan:
        """Check everything that can fail before anything is stored; `look_up=False` leaves an
        existing session's checks to the store of the user message (one read less up front)."""
        started = time.perf_counter()
        own = await self._own_provider(project_id) if self._own_provider is not None else None
        r, provider = self._validate(r, own)
        if not provider.available:
            raise FailedPrecondition(
                f"LLM provider {provider.name!r} is not configured on this server",
                reason="PROVIDER_NOT_CONFIGURED",
                metadata={"provider": provider.name},
            )
        user_message = Message(id=new_id("msg"), role="user", content=r.message)
        stored_text = embedded_text(user_message)
        memo: Memo = {}
        with shared_embeddings(memo):  # runs while the session is looked up
            ahead = asyncio.ensure_future(self._embedder.embed([stored_text]))
        ahead.add_done_callback(lambda f: f.cancelled() or f.exception())  # failures: see run()
        # one model run per turn: the message as stored ('user said, "..."') is the query
        # vector too (the full-text leg still gets the bare message)
        query_vector = row_of(ahead, 0) if r.use_memory else None
        try:
            # with a user_id the session is made, or must be checked to be that user's; with an
            # agent, that it is the session's (before anything is stored)
            checked = look_up or r.user_id or r.agent_id or r.instance_id
            session = await self._session(project_id, r) if checked else None
        except BaseException:
            ahead.cancel()
            raise
        model = r.model or provider.default_model
        session_id = session.id if session is not None else r.session_id
        return Plan(
            project_id,
            r,
            session_id,
            session,
            provider,
            model,
            started,
            user_message,
            memo,
            query_vector,
        )

    async def _session(self, project_id: str, r: ChatRequest) -> Session:
        if not r.session_id:
            title = " ".join(r.message.split())[:TITLE_CHARS]
            made = Session(
                user_id=r.user_id, title=title, agent_id=r.agent_id, instance_id=r.instance_id
            )
            return await self._sessions.create(project_id, made)  # NOT_FOUND: no such agent
        s = await self._sessions.get(project_id, r.session_id)
        if r.user_id and s.user_id != r.user_id:
            raise InvalidArgument.field("user_id", f"session {s.id} belongs to another user")
        if r.agent_id and r.agent_id != s.agent_id:
            whose = f"agent {s.agent_id}'s" if s.agent_id else "a session without an agent"
            raise InvalidArgument.field(
                "agent_id", f"session {s.id} is {whose}: its agent is fixed at creation"
            )
        if r.instance_id and r.instance_id != s.instance_id:
            raise InvalidArgument.field(
                "instance_id", f"session {s.id} talks to another instance of its agent"
            )
        if s.status in _CLOSED:
            raise FailedPrecondition(
                f"session {s.id} is {s.status}: it takes no more messages",
                reason=_CLOSED[s.status],
                metadata={"session_id": s.id, "status": s.status},
            )
        return s

    # -- run ---------------------------------------------------------------------------------
    def start(self, plan: Plan, observer: TurnObserver | None = None) -> Turn:
        """Run the planned turn in its own task; read it through `Turn.events()` (`observer`
        sees it too, whether or not anyone reads it)."""
        return Turn(self, plan, observer)

    async def stream(self, project_id: str, r: ChatRequest) -> Turn:
        """Plan (as little as possible up front: this is the latency-sensitive path) and start."""
        return self.start(await self.plan(project_id, r, look_up=False))

    def track(self, task: asyncio.Future[T]) -> asyncio.Future[T]:
        """Keep `task` alive until it ends (and let `stop` wait for it)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self, plan: Plan, emit: Emit, *, side_effects: bool = False) -> None:
        """The turn itself. Raises the DomainError that ended it; once `Started` was emitted,
        a `Failed` event is emitted first. `side_effects`: wait for them and emit them (a
        background turn) rather than leave them to run on after the turn."""
        r, user_message = plan.request, plan.user_message
        with shared_embeddings(plan.embeddings):  # embedded ahead, in plan()
            recall = asyncio.ensure_future(self._recall(plan))
            write = _UserMessageWrite(recall)
            store = asyncio.ensure_future(
                self._messages.add(plan.project_id, plan.session_id, [user_message], hooks=write)
            )
        stored = write.stored
        recall.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen below, or moot
        # generation starts once the message row is committed; its memory and the session's
        # counters may still be in flight (the reply's own store waits for them, under the
        # session's lock, and after a crash the next write to the session completes them)
        store.add_done_callback(lambda f: _settle_store(f, stored, plan.session_id))
        self.track(store)
        try:
            message = await stored
        except BaseException:
            recall.cancel()
            raise
        emit(Started(message.id, plan.session_id))
        try:
            emit(Phase("recall"))
            got = await recall
            emit(ContextUsed(got.context.memories if got.context is not None else []))
            plan = self._with_defaults(plan, got.session)
            emit(Phase("generating"))
            reply = await self._generate(plan, self._prompt(r, got), emit)
        except ProviderError as exc:
            err = provider_failure(exc)
            emit(Failed(err))
            raise err from exc
        except DomainError as exc:
            emit(Failed(exc))
            raise
        turn = [message, *([reply] if reply is not None else [])]
        if side_effects:
            emit(Phase("side_effects"))
            emit(await self._side_effects(plan.project_id, got, turn))
        elif got.session.agent_id and self.hook is not None:
            # a streamed turn's stream does not wait for the hook
            self.track(asyncio.ensure_future(self._observe(plan.project_id, got.session, turn)))

    def _with_defaults(self, plan: Plan, s: Session) -> Plan:
        """The session's provider and model where the request named none."""
        r = plan.request
        provider = plan.provider
        if not r.provider and s.provider and s.provider != provider.name:
            found = self._providers.get(s.provider)
            if found is None or not found.available:
                raise FailedPrecondition(
                    f"session {s.id} defaults to provider {s.provider!r}, which is not "
                    "configured on this server; name a provider in the request",
                    reason="PROVIDER_NOT_CONFIGURED",
                    metadata={"provider": s.provider, "session_id": s.id},
                )
            provider = found
        model = plan.model
        if not r.model:
            same = not s.provider or s.provider == provider.name
            model = s.model if s.model and same else provider.default_model
        return replace(plan, provider=provider, model=model, session=s)

    async def _observe(self, project_id: str, s: Session, turn: Sequence[Message]) -> Mood | None:
        if self.hook is None:
            return None
        try:
            return await self.hook.observe_turn(project_id, s, turn)
        except Exception as exc:  # the reply is stored: the turn stands without its mood
            log.warning("turn_hook_failed", session_id=s.id, error=str(exc))
            return None

    async def _side_effects(
        self, project_id: str, got: Recalled, turn: Sequence[Message]
    ) -> SideEffects:
        """A background turn's: the mood moved by the turn, and (in an agent session) the
        turn's facts extracted."""
        s = got.session
        if not s.agent_id:
            return SideEffects()
        mood_after = await self._observe(project_id, s, turn)
        facts, ids = 0, ()
        if self.extraction is not None and self.extraction.extracts:
            work = await self.extraction.extract_now(project_id, s, turn)
            facts = work.stats.facts_extracted
            ids = tuple(dict.fromkeys(m.id for m in work.written))
        return SideEffects(facts, ids, got.mood, mood_after)

    async def _recall(self, plan: Plan) -> Recalled:
        """The session, its earlier turns, its agent and mood, and the recalled context (None
        without memory)."""
        r = plan.request
        s = plan.session or await self._sessions.get(plan.project_id, plan.session_id)
        history, (agent, mood) = await asyncio.gather(
            self._history(plan, s), self._agent(plan.project_id, s)
        )
        if not r.use_memory:
            return Recalled(s, None, history, agent, mood)
        own_prompt = bool(r.system_prompt or (agent is not None and agent.system_prompt))
        request = ContextRequest(
            user_id=s.user_id,
            query=r.message,
            include_system_prompt=not own_prompt,
            # what the model sees as turns is not repeated as a memory
            exclude_message_ids=(plan.user_message.id, *(m.id for m in history)),
            timezone=r.timezone,
            agent_id=s.agent_id,
            instance_id=s.instance_id,
        )
        fetch = asyncio.ensure_future(self._fetch(plan, request))
        if agent is None or agent.capabilities.memory_mode != "async":
            return Recalled(s, await fetch, history, agent, mood)
        return Recalled(s, await self._race(plan, s, fetch), history, agent, mood)

    async def _fetch(self, plan: Plan, request: ContextRequest) -> Context:
        delay = recall_delay_s()
        if delay:
            await asyncio.sleep(delay)
        return await self._context.get(plan.project_id, request, query_vector=plan.query_vector)

    async def _race(self, plan: Plan, s: Session, fetch: asyncio.Future[Context]) -> Context | None:
        """ASYNC memory: recall until the deadline; past it, the turn goes on with what an
        earlier turn's recall brought late (or nothing), and this recall is kept for the next."""
        key = f"{plan.project_id}/{s.id}"
        done, _ = await asyncio.wait([fetch], timeout=self.async_recall_deadline_s)
        if fetch in done:
            self.late.take(key)  # superseded by a recall that made it in time
            return fetch.result()
        late = self.late.take(key)

        def keep(f: asyncio.Future[Context]) -> None:
            if f.cancelled():
                return
            if (exc := f.exception()) is not None:
                log.warning("late_recall_failed", session_id=s.id, error=str(exc))
                return
            self.late.put(key, f.result())

        fetch.add_done_callback(keep)
        self.track(fetch)
        return late

    async def _history(self, plan: Plan, s: Session) -> list[Message]:
        if not s.message_count:
            return []
        found = await self._messages.since(  # one bounded read of the session's tail
            plan.project_id, s.id, max(0, s.message_count - HISTORY_TURNS)
        )
        return [m for m in found if m.id != plan.user_message.id][-HISTORY_TURNS:]

    async def _agent(self, project_id: str, s: Session) -> tuple[Agent | None, Mood | None]:
        if not s.agent_id or self.agents is None:
            return None, None
        agent = await self.agents.recent(project_id, s.agent_id)
        mood = None
        if self.hook is not None:
            mood = await self.hook.mood(project_id, Scope(s.agent_id, s.user_id, s.instance_id))
        return agent, mood

    @staticmethod
    def _instructions(r: ChatRequest, got: Recalled) -> str:
        """The request's or the agent's instructions, the persona, and who the user is."""
        agent = got.agent
        base = r.system_prompt or (agent.system_prompt if agent is not None else "")
        parts = [base]
        if agent is not None:
            parts.append(persona(agent, got.mood))
        about: list[str] = []
        if r.user_display_name:
            about.append(f"The user's name is {r.user_display_name}; address them by it.")
        if r.language:
            about.append(f"Answer in the language with the code {r.language}.")
        if zone := zone_of(r.timezone):
            now = datetime.now(zone).strftime("%Y-%m-%d %H:%M %Z")
            about.append(f"The user's time zone is {r.timezone} (their time now: {now}).")
        if r.tool_capabilities:
            about.append("The client can also: " + ", ".join(r.tool_capabilities) + ".")
        parts.append(" ".join(about))
        return "\n\n".join(p for p in parts if p)

    @classmethod
    def _prompt(cls, r: ChatRequest, got: Recalled) -> list[ChatMessage]:
        """System (instructions, persona + recalled context), earlier turns (the session's,
        then the request's own), then the user's message."""
        ctx = got.context
        grounding: tuple[Fact, ...] = ()
        instructions = cls._instructions(r, got)
        if ctx is None:
            system = instructions or DEFAULT_INSTRUCTIONS
        else:
            system = "\n\n".join(t for t in (instructions, ctx.text) if t)
            grounding = tuple(
                Fact(h.memory.content, h.memory.speaker, h.score) for h in ctx.memories
            ) + tuple(Fact(h.memory.content, "", h.score) for h in ctx.summaries)
        out = [ChatMessage("system", system, grounding)]
        for m in got.history:
            if m.role == "assistant":
                out.append(ChatMessage("assistant", m.content))
            else:  # other roles speak as users, under their name
                label = m.name or (m.role if m.role != "user" else "")
                out.append(ChatMessage("user", f"{label}: {m.content}" if label else m.content))
        for pm in r.messages:
            if pm.role in ("assistant", "system"):
                out.append(ChatMessage(pm.role, pm.content))  # type: ignore[arg-type]
            else:
                label = pm.name or (pm.role if pm.role != "user" else "")
                out.append(ChatMessage("user", f"{label}: {pm.content}" if label else pm.content))
        out.append(ChatMessage("user", r.message))
        return out

    async def _generate(self, plan: Plan, prompt: list[ChatMessage], emit: Emit) -> Message | None:
        """Stream the reply and store it; the stored reply (None when nothing was said)."""
        r = plan.request
        gen = plan.provider.stream(prompt, plan.model, r.temperature, r.max_tokens, r.tools)
        gen.on_tool_call = lambda call: emit(ToolCalled(call))
        parts: list[str] = []
        last = time.perf_counter()
        try:
            async for delta in gen:
                last = time.perf_counter()
                if not parts and self.on_first_delta is not None:
                    self.on_first_delta(TurnTiming(last - plan.started, gen.first_token_s or 0.0))
                parts.append(delta)
                emit(Delta(delta))
        except asyncio.CancelledError:
            await gen.aclose()  # before anything else: the upstream stops now
            await self._store_interrupted(plan, "".join(parts), gen.tool_calls)
            raise
        except (ProviderError, DomainError):
            await gen.aclose()
            await self._store_interrupted(plan, "".join(parts), gen.tool_calls)
            raise
        finally:
            await gen.aclose()
        emit(Phase("storing"))
        reply = "".join(parts)
        calls = list(gen.tool_calls)
        with shared_embeddings(plan.embeddings):
            if reply.strip() and plan.provider.indexes_replies:
                # embedded now: the store below first waits for the session's lock (until the
                # user message's memory is in), and then finds this embedding done or running
                text = embedded_text(_reply(reply, calls, interrupted=False))
                ahead = asyncio.ensure_future(self._embedder.embed([text]))
                # a failure reaches the turn through the store, which awaits this embedding
                ahead.add_done_callback(lambda f: f.cancelled() or f.exception())
            # a cancel arriving now (the client left after the last delta) must not lose the
            # whole reply: its write runs on, shielded and tracked, like an interrupted one
            write = self.track(
                asyncio.ensure_future(self._store_reply(plan, reply, calls, interrupted=False))
            )

        async def usage_of() -> Usage:
            # counted off the event loop: the prompt carries the recalled context (thousands of
            # tokens), which on the loop held up every other call in flight
            if gen.usage is not None:
                return gen.usage
            return await asyncio.to_thread(self._count_usage, prompt, reply)

        counting = asyncio.ensure_future(usage_of())  # while the reply is stored
        try:
            stored = await asyncio.shield(write)
            usage = await counting
        finally:
            counting.cancel()  # a no-op once counted
        emit(Done(stored.id if stored else "", usage, timedelta(seconds=last - plan.started)))
        return stored

    def _count_usage(self, prompt: Sequence[ChatMessage], reply: str) -> Usage:
        *asked, said = self._embedder.count_tokens_many([*(m.content for m in prompt), reply])
        return Usage(prompt_tokens=sum(asked), completion_tokens=said)

    async def _store_reply(
        self, plan: Plan, text: str, calls: Sequence[ToolCall], *, interrupted: bool
    ) -> Message | None:
        if not text.strip() and not calls:
            return None  # nothing was said: no message
        added = await self._messages.add(
            plan.project_id,
            plan.session_id,
            [_reply(text, calls, interrupted=interrupted)],
            index=plan.provider.indexes_replies,
        )
        return added[0]

    async def _store_interrupted(
        self, plan: Plan, text: str, calls: Sequence[ToolCall] = ()
    ) -> None:
        """Store a partial reply, shielded: the turn's own cancellation must not stop it."""
        write = self.track(asyncio.ensure_future(self._store_quietly(plan, text, list(calls))))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(write)

    async def _store_quietly(self, plan: Plan, text: str, calls: list[ToolCall]) -> None:
        try:
            await self._store_reply(plan, text, calls, interrupted=True)
        except Exception as exc:  # e.g. the session was deleted meanwhile
            log.warning("interrupted_reply_not_stored", session_id=plan.session_id, error=str(exc))

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Let running turns and their writes end for up to `timeout_s`, then cancel them."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
