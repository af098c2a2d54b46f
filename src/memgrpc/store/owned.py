"""Which tables hold rows of an end user, and how to purge or re-own them all at once.

A table that stores per-user rows registers its user column in USER_COLUMNS; DeleteUser and a
rename then cover it with no further change. `users` itself is handled by the caller (its key
embeds the user id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.memories import DOC, MemoryTable
from memgrpc.store.tables import chunks

# table -> the column naming the row's user (every such table also has `project_id`)
USER_COLUMNS: Mapping[str, str] = {
    "memories": "user_id",
    "memory_versions": "user_id",
    "messages": "user_id",
    "sessions": "user_id",
    "jobs": "user_id",
    "requests": "user_id",
    "chat_results": "user_id",
    "conflicts": "user_id",
    "agent_states": "user_id",
    "agent_relations": "user_id",
    "agent_diary": "user_id",
    "notifications": "user_id",
}


def user_where(project_id: str, column: str, user_id: str) -> Where:
    return Where().eq("project_id", project_id).eq(column, user_id)


async def delete_user_rows(store: Store, project_id: str, user_id: str) -> None:
    """Delete every row of the user in every registered table, one commit per table."""
    for table, column in USER_COLUMNS.items():
        where = user_where(project_id, column, user_id)
        if await store.table(table).count_rows(str(where)):
            await store.writer(table).delete(str(where))


async def reown_user_rows(store: Store, project_id: str, old_id: str, new_id: str) -> None:
    """Move every row of `old_id` to `new_id` (a rename carries all of the user's data)."""
    for table, column in USER_COLUMNS.items():
        where = user_where(project_id, column, old_id)
        if await store.table(table).count_rows(str(where)):
            values: dict[str, str | None] = {column: new_id}
            if table == "memories":  # its doc copies the columns: voided here, refilled below
                values[DOC] = None
            await store.writer(table).update(str(where), values)
    await MemoryTable(store).fill_docs(project_id=project_id, user_id=new_id)


async def count_user_rows(store: Store, project_id: str, user_id: str) -> dict[str, int]:
    """Rows per registered table (what a purge must bring to zero)."""
    out = {}
    for table, column in USER_COLUMNS.items():
        where = user_where(project_id, column, user_id)
        out[table] = int(await store.table(table).count_rows(str(where)))
    return out


# Tables that hold an agent's per-user state; each has `project_id`, `agent_id`, `instance_id`
# (null = the agent's default state) and `user_id` (null = not per user) columns. DeleteAgent,
# DeleteInstance and ResetInstance cover every table listed here with no further change.
AGENT_TABLES: tuple[str, ...] = (
    "sessions",
    "messages",
    "memories",
    "memory_versions",
    "agent_states",
    "agent_relations",
    "agent_diary",
    "notifications",
)
# Tables whose rows belong to a session (jobs, background chat turns, merge conflicts) without
# scope columns of their own: an agent purge deletes those of the scope's sessions.
SESSION_TABLES: tuple[str, ...] = ("jobs", "chat_results", "conflicts")


def agent_where(project_id: str, agent_id: str, instance_id: str = "", user_id: str = "") -> Where:
    """The agent's rows; narrowed to one instance and/or one user when those are given."""
    where = Where().eq("project_id", project_id).eq("agent_id", agent_id)
    if instance_id:
        where = where.eq("instance_id", instance_id)
    if user_id:
        where = where.eq("user_id", user_id)
    return where


async def delete_agent_rows(
    store: Store, project_id: str, agent_id: str, instance_id: str = "", user_id: str = ""
) -> None:
    """Delete the agent's (instance's, user's) rows in every registered table: first what hangs
    off its sessions, then the scoped rows (sessions among them), so a retry finds them all."""
    where = str(agent_where(project_id, agent_id, instance_id, user_id))
    for part in chunks(await _scope_sessions(store, where)):
        for table in SESSION_TABLES:
            of_sessions = str(_of_sessions(project_id, part))
            if await store.table(table).count_rows(of_sessions):
                await store.writer(table).delete(of_sessions)
    for table in AGENT_TABLES:
        if await store.table(table).count_rows(where):
            await store.writer(table).delete(where)


async def count_agent_rows(
    store: Store, project_id: str, agent_id: str, instance_id: str = "", user_id: str = ""
) -> dict[str, int]:
    """Rows per registered table (what a purge or reset must bring to zero)."""
    where = str(agent_where(project_id, agent_id, instance_id, user_id))
    out = {t: int(await store.table(t).count_rows(where)) for t in AGENT_TABLES}
    parts = chunks(await _scope_sessions(store, where))
    for table in SESSION_TABLES:
        counts = [
            await store.table(table).count_rows(str(_of_sessions(project_id, p))) for p in parts
        ]
        out[table] = int(sum(counts))
    return out


def _of_sessions(project_id: str, session_ids: Sequence[str]) -> Where:
    return Where().eq("project_id", project_id).is_in("session_id", list(session_ids))


async def _scope_sessions(store: Store, sessions_where: str) -> list[str]:
    q = store.table("sessions").query().where(sessions_where).select(["id"])
    return [r["id"] for r in (await q.to_arrow()).to_pylist()]
