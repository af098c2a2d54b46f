"""Reconciliation: what each extracted Fact does to the user's current extracted memories.

Per fact, in order (the decisions README's "Memory intelligence" section states):
  ADD        nothing current says it: a new memory (origin extracted) with an id derived from
             (project, user, slot/value or normalised content, first source), so a re-run after a
             crash finds what the crashed run wrote instead of writing it twice.
  REINFORCE  a current memory says it (same slot and canonical value, or a close paraphrase):
             mention_count grows by the messages that say it again, last_mentioned_time, its
             sources grow. A source it already cites is not counted again; that is what makes
             re-processing add nothing.
  VERSION    an explicit change (Fact.change) of a single slot's value, or a change/negation
             that flips a topic's current fact ("smokes" -> "quit smoking"): a new version of
             that memory (expire reason SUPERSEDED); a slot's memory keeps its id.
  CONFLICT   a different value without a change marker, or a positive statement on a topic whose
             current fact is negated: a merge conflict (ConflictService.open) holds the new fact.
The LLM extractor's `updates` / `contradicts` ids, when they name a current memory, decide
VERSION / CONFLICT directly.

Everything is decided in memory first (a plan), then written: one insert of the new memories,
one patch per changed memory, then the conflicts. Every write is idempotent, so a job that
died halfway is simply run again. A user's reconciliations run one at a time on a replica.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from memgrpc.core.conversation.records import JobStats
from memgrpc.core.intelligence.facts import LIST_SLOTS, SINGLE_SLOTS, Fact, KnownFact
from memgrpc.core.kernel.ids import derived_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.memory.model import Memory, MemoryQuery, Patch
from memgrpc.core.memory.service import MemoryService

# Cosine of the embedder's vectors above which two facts are one restated (with the lexical
# guards of `_clash`); measured by scripts/paraphrase_threshold.py (docs/BENCHMARKS.md).
PARAPHRASE_COSINE = 0.73
SUPERSEDED = "SUPERSEDED"
# reserved metadata keys of extracted memories: the slot's canonical value, the fact's topic
# and whether it states an absence or an end
VALUE_KEY = "profile.value"
TOPIC_KEY = "fact.topic"
NEGATED_KEY = "fact.negated"

_WORD = re.compile(r"[^\W\d_][\w'-]*|\d+")
# words that flip what a sentence says about the user (a preference's or a habit's polarity)
_ROLES = frozenset(
    ("mother", "father", "mum", "mom", "dad", "sister", "brother", "son", "daughter", "wife",
     "husband", "partner", "boyfriend", "girlfriend", "friend", "grandmother", "grandfather",
     "aunt", "uncle", "cousin", "niece", "nephew", "colleague", "boss", "neighbour", "neighbor")
)  # fmt: skip
_FLIP = frozenset(
    ("not", "no", "never", "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "can't",
     "cannot", "won't", "hate", "hates", "dislike", "dislikes", "quit", "stopped", "gave",
     "longer", "without")
)  # fmt: skip


class ConflictOpener(Protocol):
    """ConflictService (core/intelligence/conflicts/): opens a merge conflict holding
    `new_memory` against `conflicting` (memory, reason) pairs; `key` makes it idempotent
    (`created` False when that key's conflict exists already)."""

    async def open(
        self,
        project_id: str,
        *,
        user_id: str,
        session_id: str,
        new_memory: Memory,
        conflicting: list[tuple[Memory, str]],
        key: str,
    ) -> tuple[Any, bool]: ...


def normalise(text: str) -> str:
    return " ".join(w.lower() for w in _WORD.findall(text))


def _names(text: str) -> set[str]:
    """Capitalised words past the first, numbers and family roles: what two close sentences
    may differ in while their embeddings barely do ("swims on Thursday" / "on Sunday",
    "user's sister" / "user's brother")."""
    words = _WORD.findall(text)
    return {
        w.lower()
        for i, w in enumerate(words)
        if w.isdigit()
        or w.lower().removesuffix("'s") in _ROLES
        or (i > 0 and w[0].isupper() and w.lower() not in ("user", "user's"))
    }


def _flipped(text: str) -> bool:
    words = set(normalise(text).split())
    return bool(words & _FLIP) or "n't" in text.lower()


def _clash(a: str, b: str) -> bool:
    """Lexical differences that make two close sentences different facts."""
    na, nb = _names(a), _names(b)
    if na - nb and nb - na:
        return True
    return _flipped(a) != _flipped(b)


def fact_topic(f: Fact) -> str:
    return f.topic or (f.slot if f.slot in LIST_SLOTS else "")


def memory_topic(m: Memory) -> str:
    topic = m.metadata.get(TOPIC_KEY)
    if isinstance(topic, str) and topic:
        return topic
    return m.profile_slot if m.profile_slot in LIST_SLOTS else ""


def memory_value(m: Memory) -> str:
    value = m.metadata.get(VALUE_KEY)
    return value if isinstance(value, str) else ""


def memory_negated(m: Memory) -> bool:
    return m.metadata.get(NEGATED_KEY) is True


def fact_metadata(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a memory that takes a new fact's content: the fact's reserved keys
    (value, topic, negation) come from the new fact alone, other keys stay."""
    kept = {k: v for k, v in old.items() if k not in (VALUE_KEY, TOPIC_KEY, NEGATED_KEY)}
    return kept | {k: v for k, v in new.items() if k in (VALUE_KEY, TOPIC_KEY, NEGATED_KEY)}


def same_value(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def known_fact(m: Memory) -> KnownFact:
    return KnownFact(m.id, m.content, slot=m.profile_slot, topic=memory_topic(m))


@dataclass
class _Entry:
    """A memory during planning: stored, or to be inserted; `fields` it has changed."""

    memory: Memory
    vector: np.ndarray
    new: bool = False
    fields: set[str] = field(default_factory=set)
    versioned: bool = False


@dataclass
class _Conflict:
    new_memory: Memory
    conflicting: list[tuple[Memory, str]]
    key: str


@dataclass
class Plan:
    entries: list[_Entry] = field(default_factory=list)
    conflicts: list[_Conflict] = field(default_factory=list)
    stats: JobStats = field(default_factory=JobStats)

    def inserts(self) -> list[Memory]:
        return [e.memory for e in self.entries if e.new]

    def patches(self) -> list[Patch]:
        return [
            Patch(e.memory, frozenset(e.fields), SUPERSEDED if e.versioned else "")
            for e in self.entries
            if not e.new and e.fields
        ]


class Reconciler:
    """Decides and writes; shared by the extraction step and SaveProfileFact, whose writes to
    one user must not interleave (a per-user lock on this replica)."""

    def __init__(self, memories: MemoryService, conflicts: ConflictOpener | None) -> None:
        self._memories = memories
        self._conflicts = conflicts
        self.locks = KeyedLocks()

    def lock(self, project_id: str, user_id: str) -> AbstractAsyncContextManager[None]:
        return self.locks.hold(f"{project_id}/{user_id}")

    async def current(
        self,
        project_id: str,
        user_id: str,
        slots: tuple[str, ...] = (),
        *,
        cached: bool = False,
        scope: AgentScope | None = None,
        exact: bool = False,
    ) -> list[Memory]:
        """The user's current extracted memories (not archived), oldest first; only those
        backing one of `slots` when given. `cached`: from the recall cache when it holds the
        user (reads for a context; reconciliation itself reads the store). `scope` (agent_id,
        instance_id): an agent-scoped recall (MemoryQuery); `exact`: only that scope's facts
        (reconciliation: a fact never merges into another agent's or instance's memory)."""
        agent_id, instance_id = scope or ("", "")
        q = MemoryQuery(
            user_id=user_id,
            origins=("extracted",),
            profile_slots=slots,
            agent_id=agent_id,
            instance_id=instance_id,
            exact_scope=exact,
        )
        return await self._memories.all(project_id, q, cached=cached)

    async def plan(
        self,
        project_id: str,
        user_id: str,
        session_id: str,
        facts: Sequence[Fact],
        now: datetime | None = None,
        *,
        scope: AgentScope = ("", ""),
    ) -> Plan:
        """Decide every fact against the current memories of exactly `scope` (agent_id,
        instance_id; empty = the user's general memories) and the plan's own earlier facts;
        reads only. Call it holding `lock`, then `apply` the plan."""
        now = now or datetime.now(UTC)
        current = await self.current(project_id, user_id, scope=scope, exact=True)
        stored = await self._memories.vectors(project_id, [m.id for m in current])
        texts = [f.content for f in facts]
        fresh = np.asarray(await self._memories.embedder.embed(texts)) if texts else None
        plan = Plan()
        plan.stats.facts_extracted = len(facts)
        for m in current:
            if m.id in stored:
                plan.entries.append(_Entry(m, _unit(stored[m.id])))
        for i, f in enumerate(facts):
            vec = _unit(fresh[i]) if fresh is not None else np.zeros(0, np.float32)
            _decide(plan, project_id, user_id, session_id, f, vec, now, scope)
        return plan

    async def apply(
        self, project_id: str, plan: Plan, *, between: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Write a plan: new memories in one commit (those a crashed run wrote are skipped),
        then each changed memory, then the conflicts. `between` runs after each write phase
        (a test's hook to die mid-write)."""
        inserts = plan.inserts()
        if inserts:
            there = {
                m.id for m in await self._memories.get_many(project_id, [m.id for m in inserts])
            }
            ready = self._memories.prepare_many([m for m in inserts if m.id not in there])
            await self._memories.insert_prepared(project_id, ready)
        if between is not None:
            await between()
        for p in plan.patches():
            await self._memories.update(project_id, p, internal=True)
        if between is not None and plan.conflicts:
            await between()
        for c in plan.conflicts:
            if self._conflicts is None:
                raise RuntimeError("no conflict service configured")
            _, created = await self._conflicts.open(
                project_id,
                user_id=c.new_memory.user_id,
                session_id=c.new_memory.session_id,
                new_memory=c.new_memory,
                conflicting=c.conflicting,
                key=c.key,
            )
            plan.stats.conflicts_opened += int(created)


# (agent_id, instance_id): whose memories; ("", "") = the user's general ones
AgentScope = tuple[str, str]


def _unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.asarray(v, dtype=np.float32)
    return out / max(float(np.linalg.norm(out)), 1e-12)


def new_memory(
    project_id: str,
    user_id: str,
    session_id: str,
    f: Fact,
    now: datetime,
    scope: AgentScope = ("", ""),
) -> Memory:
    """The memory a fact becomes (not stored), in `scope`; its id derived so a re-run finds it
    (a scoped fact's id names its scope: the same fact told two agents is two memories)."""
    key = f"{f.slot}={f.value.casefold()}" if f.slot else normalise(f.content)
    first = f.source_message_ids[0] if f.source_message_ids else "profile"
    scoped = list(scope) if scope[0] else []
    metadata: dict[str, Any] = {}
    if f.slot:
        metadata[VALUE_KEY] = f.value
    if fact_topic(f):
        metadata[TOPIC_KEY] = fact_topic(f)
    if f.negated:
        metadata[NEGATED_KEY] = True
    return Memory(
        id=derived_id("mem", project_id, user_id, key, first, *scoped),
        user_id=user_id,
        agent_id=scope[0],
        instance_id=scope[1],
        session_id=session_id,
        content=f.content,
        type=f.type or "fact",
        categories=list(f.categories),
        importance=f.importance,
        source_message_ids=list(dict.fromkeys(f.source_message_ids)),
        origin="extracted",
        profile_slot=f.slot,
        # how often the user said it: once per message that says it
        mention_count=max(1, len(set(f.source_message_ids))),
        last_mentioned_time=now,
        entities=list(dict.fromkeys(f.entities)),
        metadata=metadata,
    )


def _by_id(plan: Plan, memory_id: str) -> _Entry | None:
    return next((e for e in plan.entries if e.memory.id == memory_id), None)


def _decide(
    plan: Plan,
    project_id: str,
    user_id: str,
    session_id: str,
    f: Fact,
    vec: np.ndarray,
    now: datetime,
    scope: AgentScope,
) -> None:
    made = new_memory(project_id, user_id, session_id, f, now, scope)
    if f.updates and (target := _by_id(plan, f.updates)) is not None:
        _version(plan, target, made, vec, now)
        return
    if f.contradicts and (target := _by_id(plan, f.contradicts)) is not None:
        _conflict(plan, made, target, "the new fact contradicts it")
        return
    if f.slot in SINGLE_SLOTS:
        holders = [e for e in plan.entries if e.memory.profile_slot == f.slot]
        if not holders:
            _add(plan, made, vec)
        elif same_value(memory_value(holders[-1].memory), f.value) and (
            memory_negated(holders[-1].memory) == f.negated
        ):
            _reinforce(plan, holders[-1], f, now)
        elif f.change:
            _version(plan, holders[-1], made, vec, now)
        else:
            _conflict(plan, made, holders[-1], f"a different {f.slot.replace('_', ' ')}")
        return
    if f.slot in LIST_SLOTS and f.value:
        same = [
            e
            for e in plan.entries
            if e.memory.profile_slot == f.slot and same_value(memory_value(e.memory), f.value)
        ]
        if same and memory_negated(same[-1].memory) == f.negated:
            _reinforce(plan, same[-1], f, now)
            return
        if same and f.change:
            _version(plan, same[-1], made, vec, now)
            return
    restated = _paraphrase(plan, f, vec)
    if restated is not None:
        _reinforce(plan, restated, f, now)
        return
    topic = fact_topic(f)
    if topic:
        on_topic = [e for e in plan.entries if memory_topic(e.memory) == topic]
        if on_topic and memory_negated(on_topic[-1].memory) != f.negated:
            latest = on_topic[-1]
            if f.change or f.negated:
                # an end ("quit smoking") or an explicit change supersedes the current fact
                _version(plan, latest, made, vec, now)
            else:
                _conflict(plan, made, latest, f"it says the opposite about {topic}")
            return
    _add(plan, made, vec)


def _paraphrase(plan: Plan, f: Fact, vec: np.ndarray) -> _Entry | None:
    best: _Entry | None = None
    best_score = PARAPHRASE_COSINE
    topic = fact_topic(f)
    for e in plan.entries:
        m = e.memory
        score = float(e.vector @ vec)
        if score < best_score:
            continue
        other = memory_topic(m)
        if topic and other and (topic != other or memory_negated(m) != f.negated):
            continue
        if f.entities and m.entities and not set(f.entities) & set(m.entities):
            continue
        if f.slot and m.profile_slot:
            continue  # slot facts restate only by slot and value (decided before)
        if _clash(f.content, m.content):
            continue
        best, best_score = e, score
    return best


def _add(plan: Plan, made: Memory, vec: np.ndarray) -> None:
    plan.entries.append(_Entry(made, vec, new=True))
    plan.stats.facts_added += 1


def _reinforce(plan: Plan, e: _Entry, f: Fact, now: datetime) -> None:
    cited = set(e.memory.source_message_ids)
    sources = [s for s in dict.fromkeys(f.source_message_ids) if s not in cited]
    if f.source_message_ids and not sources:
        return  # said in a message it already cites: a re-run, or the same message twice
    m = e.memory
    e.memory = replace(
        m,
        source_message_ids=[*m.source_message_ids, *sources],
        mention_count=max(m.mention_count, 1) + max(1, len(sources)),
        last_mentioned_time=now,
    )
    e.fields |= {"source_message_ids", "mention_count", "last_mentioned_time"}
    plan.stats.facts_reinforced += 1


def _version(plan: Plan, e: _Entry, made: Memory, vec: np.ndarray, now: datetime) -> None:
    """The memory takes the new fact's content; a slot's memory keeps its slot and id."""
    if e.memory.content == made.content:
        _reinforce(plan, e, _as_fact(made), now)
        return
    old = e.memory
    metadata = fact_metadata(old.metadata, made.metadata)
    if old.profile_slot and VALUE_KEY not in made.metadata:
        metadata[VALUE_KEY] = ""
    e.memory = replace(
        old,
        content=made.content,
        type=made.type,
        categories=made.categories or old.categories,
        importance=made.importance,
        source_message_ids=made.source_message_ids,
        entities=list(dict.fromkeys([*made.entities])),
        metadata=metadata,
        profile_slot=old.profile_slot or made.profile_slot,
        mention_count=made.mention_count,
        last_mentioned_time=now,
        session_id=made.session_id or old.session_id,
    )
    e.vector = vec
    if e.new:  # changed before it was ever written: just write the latest
        return
    e.fields |= {
        "content", "type", "categories", "importance", "source_message_ids", "entities",
        "metadata", "mention_count", "last_mentioned_time", "session_id",
    }  # fmt: skip
    if not e.versioned:
        e.versioned = True
        plan.stats.versions_made += 1


def _as_fact(m: Memory) -> Fact:
    return Fact(m.content, m.type, tuple(m.source_message_ids))


def _conflict(plan: Plan, made: Memory, e: _Entry, reason: str) -> None:
    key = derived_id("cfk", made.user_id, made.id, e.memory.id)
    if any(c.key == key for c in plan.conflicts):
        return
    plan.conflicts.append(_Conflict(made, [(e.memory, reason)], key))
