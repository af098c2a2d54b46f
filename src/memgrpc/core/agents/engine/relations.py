"""The context engine's per-user state: the agent's mood towards a user and their relationship,
moved by each turn's user messages, and the user's habits, goals and interests.

One `agent_relations` row per (agent, instance, user) holds the mood, the relationship, the
activity counts and the dated events the user mentioned (for the follow-up checks). A turn is
observed once per message: the row keeps the keys of the last messages it saw, so a message
observed twice (AddMessages' hook and SubmitTurn, or a retry) moves nothing the second time.

Offline (deterministic, lexicon.py): each user message moves valence as v = 0.85 v + 0.5 s
(s its score in [-1, 1]) and arousal 40% of the way to 0.3 + 0.6 x its intensity; between
turns both decay toward neutral (valence 0, arousal 0.3) with a half-life of a day of message
time. Affinity moves +0.1 per warmth word (thanks, appreciate, ...), +0.03 x a positive score,
-0.15 per hostile word; a sad user does not lower it. Familiarity is
1 - exp(-(messages/40 + sessions/10 + facts/12)), saturating at 1. With an LLM configured, the
model writes the label, valence, arousal, affinity and description (validated JSON; a bad
answer keeps the lexicon's result and is logged); `source` says which wrote them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from memgrpc.core.agents.engine import dates, lexicon
from memgrpc.core.agents.engine import insights as rules
from memgrpc.core.agents.engine.llm import EngineLlm, number, text
from memgrpc.core.agents.turns import Mood, Scope
from memgrpc.core.conversation.records import Message, Session
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.memory.model import MemoryQuery
from memgrpc.core.memory.service import MemoryService
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table, chunks

log = structlog.get_logger(__name__)

ScopeCheck = Callable[[str, str, str], Awaitable[None]]
NEUTRAL_AROUSAL = 0.3
HALF_LIFE = timedelta(days=1)
_SEEN = 256  # message keys remembered per relation (idempotency window)
_SESSIONS = 200  # session ids remembered per relation (the sessions count)
_EVENTS = 50
_SCAN_SESSIONS = 100  # insights read the user's messages of at most this many agent sessions
_SCAN_MESSAGES = 5000
USER_ROLE = "user"


@dataclass(frozen=True)
class Relationship:
    familiarity: float = 0.0
    affinity: float = 0.0
    last_interaction_time: datetime | None = None
    description: str = ""
    sessions: int = 0
    messages: int = 0
    source: str = "lexicon"


@dataclass
class State:
    """One relation row as the engine works on it."""

    mood: Mood = field(default_factory=Mood)
    relationship: Relationship = field(default_factory=Relationship)
    facts: int = 0
    seen: list[str] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    inactivity_noticed: datetime | None = None


def relation_pk(project_id: str, scope: Scope) -> str:
    return "\x1f".join((project_id, scope.agent_id, scope.instance_id, scope.user_id))


def scope_where(project_id: str, agent_id: str, instance_id: str, user_id: str = "") -> Where:
    """Rows of the agent's default state (instance null) or of one instance."""
    w = Where().eq("project_id", project_id).eq("agent_id", agent_id)
    w = w.eq("instance_id", instance_id) if instance_id else w.is_null("instance_id")
    return w.eq("user_id", user_id) if user_id else w


def _clamp(x: float, low: float, high: float) -> float:
    return max(low, min(high, x))


def familiarity(messages: int, sessions: int, facts: int) -> float:
    return round(1.0 - math.exp(-(messages / 40 + sessions / 10 + facts / 12)), 4)


def label(valence: float, arousal: float, sad: bool, hostile: bool) -> str:
    if hostile and valence < -0.15:
        return "annoyed" if arousal >= 0.5 else "hurt"
    if sad and valence < 0.15:
        return "concerned"
    if valence >= 0.35:
        return "cheerful" if arousal >= 0.5 else "content"
    if valence >= 0.1:
        return "pleased"
    if valence <= -0.35:
        return "upset" if arousal >= 0.5 else "sad"
    if valence <= -0.1:
        return "uneasy"
    return "calm" if arousal < 0.2 else "neutral"


def describe(r: Relationship) -> str:
    """The offline description (a template)."""
    known = next(w for t, w in ((0.15, "barely"), (0.4, "a little"), (0.7, "fairly well"),
                                (2.0, "well")) if r.familiarity < t)  # fmt: skip
    tone = next(w for t, w in ((-0.5, "hostile"), (-0.15, "cool"), (0.15, "neutral"),
                               (0.5, "friendly"), (2.0, "warm")) if r.affinity < t)  # fmt: skip
    s = "s" if r.sessions != 1 else ""
    return (
        f"Knows them {known} after {r.messages} messages over {r.sessions} session{s}; "
        f"the exchanges have been {tone}."
    )


def decayed(m: Mood, at: datetime) -> Mood:
    """The mood drifted toward neutral from its last update to `at` (message time)."""
    if m.update_time is None or at <= m.update_time:
        return m
    keep = 0.5 ** ((at - m.update_time) / HALF_LIFE)
    return replace(
        m,
        valence=m.valence * keep,
        arousal=NEUTRAL_AROUSAL + (m.arousal - NEUTRAL_AROUSAL) * keep,
    )


def message_key(session_id: str, m: Message) -> str:
    if m.id:
        return f"{session_id}/{m.id}"
    raw = f"{m.role}\x1f{m.content}\x1f{m.create_time.isoformat() if m.create_time else ''}"
    return f"{session_id}/#{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def check_scope_input(
    v: Violations, agent_id: str, user_id: str, instance_id: str, *, user_required: bool
) -> None:
    validation.check_id(v, "agent_id", agent_id, required=True)
    validation.check_id(v, "user_id", user_id, required=user_required)
    validation.check_id(v, "instance_id", instance_id, required=False)


class ContextEngine:
    """Implements core/agents/turns.py's TurnHook, and the reads behind GetMood,
    GetRelationship and ListHabits/Goals/Interests."""

    def __init__(
        self,
        store: Store,
        memories: MemoryService,
        *,
        llm: EngineLlm | None = None,
        check_scope: ScopeCheck | None = None,
        inactivity: timedelta = timedelta(days=7),
    ) -> None:
        self._rows = Table(store, "agent_relations")
        self._sessions = Table(store, "sessions")
        self._messages = Table(store, "messages")
        self._memories = memories
        self._llm = llm
        self._check = check_scope
        self.inactivity = inactivity
        self._locks = KeyedLocks()
        self._insight_cache: OrderedDict[str, dict[str, list[rules.Found]]] = OrderedDict()

    # -- scope --------------------------------------------------------------------------------
    async def require(
        self,
        project_id: str,
        agent_id: str,
        user_id: str,
        instance_id: str = "",
        *,
        user_required: bool = True,
    ) -> Scope:
        """INVALID_ARGUMENT for bad ids; NOT_FOUND for an agent not of the project."""
        v = Violations()
        check_scope_input(v, agent_id, user_id, instance_id, user_required=user_required)
        v.raise_if_any()
        if self._check is not None:
            await self._check(project_id, agent_id, instance_id)
        return Scope(agent_id, user_id, instance_id)

    # -- rows ---------------------------------------------------------------------------------
    async def _load(self, project_id: str, scope: Scope) -> State:
        row = await self._rows.first(Where().eq("pk", relation_pk(project_id, scope)))
        return state_from_row(row) if row is not None else State()

    async def relation_rows(self, where: Where, limit: int | None = None) -> list[Row]:
        return await self._rows.rows(where, limit=limit)

    async def save(self, project_id: str, scope: Scope, st: State) -> None:
        await self._rows.writer.upsert([state_row(project_id, scope, st, self.inactivity)])

    def lock(self, project_id: str, scope: Scope) -> Any:
        return self._locks.hold(relation_pk(project_id, scope))

    async def load(self, project_id: str, scope: Scope) -> State:
        return await self._load(project_id, scope)

    # -- TurnHook -----------------------------------------------------------------------------
    async def observe_turn(
        self, project_id: str, session: Session, messages: Sequence[Message]
    ) -> Mood | None:
        if not session.agent_id:
            return None
        scope = Scope(session.agent_id, session.user_id, session.instance_id)
        async with self.lock(project_id, scope):
            st = await self._load(project_id, scope)
            seen = set(st.seen)
            keyed = [(message_key(m.session_id or session.id, m), m) for m in messages]
            new = [m for k, m in keyed if k not in seen]
            if not new:
                return st.mood
            st.seen = [*st.seen, *(k for k, _ in keyed if k not in seen)][-_SEEN:]
            await self._apply(project_id, scope, session, new, st)
            await self.save(project_id, scope, st)
            return st.mood

    async def _apply(
        self, project_id: str, scope: Scope, session: Session, new: Sequence[Message], st: State
    ) -> None:
        now = datetime.now(UTC)
        times = [m.create_time or now for m in new]
        at = max(times)
        rel = st.relationship
        sessions = rel.sessions
        if session.id not in st.session_ids:
            st.session_ids = [*st.session_ids, session.id][-_SESSIONS:]
            sessions += 1
        from_user = [m for m in new if m.role == USER_ROLE]
        said = [m for m in from_user if m.content.strip()]
        mood = decayed(st.mood, at)
        v, a, aff = mood.valence, mood.arousal, rel.affinity
        sad = hostile = 0
        for m in said:
            r = lexicon.read(m.content)
            v = _clamp(0.85 * v + 0.5 * r.valence, -1.0, 1.0)
            a = _clamp(a + 0.4 * (NEUTRAL_AROUSAL + 0.6 * r.intensity - a), 0.0, 1.0)
            aff += 0.1 * r.warmth + 0.03 * max(r.valence, 0.0) - 0.15 * r.hostility
            sad, hostile = sad + r.sadness, hostile + r.hostility
            for d in dates.dated(m.content, m.create_time or now):
                add_event(st, d, m)
        last = max(at, rel.last_interaction_time or at)
        rel = replace(
            rel,
            affinity=round(_clamp(aff, -1.0, 1.0), 4),
            sessions=sessions,
            messages=rel.messages + len(from_user),
            last_interaction_time=last,
            familiarity=familiarity(rel.messages + len(from_user), sessions, st.facts),
            source="lexicon",
        )
        rel = replace(rel, description=describe(rel))
        mood = Mood(
            label=label(v, a, sad > hostile, hostile > 0),
            valence=round(v, 4),
            arousal=round(a, 4),
            turns=mood.turns + (1 if said else 0),
            update_time=at,
            source="lexicon",
        )
        if said and self._llm is not None:
            mood, rel = await self._ask_llm(project_id, scope, st, said, mood, rel)
        st.mood, st.relationship = mood, rel

    async def _ask_llm(
        self,
        project_id: str,
        scope: Scope,
        st: State,
        said: Sequence[Message],
        mood: Mood,
        rel: Relationship,
    ) -> tuple[Mood, Relationship]:
        assert self._llm is not None
        payload = {
            "task": "mood",
            "user_id": scope.user_id,
            "previous_mood": {
                "label": st.mood.label, "valence": st.mood.valence, "arousal": st.mood.arousal,
            },
            "previous_relationship": {
                "affinity": st.relationship.affinity,
                "familiarity": rel.familiarity,
                "description": st.relationship.description,
            },
            "messages": [{"role": m.role, "content": m.content} for m in said],
        }  # fmt: skip

        def check(js: Any) -> tuple[Mood, Relationship]:
            md, rs = js["mood"], js["relationship"]
            lbl = text(md["label"], 32).lower()
            got = replace(
                mood,
                label=lbl,
                valence=number(md["valence"], -1, 1),
                arousal=number(md["arousal"], 0, 1),
                source="llm",
            )
            r = replace(
                rel,
                affinity=number(rs["affinity"], -1, 1),
                description=text(rs["description"], 600),
                source="llm",
            )
            return got, r

        answer = await self._llm.ask(project_id, payload, check)
        return answer if answer is not None else (mood, rel)

    async def mood(self, project_id: str, scope: Scope) -> Mood:
        return (await self._load(project_id, scope)).mood

    async def relationship(self, project_id: str, scope: Scope) -> Relationship:
        return (await self._load(project_id, scope)).relationship

    async def set_facts(self, project_id: str, scope: Scope, facts: int) -> None:
        """How many facts the agent's processed sessions taught it about the user (the diary
        counts them; a total, so processing a session again changes nothing)."""
        async with self.lock(project_id, scope):
            st = await self._load(project_id, scope)
            if st.facts == facts:
                return
            st.facts = facts
            rel = st.relationship
            rel = replace(rel, familiarity=familiarity(rel.messages, rel.sessions, st.facts))
            if rel.source == "lexicon":
                rel = replace(rel, description=describe(rel))
            st.relationship = rel
            await self.save(project_id, scope, st)

    # -- habits, goals, interests -------------------------------------------------------------
    async def statements(self, project_id: str, scope: Scope) -> list[rules.Statement]:
        """What the user said to the agent (its sessions' user messages) and the user's
        extracted facts the agent may see (a fact from one of those messages adds its id to
        the message's insight, not a second mention)."""
        sessions = await self._sessions.rows(
            scope_where(project_id, scope.agent_id, scope.instance_id, scope.user_id),
            ["id"],
            limit=_SCAN_SESSIONS,
        )
        out: list[rules.Statement] = []
        scanned: set[str] = set()
        for part in chunks([r["id"] for r in sessions]):
            where = (
                Where().eq("project_id", project_id).is_in("session_id", list(part))
                .eq("role", USER_ROLE)
            )  # fmt: skip
            for r in await self._messages.rows(
                where, ["id", "content", "memory_id", "create_time"], limit=_SCAN_MESSAGES
            ):
                scanned.add(r["id"])
                mids = (r["memory_id"],) if r["memory_id"] else ()
                out.append(rules.Statement(r["content"] or "", mids, r["create_time"]))
        query = MemoryQuery(
            user_id=scope.user_id,
            origins=("extracted",),
            agent_id=scope.agent_id,
            instance_id=scope.instance_id,
        )  # the agent's facts of the user in this instance, and the user's general ones
        for f in await self._memories.all(project_id, query):
            from_scanned = bool(scanned.intersection(f.source_message_ids))
            out.append(
                rules.Statement(
                    f.content,
                    (f.id,),
                    f.last_mentioned_time or f.create_time,
                    mentions=0 if from_scanned else max(1, f.mention_count),
                )
            )
        out.sort(key=lambda s: s.time or datetime.min.replace(tzinfo=UTC))
        return out

    async def insights(self, project_id: str, scope: Scope) -> dict[str, list[rules.Found]]:
        found = await self.statements(project_id, scope)
        if self._llm is None or not found:
            return rules.derive(found)
        key = hashlib.sha256(
            json.dumps([(s.text, s.memory_ids) for s in found]).encode()
        ).hexdigest()
        cached = self._insight_cache.get(key)
        if cached is None:
            cached = await self._ask_insights(project_id, found) or rules.derive(found)
            self._insight_cache[key] = cached
            while len(self._insight_cache) > 256:
                self._insight_cache.popitem(last=False)
        return cached

    async def _ask_insights(
        self, project_id: str, found: Sequence[rules.Statement]
    ) -> dict[str, list[rules.Found]] | None:
        assert self._llm is not None
        by_id = {f"s{i}": s for i, s in enumerate(found)}
        payload = {
            "task": "insights",
            "statements": [{"id": i, "text": s.text} for i, s in by_id.items()],
        }

        def check(js: Any) -> dict[str, list[rules.Found]]:
            out: dict[str, list[rules.Found]] = {}
            for kind in rules.KINDS:
                items = []
                for item in js[f"{kind}s"]:
                    ids = [i for i in item.get("source_ids", []) if i in by_id]
                    f = rules.Found(kind, text(item["text"], 200))
                    for i in ids:
                        s = by_id[i]
                        f.mentions += max(1, s.mentions)
                        f.memory_ids.extend(m for m in s.memory_ids if m not in f.memory_ids)
                        if s.time is not None:
                            f.first_seen = min(f.first_seen or s.time, s.time)
                            f.last_seen = max(f.last_seen or s.time, s.time)
                    if kind == "goal":
                        status = item.get("status") or "active"
                        if status not in ("active", "achieved", "abandoned"):
                            raise ValueError(f"unknown goal status {status!r}")
                        f.status = status
                    items.append(f)
                items.sort(key=lambda f: -f.mentions)
                out[kind] = items
            return out

        return await self._llm.ask(project_id, payload, check)


def add_event(st: State, d: dates.Dated, m: Message) -> None:
    key = f"{d.kind}:{m.id}:{d.day.isoformat()}"
    if any(e["key"] == key for e in st.events):
        return
    event = {
        "key": key,
        "kind": d.kind,
        "what": d.what,
        "day": d.day.isoformat(),
        "sentence": d.sentence[:500],
        "message_id": m.id,
        "done": False,
    }
    kept = [e for e in st.events if not e["done"]] + [e for e in st.events if e["done"]]
    st.events = [*kept[: _EVENTS - 1], event] if len(kept) >= _EVENTS else [*st.events, event]


def event_due(e: dict[str, Any]) -> datetime:
    """A follow-up the day after the event; a task the day after its deadline (UTC)."""
    day = datetime.fromisoformat(e["day"]).replace(tzinfo=UTC)
    return day + timedelta(days=1)


def next_check(st: State, inactivity: timedelta) -> datetime | None:
    due = [event_due(e) for e in st.events if not e["done"]]
    last = st.relationship.last_interaction_time
    if last is not None and st.inactivity_noticed != last:
        due.append(last + inactivity)
    return min(due) if due else None


def state_row(project_id: str, scope: Scope, st: State, inactivity: timedelta) -> Row:
    m, r = st.mood, st.relationship
    return {
        "pk": relation_pk(project_id, scope),
        "project_id": project_id,
        "agent_id": scope.agent_id,
        "instance_id": scope.instance_id or None,
        "user_id": scope.user_id,
        "mood_label": m.label,
        "valence": m.valence,
        "arousal": m.arousal,
        "mood_turns": m.turns,
        "mood_source": m.source,
        "mood_time": m.update_time,
        "familiarity": r.familiarity,
        "affinity": r.affinity,
        "description": r.description,
        "relation_source": r.source,
        "sessions": r.sessions,
        "messages": r.messages,
        "facts": st.facts,
        "last_interaction_time": r.last_interaction_time,
        "seen": json.dumps(st.seen),
        "session_ids": json.dumps(st.session_ids),
        "events": json.dumps(st.events),
        "inactivity_noticed": st.inactivity_noticed,
        "next_check_time": next_check(st, inactivity),
        "update_time": datetime.now(UTC),
    }


def state_from_row(row: Row) -> State:
    return State(
        mood=Mood(
            label=row["mood_label"] or "neutral",
            valence=float(row["valence"] or 0.0),
            arousal=float(row["arousal"] if row["arousal"] is not None else NEUTRAL_AROUSAL),
            turns=int(row["mood_turns"] or 0),
            update_time=row["mood_time"],
            source=row["mood_source"] or "lexicon",
        ),
        relationship=Relationship(
            familiarity=float(row["familiarity"] or 0.0),
            affinity=float(row["affinity"] or 0.0),
            last_interaction_time=row["last_interaction_time"],
            description=row["description"] or "",
            sessions=int(row["sessions"] or 0),
            messages=int(row["messages"] or 0),
            source=row["relation_source"] or "lexicon",
        ),
        facts=int(row["facts"] or 0),
        seen=json.loads(row["seen"] or "[]"),
        session_ids=json.loads(row["session_ids"] or "[]"),
        events=json.loads(row["events"] or "[]"),
        inactivity_noticed=row["inactivity_noticed"],
    )


def scope_of(row: Row) -> Scope:
    return Scope(row["agent_id"], row["user_id"], row["instance_id"] or "")
