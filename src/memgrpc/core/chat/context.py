"""Context assembly: what the next LLM call should know, rendered and within a token budget.

The RecallrAI / GUMem / Sonzai get_context calls in one: the user's profile, query-relevant
memories (extracted facts marked as such, so a model can tell them from raw turns), session
summaries and the recent turns, rendered as one text block with dates in the caller's timezone.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from memgrpc.core.chat import deep
from memgrpc.core.intelligence.profiles import ProfileFact
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import InvalidArgument, Violations
from memgrpc.core.memory import checks
from memgrpc.core.memory.model import MemoryQuery, SearchHit
from memgrpc.core.memory.search import SearchMode
from memgrpc.core.memory.service import MemoryService
from memgrpc.embed.shared import Row, shared_embeddings

Strategy = Literal["low_latency", "balanced", "deep"]
DEFAULT_MIN_K, DEFAULT_MAX_K, MAX_K = 5, 20, 100
# memory_threshold when the request leaves it 0: below it a memory is unrelated to the query
# (a stored memory with nothing in common with it scores about 0.01)
DEFAULT_MEMORY_THRESHOLD = 0.1
MAX_LAST_MESSAGES, MAX_LAST_SUMMARIES = 100, 20
SYSTEM_PROMPT = (
    "You are talking with a user you have spoken with before. Below is what memgrpc recalled "
    "about them: their profile, facts and past messages (with when they were said), summaries "
    "of earlier conversations, and the latest messages. Use what is relevant, prefer newer "
    "information when two memories disagree, treat a disputed fact as uncertain, and do not "
    "invent memories that are not listed."
)


@dataclass(frozen=True)
class ContextRequest:
    user_id: str
    session_id: str = ""
    query: str = ""
    strategy: Strategy = "balanced"
    min_top_k: int = 0
    max_top_k: int = 0
    memory_threshold: float = 0.0
    summary_threshold: float = 0.0
    last_n_messages: int = 0
    last_n_summaries: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    types: tuple[str, ...] = ()
    token_budget: int = 0
    timezone: str = ""
    include_system_prompt: bool = True
    include_profile: bool = True
    # messages to leave out of memories and recent messages (a chat turn's own, and the turns
    # it sends to the model as they are)
    exclude_message_ids: tuple[str, ...] = ()
    # the agent scope of the recall (an agent session's; empty = the user's every memory)
    agent_id: str = ""
    instance_id: str = ""


@dataclass(frozen=True)
class RecentMessage:
    """A message as the context shows it (the message store's record, trimmed)."""

    id: str
    session_id: str
    role: str
    name: str
    content: str
    create_time: datetime | None
    record: Any = None  # the full record, handed back to the caller untouched


@dataclass
class Context:
    text: str
    memories: list[SearchHit]
    recent_messages: list[RecentMessage]
    summaries: list[SearchHit]
    # counts the tokens of a text: counted when asked (a chat turn does not wait for it)
    counter: Callable[[str], int] = field(repr=False, compare=False)

    # the profile as shown (slot -> fact); empty when left out
    profile: Mapping[str, ProfileFact] = field(default_factory=dict)

    @functools.cached_property
    def token_count(self) -> int:
        return self.counter(self.text)


def _counted(n: int) -> Callable[[str], int]:
    return lambda _: n


class MessageSource(Protocol):
    async def recent(
        self, project_id: str, user_id: str, session_id: str, n: int
    ) -> list[RecentMessage]: ...


class TokenCounter(Protocol):
    def count_tokens(self, text: str) -> int: ...


class ProfileSource(Protocol):
    async def facts(self, project_id: str, user_id: str) -> dict[str, ProfileFact]: ...


class ContextService:
    def __init__(
        self,
        memories: MemoryService,
        messages: MessageSource,
        tokens: TokenCounter,
        profiles: ProfileSource | None = None,
    ) -> None:
        self._memories = memories
        self._messages = messages
        self._tokens = tokens
        self._profiles = profiles

    @staticmethod
    def _validate(r: ContextRequest) -> tuple[int, int, tzinfo]:
        v = Violations()
        validation.check_id(v, "user_id", r.user_id, required=True)
        validation.check_id(v, "session_id", r.session_id, required=False)
        checks.check_types(v, "types", r.types)
        validation.check_metadata(v, "metadata", r.metadata)
        if len(r.query.encode("utf-8")) > validation.MAX_CONTENT_BYTES:
            v.add("query", f"must be at most {validation.MAX_CONTENT_BYTES} bytes")
        for name in ("min_top_k", "max_top_k"):
            if not 0 <= getattr(r, name) <= MAX_K:
                v.add(name, f"must be between 0 and {MAX_K}")
        lo = r.min_top_k or min(DEFAULT_MIN_K, r.max_top_k or DEFAULT_MIN_K)
        hi = r.max_top_k or max(DEFAULT_MAX_K, lo)
        if lo > hi:
            v.add("min_top_k", "must not exceed max_top_k")
        for name in ("memory_threshold", "summary_threshold"):
            if not 0.0 <= getattr(r, name) <= 1.0:
                v.add(name, "must be between 0 and 1")
        if not 0 <= r.last_n_messages <= MAX_LAST_MESSAGES:
            v.add("last_n_messages", f"must be between 0 and {MAX_LAST_MESSAGES}")
        if not 0 <= r.last_n_summaries <= MAX_LAST_SUMMARIES:
            v.add("last_n_summaries", f"must be between 0 and {MAX_LAST_SUMMARIES}")
        if r.token_budget < 0:
            v.add("token_budget", "must be positive (0 = no budget)")
        zone: tzinfo = UTC
        if r.timezone:
            try:
                if len(r.timezone) > 64:
                    raise ValueError(r.timezone)
                zone = ZoneInfo(r.timezone)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                v.add("timezone", f"unknown IANA time zone {r.timezone!r}")
        v.raise_if_any()
        return lo, hi, zone

    async def get(
        self, project_id: str, r: ContextRequest, *, query_vector: asyncio.Future[Row] | None = None
    ) -> Context:
        """`query_vector`: the embedding to search with instead of the query's (a chat turn has
        its message embedded as stored already); the keyword legs still search `query`."""
        lo, hi, zone = self._validate(r)
        recent_n = r.last_n_messages or (10 if r.session_id else 0)
        excluded = set(r.exclude_message_ids)
        with shared_embeddings():  # both searches embed the query: once
            memories, summaries, recent, profile = await asyncio.gather(
                self._recall(project_id, r, lo, hi, query_vector),
                self._summaries(project_id, r, query_vector),
                self._messages.recent(project_id, r.user_id, r.session_id, recent_n + len(excluded))
                if recent_n
                else _none(),
                self._profile(project_id, r),
            )
        recent = [m for m in recent if m.id not in excluded][-recent_n:] if recent_n else []
        shown = {m.id for m in recent} | excluded
        memories = [h for h in memories if not set(h.memory.source_message_ids) & shown]
        # a summary made only of messages already shown would show them twice
        shown |= {i for h in memories for i in h.memory.source_message_ids}
        summaries = [
            h
            for h in summaries
            if not h.memory.source_message_ids or not set(h.memory.source_message_ids) <= shown
        ]
        return self._fit(r, zone, memories, summaries, recent, profile)

    async def _profile(self, project_id: str, r: ContextRequest) -> dict[str, ProfileFact]:
        if self._profiles is None or not r.include_profile:
            return {}
        return await self._profiles.facts(project_id, r.user_id)

    async def _recall(
        self,
        project_id: str,
        r: ContextRequest,
        lo: int,
        hi: int,
        vector: asyncio.Future[Row] | None,
    ) -> list[SearchHit]:
        if not r.query.strip():
            return []
        q = MemoryQuery(user_id=r.user_id, types=r.types, metadata=r.metadata)
        mode: SearchMode = "hybrid"
        k = hi
        if r.strategy == "low_latency":  # one leg, small k, nothing else
            mode, k = "semantic", lo
        hits = await self._memories.search(
            project_id, q, r.query, limit=k, mode=mode, vector=vector
        )
        hits = [h for h in hits if h.memory.type != "summary"]
        if r.strategy == "deep":
            hits = await deep.expand_neighbours(self._memories, project_id, hits, k)
            hits = deep.diversify(hits, k)
        # only what clears the threshold: `min_top_k` is the least asked for, not a quota of
        # unrelated memories
        threshold = r.memory_threshold or DEFAULT_MEMORY_THRESHOLD
        return _facts_lead([h for h in hits[:k] if h.score >= threshold])

    async def _summaries(
        self, project_id: str, r: ContextRequest, vector: asyncio.Future[Row] | None
    ) -> list[SearchHit]:
        if r.strategy == "low_latency":
            return []
        n = r.last_n_summaries or 3
        q = MemoryQuery(user_id=r.user_id, types=("summary",))
        if r.query.strip():
            hits = await self._memories.search(project_id, q, r.query, limit=n, vector=vector)
            return [h for h in hits if h.score >= r.summary_threshold]
        return await self._memories.search(project_id, q, "", limit=n)

    def _render(
        self,
        r: ContextRequest,
        zone: tzinfo,
        memories: Sequence[SearchHit],
        summaries: Sequence[SearchHit],
        recent: Sequence[RecentMessage],
        system: bool,
        profile: Mapping[str, ProfileFact],
    ) -> str:
        parts: list[str] = []
        if system:
            parts.append(SYSTEM_PROMPT)
        if profile:
            lines = [f"- {slot}: {', '.join(f.values or [f.value])}" for slot, f in profile.items()]
            parts.append("## Profile\n" + "\n".join(lines))
        if memories:
            lines = []
            for h in memories:
                m = h.memory
                who = f", {m.speaker}" if m.speaker else ""
                mark = _MARKS.get(m.origin, "")
                if m.conflict_id:
                    mark += "(disputed: the user said otherwise too) "
                lines.append(f"- [{_fmt(m.event_time, zone)}{who}] {mark}{m.content}")
            parts.append("## Relevant memories\n" + "\n".join(lines))
        if summaries:
            lines = [f"- [{_fmt(h.memory.event_time, zone)}] {h.memory.content}" for h in summaries]
            parts.append("## Earlier conversations\n" + "\n".join(lines))
        if recent:
            lines = []
            for msg in recent:
                who = f"{msg.role} ({msg.name})" if msg.name and msg.name != msg.role else msg.role
                lines.append(f"[{_fmt(msg.create_time, zone)}] {who}: {msg.content}")
            parts.append("## Recent messages\n" + "\n".join(lines))
        return "\n\n".join(parts)

    def _fit(
        self,
        r: ContextRequest,
        zone: tzinfo,
        memories: list[SearchHit],
        summaries: list[SearchHit],
        recent: list[RecentMessage],
        profile: Mapping[str, ProfileFact],
    ) -> Context:
        """Drop the least useful parts until the rendered text fits the budget.

        Order of sacrifice: the weakest memories, the oldest recent messages, the weakest
        summaries, the profile, then the instructions; a single oversized item is cut to fit.
        """
        system = r.include_system_prompt
        while True:
            text = self._render(r, zone, memories, summaries, recent, system, profile)
            if not r.token_budget:
                return Context(
                    text, memories, recent, summaries, self._tokens.count_tokens, profile
                )
            count = self._tokens.count_tokens(text)
            if count <= r.token_budget:
                return Context(text, memories, recent, summaries, _counted(count), profile)
            if len(memories) > 1 or (memories and (recent or summaries)):
                memories = memories[:-1]
            elif len(recent) > 1 or (recent and summaries):
                recent = recent[1:]
            elif summaries:
                summaries = summaries[:-1]
            elif profile:
                profile = {}
            elif system:
                system = False
            elif memories and len(memories[0].memory.content.split()) > 1:
                memories = [self._cut(memories[0], count - r.token_budget)]
            elif recent and len(recent[0].content.split()) > 1:
                msg = recent[0]
                recent = [replace(msg, content=self._shorten(msg.content, count - r.token_budget))]
            elif memories or recent:
                memories, recent = [], []
            else:
                return Context("", [], [], [], _counted(0))

    def _cut(self, hit: SearchHit, excess: int) -> SearchHit:
        m = replace(hit.memory, content=self._shorten(hit.memory.content, excess))
        return SearchHit(m, hit.score)

    def _shorten(self, text: str, excess: int) -> str:
        words = text.split()
        keep = max(0, len(words) - max(1, excess))
        return " ".join(words[:keep]) + (" …" if keep else "")


# how a memory's origin reads in the context: a model can tell derived facts from what was said
_MARKS = {"extracted": "(extracted fact) ", "action": "(user action) ", "summary": "(summary) "}


def _facts_lead(hits: list[SearchHit]) -> list[SearchHit]:
    """Each extracted fact goes just ahead of the best-ranked turn it came from, at that turn's
    score: the fact says what the turn meant. Search ranks derived facts beside their turns, not
    above them (they would push other turns out of a result list); a context shows both, the
    fact first."""
    out = list(hits)
    for fact in [h for h in hits if h.memory.origin == "extracted"]:
        sources = set(fact.memory.source_message_ids)
        at = out.index(fact)
        turn = next(
            (
                i
                for i, h in enumerate(out[:at])
                if h.memory.origin == "message" and sources & set(h.memory.source_message_ids)
            ),
            None,
        )
        if turn is not None:
            out.pop(at)
            out.insert(turn, SearchHit(fact.memory, max(fact.score, out[turn].score)))
    return out


def _fmt(dt: datetime | None, zone: tzinfo) -> str:
    if dt is None:
        return "unknown time"
    return dt.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z").strip()


async def _none() -> list[RecentMessage]:
    return []


class SessionMessages:
    """The MessageSource over the session and message services."""

    def __init__(self, sessions: Any, messages: Any) -> None:
        self._sessions = sessions  # core.conversation.sessions.SessionService
        self._messages = messages  # core.conversation.messages.MessageService

    async def recent(
        self, project_id: str, user_id: str, session_id: str, n: int
    ) -> list[RecentMessage]:
        if session_id:
            s = await self._sessions.get(project_id, session_id)  # NOT_FOUND across projects
            if s.user_id != user_id:
                raise InvalidArgument.field("session_id", "belongs to another user")
            found = (await self._messages.all_in_session(project_id, session_id))[-n:]
        else:
            found = await self._messages.recent(project_id, user_id, n)
        return [
            RecentMessage(m.id, m.session_id, m.role, m.name, m.content, m.create_time, m)
            for m in found
        ]
