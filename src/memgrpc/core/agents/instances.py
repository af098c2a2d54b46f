"""Instances: separate copies of an agent's per-user state (Sonzai instances), and the purges
that wipe an agent's state (ResetInstance, DeleteInstance, DeleteAgent).

Every agent-state table is registered in store/owned.AGENT_TABLES with agent_id / instance_id /
user_id columns, so a purge is one delete per table; the instance rows themselves live in
`agent_instances` (not registered: a reset keeps its row). Deletes go first and rows last, so a
purge that fails part-way is retried by calling it again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from memgrpc.core.agents.service import AgentService
from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import NotFound, Violations
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.paging import Page, PageRequest
from memgrpc.store import owned
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Table

MAX_DISPLAY_NAME_CHARS = 200
# (project_id, user_id; "" = every user) -> drop caches of rows a purge deleted behind them
Forget = Callable[[str, str], None]


@dataclass(frozen=True)
class Instance:
    id: str = ""
    agent_id: str = ""
    display_name: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    create_time: datetime | None = None
    reset_time: datetime | None = None


def instance_row(project_id: str, i: Instance) -> dict[str, Any]:
    return {
        "id": i.id,
        "project_id": project_id,
        "agent_id": i.agent_id,
        "display_name": i.display_name,
        "metadata": validation.canonical_json(i.metadata),
        "create_time": i.create_time,
        "reset_time": i.reset_time,
    }


def instance_from_row(row: dict[str, Any]) -> Instance:
    return Instance(
        id=row["id"],
        agent_id=row["agent_id"],
        display_name=row.get("display_name") or "",
        metadata=json.loads(row.get("metadata") or "{}"),
        create_time=row.get("create_time"),
        reset_time=row.get("reset_time"),
    )


def check_instance(v: Violations, prefix: str, i: Instance) -> None:
    if len(i.display_name) > MAX_DISPLAY_NAME_CHARS:
        v.add(f"{prefix}.display_name", f"must be at most {MAX_DISPLAY_NAME_CHARS} characters")
    elif not i.display_name.isprintable():
        v.add(f"{prefix}.display_name", "must not contain control characters")
    validation.check_metadata(v, f"{prefix}.metadata", i.metadata)


class InstanceService:
    def __init__(self, store: Store, agents: AgentService, forget: Forget) -> None:
        self._store = store
        self._table = Table(store, "agent_instances")
        self._agents = agents
        self._forget = forget
        self._locks = KeyedLocks()

    def _where(self, project_id: str, agent_id: str) -> Where:
        return Where().eq("project_id", project_id).eq("agent_id", agent_id)

    async def require(self, project_id: str, agent_id: str, instance_id: str) -> Instance:
        """INVALID_ARGUMENT for malformed ids; NOT_FOUND unless the agent exists in the project
        and the instance is one of its."""
        v = Violations()
        validation.check_id(v, "agent_id", agent_id, required=True)
        validation.check_id(v, "instance_id", instance_id, required=True)
        v.raise_if_any()
        await self._agents.get(project_id, agent_id)
        row = await self._table.first(self._where(project_id, agent_id).eq("id", instance_id))
        if row is None:
            raise NotFound(
                f"instance {instance_id} of agent {agent_id} not found",
                reason="INSTANCE_NOT_FOUND",
                metadata={"id": instance_id, "agent_id": agent_id},
            )
        return instance_from_row(row)

    async def create(self, project_id: str, agent_id: str, i: Instance) -> Instance:
        v = Violations()
        validation.check_id(v, "agent_id", agent_id, required=True)
        check_instance(v, "instance", i)
        v.raise_if_any()
        await self._agents.get(project_id, agent_id)
        made = replace(
            i, id=new_id("ins"), agent_id=agent_id, create_time=datetime.now(UTC), reset_time=None
        )
        await self._table.writer.insert([instance_row(project_id, made)])
        return made

    async def list(self, project_id: str, agent_id: str, page: PageRequest) -> Page[Instance]:
        """Newest first, keyset-paged by (create_time, id), with the total count."""
        v = Violations()
        validation.check_id(v, "agent_id", agent_id, required=True)
        size = paging.page_size(v, page.size)
        v.raise_if_any()
        await self._agents.get(project_id, agent_id)
        where = self._where(project_id, agent_id)
        return await paging.newest_first(
            self._table,
            where,
            size,
            page.token,
            paging.fingerprint(project_id, agent_id, "instances"),
            instance_from_row,
        )

    async def reset(
        self, project_id: str, agent_id: str, instance_id: str, user_id: str = ""
    ) -> Instance:
        """Wipe the instance's state (one user's, when given); the instance row stays."""
        v = Violations()
        validation.check_id(v, "user_id", user_id, required=False)
        v.raise_if_any()
        async with self._locks.hold(f"{project_id}/{agent_id}"):
            current = await self.require(project_id, agent_id, instance_id)
            await self._purge(project_id, agent_id, instance_id, user_id)
            reset = replace(current, reset_time=datetime.now(UTC))
            await self._table.writer.patch([{"id": reset.id, "reset_time": reset.reset_time}])
            return reset

    async def delete(self, project_id: str, agent_id: str, instance_id: str) -> None:
        async with self._locks.hold(f"{project_id}/{agent_id}"):
            await self.require(project_id, agent_id, instance_id)
            await self._purge(project_id, agent_id, instance_id)
            await self._table.writer.delete(
                str(self._where(project_id, agent_id).eq("id", instance_id))
            )

    async def purge_agent(self, project_id: str, agent_id: str) -> None:
        """Everything of the agent but its row (DeleteAgent deletes that last)."""
        async with self._locks.hold(f"{project_id}/{agent_id}"):
            await self._purge(project_id, agent_id)
            where = self._where(project_id, agent_id)
            if await self._table.count(where):
                await self._table.writer.delete(str(where))

    async def _purge(
        self, project_id: str, agent_id: str, instance_id: str = "", user_id: str = ""
    ) -> None:
        try:
            await owned.delete_agent_rows(self._store, project_id, agent_id, instance_id, user_id)
        finally:  # even part-way: what was deleted must not be served from a cache
            self._forget(project_id, user_id)
