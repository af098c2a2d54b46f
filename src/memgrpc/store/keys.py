"""Rows of the `projects` and `api_keys` tables. Every key query is scoped by project or by hash.

Both tables stay small (projects, and a handful of keys per project), so ordering and the
revoked/active split are done in Python after a filtered read.
"""

from __future__ import annotations

from typing import Any

from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Table

Row = dict[str, Any]


class KeyStore:
    """Reads and writes of projects and API keys; writes return once committed."""

    def __init__(self, store: Store) -> None:
        self._projects = Table(store, "projects")
        self._keys = Table(store, "api_keys")
        self._project_writer = store.writer("projects")
        self._key_writer = store.writer("api_keys")

    # -- projects -----------------------------------------------------------------------------
    async def get_project(self, project_id: str) -> Row | None:
        return await self._projects.first(Where().eq("id", project_id))

    async def list_projects(self, after_id: str, limit: int) -> tuple[list[Row], int]:
        """Projects in id order strictly after `after_id`, at most `limit`; and the total."""
        where = Where().cmp("id", ">", after_id) if after_id else Where()
        rows = sorted(await self._projects.rows(where), key=lambda r: r["id"])
        total = await self._projects.count(Where())
        return rows[:limit], total

    async def insert_project(self, row: Row) -> None:
        await self._project_writer.insert([row])

    async def ensure_project(self, row: Row) -> None:
        """Create the project unless a row with its id exists (startup of several replicas)."""
        await self._project_writer.insert_absent([row])

    # -- API keys -----------------------------------------------------------------------------
    async def get_key(self, key_id: str, project_id: str | None) -> Row | None:
        """One key by id; `project_id=None` only for the bootstrap key, which sees every project."""
        where = Where().eq("id", key_id)
        if project_id is not None:
            where.eq("project_id", project_id)
        return await self._keys.first(where)

    async def find_by_hash(self, secret_hash: str) -> Row | None:
        return await self._keys.first(Where().eq("secret_hash", secret_hash))

    async def list_keys(
        self, project_id: str, *, include_revoked: bool, after_id: str, limit: int
    ) -> tuple[list[Row], int]:
        """Keys of one project in id order after `after_id`; and the total matching count."""
        rows = await self._keys.rows(Where().eq("project_id", project_id))
        if not include_revoked:
            rows = [r for r in rows if r["revoke_time"] is None]
        rows.sort(key=lambda r: r["id"])
        total = len(rows)
        return [r for r in rows if r["id"] > after_id][:limit], total

    async def active_bootstrap_keys(self) -> list[Row]:
        rows = await self._keys.rows(Where().eq("bootstrap", True))
        return [r for r in rows if r["revoke_time"] is None]

    async def insert_key(self, row: Row) -> None:
        await self._key_writer.insert([row])

    async def upsert_key(self, row: Row) -> None:
        """Write back a full key row (rename, new scopes, revocation)."""
        await self._key_writer.upsert([row])
