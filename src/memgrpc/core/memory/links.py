"""What ListMemories adds to a page when asked (RecallrAI's list_memories): each memory's
previous versions, and its connected memories, the current memories of the same user that
share an entity with it. Each is a batched read per page, never one read per memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from memgrpc.core.memory import rows
from memgrpc.core.memory.model import Memory, MemoryVersion
from memgrpc.store.filters import Where
from memgrpc.store.memories import MemoryFilter, MemoryTable
from memgrpc.store.tables import Row, Table, chunks

# connected memories listed per memory (those sharing the most entities, then the newest)
MAX_CONNECTED = 10
_EPOCH = datetime.min.replace(tzinfo=UTC)


async def previous_versions(
    versions: Table, project_id: str, page: Sequence[Memory]
) -> dict[str, list[MemoryVersion]]:
    """Memory id -> its versions before the current one, newest first."""
    current = {m.id: m.version for m in page if m.version > 1}
    out: defaultdict[str, list[MemoryVersion]] = defaultdict(list)
    for part in chunks(sorted(current)):
        where = Where().eq("project_id", project_id).is_in("memory_id", list(part))
        for r in await versions.rows(where):
            # a crash between a version's two writes can leave a row of the current version
            if int(r["version"]) < current[r["memory_id"]]:
                out[r["memory_id"]].append(rows.version_from_row(r))
    for found in out.values():
        found.sort(key=lambda ver: -ver.version)
    return dict(out)


async def connected(
    keys: Table,
    table: MemoryTable,
    project_id: str,
    page: Sequence[Memory],
    limit: int = MAX_CONNECTED,
    *,
    agent_id: str = "",
    instance_id: str = "",
) -> dict[str, list[Memory]]:
    """Memory id -> up to `limit` current (not archived) memories of its user sharing an entity
    with it (within an agent-scoped recall when `agent_id` is given, as the page was). The
    candidates' keys are read once for the page, then the chosen rows."""
    linked = [m for m in page if m.entities]
    if not linked:
        return {}
    users = sorted({m.user_id for m in linked})
    entities = sorted({e for m in linked for e in m.entities})
    candidates: dict[str, Row] = {}
    for part in chunks(entities):
        where = MemoryFilter(
            project_id=project_id,
            entities=tuple(part),
            agent_id=agent_id,
            instance_id=instance_id,
        ).where()
        where.is_in("user_id", users)
        for r in await keys.rows(where, ["id", "user_id", "entities", "update_time"]):
            candidates[r["id"]] = r
    by_entity: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for cid, r in candidates.items():
        for e in r["entities"] or ():
            by_entity[(r["user_id"], e)].append(cid)
    chosen: dict[str, list[str]] = {}
    for m in linked:
        shared: defaultdict[str, int] = defaultdict(int)
        for e in set(m.entities):
            for cid in by_entity.get((m.user_id, e), ()):
                if cid != m.id:
                    shared[cid] += 1
        best = sorted(
            shared,
            key=lambda cid: (
                -shared[cid],
                -(candidates[cid]["update_time"] or _EPOCH).timestamp(),
                cid,
            ),
        )
        chosen[m.id] = best[:limit]
    wanted = sorted({cid for ids in chosen.values() for cid in ids})
    found: dict[str, Memory] = {}
    for part in chunks(wanted):
        for r in await table.get_many(project_id, list(part)):
            found[r["id"]] = rows.from_row(r)
    return {mid: [found[c] for c in ids if c in found] for mid, ids in chosen.items() if ids}
