"""AgentService: create, read, update, list and delete a project's agents."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

from memgrpc.core.agents.model import (
    Agent,
    Capabilities,
    CapabilitiesPatch,
    Personality,
    agent_from_row,
    agent_row,
    check_agent,
)
from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import NotFound, Violations
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.paging import Page, PageRequest
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Table

# (project_id, agent_id) -> delete everything of the agent but its row
Purge = Callable[[str, str], Awaitable[None]]

UPDATABLE = ("display_name", "system_prompt", "personality", "capabilities", "metadata")
RECENT_S = 5.0  # how stale an agent a chat turn reads may be (another replica's update)
RECENT_MAX = 10_000


class AgentService:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._table = Table(store, "agents")
        self._instances = Table(store, "agent_instances")
        self._locks = KeyedLocks()
        self._purges: list[Purge] = []
        # (project, agent) -> (the agent, when read): chat turns read their agent each turn
        self._recent: dict[tuple[str, str], tuple[Agent, float]] = {}

    @staticmethod
    def _where(project_id: str, agent_id: str) -> Where:
        return Where().eq("project_id", project_id).eq("id", agent_id)

    async def _require(self, project_id: str, agent_id: str, name: str) -> Agent:
        """INVALID_ARGUMENT for a malformed id; NOT_FOUND when absent or another project's."""
        v = Violations()
        validation.check_id(v, name, agent_id, required=True)
        v.raise_if_any()
        row = await self._table.first(self._where(project_id, agent_id))
        if row is None:
            raise NotFound(
                f"agent {agent_id} not found", reason="AGENT_NOT_FOUND", metadata={"id": agent_id}
            )
        return agent_from_row(row)

    async def check_scope(self, project_id: str, agent_id: str, instance_id: str) -> None:
        """NOT_FOUND unless the agent exists in the project and, when given, the instance is
        one of its (sessions and memories name them)."""
        row = await self._table.first(self._where(project_id, agent_id))
        if row is None:
            raise NotFound(
                f"agent {agent_id} not found", reason="AGENT_NOT_FOUND", metadata={"id": agent_id}
            )
        if instance_id:
            where = Where().eq("project_id", project_id).eq("agent_id", agent_id)
            if await self._instances.first(where.eq("id", instance_id)) is None:
                raise NotFound(
                    f"instance {instance_id} of agent {agent_id} not found",
                    reason="INSTANCE_NOT_FOUND",
                    metadata={"id": instance_id, "agent_id": agent_id},
                )

    def purge_with(self, purge: Purge) -> None:
        """Have `purge` delete some of the agent's state on DeleteAgent, before its row, in the
        order plugged in: the simulation runs (core.simulation), then the instances and
        agent-scoped rows (core.agents.instances)."""
        self._purges.append(purge)

    async def create(self, project_id: str, a: Agent) -> Agent:
        v = Violations()
        check_agent(v, "agent", a, set(UPDATABLE))
        v.raise_if_any()
        now = datetime.now(UTC)
        made = replace(a, id=new_id("agt"), create_time=now, update_time=now)
        await self._table.writer.insert([agent_row(project_id, made)])
        return made

    async def get(self, project_id: str, agent_id: str) -> Agent:
        return await self._require(project_id, agent_id, "id")

    async def recent(self, project_id: str, agent_id: str) -> Agent:
        """The agent as read at most RECENT_S ago (every chat turn of an agent session reads
        it): this server's own changes show at once, another replica's within RECENT_S."""
        key = (project_id, agent_id)
        hit = self._recent.get(key)
        if hit is not None and time.monotonic() - hit[1] < RECENT_S:
            return hit[0]
        agent = await self._require(project_id, agent_id, "agent_id")
        if len(self._recent) >= RECENT_MAX:
            self._recent.clear()
        self._recent[key] = (agent, time.monotonic())
        return agent

    async def personality(self, project_id: str, agent_id: str) -> Personality:
        return (await self._require(project_id, agent_id, "agent_id")).personality

    async def capabilities(self, project_id: str, agent_id: str) -> Capabilities:
        return (await self._require(project_id, agent_id, "agent_id")).capabilities

    async def update(self, project_id: str, a: Agent, fields: frozenset[str]) -> Agent:
        """Overwrite `fields` (names of UPDATABLE, "*" = all) with `a`'s values."""
        if "*" in fields:
            fields = frozenset(UPDATABLE)
        v = Violations()
        validation.check_id(v, "agent.id", a.id, required=True)
        for f in sorted(fields - set(UPDATABLE)):
            v.add("update_mask", f"field {f!r} cannot be updated (only {', '.join(UPDATABLE)})")
        check_agent(v, "agent", a, set(fields))
        v.raise_if_any()
        async with self._locks.hold(f"{project_id}/{a.id}"):
            current = await self._require(project_id, a.id, "agent.id")
            changed = replace(
                current, **{f: getattr(a, f) for f in fields}, update_time=datetime.now(UTC)
            )
            await self._table.writer.patch([agent_row(project_id, changed)])
            self._recent.pop((project_id, a.id), None)
            return changed

    async def update_capabilities(
        self, project_id: str, agent_id: str, patch: CapabilitiesPatch
    ) -> Capabilities:
        """Only the fields `patch` sets change (a PATCH)."""
        async with self._locks.hold(f"{project_id}/{agent_id}"):
            current = await self._require(project_id, agent_id, "agent_id")
            if patch.is_empty():
                return current.capabilities
            changed = replace(
                current,
                capabilities=patch.apply(current.capabilities),
                update_time=datetime.now(UTC),
            )
            await self._table.writer.patch(
                [
                    {
                        k: agent_row(project_id, changed)[k]
                        for k in ("id", "capabilities", "update_time")
                    }
                ]
            )
            self._recent.pop((project_id, agent_id), None)
            return changed.capabilities

    async def delete(self, project_id: str, agent_id: str) -> None:
        """The agent's state (its runs, every AGENT_TABLES row, its instances: `purge_with`), then its
        row: a failure part-way leaves the agent, and the delete retryable."""
        async with self._locks.hold(f"{project_id}/{agent_id}"):
            await self._require(project_id, agent_id, "id")
            for purge in self._purges:
                await purge(project_id, agent_id)
            await self._table.writer.delete(str(self._where(project_id, agent_id)))
            self._recent.pop((project_id, agent_id), None)

    async def list(self, project_id: str, page: PageRequest) -> Page[Agent]:
        """Newest first, keyset-paged by (create_time, id), with the total count."""
        v = Violations()
        size = paging.page_size(v, page.size)
        v.raise_if_any()
        where = Where().eq("project_id", project_id)
        return await paging.newest_first(
            self._table,
            where,
            size,
            page.token,
            paging.fingerprint(project_id, "agents"),
            agent_from_row,
        )
