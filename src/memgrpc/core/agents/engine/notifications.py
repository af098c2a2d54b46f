"""Proactive notifications: checks that make pending messages the agent would send on its own.

Checks (deterministic; dates come from the message times, see dates.py):
  follow_up   the user mentioned a dated event ("my driving test is tomorrow"): due the day
              after it (00:00 UTC), asking how it went
  due_task    the user mentioned something to do by a date ("finish my thesis by Friday"):
              due the day after the deadline, asking whether it got done
  inactivity  no message for `inactivity` (default 7 days) since the last one: a check-in
A notification is made once its due time has passed (a follow-up never comes before the
event). Its id is derived from its cause (the event's message and day; the last interaction
for inactivity), so no check, sweep or replica makes the same notification twice, consumed or
not. They run from the background sweep (`NotificationSweeper`, rows whose next check is due,
a bounded batch per tick) and on demand (RunNotificationChecks). Offline the message is a
template; with an LLM configured the model writes it (a bad answer keeps the template).
ConsumeNotification is idempotent: consuming a consumed notification returns it unchanged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from memgrpc.core.agents.engine.llm import EngineLlm, text
from memgrpc.core.agents.engine.relations import (
    ContextEngine,
    State,
    event_due,
    scope_of,
)
from memgrpc.core.agents.turns import Scope
from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import NotFound, Violations
from memgrpc.core.kernel.ids import derived_id
from memgrpc.core.kernel.paging import Cursor, Page, PageRequest
from memgrpc.core.kernel.periodic import Periodic
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table

log = structlog.get_logger(__name__)

STATUSES = ("pending", "consumed")
_MAX_RELATIONS = 10_000  # relations one RunNotificationChecks looks at


@dataclass
class Notification:
    id: str
    agent_id: str
    instance_id: str
    user_id: str
    check_type: str
    generated_message: str
    status: str = "pending"
    due_time: datetime | None = None
    create_time: datetime | None = None
    consume_time: datetime | None = None
    source_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def _row(project_id: str, n: Notification) -> Row:
    return {
        "id": n.id,
        "project_id": project_id,
        "agent_id": n.agent_id,
        "instance_id": n.instance_id or None,
        "user_id": n.user_id,
        "check_type": n.check_type,
        "generated_message": n.generated_message,
        "status": n.status,
        "due_time": n.due_time,
        "create_time": n.create_time,
        "consume_time": n.consume_time,
        "source_id": n.source_id or None,
        "metadata": json.dumps(n.metadata),
    }


def from_row(r: Row) -> Notification:
    return Notification(
        id=r["id"],
        agent_id=r["agent_id"],
        instance_id=r["instance_id"] or "",
        user_id=r["user_id"],
        check_type=r["check_type"] or "",
        generated_message=r["generated_message"] or "",
        status=r["status"] or "pending",
        due_time=r["due_time"],
        create_time=r["create_time"],
        consume_time=r["consume_time"],
        source_id=r["source_id"] or "",
        metadata=json.loads(r["metadata"] or "{}"),
    )


def template(check_type: str, cause: dict[str, Any]) -> str:
    """The offline message of each check."""
    if check_type == "follow_up":
        what, sentence = cause["what"], cause["sentence"]
        day = datetime.fromisoformat(cause["day"]).strftime("%A %d %B")
        if f"my {what}" in sentence.lower() or f"our {what}" in sentence.lower():
            return f"How did your {what} go? You mentioned it was on {day}."
        return f'You told me "{sentence}". How did it go?'
    if check_type == "due_task":
        day = datetime.fromisoformat(cause["day"]).strftime("%A %d %B")
        return f"Did you manage to {cause['what']}? It was due on {day}."
    return (
        f"It has been {cause['days']} days since we last talked. How have you been? "
        "I'd love to hear what you have been up to."
    )


class Notifications:
    def __init__(
        self, store: Store, engine: ContextEngine, *, llm: EngineLlm | None = None
    ) -> None:
        self._rows = Table(store, "notifications")
        self._engine = engine
        self._llm = llm

    # -- checks -------------------------------------------------------------------------------
    async def run_checks(
        self, project_id: str, agent_id: str, user_id: str, now: datetime | None
    ) -> list[Notification]:
        """The checks for the agent's relations (one user's, or all); what they created."""
        await self._engine.require(project_id, agent_id, user_id, user_required=False)
        where = Where().eq("project_id", project_id).eq("agent_id", agent_id)
        if user_id:
            where = where.eq("user_id", user_id)
        rows = await self._engine.relation_rows(where, limit=_MAX_RELATIONS)
        return await self.check_rows(rows, now or datetime.now(UTC))

    async def check_rows(self, rows: Sequence[Row], now: datetime) -> list[Notification]:
        made: list[Notification] = []
        for r in rows:
            made += await self._check(r["project_id"], scope_of(r), now)
        return made

    async def _check(self, project_id: str, scope: Scope, now: datetime) -> list[Notification]:
        async with self._engine.lock(project_id, scope):
            st = await self._engine.load(project_id, scope)
            due = self._due(project_id, scope, st, now)
            if not due:
                return []
            ids = [n.id for n, _ in due]
            have = {
                r["id"]
                for r in await self._rows.by_keys(
                    Where().eq("project_id", project_id), "id", ids, ["id"]
                )
            }
            fresh = []
            for n, cause in due:
                if n.id not in have:
                    n.generated_message = await self._message(
                        project_id, n.check_type, cause, scope
                    )
                    fresh.append(n)
            if fresh:
                await self._rows.writer.insert([_row(project_id, n) for n in fresh])
            await self._engine.save(project_id, scope, st)  # the causes are marked done
            if fresh:
                log.info("notifications_created", agent_id=scope.agent_id, count=len(fresh))
            return fresh

    def _due(
        self, project_id: str, scope: Scope, st: State, now: datetime
    ) -> list[tuple[Notification, dict[str, Any]]]:
        """The notifications whose time has come; marks their causes done in `st`."""
        out: list[tuple[Notification, dict[str, Any]]] = []
        for e in st.events:
            if e["done"] or now < event_due(e):
                continue
            e["done"] = True
            kind = "follow_up" if e["kind"] == "event" else "due_task"
            out.append((self._new(project_id, scope, kind, e["key"], event_due(e), now, e), e))
        last = st.relationship.last_interaction_time
        if (
            last is not None
            and st.inactivity_noticed != last
            and now >= last + self._engine.inactivity
        ):
            st.inactivity_noticed = last
            cause = {"days": (now - last).days, "last_interaction": last.isoformat()}
            n = self._new(
                project_id, scope, "inactivity", last.isoformat(), last + self._engine.inactivity,
                now, cause,
            )  # fmt: skip
            out.append((n, cause))
        return out

    @staticmethod
    def _new(
        project_id: str,
        scope: Scope,
        check_type: str,
        cause_key: str,
        due: datetime,
        now: datetime,
        cause: dict[str, Any],
    ) -> Notification:
        nid = derived_id(
            "ntf", project_id, scope.agent_id, scope.instance_id, scope.user_id, check_type,
            cause_key,
        )  # fmt: skip
        meta: dict[str, Any] = {k: cause[k] for k in ("what", "day", "sentence") if k in cause}
        return Notification(
            id=nid,
            agent_id=scope.agent_id,
            instance_id=scope.instance_id,
            user_id=scope.user_id,
            check_type=check_type,
            generated_message="",
            due_time=due,
            create_time=now,
            source_id=str(cause.get("message_id", "")),
            metadata=meta,
        )

    async def _message(
        self, project_id: str, check_type: str, cause: dict[str, Any], scope: Scope
    ) -> str:
        fallback = template(check_type, cause)
        if self._llm is None:
            return fallback
        payload = {"task": "notification", "check_type": check_type, "user_id": scope.user_id}
        payload |= {k: v for k, v in cause.items() if k != "done"}
        written = await self._llm.ask(project_id, payload, lambda js: text(js["message"], 2000))
        return written if written is not None else fallback

    # -- reads and consume --------------------------------------------------------------------
    async def list(
        self,
        project_id: str,
        agent_id: str,
        user_id: str,
        instance_id: str,
        status: str,
        page: PageRequest,
    ) -> Page[Notification]:
        """Due time, newest first; empty user_id / instance_id = every user / instance."""
        v = Violations()
        validation.check_id(v, "agent_id", agent_id, required=True)
        validation.check_id(v, "user_id", user_id, required=False)
        validation.check_id(v, "instance_id", instance_id, required=False)
        size = paging.page_size(v, page.size)
        v.raise_if_any()
        await self._engine.require(project_id, agent_id, user_id, instance_id, user_required=False)
        where = Where().eq("project_id", project_id).eq("agent_id", agent_id).eq("status", status)
        if user_id:
            where = where.eq("user_id", user_id)
        if instance_id:
            where = where.eq("instance_id", instance_id)
        table = self._rows

        async def read(after: Cursor[datetime] | None, limit: int) -> tuple[list[Row], int]:
            return await asyncio.gather(
                table.page(where, "due_time", "id", desc=True, after=after, limit=limit),
                table.count(where),
            )

        fp = paging.fingerprint(project_id, agent_id, user_id, instance_id, status, "ntf")
        return await paging.fetch(
            size, page.token, fp, read, order=("due_time", "id"), kind=datetime, item=from_row
        )

    async def consume(self, project_id: str, agent_id: str, notification_id: str) -> Notification:
        """PENDING -> CONSUMED; a consumed one is returned as it is (idempotent)."""
        v = Violations()
        validation.check_id(v, "agent_id", agent_id, required=True)
        validation.check_id(v, "notification_id", notification_id, required=True)
        v.raise_if_any()
        await self._engine.require(project_id, agent_id, "", user_required=False)
        where = Where().eq("project_id", project_id).eq("agent_id", agent_id)
        row = await self._rows.first(where.eq("id", notification_id))
        if row is None:
            raise NotFound(
                f"notification {notification_id} not found",
                reason="NOTIFICATION_NOT_FOUND",
                metadata={"id": notification_id},
            )
        n = from_row(row)
        if n.status == "consumed":
            return n
        n.status, n.consume_time = "consumed", datetime.now(UTC)
        await self._rows.writer.patch(
            [{"id": n.id, "status": n.status, "consume_time": n.consume_time}]
        )
        return n


class NotificationSweeper(Periodic):
    """Every `interval_s`: run the checks of at most `batch` relations whose next check is due
    (the engine keeps `next_check_time` on each relation), across projects."""

    name = "notify"

    def __init__(
        self,
        engine: ContextEngine,
        notifications: Notifications,
        *,
        interval_s: float = 60.0,
        batch: int = 100,
    ) -> None:
        super().__init__(interval_s)
        self._engine = engine
        self._notifications = notifications
        self.batch = batch

    async def run_once(self, now: datetime | None = None) -> int:
        """One sweep; how many notifications it created."""
        now = now or datetime.now(UTC)
        rows = await self._engine.relation_rows(
            Where().cmp("next_check_time", "<=", now), limit=self.batch
        )
        return len(await self._notifications.check_rows(rows, now))
