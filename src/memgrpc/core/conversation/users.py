"""Users (RecallrAI users): explicit create, metadata, rename, purge, list, recent messages.

Users also come into being implicitly on their first write (core/conversation/activity.py); both paths produce
the same `users` row.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from memgrpc.core.conversation.messages import DEFAULT_RECENT, MAX_RECENT, MessageService
from memgrpc.core.conversation.purge import UserData
from memgrpc.core.conversation.records import (
    Message,
    User,
    user_from_row,
    user_pk,
    user_row,
)
from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import AlreadyExists, NotFound, Violations
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.paging import Cursor, Page, PageRequest
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table

UPDATABLE = ("metadata",)


def _not_found(user_id: str) -> NotFound:
    return NotFound(f"user {user_id} not found", reason="USER_NOT_FOUND", metadata={"id": user_id})


def _taken(user_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"user {user_id} already exists", reason="USER_ALREADY_EXISTS", metadata={"id": user_id}
    )


class UserService:
    def __init__(self, store: Store, data: UserData, messages: MessageService) -> None:
        self._users = Table(store, "users")
        self._sessions = Table(store, "sessions")
        self._data = data
        self._messages = messages
        self._locks = KeyedLocks()

    @asynccontextmanager
    async def _hold(self, project_id: str, *user_ids: str) -> AsyncIterator[None]:
        """Lock users in sorted order (a rename holds two; no deadlock)."""
        async with AsyncExitStack() as stack:
            for u in sorted(set(user_ids)):
                await stack.enter_async_context(self._locks.hold(f"{project_id}/{u}"))
            yield

    async def _row(self, project_id: str, user_id: str) -> Row | None:
        return await self._users.first(Where().eq("pk", user_pk(project_id, user_id)))

    async def _require_row(self, project_id: str, user_id: str, name: str = "id") -> Row:
        v = Violations()
        validation.check_id(v, name, user_id, required=True)
        v.raise_if_any()
        row = await self._row(project_id, user_id)
        if row is None:
            raise _not_found(user_id)
        return row

    def _with_activity(self, project_id: str, row: Row) -> User:
        """The stored user, with this replica's not yet flushed activity merged in."""
        u = user_from_row(row)
        pending = self._data.registry.pending(project_id, u.id)
        if pending is not None and (u.last_active_time is None or pending > u.last_active_time):
            u.last_active_time = pending
        return u

    # -- CRUD ---------------------------------------------------------------------------------
    async def create(self, project_id: str, u: User) -> User:
        v = Violations()
        validation.check_id(v, "user.id", u.id, required=True)
        validation.check_metadata(v, "user.metadata", u.metadata)
        v.raise_if_any()
        async with self._hold(project_id, u.id):
            if await self._row(project_id, u.id) is not None:
                raise _taken(u.id)
            now = datetime.now(UTC)
            made = User(u.id, u.metadata, create_time=now, last_active_time=now)
            row = user_row(project_id, made)
            await self._users.writer.insert_absent([row])
            # an implicit creation (a write on another replica) may have won the race
            stored = await self._row(project_id, u.id)
            if stored is None or stored["create_time"] != now:
                raise _taken(u.id)
            self._data.registry.remember(project_id, [u.id])
            return made

    async def get(self, project_id: str, user_id: str) -> User:
        return self._with_activity(project_id, await self._require_row(project_id, user_id))

    async def update(
        self, project_id: str, u: User, fields: frozenset[str], new_id: str = ""
    ) -> User:
        """Change metadata and/or rename (`new_id`); a rename carries all of the user's rows."""
        if "*" in fields:
            fields = frozenset(UPDATABLE)
        v = Violations()
        validation.check_id(v, "user.id", u.id, required=True)
        validation.check_id(v, "new_id", new_id, required=False)
        for f in sorted(fields - set(UPDATABLE)):
            v.add("update_mask", f"field {f!r} cannot be updated (only metadata; new_id renames)")
        if "metadata" in fields:
            validation.check_metadata(v, "user.metadata", u.metadata)
        if not fields and not new_id:
            v.add("user", "sets nothing to update (metadata or new_id)")
        v.raise_if_any()
        renaming = bool(new_id) and new_id != u.id
        async with self._hold(project_id, u.id, *([new_id] if renaming else [])):
            row = await self._require_row(project_id, u.id, "user.id")
            if renaming and await self._row(project_id, new_id) is not None:
                raise _taken(new_id)
            if "metadata" in fields:
                row = row | {
                    "metadata": validation.canonical_json(u.metadata),
                    "metadata_kv": validation.metadata_pairs(u.metadata),
                }
                await self._users.writer.patch(
                    [{k: row[k] for k in ("pk", "metadata", "metadata_kv")}]
                )
            if renaming:
                row = await self._data.rename(project_id, row, new_id)
            return self._with_activity(project_id, row)

    async def delete(self, project_id: str, user_id: str) -> None:
        """Purge: every row of the user in every table. NOT_FOUND only if nothing is left."""
        v = Violations()
        validation.check_id(v, "id", user_id, required=True)
        v.raise_if_any()
        async with self._hold(project_id, user_id):
            if await self._row(project_id, user_id) is None and not await self._data.has_rows(
                project_id, user_id
            ):
                raise _not_found(user_id)
            await self._data.purge(project_id, user_id)

    async def list(
        self, project_id: str, metadata: dict[str, Any], page: PageRequest, agent_id: str = ""
    ) -> Page[User]:
        """Oldest first, keyset-paged by (create_time, id), with the total count; with
        `agent_id`, only users with a session with that agent (any instance)."""
        v = Violations()
        validation.check_metadata(v, "metadata_filter", metadata)
        validation.check_id(v, "agent_id", agent_id, required=False)
        size = paging.page_size(v, page.size)
        v.raise_if_any()
        where = Where().eq("project_id", project_id)
        if metadata:
            where.has_all("metadata_kv", validation.metadata_pairs(metadata))
        if agent_id:
            # the agent's users, from its sessions (one read of one column)
            talked = Where().eq("project_id", project_id).eq("agent_id", agent_id)
            rows = await self._sessions.rows(talked, ["user_id"])
            where.is_in("id", sorted({r["user_id"] for r in rows}))

        async def read(after: Cursor[datetime] | None, limit: int) -> tuple[list[Row], int]:
            return await asyncio.gather(
                self._users.page(where, "create_time", "id", desc=False, after=after, limit=limit),
                self._users.count(where),
            )

        fp = paging.fingerprint(project_id, "users", metadata, *([agent_id] if agent_id else []))
        return await paging.fetch(
            size,
            page.token,
            fp,
            read,
            order=("create_time", "id"),
            kind=datetime,
            item=lambda r: self._with_activity(project_id, r),
        )

    async def recent_messages(
        self, project_id: str, user_id: str, n: int
    ) -> builtins.list[Message]:
        v = Violations()
        validation.check_id(v, "user_id", user_id, required=True)
        if n < 0:
            v.add("n", "must not be negative")
        v.raise_if_any()
        await self._require_row(project_id, user_id, "user_id")
        return await self._messages.recent(
            project_id, user_id, min(n or DEFAULT_RECENT, MAX_RECENT)
        )
