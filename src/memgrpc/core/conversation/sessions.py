"""Sessions (GUMem sessions, Sovant threads, RecallrAI sessions): create, read, update, list,
delete with everything made from them, and linking existing memories into them."""

from __future__ import annotations

import asyncio
import builtins
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from memgrpc.core.conversation.jobs import JobRunner
from memgrpc.core.conversation.messages import MessageService
from memgrpc.core.conversation.records import (
    Session,
    SessionStatus,
    due_time,
    session_from_row,
)
from memgrpc.core.conversation.session_store import SessionStore, session_key
from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import FailedPrecondition, Violations
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.paging import Cursor, Page, PageRequest
from memgrpc.core.memory.model import Memory, Patch
from memgrpc.core.memory.service import MemoryService
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table

MAX_TITLE_CHARS = 1000
MAX_AUTO_PROCESS = timedelta(days=365)
UPDATABLE = ("title", "metadata", "auto_process_after")
# memories of these types belong to the session itself and go with it
_SESSION_MADE = ("message", "summary")
# deletes what another package made of a session: (project_id, session_id)
SessionCleanup = Callable[[str, str], Awaitable[None]]
# (project_id, agent_id, instance_id) -> raises NotFound when the scope does not exist
ScopeCheck = Callable[[str, str, str], Awaitable[None]]
MAX_NAME_CHARS = 200


def check_scope(v: Violations, prefix: str, agent_id: str, instance_id: str) -> None:
    """An agent scope is well formed: ids shaped as ids, an instance only with its agent."""
    validation.check_id(v, f"{prefix}.agent_id", agent_id, required=False)
    validation.check_id(v, f"{prefix}.instance_id", instance_id, required=False)
    if instance_id and not agent_id:
        v.add(f"{prefix}.instance_id", "requires agent_id")


@dataclass(frozen=True)
class SessionQuery:
    user_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    user_metadata: dict[str, Any] = field(default_factory=dict)
    statuses: tuple[SessionStatus, ...] = ()


def check_session(v: Violations, s: Session, prefix: str, fields: set[str]) -> None:
    if "title" in fields:
        if len(s.title) > MAX_TITLE_CHARS:
            v.add(f"{prefix}.title", f"must be at most {MAX_TITLE_CHARS} characters")
        elif "\x00" in s.title:
            v.add(f"{prefix}.title", "must not contain NUL characters")
    if "metadata" in fields:
        validation.check_metadata(v, f"{prefix}.metadata", s.metadata)
    after = s.auto_process_after
    if "auto_process_after" in fields and after is not None:
        secs = after.total_seconds()
        if not math.isfinite(secs) or secs <= 0 or after > MAX_AUTO_PROCESS:
            v.add(f"{prefix}.auto_process_after", "must be more than 0 and at most 365 days")


class SessionService:
    def __init__(
        self,
        store: Store,
        sessions: SessionStore,
        messages: MessageService,
        jobs: JobRunner,
        memories: MemoryService,
    ) -> None:
        self._store = sessions
        self._users = Table(store, "users")
        self._messages = messages
        self._jobs = jobs
        self._memories = memories
        self._cleanups: builtins.list[SessionCleanup] = []
        self._scope_check: ScopeCheck | None = None

    def check_scope_with(self, check: ScopeCheck) -> None:
        """Have `check` confirm a new session's agent (and instance) exist in its project; the
        agents package owns them, so it plugs this in rather than being imported here."""
        self._scope_check = check

    def on_delete(self, cleanup: SessionCleanup) -> None:
        """Have `cleanup` delete what its package made of a session when the session is
        deleted: under the session's lock, after its messages and memories and before its row,
        so a failure leaves the session, and the delete retryable."""
        self._cleanups.append(cleanup)

    async def create(self, project_id: str, s: Session) -> Session:
        v = Violations()
        validation.check_id(v, "session.user_id", s.user_id, required=True)
        check_session(v, s, "session", set(UPDATABLE))
        check_scope(v, "session", s.agent_id, s.instance_id)
        for name, value in (("provider", s.provider), ("model", s.model)):
            if len(value) > MAX_NAME_CHARS:
                v.add(f"session.{name}", f"must be at most {MAX_NAME_CHARS} characters")
        v.raise_if_any()
        if s.agent_id and self._scope_check is not None:
            await self._scope_check(project_id, s.agent_id, s.instance_id)
        now = datetime.now(UTC)
        made = Session(
            id=new_id("ses"),
            user_id=s.user_id,
            title=s.title,
            metadata=s.metadata,
            status="active",
            auto_process_after=s.auto_process_after,
            create_time=now,
            update_time=now,
            agent_id=s.agent_id,
            instance_id=s.instance_id,
            provider=s.provider,
            model=s.model,
        )
        await self._memories.users.ensure(project_id, {s.user_id}, active=False)
        await self._store.insert(project_id, made, now)
        self._messages.created(project_id, made.id)
        return made

    async def get(self, project_id: str, session_id: str) -> Session:
        return await self._store.require(project_id, session_id)

    async def update(self, project_id: str, s: Session, fields: frozenset[str]) -> Session:
        if "*" in fields:
            fields = frozenset(UPDATABLE)
        v = Violations()
        validation.check_id(v, "session.id", s.id, required=True)
        for f in sorted(fields - set(UPDATABLE)):
            v.add("update_mask", f"field {f!r} cannot be updated (only {', '.join(UPDATABLE)})")
        check_session(v, s, "session", set(fields))
        v.raise_if_any()
        async with self._store.locks.hold(session_key(project_id, s.id)):
            row = await self._store.require_row(project_id, s.id, "session.id")
            current = session_from_row(row)
            now = datetime.now(UTC)
            changed = replace(current, **{f: getattr(s, f) for f in fields}, update_time=now)
            await self._store.patch(
                project_id,
                {
                    "id": changed.id,
                    "title": changed.title,
                    "metadata": validation.canonical_json(changed.metadata),
                    "metadata_kv": validation.metadata_pairs(changed.metadata),
                    "auto_process_after_s": (
                        changed.auto_process_after.total_seconds()
                        if changed.auto_process_after is not None
                        else None
                    ),
                    "auto_process_at": due_time(row["active_time"], changed.auto_process_after),
                    "update_time": now,
                },
            )
            return changed

    async def delete(self, project_id: str, session_id: str) -> None:
        """The session, its messages, the memories made from them (and its summary), its jobs
        and what other packages made of it (`on_delete`). Memories only linked to it stay,
        unlinked."""
        async with self._store.locks.hold(session_key(project_id, session_id)):
            await self._store.require_row(project_id, session_id)
            await self._jobs.cancel_session(project_id, session_id)
            message_ids = await self._messages.ids_in_session(project_id, session_id)
            memories = await self._memories.in_session(project_id, session_id)
            made = [
                m.id
                for m in memories
                if m.type in _SESSION_MADE or message_ids.intersection(m.source_message_ids)
            ]
            linked = [m.id for m in memories if m.id not in set(made)]
            # messages first: a crash part-way leaves memories without messages, never the reverse
            await self._messages.delete_session(project_id, session_id)
            await self._memories.delete_many(project_id, made)
            for memory_id in linked:
                await self._memories.update(
                    project_id,
                    Patch(Memory(id=memory_id, session_id=""), frozenset({"session_id"})),
                )
            await self._jobs.delete_session(project_id, session_id)
            for cleanup in self._cleanups:
                await cleanup(project_id, session_id)
            await self._store.delete(project_id, session_id)

    async def list(self, project_id: str, q: SessionQuery, page: PageRequest) -> Page[Session]:
        """Newest first, keyset-paged by (create_time, id), with the total count."""
        v = Violations()
        validation.check_id(v, "user_id", q.user_id, required=False)
        validation.check_metadata(v, "metadata_filter", q.metadata)
        validation.check_metadata(v, "user_metadata_filter", q.user_metadata)
        size = paging.page_size(v, page.size)
        v.raise_if_any()
        where = Where().eq("project_id", project_id)
        if q.user_id:
            where.eq("user_id", q.user_id)
        if q.metadata:
            where.has_all("metadata_kv", validation.metadata_pairs(q.metadata))
        if q.statuses:
            where.is_in("status", list(q.statuses))
        if q.user_metadata:
            where.is_in("user_id", await self._users_matching(project_id, q.user_metadata))
        table = self._store.table

        async def read(after: Cursor[datetime] | None, limit: int) -> tuple[list[Row], int]:
            return await asyncio.gather(
                table.page(where, "create_time", "id", desc=True, after=after, limit=limit),
                table.count(where),
            )

        fp = paging.fingerprint(project_id, q.user_id, q.metadata, q.user_metadata, q.statuses)
        return await paging.fetch(
            size,
            page.token,
            fp,
            read,
            order=("create_time", "id"),
            kind=datetime,
            item=session_from_row,
        )

    async def _users_matching(
        self, project_id: str, metadata: dict[str, Any]
    ) -> builtins.list[str]:
        where = Where().eq("project_id", project_id)
        where.has_all("metadata_kv", validation.metadata_pairs(metadata))
        return sorted(r["id"] for r in await self._users.rows(where, ["id"]))

    async def link_memory(self, project_id: str, session_id: str, memory_id: str) -> Memory:
        """Attach an existing memory of the session's user to the session (a Sovant thread)."""
        v = Violations()
        validation.check_id(v, "session_id", session_id, required=True)
        validation.check_id(v, "memory_id", memory_id, required=True)
        v.raise_if_any()
        s = await self._store.require(project_id, session_id, "session_id")
        m = await self._memories.get(project_id, memory_id)
        if m.user_id != s.user_id:
            raise FailedPrecondition(
                f"memory {memory_id} belongs to another user than session {session_id}",
                reason="USER_MISMATCH",
                metadata={"session_id": session_id, "memory_id": memory_id},
            )
        if m.session_id == session_id:
            return m
        patch = Patch(Memory(id=memory_id, session_id=session_id), frozenset({"session_id"}))
        return await self._memories.update(project_id, patch)
