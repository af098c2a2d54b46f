"""User actions (GUMem's action log): what the user did, kept as memories of origin ACTION, so
search, filters, purges and extraction treat them as they treat every other memory.

GUMem's fields go into metadata under reserved keys (`action.event_type`, `action.page`,
`action.app`, `action.platform`, `action.device_id`, `action.log_id`, `anchor.<key>`), which the
exact metadata filters of ListMemories / SearchMemories already filter. A `log_id` determines the
memory id (project, user, log_id): recording it again finds the first action and returns it as
a duplicate, nothing written. Extraction reads a session's actions next to its messages
(`session_actions`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from memgrpc.core.conversation.records import Message
from memgrpc.core.conversation.session_store import SessionStore
from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import FieldViolation, InvalidArgument, Violations
from memgrpc.core.kernel.ids import derived_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.paging import PageRequest
from memgrpc.core.memory.model import Memory, MemoryQuery
from memgrpc.core.memory.service import MemoryService

RESERVED_PREFIXES = ("action.", "anchor.")
ACTION_FIELDS = ("event_type", "page", "app", "platform", "device_id", "log_id")
MAX_SHORT_CHARS = 128  # event_type, app, platform
MAX_PAGE_CHARS = 2048  # a page may be a URL
MAX_ANCHOR_VALUE_CHARS = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Action:
    """GUMem's ActionLogInput."""

    user_id: str
    content: str
    timestamp: datetime | None
    log_id: str = ""
    session_id: str = ""
    device_id: str = ""
    app: str = ""
    platform: str = ""
    event_type: str = ""
    page: str = ""
    anchors: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    entities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recorded:
    memory: Memory
    # log_id had been recorded before: `memory` is the first action's, nothing was written
    duplicate: bool


def _check_text(v: Violations, name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        v.add(name, f"must be at most {limit} characters")
    elif _CONTROL.search(value):
        v.add(name, "must not contain control characters")


def action_metadata(a: Action, v: Violations) -> dict[str, Any]:
    """The memory's metadata: the client's keys, then the reserved ones."""
    validation.check_metadata(v, "metadata", a.metadata)
    for key in a.metadata:
        if key.startswith(RESERVED_PREFIXES):
            v.add(f"metadata.{key[:40]}", "keys starting with 'action.' or 'anchor.' are reserved")
    out = dict(a.metadata)
    for name in ACTION_FIELDS:
        value = getattr(a, name)
        if value:
            out[f"action.{name}"] = value
    for key, value in a.anchors.items():
        full = f"anchor.{key}"
        if not key or len(full) > validation.MAX_LABEL_CHARS or "=" in key or _CONTROL.search(key):
            v.add(
                f"anchors.{key[:40]}",
                f"keys must be 1-{validation.MAX_LABEL_CHARS - len('anchor.')} characters, "
                "without '=' or control characters",
            )
        elif len(value) > MAX_ANCHOR_VALUE_CHARS or "\x00" in value:
            v.add(f"anchors.{key[:40]}", f"must be at most {MAX_ANCHOR_VALUE_CHARS} characters")
        out[full] = value
    if not v.items:
        validation.check_metadata(v, "metadata", out)  # the whole, with the reserved keys
    return out


def action_memory(a: Action, v: Violations) -> Memory:
    """The memory an action is stored as (not written yet); bad fields are added to `v`."""
    validation.check_id(v, "user_id", a.user_id, required=True)
    validation.check_content(v, "content", a.content)
    if a.timestamp is None:
        v.add("timestamp", "is required")
    for name in ("log_id", "session_id", "device_id"):
        validation.check_id(v, name, getattr(a, name), required=False)
    for name in ("event_type", "app", "platform"):
        _check_text(v, name, getattr(a, name), MAX_SHORT_CHARS)
    _check_text(v, "page", a.page, MAX_PAGE_CHARS)
    validation.check_labels(v, "entities", a.entities)
    metadata = action_metadata(a, v)
    return Memory(
        user_id=a.user_id,
        session_id=a.session_id,
        content=a.content,
        type="preference" if a.event_type == "preference_update" else "observation",
        metadata=metadata,
        event_time=a.timestamp,
        # entities are lowercase names (what connects memories)
        entities=list(dict.fromkeys(e.strip().lower() for e in a.entities if e.strip())),
        origin="action",
    )


class Actions:
    """RecordAction, and a session's actions for extraction."""

    def __init__(self, memories: MemoryService, sessions: SessionStore) -> None:
        self._memories = memories
        self._sessions = sessions
        self._locks = KeyedLocks()

    async def record(self, project_id: str, a: Action) -> Recorded:
        v = Violations()
        memory = action_memory(a, v)
        v.raise_if_any()
        if a.session_id:
            s = await self._sessions.require(project_id, a.session_id, "session_id")
            if s.user_id != a.user_id:
                raise InvalidArgument(
                    f"session {a.session_id} belongs to another user",
                    reason="SESSION_USER_MISMATCH",
                    metadata={"session_id": a.session_id},
                    violations=[FieldViolation("session_id", "is a session of another user")],
                )
            # an action in an agent session is part of that agent's memory of the user
            memory = replace(memory, agent_id=s.agent_id, instance_id=s.instance_id)
        if not a.log_id:
            return Recorded(await self._memories.create(project_id, memory), False)
        memory_id = derived_id("mem", project_id, a.user_id, a.log_id)
        async with self._locks.hold(f"{project_id}/{memory_id}"):
            found = await self._memories.get_many(project_id, [memory_id])
            if found:
                return Recorded(found[0], True)
            return Recorded(
                await self._memories.create(project_id, replace(memory, id=memory_id)), False
            )


async def session_actions(
    memories: MemoryService, project_id: str, user_id: str, session_id: str
) -> list[Message]:
    """The session's actions (not archived) as messages of role "action", in the order they
    happened: `id` and `memory_id` are the memory's id, `create_time` the action's time."""
    q = MemoryQuery(user_id=user_id, session_id=session_id, origins=("action",))
    found: list[Memory] = []
    token = ""
    while True:
        page = await memories.list(project_id, q, PageRequest(size=1000, token=token))
        found += page.items
        token = page.next_page_token
        if not token:
            break
    found.sort(key=lambda m: (m.event_time or datetime.min.replace(tzinfo=UTC), m.id))
    return [_as_message(m) for m in found]


def _as_message(m: Memory) -> Message:
    return Message(
        id=m.id,
        session_id=m.session_id,
        user_id=m.user_id,
        role="action",
        content=m.content,
        metadata=dict(m.metadata),
        create_time=m.event_time,
        memory_id=m.id,
    )
