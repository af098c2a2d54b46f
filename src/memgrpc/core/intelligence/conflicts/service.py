"""Merge conflicts (RecallrAI's): when a new fact contradicts current memories without saying
that anything changed, memgrpc asks instead of guessing.

Reconciliation opens a conflict (`ConflictService.open`); the new fact waits inside it and the
memories it contradicts are flagged (`conflict_id`, shown as merge_conflict_in_progress). The
user answers a clarifying question (`resolve`), and the answer is applied: the new fact becomes
a new version of the old one, is dropped (the conflict keeps it), or is kept beside it. Every
step can be re-run after a crash: the conflict's id derives from the opener's key, the row is
written before the flags, and applying an answer checks what is already there.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from memgrpc.core.intelligence.conflicts.answers import (
    check_answers,
    match,
    questions_for,
)
from memgrpc.core.intelligence.conflicts.rows import (
    CONFLICT_STATUSES,
    OPEN_STATUSES,
    Answer,
    Conflict,
    ConflictStatus,
    conflict_from_row,
    conflicting_from_row,
    dumps,
    memory_json,
    questions_from_row,
)
from memgrpc.core.intelligence.facts import SINGLE_SLOTS
from memgrpc.core.intelligence.reconcile import fact_metadata
from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import (
    DomainError,
    FailedPrecondition,
    NotFound,
    Violations,
)
from memgrpc.core.kernel.ids import derived_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.paging import Cursor, Page, PageRequest
from memgrpc.core.memory import checks
from memgrpc.core.memory.changes import Change, ChangeKind
from memgrpc.core.memory.model import Memory, Patch
from memgrpc.core.memory.service import MemoryService
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table

log = structlog.get_logger(__name__)

# origins memgrpc wrote itself and may version; a client's memory, a message, a summary or an
# action is of another kind: it is never rewritten, the new fact goes beside it
_OWN = ("extracted",)
_DERIVED = ("extracted", "action")
# what a chosen new fact takes over from the new memory when it versions the old one
_VERSION_FIELDS = frozenset(
    {"content", "type", "categories", "entities", "source_message_ids", "conflict_id",
     "profile_slot", "mention_count", "last_mentioned_time", "session_id", "metadata"}
)  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


def _not_found(conflict_id: str) -> NotFound:
    return NotFound(
        f"conflict {conflict_id} not found",
        reason="CONFLICT_NOT_FOUND",
        metadata={"id": conflict_id},
    )


def _already_resolved(conflict_id: str, detail: str = "is already resolved") -> FailedPrecondition:
    return FailedPrecondition(
        f"conflict {conflict_id} {detail}",
        reason="CONFLICT_ALREADY_RESOLVED",
        metadata={"id": conflict_id},
    )


def _merged(first: Sequence[str], then: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*first, *then]))


class ConflictService:
    def __init__(self, store: Store, memories: MemoryService) -> None:
        self._table = Table(store, "conflicts")
        self._memories = memories
        self._locks = KeyedLocks()

    # -- open ---------------------------------------------------------------------------------
    async def open(
        self,
        project_id: str,
        *,
        user_id: str,
        session_id: str,
        new_memory: Memory,
        conflicting: Sequence[tuple[Memory, str]],
        key: str,
    ) -> tuple[Conflict, bool]:
        """Open the conflict of `key` (or find it: created False). `key` must determine the
        conflict (e.g. the new fact's sources and content and the conflicting ids), so a re-run
        after a crash finds it and completes the flags instead of opening a second one."""
        v = Violations()
        validation.check_id(v, "user_id", user_id, required=True)
        validation.check_id(v, "session_id", session_id, required=False)
        if not key:
            v.add("key", "is required")
        checks.check_memory(v, new_memory, "new_memory")
        if not conflicting:
            v.add("conflicting", "must name at least one memory")
        for i, (m, _) in enumerate(conflicting):
            if not m.id:
                v.add(f"conflicting[{i}].id", "is required")
            if m.user_id and m.user_id != user_id:
                v.add(f"conflicting[{i}].user_id", "must be the conflict's user")
        v.raise_if_any()
        conflict_id = derived_id("cfl", project_id, user_id, key)
        ids = list(dict.fromkeys(m.id for m, _ in conflicting))
        async with self._locks.hold(f"{project_id}/{conflict_id}"):
            row = await self._find(project_id, conflict_id)
            created = row is None
            if row is None:
                row = self._new_row(
                    project_id, conflict_id, user_id, session_id, new_memory, conflicting
                )
                await self._table.writer.insert_absent([row])
                await self._memories.changes.record(
                    project_id,
                    [Change(ChangeKind.CONFLICT_OPENED, user_id, conflict_id=conflict_id)],
                )
            if row["status"] == "pending":
                await self._flag(project_id, conflict_id, ids)
            return (await self._conflicts(project_id, [row]))[0], created

    def _new_row(
        self,
        project_id: str,
        conflict_id: str,
        user_id: str,
        session_id: str,
        new: Memory,
        conflicting: Sequence[tuple[Memory, str]],
    ) -> Row:
        new = replace(
            new,
            user_id=user_id,
            session_id=new.session_id or session_id,
            type=new.type or "fact",
            origin=new.origin or "extracted",
            conflict_id="",
        )
        now = _now()
        questions = questions_for(new, [m for m, _ in conflicting])
        return {
            "id": conflict_id,
            "project_id": project_id,
            "user_id": user_id,
            "session_id": session_id or None,
            "status": "pending",
            "new_memory": memory_json(new),
            "conflicting": dumps(
                [{"id": m.id, "reason": r, "content": m.content} for m, r in conflicting]
            ),
            "memory_ids": list(dict.fromkeys(m.id for m, _ in conflicting)),
            "questions": dumps(
                [
                    {"question": q.question, "options": q.options, "choices": q.choices}
                    for q in questions
                ]
            ),
            "answers": None,
            "resolution": None,
            "create_time": now,
            "update_time": now,
            "resolve_time": None,
        }

    async def _flag(self, project_id: str, conflict_id: str, ids: Sequence[str]) -> None:
        """Mark the memories as in this conflict (those already in another one stay marked)."""
        for m in await self._memories.get_many(project_id, ids):
            if not m.conflict_id:
                await self._set_flag(project_id, m.id, conflict_id)

    async def _set_flag(self, project_id: str, memory_id: str, conflict_id: str) -> None:
        patch = Patch(Memory(id=memory_id, conflict_id=conflict_id), frozenset({"conflict_id"}))
        with contextlib.suppress(NotFound):  # deleted meanwhile: reported missing
            await self._memories.update(project_id, patch, internal=True)

    # -- read ---------------------------------------------------------------------------------
    async def get(self, project_id: str, conflict_id: str) -> Conflict:
        row = await self._require(project_id, conflict_id)
        return (await self._conflicts(project_id, [row]))[0]

    async def list(
        self, project_id: str, user_id: str, status: str, page: PageRequest
    ) -> Page[Conflict]:
        """The user's conflicts (of `status`, "" = all), newest first."""
        v = Violations()
        validation.check_id(v, "user_id", user_id, required=True)
        if status and status not in CONFLICT_STATUSES:
            v.add("status", f"unknown conflict status {status!r}")
        size = paging.page_size(v, page.size)
        v.raise_if_any()
        where = Where().eq("project_id", project_id).eq("user_id", user_id)
        if status:
            where.eq("status", status)

        async def read(
            after: Cursor[datetime] | None, limit: int
        ) -> tuple[builtins.list[Row], int]:
            return await asyncio.gather(
                self._table.page(where, "create_time", "id", desc=True, after=after, limit=limit),
                self._table.count(where),
            )

        fp = paging.fingerprint(project_id, "conflicts", user_id, status)
        found = await paging.fetch(
            size, page.token, fp, read, order=("create_time", "id"), kind=datetime, item=dict
        )
        items = await self._conflicts(project_id, found.items)
        return Page(items, found.next_page_token, found.total_size)

    async def _find(self, project_id: str, conflict_id: str) -> Row | None:
        return await self._table.first(Where().eq("project_id", project_id).eq("id", conflict_id))

    async def _require(self, project_id: str, conflict_id: str) -> Row:
        v = Violations()
        validation.check_id(v, "id", conflict_id, required=True)
        v.raise_if_any()
        row = await self._find(project_id, conflict_id)
        if row is None:
            raise _not_found(conflict_id)
        return row

    async def _conflicts(self, project_id: str, rows: Sequence[Row]) -> builtins.list[Conflict]:
        """The conflicts of `rows`, with their memories as they are now (one read for all)."""
        ids = list(dict.fromkeys(c["id"] for r in rows for c in conflicting_from_row(r)))
        current = {m.id: m for m in await self._memories.get_many(project_id, ids)}
        return [conflict_from_row(r, current) for r in rows]

    # -- resolve ------------------------------------------------------------------------------
    async def resolve(
        self, project_id: str, conflict_id: str, answers: Sequence[Answer]
    ) -> Conflict:
        """Apply the answers. PENDING -> IN_QUEUE -> RESOLVING -> RESOLVED, or FAILED (the
        conflict is returned so; resolving again retries). Resolving is re-runnable from any
        state but RESOLVED: every write checks what an earlier attempt already did."""
        v = Violations()
        validation.check_id(v, "id", conflict_id, required=True)
        check_answers(v, answers)
        v.raise_if_any()
        async with self._locks.hold(f"{project_id}/{conflict_id}"):
            row = await self._require(project_id, conflict_id)
            if row["status"] == "resolved":
                raise _already_resolved(conflict_id)
            choice = match(questions_from_row(row), answers)
            # the claim: another replica resolving it at the same moment changes the status first
            if not await self._move(project_id, conflict_id, row["status"], "in_queue"):
                raise _already_resolved(conflict_id, "is being resolved by another call")
            stored = [{"question": a.question, "answer": a.answer, "message": a.message}
                      for a in answers]  # fmt: skip
            await self._patch(conflict_id, answers=dumps(stored))
            await self._move(project_id, conflict_id, "in_queue", "resolving")
            try:
                done = await self._apply(project_id, row, choice)
            except Exception as exc:
                why = exc.message if isinstance(exc, DomainError) else "internal error"
                log.warning("conflict_resolve_failed", conflict_id=conflict_id, error=str(exc))
                await self._patch(
                    conflict_id,
                    status="failed",
                    resolution=f"failed: {why}; resolve again to retry",
                )
                if not isinstance(exc, DomainError):
                    raise
                return await self.get(project_id, conflict_id)
            said = [a.message for a in answers if a.message]
            if said:
                done += "; the user said: " + " / ".join(f'"{m}"' for m in said)
            await self._patch(conflict_id, status="resolved", resolution=done, resolve_time=_now())
            resolved = Change(ChangeKind.CONFLICT_RESOLVED, row["user_id"], conflict_id=conflict_id)
            await self._memories.changes.record(project_id, [resolved])
            return await self.get(project_id, conflict_id)

    async def _move(self, project_id: str, conflict_id: str, old: str, new: ConflictStatus) -> bool:
        where = Where().eq("project_id", project_id).eq("id", conflict_id).eq("status", old)
        return await self._table.writer.update(str(where), {"status": new}) > 0

    async def _patch(self, conflict_id: str, **values: Any) -> None:
        await self._table.writer.patch([{"id": conflict_id, "update_time": _now(), **values}])

    async def _apply(self, project_id: str, row: Row, choice: str) -> str:
        """Apply `choice`; returns what was done, in words."""
        c = (await self._conflicts(project_id, [row]))[0]
        first = c.conflicting[0] if c.conflicting else None
        handled: set[str] = set()
        kind, _, target = choice.partition(":")
        if kind == "new":
            if first is not None and not first.missing and first.memory.origin in _OWN:
                updated = await self._version(project_id, c, first.memory)
                handled.add(updated.id)
                done = f"kept the new fact as version {updated.version} of {updated.id}"
            else:
                made = await self._create(project_id, c, keep_slot=True)
                done = f"kept the new fact as the new memory {made.id}"
                if first is not None and not first.missing:
                    done += f"; {first.memory_id} ({first.memory.origin}) stays as it is"
        elif kind == "old":
            kept = target or (first.memory_id if first is not None else "")
            done = f"kept {kept} and dropped the new fact (this conflict keeps it)"
        else:
            made = await self._create(project_id, c, keep_slot=False)
            olds = ", ".join(x.memory_id for x in c.conflicting)
            done = f"kept both as true at different times: the new fact as {made.id} beside {olds}"
        for x in c.conflicting:
            if x.memory_id not in handled and not x.missing and x.memory.conflict_id == c.id:
                nxt = await self._next_flag(project_id, c, x.memory_id)
                await self._set_flag(project_id, x.memory_id, nxt)
        return done

    async def _version(self, project_id: str, c: Conflict, old: Memory) -> Memory:
        """The new fact as the next version of `old` (expire reason RESOLVED)."""
        new = c.new_memory
        changed = replace(
            old,
            content=new.content,
            type=new.type or old.type,
            categories=new.categories or old.categories,
            entities=new.entities or old.entities,
            source_message_ids=_merged(old.source_message_ids, new.source_message_ids),
            conflict_id=await self._next_flag(project_id, c, old.id),
            profile_slot=new.profile_slot or old.profile_slot,
            mention_count=max(new.mention_count, 1),
            last_mentioned_time=new.last_mentioned_time or _now(),
            session_id=new.session_id or old.session_id,
            # the slot's value, topic and negation are the new fact's (extraction's keys)
            metadata=fact_metadata(old.metadata, new.metadata),
        )
        patch = Patch(changed, _VERSION_FIELDS, reason="RESOLVED")
        return await self._memories.update(project_id, patch, internal=True)

    async def _create(self, project_id: str, c: Conflict, *, keep_slot: bool) -> Memory:
        """The new fact as a memory of its own (found, not made twice, on a re-run)."""
        new = c.new_memory
        memory_id = new.id if new.id and new.origin in _DERIVED else derived_id("mem", c.id)
        found = await self._memories.get_many(project_id, [memory_id])
        if found:
            return found[0]
        slot = new.profile_slot
        # a single-valued slot is backed by one memory: a fact kept beside it does not back it
        if (
            not keep_slot
            and slot in SINGLE_SLOTS
            and any(x.memory.profile_slot == slot for x in c.conflicting if not x.missing)
        ):
            slot = ""
        made = replace(
            new,
            id=memory_id,
            origin=new.origin if new.origin in _DERIVED else "extracted",
            profile_slot=slot,
            conflict_id="",
            mention_count=max(new.mention_count, 1),
            last_mentioned_time=new.last_mentioned_time or _now(),
        )
        return await self._memories.create(project_id, made)

    async def _next_flag(self, project_id: str, c: Conflict, memory_id: str) -> str:
        """Another open conflict naming the memory (it stays flagged), else ""."""
        where = (
            Where()
            .eq("project_id", project_id)
            .eq("user_id", c.user_id)
            .is_in("status", list(OPEN_STATUSES))
            .has_any("memory_ids", [memory_id])
        )
        rows = await self._table.rows(where, ["id", "create_time"])
        others = sorted((r["create_time"], r["id"]) for r in rows if r["id"] != c.id)
        return others[0][1] if others else ""
