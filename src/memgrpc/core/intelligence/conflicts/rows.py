"""Merge conflicts as domain records, and their `conflicts` rows (store/schemas.CONFLICTS).

The new fact waits inside its conflict as JSON, not as a memory: it becomes one only when the
conflict is resolved in its favour, so an unresolved contradiction never shows up in recall.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

from memgrpc.core.memory.model import Memory

ConflictStatus = Literal["pending", "in_queue", "resolving", "resolved", "failed"]
# in the order of the ConflictStatus enum (CONFLICT_STATUS_PENDING = 1, ...)
CONFLICT_STATUSES: tuple[ConflictStatus, ...] = (
    "pending",
    "in_queue",
    "resolving",
    "resolved",
    "failed",
)
# every status but resolved: the conflict still holds its memories
OPEN_STATUSES: tuple[ConflictStatus, ...] = ("pending", "in_queue", "resolving", "failed")
_TIMES = ("event_time", "create_time", "update_time", "last_mentioned_time")
_MEMORY_FIELDS = frozenset(f.name for f in fields(Memory))


@dataclass
class ClarifyingQuestion:
    question: str
    options: list[str]
    # what each option means, parallel to `options`: "new", "old:<memory id>" or "both"
    choices: list[str] = field(default_factory=list)


@dataclass
class ConflictingMemory:
    memory_id: str
    reason: str
    # the memory now; when it has been deleted since, what it said when the conflict opened
    memory: Memory
    missing: bool = False


@dataclass
class Answer:
    question: str
    answer: str
    message: str = ""


@dataclass
class Conflict:
    id: str
    user_id: str
    status: ConflictStatus
    new_memory: Memory
    conflicting: list[ConflictingMemory]
    questions: list[ClarifyingQuestion]
    session_id: str = ""
    create_time: datetime | None = None
    resolve_time: datetime | None = None
    resolution: str = ""
    answers: list[Answer] = field(default_factory=list)


def memory_json(m: Memory) -> str:
    d = asdict(m)
    for c in _TIMES:
        if d[c] is not None:
            d[c] = d[c].isoformat()
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def memory_from_json(raw: str) -> Memory:
    d = {k: v for k, v in json.loads(raw).items() if k in _MEMORY_FIELDS}
    for c in _TIMES:
        if d.get(c) is not None:
            d[c] = datetime.fromisoformat(d[c])
    return Memory(**d)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def questions_from_row(row: dict[str, Any]) -> list[ClarifyingQuestion]:
    return [
        ClarifyingQuestion(q["question"], list(q["options"]), list(q.get("choices") or []))
        for q in json.loads(row.get("questions") or "[]")
    ]


def answers_from_row(row: dict[str, Any]) -> list[Answer]:
    return [
        Answer(a["question"], a["answer"], a.get("message") or "")
        for a in json.loads(row.get("answers") or "[]")
    ]


def conflicting_from_row(row: dict[str, Any]) -> list[dict[str, str]]:
    """[{"id", "reason", "content"}]: the memories as named when the conflict opened."""
    out: list[dict[str, str]] = json.loads(row.get("conflicting") or "[]")
    return out


def conflict_from_row(row: dict[str, Any], current: dict[str, Memory]) -> Conflict:
    """The conflict of `row`, showing its memories as they are now (`current`, by id)."""
    user_id = row["user_id"]  # a rename re-owns the row; the JSON inside keeps the old name
    conflicting = []
    for c in conflicting_from_row(row):
        now = current.get(c["id"])
        if now is not None:
            conflicting.append(ConflictingMemory(c["id"], c["reason"], now))
        else:
            gone = Memory(id=c["id"], user_id=user_id, content=c.get("content") or "")
            conflicting.append(ConflictingMemory(c["id"], c["reason"], gone, missing=True))
    new = memory_from_json(row["new_memory"])
    new.user_id = user_id
    return Conflict(
        id=row["id"],
        user_id=user_id,
        status=row.get("status") or "pending",
        new_memory=new,
        conflicting=conflicting,
        questions=questions_from_row(row),
        session_id=row.get("session_id") or "",
        create_time=row.get("create_time"),
        resolve_time=row.get("resolve_time"),
        resolution=row.get("resolution") or "",
        answers=answers_from_row(row),
    )
