"""Memory <-> store row conversion (the row shape is store/schemas.memories)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from memgrpc.core.kernel.validation import canonical_json, metadata_pairs
from memgrpc.core.memory.model import Memory, MemoryVersion, default_origin
from memgrpc.store.memories import encode_doc


def to_row(m: Memory, project_id: str, vector: Any, version_time: Any) -> dict[str, Any]:
    vec = vector.tolist() if isinstance(vector, np.ndarray) else list(vector)
    row = {
        "id": m.id,
        "project_id": project_id,
        "user_id": m.user_id,
        "session_id": m.session_id or None,
        "content": m.content,
        "type": m.type,
        "tags": list(m.tags),
        "categories": list(m.categories),
        "metadata": canonical_json(m.metadata),
        "metadata_kv": metadata_kv(m),
        "importance": m.importance,
        "archived": m.archived,
        "source_message_ids": list(m.source_message_ids),
        "version": m.version,
        "event_time": m.event_time,
        "create_time": m.create_time,
        "update_time": m.update_time,
        "version_time": version_time,
        "speaker": m.speaker or None,
        "seq": m.seq,
        "origin": m.origin or default_origin(m.type),
        "profile_slot": m.profile_slot or None,
        "mention_count": m.mention_count or None,
        "last_mentioned_time": m.last_mentioned_time,
        "entities": list(m.entities),
        "conflict_id": m.conflict_id or None,
        "agent_id": m.agent_id or None,
        "instance_id": m.instance_id or None,
        "vector": vec,
    }
    row["doc"] = encode_doc(row)
    return row


def metadata_kv(m: Memory) -> list[str]:
    return metadata_pairs(m.metadata)


def from_row(row: dict[str, Any]) -> Memory:
    return Memory(
        id=row["id"],
        user_id=row["user_id"],
        session_id=row.get("session_id") or "",
        content=row.get("content") or "",
        type=row.get("type") or "",
        tags=list(row.get("tags") or []),
        metadata=json.loads(row["metadata"]) if row.get("metadata") else {},
        categories=list(row.get("categories") or []),
        importance=row.get("importance"),
        archived=bool(row.get("archived")),
        source_message_ids=list(row.get("source_message_ids") or []),
        version=int(row.get("version") or 1),
        event_time=row.get("event_time"),
        create_time=row.get("create_time"),
        update_time=row.get("update_time"),
        speaker=row.get("speaker") or "",
        seq=row.get("seq"),
        origin=row.get("origin") or default_origin(row.get("type") or ""),
        profile_slot=row.get("profile_slot") or "",
        mention_count=int(row.get("mention_count") or 0),
        last_mentioned_time=row.get("last_mentioned_time"),
        entities=list(row.get("entities") or []),
        conflict_id=row.get("conflict_id") or "",
        agent_id=row.get("agent_id") or "",
        instance_id=row.get("instance_id") or "",
    )


def version_row(
    project_id: str, user_id: str, v: MemoryVersion, agent_id: str = "", instance_id: str = ""
) -> dict[str, Any]:
    """The `memory_versions` row of `v` (store/schemas.MEMORY_VERSIONS): the one builder; it
    carries its memory's agent scope, so purging the agent or instance covers it."""
    return {
        "pk": f"{v.memory_id}@{v.version}",
        "project_id": project_id,
        "user_id": user_id,
        "memory_id": v.memory_id,
        "version": v.version,
        "content": v.content,
        "type": v.type,
        "tags": list(v.tags),
        "metadata": canonical_json(v.metadata),
        "create_time": v.create_time,
        "expire_time": v.expire_time,
        "expire_reason": v.expire_reason,
        "agent_id": agent_id or None,
        "instance_id": instance_id or None,
    }


def expired(row: dict[str, Any], expire_time: Any, reason: str) -> MemoryVersion:
    """The old content of memory `row`, kept when a new version replaces it."""
    return MemoryVersion(
        memory_id=row["id"],
        version=row["version"],
        content=row["content"],
        type=row["type"],
        tags=list(row.get("tags") or []),
        metadata=json.loads(row["metadata"]) if row.get("metadata") else {},
        create_time=row.get("version_time") or row.get("create_time"),
        expire_time=expire_time,
        expire_reason=reason,
    )


def version_from_row(row: dict[str, Any]) -> MemoryVersion:
    return MemoryVersion(
        memory_id=row["memory_id"],
        version=int(row["version"]),
        content=row["content"],
        type=row["type"],
        tags=list(row.get("tags") or []),
        metadata=json.loads(row["metadata"]) if row.get("metadata") else {},
        create_time=row.get("create_time"),
        expire_time=row.get("expire_time"),
        expire_reason=row.get("expire_reason") or "",
    )
