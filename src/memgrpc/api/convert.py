"""Proto <-> domain conversion; malformed wire values become InvalidArgument."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from memgrpc.core.conversation.records import (
    JOB_STATES,
    SESSION_STATUSES,
    Job,
    Message,
    Session,
    SessionStatus,
    User,
)
from memgrpc.core.intelligence.profiles import ProfileFact
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.memory.model import (
    MEMORY_TYPES,
    ORIGINS,
    Memory,
    MemoryQuery,
    MemoryVersion,
    SearchHit,
    default_origin,
)
from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import sessions_pb2 as sessions_pb
from memgrpc.v1 import users_pb2 as users_pb

# MEMORY_TYPE_JOURNAL = 1 ... in the order of core.memory.model.MEMORY_TYPES
_TYPE_TO_NAME = {i + 1: name for i, name in enumerate(MEMORY_TYPES)}
_NAME_TO_TYPE = {name: i for i, name in _TYPE_TO_NAME.items()}
# MEMORY_ORIGIN_CLIENT = 1 ... in the order of core.memory.model.ORIGINS
_ORIGIN_TO_NAME = {i + 1: name for i, name in enumerate(ORIGINS)}
_NAME_TO_ORIGIN = {name: i for i, name in _ORIGIN_TO_NAME.items()}
# set by memgrpc, never by a client's write (AIP-203 output only: ignored on input)
_OUTPUT_ONLY = frozenset(
    {
        "id", "user_id", "version", "create_time", "update_time", "origin", "profile_slot",
        "mention_count", "last_mentioned_time", "merge_conflict_in_progress", "agent_id",
        "instance_id",
        "previous_versions", "connected_memories",
    }
)  # fmt: skip


def memory_type(v: Violations, field: str, value: int, *, allow_unspecified: bool = True) -> str:
    if value == 0 and allow_unspecified:
        return ""
    name = _TYPE_TO_NAME.get(value)
    if name is None:
        v.add(field, f"unknown MemoryType value {value}")
        return ""
    return name


def memory_types(v: Violations, field: str, values: Iterable[int]) -> tuple[str, ...]:
    out = []
    for i, value in enumerate(values):
        out.append(memory_type(v, f"{field}[{i}]", value, allow_unspecified=False))
    return tuple(out)


def memory_origins(v: Violations, field: str, values: Iterable[int]) -> tuple[str, ...]:
    out = []
    for i, value in enumerate(values):
        name = _ORIGIN_TO_NAME.get(value)
        if name is None:
            v.add(f"{field}[{i}]", f"unknown MemoryOrigin value {value}")
        else:
            out.append(name)
    return tuple(out)


def origin_to_pb(origin: str) -> int:
    return _NAME_TO_ORIGIN.get(origin, 0)


def origin_name(value: int) -> str:
    """The origin a record names ("" when unspecified or unknown: the default then applies)."""
    return _ORIGIN_TO_NAME.get(value, "")


def timestamp(v: Violations, field: str, ts: timestamp_pb2.Timestamp) -> datetime | None:
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        v.add(field, "is not a valid timestamp")
        return None


def opt_timestamp(v: Violations, field: str, msg: Any, name: str) -> datetime | None:
    return timestamp(v, field, getattr(msg, name)) if msg.HasField(name) else None


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(s)


def dict_to_struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def to_ts(dt: datetime | None) -> timestamp_pb2.Timestamp | None:
    if dt is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt.astimezone(UTC))
    return ts


def memory_from_pb(v: Violations, m: pb.Memory, prefix: str = "memory") -> Memory:
    return Memory(
        id=m.id,
        user_id=m.user_id,
        session_id=m.session_id,
        content=m.content,
        type=memory_type(v, f"{prefix}.type", m.type),
        tags=list(m.tags),
        metadata=struct_to_dict(m.metadata) if m.HasField("metadata") else {},
        categories=list(m.categories),
        importance=m.importance if m.HasField("importance") else None,
        archived=m.archived,
        source_message_ids=list(m.source_message_ids),
        event_time=opt_timestamp(v, f"{prefix}.event_time", m, "event_time"),
        speaker=m.speaker,
        entities=list(m.entities),
        agent_id=m.agent_id,
        instance_id=m.instance_id,
    )


def set_fields(m: pb.Memory) -> frozenset[str]:
    """The fields a PATCH without update_mask touches: those that are set (non-default)."""
    return frozenset(f.name for f, _ in m.ListFields()) - _OUTPUT_ONLY


def hits_to_pb(hits: Sequence[SearchHit]) -> list[pb.SearchResult]:
    """Recall's hits as SearchResults (search, context, chat, SubmitTurn's next context)."""
    return [pb.SearchResult(memory=memory_to_pb(h.memory), score=h.score) for h in hits]


def memory_to_pb(m: Memory) -> pb.Memory:
    out = pb.Memory(
        id=m.id,
        user_id=m.user_id,
        session_id=m.session_id,
        content=m.content,
        type=_NAME_TO_TYPE.get(m.type, 0),  # type: ignore[arg-type]
        tags=m.tags,
        categories=m.categories,
        archived=m.archived,
        source_message_ids=m.source_message_ids,
        version=m.version,
        event_time=to_ts(m.event_time),
        create_time=to_ts(m.create_time),
        update_time=to_ts(m.update_time),
        speaker=m.speaker,
        origin=origin_to_pb(m.origin or default_origin(m.type)),  # type: ignore[arg-type]
        profile_slot=m.profile_slot,
        mention_count=m.mention_count,
        last_mentioned_time=to_ts(m.last_mentioned_time),
        merge_conflict_in_progress=bool(m.conflict_id),
        entities=m.entities,
        agent_id=m.agent_id,
        instance_id=m.instance_id,
    )
    if m.importance is not None:
        out.importance = m.importance
    if m.metadata:
        out.metadata.CopyFrom(dict_to_struct(m.metadata))
    return out


def version_to_pb(ver: MemoryVersion) -> pb.MemoryVersion:
    out = pb.MemoryVersion(
        memory_id=ver.memory_id,
        version=ver.version,
        content=ver.content,
        type=_NAME_TO_TYPE.get(ver.type, 0),  # type: ignore[arg-type]
        tags=ver.tags,
        create_time=to_ts(ver.create_time),
        expire_time=to_ts(ver.expire_time),
        expire_reason=ver.expire_reason,
    )
    if ver.metadata:
        out.metadata.CopyFrom(dict_to_struct(ver.metadata))
    return out


def query_from_pb(
    v: Violations,
    r: pb.ListMemoriesRequest | pb.SearchMemoriesRequest | pb.ExportMemoriesRequest,
) -> MemoryQuery:
    scoped = isinstance(r, pb.ListMemoriesRequest | pb.SearchMemoriesRequest)
    return MemoryQuery(
        user_id=r.user_id,
        session_id=r.session_id,
        types=memory_types(v, "types", r.types),
        tags=tuple(r.tags),
        tags_all=r.tag_match == pb.TAG_MATCH_ALL,
        categories=tuple(r.categories),
        metadata=struct_to_dict(r.metadata) if r.HasField("metadata") else {},
        include_archived=r.include_archived,
        start_time=opt_timestamp(v, "start_time", r, "start_time"),
        end_time=opt_timestamp(v, "end_time", r, "end_time"),
        origins=(
            memory_origins(v, "origins", r.origins)
            if isinstance(r, pb.ListMemoriesRequest | pb.SearchMemoriesRequest)
            else ()
        ),
        agent_id=r.agent_id if scoped else "",  # type: ignore[union-attr]
        instance_id=r.instance_id if scoped else "",  # type: ignore[union-attr]
    )


# -- users, sessions, messages, jobs -------------------------------------------------------------
def _struct_field(msg: Any, name: str) -> dict[str, Any]:
    return struct_to_dict(getattr(msg, name)) if msg.HasField(name) else {}


def duration(v: Violations, field: str, d: duration_pb2.Duration) -> timedelta | None:
    try:
        return d.ToTimedelta()
    except (ValueError, OverflowError):
        v.add(field, "is not a valid duration")
        return None


def to_duration(td: timedelta | None) -> duration_pb2.Duration | None:
    if td is None:
        return None
    out = duration_pb2.Duration()
    out.FromTimedelta(td)
    return out


def user_from_pb(u: users_pb.User) -> User:
    return User(id=u.id, metadata=_struct_field(u, "metadata"))


def user_to_pb(u: User) -> users_pb.User:
    out = users_pb.User(
        id=u.id, create_time=to_ts(u.create_time), last_active_time=to_ts(u.last_active_time)
    )
    if u.metadata:
        out.metadata.CopyFrom(dict_to_struct(u.metadata))
    return out


def session_status(v: Violations, field: str, value: int) -> SessionStatus | None:
    if 1 <= value <= len(SESSION_STATUSES):
        return SESSION_STATUSES[value - 1]
    v.add(field, f"unknown SessionStatus value {value}")
    return None


def session_from_pb(v: Violations, s: sessions_pb.Session, prefix: str = "session") -> Session:
    after = (
        duration(v, f"{prefix}.auto_process_after", s.auto_process_after)
        if s.HasField("auto_process_after")
        else None
    )
    return Session(
        id=s.id,
        user_id=s.user_id,
        title=s.title,
        metadata=_struct_field(s, "metadata"),
        auto_process_after=after,
        agent_id=s.agent_id,
        instance_id=s.instance_id,
        provider=s.provider,
        model=s.model,
    )


def session_set_fields(s: sessions_pb.Session) -> frozenset[str]:
    """The fields an UpdateSession without update_mask touches: those that are set."""
    return frozenset(f.name for f, _ in s.ListFields()) & {
        "title",
        "metadata",
        "auto_process_after",
    }


def session_to_pb(s: Session) -> sessions_pb.Session:
    out = sessions_pb.Session(
        id=s.id,
        user_id=s.user_id,
        title=s.title,
        status=SESSION_STATUSES.index(s.status) + 1,  # type: ignore[arg-type]
        auto_process_after=to_duration(s.auto_process_after),
        create_time=to_ts(s.create_time),
        update_time=to_ts(s.update_time),
        message_count=s.message_count,
        agent_id=s.agent_id,
        instance_id=s.instance_id,
        provider=s.provider,
        model=s.model,
    )
    if s.metadata:
        out.metadata.CopyFrom(dict_to_struct(s.metadata))
    return out


def message_from_pb(v: Violations, m: sessions_pb.Message, prefix: str) -> Message:
    return Message(
        id=m.id,
        role=m.role,
        name=m.name,
        content=m.content,
        metadata=_struct_field(m, "metadata"),
        create_time=opt_timestamp(v, f"{prefix}.create_time", m, "create_time"),
        interrupted=m.interrupted,
    )


def message_to_pb(m: Message) -> sessions_pb.Message:
    out = sessions_pb.Message(
        id=m.id,
        session_id=m.session_id,
        user_id=m.user_id,
        role=m.role,
        name=m.name,
        content=m.content,
        create_time=to_ts(m.create_time),
        memory_id=m.memory_id,
        interrupted=m.interrupted,
    )
    if m.metadata:
        out.metadata.CopyFrom(dict_to_struct(m.metadata))
    return out


def job_to_pb(j: Job) -> sessions_pb.Job:
    return sessions_pb.Job(
        id=j.id,
        session_id=j.session_id,
        state=JOB_STATES.index(j.state) + 1,  # type: ignore[arg-type]
        error=j.error,
        create_time=to_ts(j.create_time),
        update_time=to_ts(j.update_time),
        kind=j.kind,
        stats=sessions_pb.JobStats(
            extractor=j.stats.extractor,
            facts_extracted=j.stats.facts_extracted,
            facts_added=j.stats.facts_added,
            facts_reinforced=j.stats.facts_reinforced,
            versions_made=j.stats.versions_made,
            conflicts_opened=j.stats.conflicts_opened,
        ),
    )


def profile_fact_to_pb(f: ProfileFact) -> users_pb.ProfileFact:
    return users_pb.ProfileFact(
        value=f.value,
        values=f.values,
        memory_id=f.memory_id,
        version=f.version,
        update_time=to_ts(f.update_time),
    )
