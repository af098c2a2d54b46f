"""The extras of the DEEP context strategy: neighbouring turns and diversity.

A message hit often needs the turn before or after it to make sense (a question and its answer),
and several near-identical hits waste the budget: expansion adds the neighbours, diversity drops
the redundant (greedy maximal marginal relevance on word overlap).
"""

from __future__ import annotations

import asyncio
import re

from memgrpc.core.memory.model import MemoryQuery, SearchHit
from memgrpc.core.memory.service import MemoryService

NEIGHBOUR_WEIGHT = 0.8  # a neighbour ranks just below the hit it came with
MMR_LAMBDA = 0.75
_WORD = re.compile(r"\w+")


async def expand_neighbours(
    memories: MemoryService, project_id: str, hits: list[SearchHit], k: int
) -> list[SearchHit]:
    """Add the turns right before and after each message hit (same session)."""
    wanted: dict[str, set[int]] = {}
    for h in hits:
        m = h.memory
        if m.session_id and m.seq is not None:
            wanted.setdefault(m.session_id, set()).update({m.seq - 1, m.seq + 1})
    if not wanted:
        return hits
    user = hits[0].memory.user_id
    found = await asyncio.gather(
        *(
            memories.find(project_id, MemoryQuery(user_id=user, session_id=s), sorted(seqs))
            for s, seqs in wanted.items()
        )
    )
    by_pos = {(m.session_id, m.seq): m for group in found for m in group}
    seen = {h.memory.id for h in hits}
    out: list[SearchHit] = []
    for h in hits:
        out.append(h)
        m = h.memory
        if m.seq is None:
            continue
        for pos in (m.seq - 1, m.seq + 1):
            n = by_pos.get((m.session_id, pos))
            if n is not None and n.id not in seen:
                seen.add(n.id)
                out.append(SearchHit(n, h.score * NEIGHBOUR_WEIGHT))
    return out[: 2 * k]


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def diversify(hits: list[SearchHit], k: int) -> list[SearchHit]:
    """Greedy MMR: relevance minus the overlap with what was already picked."""
    pool = [(h, _words(h.memory.content)) for h in hits]
    picked: list[tuple[SearchHit, set[str]]] = []
    while pool and len(picked) < k:
        best_i, best = 0, float("-inf")
        for i, (h, words) in enumerate(pool):
            overlap = max((len(words & w) / (len(words | w) or 1) for _, w in picked), default=0.0)
            value = MMR_LAMBDA * h.score - (1 - MMR_LAMBDA) * overlap
            if value > best:
                best_i, best = i, value
        picked.append(pool.pop(best_i))
    return [h for h, _ in picked]
