"""Domain records, as the seeds' docs describe them; no gRPC, no LanceDB."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# in the order of the MemoryType enum (MEMORY_TYPE_JOURNAL = 1, ...)
MEMORY_TYPES = (
    "journal", "insight", "observation", "task", "preference", "fact", "message", "summary",
)  # fmt: skip
DEFAULT_MEMORY_TYPE = "observation"
# in the order of the MemoryOrigin enum (MEMORY_ORIGIN_CLIENT = 1, ...)
ORIGINS = ("client", "message", "summary", "extracted", "action")
DEFAULT_IMPORTANCE = 0.5


@dataclass
class Memory:
    id: str = ""
    user_id: str = ""
    session_id: str = ""
    content: str = ""
    type: str = ""
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)
    importance: float | None = None
    archived: bool = False
    source_message_ids: list[str] = field(default_factory=list)
    version: int = 0
    event_time: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    # for memories made from messages: who said it and the message's position in its session
    speaker: str = ""
    seq: int | None = None
    # where it came from (ORIGINS); "" on a memory not yet written reads as its default
    origin: str = ""
    # extracted facts: the profile slot it backs, how often and when last the user said it
    profile_slot: str = ""
    mention_count: int = 0
    last_mentioned_time: datetime | None = None
    # the people, places, pets and things it mentions (lowercase): connects memories
    entities: list[str] = field(default_factory=list)
    # the pending merge conflict this memory is part of (core.intelligence.conflicts)
    conflict_id: str = ""
    # whose memory of the user: an agent's (in one instance, or its default state), or "" for
    # the user's general memories, which every agent sees
    agent_id: str = ""
    instance_id: str = ""


def default_origin(type_: str) -> str:
    """The origin of a memory written before origins were recorded (or written without one)."""
    return type_ if type_ in ("message", "summary") else "client"


@dataclass
class MemoryVersion:
    memory_id: str
    version: int
    content: str
    type: str
    tags: list[str]
    metadata: dict[str, Any]
    create_time: datetime | None
    expire_time: datetime | None = None
    expire_reason: str = ""


@dataclass
class SearchHit:
    memory: Memory
    score: float


@dataclass(frozen=True)
class MemoryQuery:
    """Filters shared by list and search (the deterministic part)."""

    user_id: str = ""
    session_id: str = ""
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    tags_all: bool = False
    categories: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    include_archived: bool = False
    start_time: datetime | None = None
    end_time: datetime | None = None
    origins: tuple[str, ...] = ()
    # memories backing one of these profile slots (profiles, extraction's reconciliation)
    profile_slots: tuple[str, ...] = ()
    # memories mentioning one of these entities (connected memories)
    entities: tuple[str, ...] = ()
    # an agent-scoped recall: the agent's memories of the user in `instance_id` (or, without
    # one, the agent's default state) plus the user's general memories, never another agent's
    # or instance's; no agent_id = every memory. `exact_scope` (memgrpc's own reads, e.g.
    # reconciliation): only memories of exactly that scope, general ones when agent_id is empty.
    agent_id: str = ""
    instance_id: str = ""
    exact_scope: bool = False


# fields a patch may touch (UpdateMemory's update_mask paths)
PATCHABLE = (
    "content", "type", "tags", "metadata", "categories", "importance", "archived",
    "session_id", "event_time", "source_message_ids", "speaker", "entities",
)  # fmt: skip
# fields only memgrpc itself patches (extraction, conflicts, profiles): never a client's mask
INTERNAL_PATCHABLE = (
    "origin",
    "profile_slot",
    "mention_count",
    "last_mentioned_time",
    "conflict_id",
)


@dataclass
class Patch:
    """A partial update: `fields` names what to change, `memory` holds the new values."""

    memory: Memory
    fields: frozenset[str]
    reason: str = ""
