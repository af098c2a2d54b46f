"""Input rules for memories, shared by every write path (create, update, replace, batch,
import), and for the memory types a query names."""

from __future__ import annotations

from collections.abc import Sequence

from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.memory.model import MEMORY_TYPES, Memory

MAX_SOURCE_IDS = 256


def check_types(v: Violations, name: str, types: Sequence[str]) -> None:
    for i, t in enumerate(types):
        if t not in MEMORY_TYPES:
            v.add(f"{name}[{i}]", f"unknown memory type {t!r}")


def check_scope(v: Violations, prefix: str, agent_id: str, instance_id: str) -> None:
    """An agent scope is well formed: ids shaped as ids, an instance only with its agent."""
    dot = f"{prefix}." if prefix else ""
    validation.check_id(v, f"{dot}agent_id", agent_id, required=False)
    validation.check_id(v, f"{dot}instance_id", instance_id, required=False)
    if instance_id and not agent_id:
        v.add(f"{dot}instance_id", "requires agent_id")


def check_memory(
    v: Violations, m: Memory, prefix: str = "memory", *, fields: set[str] | None = None
) -> None:
    """Check the fields of `m` named in `fields` (all when None)."""

    def want(f: str) -> bool:
        return fields is None or f in fields

    if want("content"):
        validation.check_content(v, f"{prefix}.content", m.content)
    if want("type") and m.type and m.type not in MEMORY_TYPES:
        v.add(f"{prefix}.type", "unknown memory type")
    if want("speaker"):
        validation.check_id(v, f"{prefix}.speaker", m.speaker, required=False)
    if want("session_id"):
        validation.check_id(v, f"{prefix}.session_id", m.session_id, required=False)
    if want("tags"):
        validation.check_labels(v, f"{prefix}.tags", m.tags)
    if want("categories"):
        validation.check_labels(v, f"{prefix}.categories", m.categories)
    if want("entities"):
        validation.check_labels(v, f"{prefix}.entities", m.entities)
    if fields is None:  # the scope is set on create only (an update cannot move a memory)
        check_scope(v, prefix, m.agent_id, m.instance_id)
    if want("metadata"):
        validation.check_metadata(v, f"{prefix}.metadata", m.metadata)
    if want("importance"):
        validation.check_importance(v, f"{prefix}.importance", m.importance)
    if want("source_message_ids"):
        if len(m.source_message_ids) > MAX_SOURCE_IDS:
            v.add(f"{prefix}.source_message_ids", f"at most {MAX_SOURCE_IDS} ids")
        for i, sid in enumerate(m.source_message_ids):
            validation.check_id(v, f"{prefix}.source_message_ids[{i}]", sid, required=True)
