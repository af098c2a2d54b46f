"""An agent's memory of one user, the Sonzai way: the memory tree (facts by category), the
timeline (a time range, oldest first) and bulk facts (up to 1000 stored at once, no extraction).

Every read is an agent-scoped recall (core.memory.model.MemoryQuery): the agent's memories of
the user in that instance (or its default state) plus the user's general memories, never
another agent's or instance's. Search is MemoryService.SearchMemories with agent_id.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from memgrpc.core.agents.service import AgentService
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.kernel.paging import Page, PageRequest
from memgrpc.core.memory.batch import MAX_BATCH
from memgrpc.core.memory.checks import check_scope
from memgrpc.core.memory.model import Memory, MemoryQuery
from memgrpc.core.memory.service import MemoryService

UNCATEGORIZED = "uncategorized"
DEFAULT_PER_CATEGORY, MAX_PER_CATEGORY = 50, 1000
MAX_FACT_BYTES = 8 * 1024
# the tree shows facts: what extraction found and what clients stored, not raw turns/summaries
TREE_ORIGINS = ("extracted", "client")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FactInput:
    content: str
    categories: tuple[str, ...] = ()
    importance: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    create_time: datetime | None = None


@dataclass(frozen=True)
class AgentUser:
    """Whose memory: the agent's (in an instance, or its default state) of one user."""

    agent_id: str
    user_id: str
    instance_id: str = ""

    def query(self, **kw: Any) -> MemoryQuery:
        return MemoryQuery(
            user_id=self.user_id, agent_id=self.agent_id, instance_id=self.instance_id, **kw
        )


@dataclass
class MemoryTree:
    # (category, facts by importance, highest first), largest category first
    categories: list[tuple[str, list[Memory]]]
    total_facts: int


class AgentMemory:
    def __init__(self, memories: MemoryService, agents: AgentService) -> None:
        self._memories = memories
        self._agents = agents

    async def _check(self, project_id: str, who: AgentUser, v: Violations) -> None:
        """INVALID_ARGUMENT for malformed ids (with `v`'s own); NOT_FOUND for an agent or
        instance the project does not have."""
        validation.check_id(v, "agent_id", who.agent_id, required=True)
        validation.check_id(v, "user_id", who.user_id, required=True)
        check_scope(v, "", who.agent_id, who.instance_id)
        v.raise_if_any()
        await self._agents.check_scope(project_id, who.agent_id, who.instance_id)

    async def tree(self, project_id: str, who: AgentUser, limit_per_category: int) -> MemoryTree:
        v = Violations()
        if not 0 <= limit_per_category <= MAX_PER_CATEGORY:
            v.add("limit_per_category", f"must be between 0 and {MAX_PER_CATEGORY}")
        await self._check(project_id, who, v)
        facts = await self._memories.all(project_id, who.query(origins=TREE_ORIGINS))
        groups: dict[str, list[Memory]] = defaultdict(list)
        for m in facts:
            for c in dict.fromkeys(m.categories) or (UNCATEGORIZED,):
                groups[c].append(m)
        limit = limit_per_category or DEFAULT_PER_CATEGORY
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return MemoryTree(
            categories=[(name, sorted(ms, key=_by_importance)[:limit]) for name, ms in ordered],
            total_facts=len(facts),
        )

    async def timeline(
        self,
        project_id: str,
        who: AgentUser,
        start: datetime | None,
        end: datetime | None,
        page: PageRequest,
    ) -> Page[Memory]:
        """Everything of the user in the scope (turns, facts, summaries) by event time, oldest
        first (MemoryService.list checks the range and the page)."""
        await self._check(project_id, who, Violations())
        q = who.query(start_time=start, end_time=end)
        return await self._memories.list(project_id, q, replace(page, order_by="event_time asc"))

    async def add_facts(
        self, project_id: str, who: AgentUser, facts: list[FactInput]
    ) -> list[Memory]:
        """All or nothing: checked first (violations per fact, e.g. `facts[3].content`), then
        embedded and stored in one commit as CLIENT facts of the scope; no extraction or
        reconciliation runs on them."""
        v = Violations()
        if not facts:
            v.add("facts", "must not be empty")
        elif len(facts) > MAX_BATCH:
            v.add("facts", f"at most {MAX_BATCH} facts per call")
        await self._check(project_id, who, v)
        ready = []
        for i, f in enumerate(facts):
            prefix = f"facts[{i}]"
            if len(f.content.encode("utf-8")) > MAX_FACT_BYTES:
                v.add(f"{prefix}.content", f"must be at most {MAX_FACT_BYTES} bytes")
            m = Memory(
                user_id=who.user_id,
                agent_id=who.agent_id,
                instance_id=who.instance_id,
                content=f.content,
                type="fact",
                origin="client",
                categories=list(f.categories),
                importance=f.importance,
                metadata=dict(f.metadata),
                event_time=f.create_time,
            )
            made = self._memories.prepare(m, v, prefix)
            if f.create_time:  # "when it was learned": the fact's create time too
                made = replace(made, create_time=f.create_time, update_time=f.create_time)
            ready.append(made)
        v.raise_if_any()
        await self._memories.insert_prepared(project_id, ready)
        return ready


def _by_importance(m: Memory) -> tuple[float, float, str]:
    when = (m.create_time or _EPOCH).timestamp()
    return (-(m.importance if m.importance is not None else 0.0), -when, m.id)
