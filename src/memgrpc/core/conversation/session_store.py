"""Session rows: lookups, partial updates, status compare-and-set, and the sweeper's queries.

Shared by messages, jobs and the session service, so that all of them take the same per-session
lock (`locks`) and change status only through `claim`, which is a conditional update: with
several replicas, exactly one of them moves a session out of a given status. Rows are cached
while only this process writes the table (`OwnWritesCache`): a chat turn reads its session twice.

A session's counters (message_count, active and due times) change with every message, and the
sessions table took three commits per chat turn. They are written behind (`patch_behind`):
coalesced across sessions into one patch `COUNTERS_FLUSH_S` after the first, and at shutdown.
Reads here merge them in; other replicas see them that much later. A crash loses at most that
window of counters, which the session's next write recounts (MessageService._heal); a patch,
claim or delete of the session writes its held counters first, so the order of writes holds.
Two replicas writing one session at once may leave the lower count of the two (a conditional
patch would prevent it, but LanceDB 0.40 panics on one over an indexed key); held counters
below the stored ones are dropped here, and the session's next write recounts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog

from memgrpc.core.conversation.records import Session, SessionStatus, session_from_row, session_row
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import NotFound, Violations
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.rowcache import OwnWritesCache
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table

log = structlog.get_logger(__name__)
COUNTERS_FLUSH_S = 0.25


def session_key(project_id: str, session_id: str) -> str:
    return f"{project_id}/{session_id}"


class SessionStore:
    def __init__(self, store: Store) -> None:
        self.table = Table(store, "sessions")
        self.locks = KeyedLocks()
        self._cache: OwnWritesCache[Row] = OwnWritesCache(
            self.table, store.config.read_consistency_s
        )
        self._behind: dict[str, Row] = {}  # session key -> counters not written yet
        self._flusher: asyncio.Task[None] | None = None
        # set by stop(): the store is closing, so counters are no longer written behind
        self._stopped = False

    @staticmethod
    def scope(project_id: str) -> Where:
        return Where().eq("project_id", project_id)

    async def row(self, project_id: str, session_id: str) -> Row | None:
        key = session_key(project_id, session_id)
        found = await self._cache.get(
            key, lambda: self.table.first(self.scope(project_id).eq("id", session_id))
        )
        if found is None:
            return None
        held = self._behind.get(key)
        if held is None:
            return dict(found)
        if found["message_count"] > held["message_count"]:  # another replica wrote later ones
            self._behind.pop(key, None)
            return dict(found)
        return found | held

    async def require_row(self, project_id: str, session_id: str, name: str = "id") -> Row:
        """The session's row; INVALID_ARGUMENT for a malformed id, NOT_FOUND when absent."""
        v = Violations()
        validation.check_id(v, name, session_id, required=True)
        v.raise_if_any()
        row = await self.row(project_id, session_id)
        if row is None:
            raise NotFound(
                f"session {session_id} not found",
                reason="SESSION_NOT_FOUND",
                metadata={"id": session_id},
            )
        return row

    async def require(self, project_id: str, session_id: str, name: str = "id") -> Session:
        return session_from_row(await self.require_row(project_id, session_id, name))

    async def insert(self, project_id: str, s: Session, active_time: datetime | None) -> None:
        row = session_row(project_id, s, active_time)
        async with self._cache.creating(session_key(project_id, s.id)) as settle:
            await self.table.writer.insert([row])
            settle(row)

    async def patch(self, project_id: str, values: dict[str, Any]) -> None:
        """Overwrite some columns of one session (by `id`); a deleted session stays deleted."""
        key = session_key(project_id, values["id"])
        await self.flush([key])  # its held counters first
        async with self._cache.writing(key) as settle:
            await self.table.writer.patch([values])
            settle(self._merged(key, values))

    def _merged(self, key: str, values: dict[str, Any]) -> Row | None:
        old = self._cache.peek(key)
        return None if old is None else old | values

    async def claim(
        self,
        project_id: str,
        session_id: str,
        from_statuses: Sequence[SessionStatus],
        values: dict[str, Any],
        *,
        job_id: str = "",
    ) -> bool:
        """Set `values` only if the session is in one of `from_statuses` (and run by `job_id`,
        when given); True when this call made the change."""
        where = self.scope(project_id).eq("id", session_id).is_in("status", list(from_statuses))
        if job_id:
            where.eq("job_id", job_id)
        key = session_key(project_id, session_id)
        await self.flush([key])  # its held counters first
        async with self._cache.writing(key) as settle:
            changed = await self.table.writer.update(str(where), values) > 0
            settle(self._merged(key, values) if changed else None)
        return changed

    async def delete(self, project_id: str, session_id: str) -> None:
        self._behind.pop(session_key(project_id, session_id), None)
        async with self._cache.writing(session_key(project_id, session_id)) as settle:
            await self.table.writer.delete(str(self.scope(project_id).eq("id", session_id)))
            settle(None)

    # -- counters written behind --------------------------------------------------------------
    def patch_behind(self, project_id: str, values: dict[str, Any]) -> None:
        """Like `patch`, for counters (with `message_count`): written within COUNTERS_FLUSH_S,
        with other sessions'."""
        key = session_key(project_id, values["id"])
        self._behind[key] = self._behind.get(key, {}) | values
        if self._stopped:  # a write racing shutdown: the session's next write recounts
            return
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_soon(), name="session-counters"
            )

    async def _flush_soon(self) -> None:
        while True:  # until nothing is held (counters may arrive during a flush)
            await asyncio.sleep(COUNTERS_FLUSH_S)
            try:
                await self.flush()
            except Exception as exc:  # the sessions' next writes recount (MessageService._heal)
                log.warning("session_counters_flush_failed", error=str(exc))
            if not self._behind or self._stopped:
                return

    async def flush(self, keys: Sequence[str] | None = None) -> None:
        """Write the held counters (of `keys`, or all) as one patch. They stay held (and read)
        until committed; counters held meanwhile are kept for the next flush."""
        wanted = list(self._behind) if keys is None else keys
        batch = {k: self._behind[k] for k in wanted if k in self._behind}
        if not batch:
            return
        async with contextlib.AsyncExitStack() as stack:
            settles = {k: await stack.enter_async_context(self._cache.writing(k)) for k in batch}
            # one patch: counters always carry the same columns
            await self.table.writer.patch(list(batch.values()))
            for key, values in batch.items():
                if self._behind.get(key) is values:  # not superseded while committing
                    del self._behind[key]
                old = self._cache.peek(key)
                kept = old is not None and old["message_count"] > values["message_count"]
                settles[key](old if kept else self._merged(key, values))

    async def stop(self) -> None:
        """Write what is held (before the store closes); nothing is written behind after it."""
        self._stopped = True
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        try:
            await self.flush()
        except Exception as exc:
            log.warning("session_counters_flush_failed", error=str(exc))

    def forget_user(self, project_id: str, user_id: str) -> None:
        """The user's sessions were rewritten behind the cache (purge, rename; "" = every
        user's: an agent purge)."""
        self._cache.forget(
            lambda key, row: (
                row["project_id"] == project_id and (not user_id or row["user_id"] == user_id)
            )
        )

    # -- the sweeper's queries span every project: it acts on each row's own project ---------
    async def due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(project_id, session_id) of active sessions idle past their auto_process_after."""
        where = Where().eq("status", "active").cmp("auto_process_at", "<=", now)
        rows = await self.table.rows(where, ["project_id", "id"], limit=limit)
        return [(r["project_id"], r["id"]) for r in rows]

    async def stale(self, before: datetime, limit: int) -> list[Row]:
        """Sessions PROCESSING since before `before`: their job's replica may have died."""
        where = Where().eq("status", "processing").cmp("update_time", "<", before)
        return await self.table.rows(where, ["project_id", "id", "job_id"], limit=limit)
