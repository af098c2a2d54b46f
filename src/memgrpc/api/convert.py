"""Proto <-> domain conversion for memories; malformed wire values become InvalidArgument."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from memgrpc.core.errors import Violations
from memgrpc.core.types import MEMORY_TYPES, Memory, MemoryQuery, MemoryVersion
from memgrpc.v1 import memory_pb2 as pb

# MEMORY_TYPE_JOURNAL = 1 ... in the order of core.types.MEMORY_TYPES
_TYPE_TO_NAME = {i + 1: name for i, name in enumerate(MEMORY_TYPES)}
_NAME_TO_TYPE = {name: i for i, name in _TYPE_TO_NAME.items()}


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
    )


def set_fields(m: pb.Memory) -> frozenset[str]:
    """The fields a PATCH without update_mask touches: those that are set (non-default)."""
    fields = {f.name for f, _ in m.ListFields()} - {
        "id",
        "user_id",
        "version",
        "create_time",
        "update_time",
    }
    return frozenset(fields)


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
    v: Violations, r: pb.ListMemoriesRequest | pb.SearchMemoriesRequest
) -> MemoryQuery:
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
    )
