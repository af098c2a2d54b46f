"""Custom states (Sonzai's agent states): small JSON or text values an app keeps per agent
(and instance), either one for the agent (GLOBAL) or one per user (USER), under a key.

The composite key (project, agent, instance, scope, user, key) is the row's identity; a
per-key lock makes Create's "exists?" check and its insert one step, so two concurrent Creates
of one key give one winner and one ALREADY_EXISTS.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import AlreadyExists, NotFound, Violations
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.paging import Cursor, Page, PageRequest
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table

StateScope = Literal["global", "user"]
JSON = "application/json"
TEXT = "text/plain"
CONTENT_TYPES = (JSON, TEXT)
MAX_VALUE_BYTES = 64 * 1024
_KEY = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")

# (project_id, agent_id, instance_id): NOT_FOUND unless the agent (and instance) exist
ScopeCheck = Callable[[str, str, str], Awaitable[None]]


@dataclass(frozen=True)
class StateKey:
    agent_id: str
    instance_id: str = ""
    scope: StateScope | None = None  # None: not given (a violation wherever a key is needed)
    user_id: str = ""
    key: str = ""


@dataclass(frozen=True)
class CustomState:
    """`value` is the JSON value when content_type is JSON, `text` the text otherwise."""

    key: StateKey
    content_type: str = ""
    value: Any = None
    has_value: bool = False
    text: str = ""
    create_time: datetime | None = None
    update_time: datetime | None = None


@dataclass(frozen=True)
class StateFilter:
    agent_id: str
    instance_id: str = ""
    scope: StateScope | None = None  # None = both
    user_id: str = ""


def check_key(v: Violations, name: str, k: StateKey) -> None:
    validation.check_id(v, f"{name}.agent_id", k.agent_id, required=True)
    validation.check_id(v, f"{name}.instance_id", k.instance_id, required=False)
    validation.check_id(v, f"{name}.user_id", k.user_id, required=False)
    if k.scope is None:
        v.add(f"{name}.scope", "is required (STATE_SCOPE_GLOBAL or STATE_SCOPE_USER)")
    elif k.scope == "user" and not k.user_id:
        v.add(f"{name}.user_id", "is required for STATE_SCOPE_USER")
    elif k.scope == "global" and k.user_id:
        v.add(f"{name}.user_id", "must be empty for STATE_SCOPE_GLOBAL")
    if not _KEY.fullmatch(k.key):
        v.add(f"{name}.key", "must be 1-128 characters: letters, digits, '_', '-', '.', ':'")


def resolve_content(v: Violations, name: str, s: CustomState) -> CustomState:
    """The state with its content type settled (empty = JSON when a value is set, else text)
    and checked against what it holds; the value's size is capped either way."""
    ctype = s.content_type or (JSON if s.has_value else TEXT)
    if ctype not in CONTENT_TYPES:
        v.add(f"{name}.content_type", f"must be {JSON} or {TEXT}")
        return s
    if ctype == JSON:
        if not s.has_value:
            v.add(f"{name}.value", f"is required when content_type is {JSON}")
        if s.text:
            v.add(f"{name}.text", f"must be empty when content_type is {JSON} (use value)")
        size = len(_dump(s.value).encode()) if s.has_value else 0
        field = "value"
    else:
        if s.has_value:
            v.add(f"{name}.value", f"must be unset when content_type is {TEXT} (use text)")
        size = len(s.text.encode())
        field = "text"
    if size > MAX_VALUE_BYTES:
        v.add(f"{name}.{field}", f"must be at most {MAX_VALUE_BYTES} bytes")
    if ctype == TEXT:
        return replace(s, content_type=ctype, value=None)
    return replace(s, content_type=ctype, text="")


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _pk(project_id: str, k: StateKey) -> str:
    raw = _dump([project_id, k.agent_id, k.instance_id, k.scope, k.user_id, k.key])
    return hashlib.sha256(raw.encode()).hexdigest()


def state_row(project_id: str, s: CustomState) -> Row:
    k = s.key
    return {
        "pk": _pk(project_id, k),
        "project_id": project_id,
        "agent_id": k.agent_id,
        "instance_id": k.instance_id or None,  # null = the agent's default state
        "scope": k.scope,
        "user_id": k.user_id or None,  # null = not per user
        "key": k.key,
        "content_type": s.content_type,
        "value": _dump(s.value) if s.content_type == JSON else s.text,
        "create_time": s.create_time,
        "update_time": s.update_time,
    }


def state_from_row(r: Row) -> CustomState:
    is_json = r["content_type"] == JSON
    return CustomState(
        key=StateKey(
            agent_id=r["agent_id"],
            instance_id=r["instance_id"] or "",
            scope=r["scope"],
            user_id=r["user_id"] or "",
            key=r["key"],
        ),
        content_type=r["content_type"],
        value=json.loads(r["value"]) if is_json else None,
        has_value=is_json,
        text="" if is_json else r["value"],
        create_time=r["create_time"],
        update_time=r["update_time"],
    )


def _instance(where: Where, instance_id: str) -> Where:
    return where.eq("instance_id", instance_id) if instance_id else where.is_null("instance_id")


class StateService:
    def __init__(self, store: Store, check_scope: ScopeCheck) -> None:
        self._table = Table(store, "agent_states")
        self._check_scope = check_scope
        self._locks = KeyedLocks()

    def _where(self, project_id: str, k: StateKey) -> Where:
        return Where().eq("project_id", project_id).eq("pk", _pk(project_id, k))

    async def _valid(self, project_id: str, s: CustomState) -> CustomState:
        v = Violations()
        check_key(v, "state", s.key)
        s = resolve_content(v, "state", s)
        v.raise_if_any()
        await self._check_scope(project_id, s.key.agent_id, s.key.instance_id)
        return s

    async def _find(self, project_id: str, k: StateKey) -> Row | None:
        return await self._table.first(self._where(project_id, k))

    @staticmethod
    def _not_found(k: StateKey) -> NotFound:
        return NotFound(
            f"state {k.key!r} not found", reason="STATE_NOT_FOUND", metadata={"key": k.key}
        )

    async def create(self, project_id: str, s: CustomState) -> CustomState:
        """ALREADY_EXISTS when the key has a state."""
        s = await self._valid(project_id, s)
        async with self._locks.hold(_pk(project_id, s.key)):
            if await self._find(project_id, s.key) is not None:
                raise AlreadyExists(
                    f"state {s.key.key!r} already exists",
                    reason="STATE_ALREADY_EXISTS",
                    metadata={"key": s.key.key},
                )
            now = datetime.now(UTC)
            made = replace(s, create_time=now, update_time=now)
            await self._table.writer.insert([state_row(project_id, made)])
            return made

    async def upsert(self, project_id: str, s: CustomState) -> CustomState:
        """Creates or replaces; a replaced state keeps its create_time."""
        s = await self._valid(project_id, s)
        async with self._locks.hold(_pk(project_id, s.key)):
            current = await self._find(project_id, s.key)
            now = datetime.now(UTC)
            made = replace(
                s, create_time=current["create_time"] if current else now, update_time=now
            )
            await self._table.writer.upsert([state_row(project_id, made)])
            return made

    def _checked_key(self, k: StateKey) -> None:
        v = Violations()
        check_key(v, "key", k)
        v.raise_if_any()

    async def get(self, project_id: str, k: StateKey) -> CustomState:
        self._checked_key(k)
        row = await self._find(project_id, k)
        if row is None:
            raise self._not_found(k)
        return state_from_row(row)

    async def delete(self, project_id: str, k: StateKey) -> None:
        self._checked_key(k)
        async with self._locks.hold(_pk(project_id, k)):
            if await self._find(project_id, k) is None:
                raise self._not_found(k)
            await self._table.writer.delete(str(self._where(project_id, k)))

    async def list(self, project_id: str, f: StateFilter, page: PageRequest) -> Page[CustomState]:
        """By key (then the row's identity), with the total count."""
        v = Violations()
        validation.check_id(v, "agent_id", f.agent_id, required=True)
        validation.check_id(v, "instance_id", f.instance_id, required=False)
        validation.check_id(v, "user_id", f.user_id, required=False)
        if f.scope == "global" and f.user_id:
            v.add("user_id", "must be empty when scope is STATE_SCOPE_GLOBAL")
        size = paging.page_size(v, page.size)
        v.raise_if_any()
        await self._check_scope(project_id, f.agent_id, f.instance_id)
        where = _instance(
            Where().eq("project_id", project_id).eq("agent_id", f.agent_id), f.instance_id
        )
        if f.scope is not None:
            where.eq("scope", f.scope)
        if f.user_id and f.scope is None:  # this user's states plus the agent's global ones
            where.either(
                Where().eq("scope", "user").eq("user_id", f.user_id), Where().eq("scope", "global")
            )
        elif f.user_id:
            where.eq("user_id", f.user_id)
        table = self._table

        async def read(after: Cursor[str] | None, limit: int) -> tuple[list[Row], int]:
            rows = await table.page(where, "key", "pk", desc=False, after=after, limit=limit)
            return rows, await table.count(where)

        return await paging.fetch(
            size,
            page.token,
            paging.fingerprint(project_id, "agent_states", f),
            read,
            order=("key", "pk"),
            kind=str,
            item=state_from_row,
        )
