"""Purge and rename of an end user across every table, and of every cache that knows them.

Both run under the caller's per-user lock. The `users` row goes last on a purge and is created
first on a rename, so a crash part-way leaves the old user findable and the call retryable.
Writes racing the purge from other calls (or replicas) may survive it; callers stop writing
for a user before purging them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from memgrpc.core.conversation.activity import UserRegistry
from memgrpc.core.conversation.jobs import JobRunner
from memgrpc.core.conversation.messages import MessageService
from memgrpc.core.conversation.records import user_from_row, user_pk, user_row
from memgrpc.core.conversation.session_store import SessionStore
from memgrpc.core.kernel.idempotency import Idempotency
from memgrpc.core.memory.changes import Change, ChangeKind, ChangeLog
from memgrpc.core.memory.recall_cache import IndexCache
from memgrpc.store import owned
from memgrpc.store.db import Store
from memgrpc.store.filters import Where


@dataclass
class UserData:
    """Everything that holds data of end users, by user id."""

    store: Store
    registry: UserRegistry
    jobs: JobRunner
    idempotency: Idempotency
    index: IndexCache
    # caches of session rows and message tails (core/kernel/rowcache.py)
    sessions: SessionStore
    messages: MessageService
    # the change feed: a purge is one USER_DELETED change, not one per memory
    changes: ChangeLog | None = None

    async def has_rows(self, project_id: str, user_id: str) -> bool:
        counts = await owned.count_user_rows(self.store, project_id, user_id)
        return any(counts.values())

    async def purge(self, project_id: str, user_id: str) -> None:
        await self.jobs.cancel_user(project_id, user_id)
        self.registry.forget(project_id, user_id)
        self.idempotency.forget_user(project_id, user_id)
        await owned.delete_user_rows(self.store, project_id, user_id)
        if self.changes is not None:
            # the feed keeps sequences, not the purged user's content
            await self.changes.table.scrub_user(project_id, user_id)
            await self.changes.record(project_id, [Change(ChangeKind.USER_DELETED, user_id)])
        await self.store.writer("users").delete(str(Where().eq("pk", user_pk(project_id, user_id))))
        # a write that raced the purge may have re-cached the user
        self.registry.forget(project_id, user_id)
        self._forget_rows(project_id, user_id)

    async def rename(self, project_id: str, old: dict[str, Any], new_id: str) -> dict[str, Any]:
        """Move the user `old` (its users row) and all of its rows to `new_id`."""
        old_id = old["id"]
        await self.jobs.drain_user(project_id, old_id)
        active = self.registry.pending(project_id, old_id)
        self.registry.forget(project_id, old_id)
        self.idempotency.forget_user(project_id, old_id)
        row = user_row(project_id, replace(user_from_row(old), id=new_id))
        await self.store.writer("users").insert_absent([row])
        await owned.reown_user_rows(self.store, project_id, old_id, new_id)
        self._forget_rows(project_id, old_id)
        self._forget_rows(project_id, new_id)
        await self.store.writer("users").delete(str(Where().eq("pk", user_pk(project_id, old_id))))
        self.registry.remember(project_id, [new_id])
        if active is not None:
            self.registry.touch(project_id, [new_id], active)
        return row

    def _forget_rows(self, project_id: str, user_id: str) -> None:
        """Caches of rows the purge or rename rewrote behind their backs."""
        self.index.forget(project_id, user_id)
        self.sessions.forget_user(project_id, user_id)
        self.messages.forget_user(project_id, user_id)
