"""Users, sessions, messages and jobs as domain records, and their store rows.

Plain dataclasses, as the seeds (GUMem, RecallrAI, Sonzai) describe them; no gRPC here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from memgrpc.core.kernel.validation import canonical_json, metadata_pairs

SessionStatus = Literal["active", "processing", "processed", "failed"]
JobState = Literal["queued", "running", "done", "failed"]
# in the order of the SessionStatus / JobState enums (value 1, 2, ...)
SESSION_STATUSES: tuple[SessionStatus, ...] = ("active", "processing", "processed", "failed")
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "done", "failed")
DEFAULT_ROLE = "user"
PROCESS_SESSION = "process_session"
# one turn's fact extraction (SubmitTurn); the session stays ACTIVE
EXTRACT_TURN = "extract_turn"


@dataclass
class User:
    id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    create_time: datetime | None = None
    last_active_time: datetime | None = None


@dataclass
class Session:
    id: str = ""
    user_id: str = ""
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    status: SessionStatus = "active"
    auto_process_after: timedelta | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    message_count: int = 0
    # the job processing (or that last processed) the session
    job_id: str = ""
    # the agent (and instance) the user talks to; fixed at creation
    agent_id: str = ""
    instance_id: str = ""
    # chat defaults for the session's turns
    provider: str = ""
    model: str = ""


@dataclass
class Message:
    id: str = ""
    session_id: str = ""
    user_id: str = ""
    role: str = ""
    name: str = ""
    content: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    create_time: datetime | None = None
    memory_id: str = ""
    interrupted: bool = False
    seq: int = 0
    # the session's agent scope, copied to every message of it (and its memory)
    agent_id: str = ""
    instance_id: str = ""

    @property
    def speaker(self) -> str:
        return self.name or self.role


@dataclass
class JobStats:
    """What a process_session job's extraction did (complete once the job is DONE)."""

    extractor: str = ""  # the extractor that ran: rules, or llm
    facts_extracted: int = 0
    facts_added: int = 0
    facts_reinforced: int = 0
    versions_made: int = 0
    conflicts_opened: int = 0


JOB_STAT_COUNTS = (
    "facts_extracted", "facts_added", "facts_reinforced", "versions_made", "conflicts_opened",
)  # fmt: skip


@dataclass
class Job:
    id: str
    session_id: str
    user_id: str
    kind: str
    state: JobState = "queued"
    error: str = ""
    create_time: datetime | None = None
    update_time: datetime | None = None
    stats: JobStats = field(default_factory=JobStats)


def _meta(raw: str | None) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(raw) if raw else {}
    return out


# -- users --------------------------------------------------------------------------------------
def user_pk(project_id: str, user_id: str) -> str:
    return f"{project_id}\x1f{user_id}"


def user_row(project_id: str, u: User) -> dict[str, Any]:
    return {
        "pk": user_pk(project_id, u.id),
        "project_id": project_id,
        "id": u.id,
        "metadata": canonical_json(u.metadata),
        "metadata_kv": metadata_pairs(u.metadata),
        "create_time": u.create_time,
        "last_active_time": u.last_active_time,
    }


def user_from_row(row: dict[str, Any]) -> User:
    return User(
        id=row["id"],
        metadata=_meta(row.get("metadata")),
        create_time=row.get("create_time"),
        last_active_time=row.get("last_active_time") or row.get("create_time"),
    )


# -- sessions -----------------------------------------------------------------------------------
def due_time(active_time: datetime | None, after: timedelta | None) -> datetime | None:
    """When an idle session becomes due for automatic processing (None = never)."""
    return active_time + after if active_time is not None and after is not None else None


def session_row(project_id: str, s: Session, active_time: datetime | None) -> dict[str, Any]:
    after = s.auto_process_after
    return {
        "id": s.id,
        "project_id": project_id,
        "user_id": s.user_id,
        "title": s.title,
        "metadata": canonical_json(s.metadata),
        "metadata_kv": metadata_pairs(s.metadata),
        "status": s.status,
        "auto_process_after_s": after.total_seconds() if after is not None else None,
        "active_time": active_time,
        "auto_process_at": due_time(active_time, after),
        "job_id": s.job_id or None,
        "message_count": s.message_count,
        "create_time": s.create_time,
        "update_time": s.update_time,
        "agent_id": s.agent_id or None,
        "instance_id": s.instance_id or None,
        "provider": s.provider or None,
        "model": s.model or None,
    }


def session_from_row(row: dict[str, Any]) -> Session:
    secs = row.get("auto_process_after_s")
    return Session(
        id=row["id"],
        user_id=row["user_id"],
        title=row.get("title") or "",
        metadata=_meta(row.get("metadata")),
        status=row.get("status") or "active",
        auto_process_after=timedelta(seconds=secs) if secs is not None else None,
        create_time=row.get("create_time"),
        update_time=row.get("update_time"),
        message_count=int(row.get("message_count") or 0),
        job_id=row.get("job_id") or "",
        agent_id=row.get("agent_id") or "",
        instance_id=row.get("instance_id") or "",
        provider=row.get("provider") or "",
        model=row.get("model") or "",
    )


# -- messages -----------------------------------------------------------------------------------
def message_pk(session_id: str, message_id: str) -> str:
    return f"{session_id}\x1f{message_id}"


def message_row(project_id: str, m: Message) -> dict[str, Any]:
    return {
        "pk": message_pk(m.session_id, m.id),
        "project_id": project_id,
        "user_id": m.user_id,
        "session_id": m.session_id,
        "id": m.id,
        "seq": m.seq,
        "role": m.role,
        "name": m.name or None,
        "content": m.content,
        "metadata": canonical_json(m.metadata),
        "create_time": m.create_time,
        "memory_id": m.memory_id or None,
        "interrupted": m.interrupted,
        "agent_id": m.agent_id or None,
        "instance_id": m.instance_id or None,
    }


def message_from_row(row: dict[str, Any]) -> Message:
    return Message(
        id=row["id"],
        session_id=row["session_id"],
        user_id=row["user_id"],
        role=row.get("role") or DEFAULT_ROLE,
        name=row.get("name") or "",
        content=row.get("content") or "",
        metadata=_meta(row.get("metadata")),
        create_time=row.get("create_time"),
        memory_id=row.get("memory_id") or "",
        interrupted=bool(row.get("interrupted")),
        seq=int(row.get("seq") or 0),
        agent_id=row.get("agent_id") or "",
        instance_id=row.get("instance_id") or "",
    )


# -- jobs ---------------------------------------------------------------------------------------
def job_row(project_id: str, j: Job) -> dict[str, Any]:
    return {
        "id": j.id,
        "project_id": project_id,
        "user_id": j.user_id,
        "session_id": j.session_id,
        "kind": j.kind,
        "state": j.state,
        "error": j.error or None,
        "create_time": j.create_time,
        "update_time": j.update_time,
        **job_stats_row(j.stats),
    }


def job_stats_row(st: JobStats) -> dict[str, Any]:
    return {"extractor": st.extractor or None} | {k: getattr(st, k) for k in JOB_STAT_COUNTS}


def job_from_row(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        session_id=row.get("session_id") or "",
        user_id=row.get("user_id") or "",
        kind=row.get("kind") or "",
        state=row.get("state") or "queued",
        error=row.get("error") or "",
        create_time=row.get("create_time"),
        update_time=row.get("update_time"),
        stats=JobStats(
            extractor=row.get("extractor") or "",
            **{k: int(row.get(k) or 0) for k in JOB_STAT_COUNTS},
        ),
    )
