"""Rows of the `projects` and `api_keys` tables. Every key query is scoped by project or by hash.

Both tables stay small (projects, and a handful of keys per project), so ordering and the
revoked/active split are done in Python after a filtered read.
"""

from __future__ import annotations

from typing import Any

from memgrpc.store.db import Store
from memgrpc.store.filters import Where

Row = dict[str, Any]


class KeyStore:
    """Reads and writes of projects and API keys; writes return once committed."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._project_writer = store.writer("projects")
        self._key_writer = store.writer("api_keys")

    # looked up per read: Store.renew_session moves the handles
    @property
    def _projects(self) -> Any:
        return self._store.table("projects")

    @property
    def _keys(self) -> Any:
        return self._store.table("api_keys")

    # -- projects -----------------------------------------------------------------------------
    async def get_project(self, project_id: str) -> Row | None:
        return _first(await _rows(self._projects, Where().eq("id", project_id)))

    async def list_projects(self, after_id: str, limit: int) -> tuple[list[Row], int]:
        """Projects in id order strictly after `after_id`, at most `limit`; and the total."""
        where = Where().cmp("id", ">", after_id) if after_id else Where()
        rows = sorted(await _rows(self._projects, where), key=lambda r: r["id"])
        total = int(await self._projects.count_rows())
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
        return _first(await _rows(self._keys, where))

    async def find_by_hash(self, secret_hash: str) -> Row | None:
        return _first(await _rows(self._keys, Where().eq("secret_hash", secret_hash)))

    async def list_keys(
        self, project_id: str, *, include_revoked: bool, after_id: str, limit: int
    ) -> tuple[list[Row], int]:
        """Keys of one project in id order after `after_id`; and the total matching count."""
        rows = await _rows(self._keys, Where().eq("project_id", project_id))
        if not include_revoked:
            rows = [r for r in rows if r["revoke_time"] is None]
        rows.sort(key=lambda r: r["id"])
        total = len(rows)
        return [r for r in rows if r["id"] > after_id][:limit], total

    async def active_bootstrap_keys(self) -> list[Row]:
        rows = await _rows(self._keys, Where().eq("bootstrap", True))
        return [r for r in rows if r["revoke_time"] is None]

    async def insert_key(self, row: Row) -> None:
        await self._key_writer.insert([row])

    async def upsert_key(self, row: Row) -> None:
        """Write back a full key row (rename, new scopes, revocation)."""
        await self._key_writer.upsert([row])


async def _rows(table: Any, where: Where) -> list[Row]:
    query = table.query()
    if where:
        query = query.where(str(where))
    rows: list[Row] = (await query.to_arrow()).to_pylist()
    return rows


def _first(rows: list[Row]) -> Row | None:
    return rows[0] if rows else None
