"""A list or search query as a store filter (validated), and the order a list asks for."""

from __future__ import annotations

from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.memory import checks
from memgrpc.core.memory.model import ORIGINS, MemoryQuery
from memgrpc.store.memories import MemoryFilter


def to_filter(project_id: str, q: MemoryQuery, v: Violations) -> MemoryFilter:
    validation.check_id(v, "user_id", q.user_id, required=False)
    validation.check_id(v, "session_id", q.session_id, required=False)
    validation.check_labels(v, "tags", q.tags)
    validation.check_labels(v, "categories", q.categories)
    checks.check_types(v, "types", q.types)
    validation.check_metadata(v, "metadata", q.metadata)
    for i, o in enumerate(q.origins):
        if o not in ORIGINS:
            v.add(f"origins[{i}]", f"must be one of {', '.join(ORIGINS)}")
    validation.check_labels(v, "entities", q.entities)
    checks.check_scope(v, "", q.agent_id, q.instance_id)
    if q.start_time and q.end_time and q.start_time >= q.end_time:
        v.add("end_time", "must be after start_time")
    return MemoryFilter(
        project_id=project_id,
        user_id=q.user_id,
        session_id=q.session_id,
        types=q.types,
        tags=q.tags,
        tags_all=q.tags_all,
        categories=q.categories,
        metadata_kv=tuple(validation.metadata_pairs(q.metadata)) if not v.items else (),
        include_archived=q.include_archived,
        start_time=q.start_time,
        end_time=q.end_time,
        origins=q.origins,
        profile_slots=q.profile_slots,
        entities=q.entities,
        agent_id=q.agent_id,
        instance_id=q.instance_id,
        scope_mode="exact" if q.exact_scope else "recall",
    )


def order(v: Violations, order_by: str) -> tuple[str, bool]:
    parts = order_by.strip().lower().split() or ["create_time", "desc"]
    col = parts[0]
    direction = parts[1] if len(parts) > 1 else "asc"
    if (
        col not in ("create_time", "update_time", "event_time")
        or direction not in ("asc", "desc")
        or len(parts) > 2
    ):
        v.add(
            "order_by",
            "must be create_time, update_time or event_time, then optionally asc or desc",
        )
        return "create_time", True
    return col, direction == "desc"
