"""The recall cache's filter (`matches`) agrees with the store's (MemoryFilter.where()).

A search of a cached user filters in Python, an uncached one in LanceDB: any difference returns
different memories for the same query depending on whether the user happens to be cached. Random
memories are written to a real store (half of them folded into the scalar indexes, half not),
and for random filters the ids the store returns must be the ids `matches` accepts among the
memories the cache holds (loaded from the store, or put there by own writes).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from memgrpc.core.kernel.validation import metadata_pairs
from memgrpc.core.memory import rows as rowconv
from memgrpc.core.memory.model import MEMORY_TYPES, ORIGINS, Memory
from memgrpc.core.memory.recall_cache import IndexCache, matches
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.memories import MemoryFilter, MemoryTable, encode_doc

DIM = 8
USERS = ("u1", "u2", "it's")
SESSIONS = ("s1", "s2")
LABELS = ("a", "b", "Zoë", "it's", "")
# with the two types that imply an origin on rows written before origins were recorded
TYPES = (*MEMORY_TYPES[:4], "message", "summary")
SLOTS = ("name", "location", "pets")
ENTITIES = ("pepper", "oslo", "it's")
META_KEYS = ("k", "n", "it's")
META_VALUES = st.one_of(
    st.sampled_from([0, 1, 1.0, 1.5, -2, True, False, None, "1", "x", "it's", "", [1, 2], [1.0]]),
    st.dictionaries(st.sampled_from(("a", "b")), st.sampled_from([1, "1", None]), max_size=2),
)
T0 = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)
# event times and filter bounds share instants, so boundaries (>= start, < end) are hit often
INSTANTS = [T0 + timedelta(microseconds=d) for d in (-1, 0, 1)] + [
    T0 + timedelta(days=d) for d in (-400, -1, 1, 30)
]
AGENTS = ("agt_a", "agt_b", "it's")
INSTANCES = ("ins_1", "ins_2")
ZONES = (UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)))


@st.composite
def _instant(draw: st.DrawFn, *, naive: bool) -> datetime:
    t = draw(st.sampled_from(INSTANTS))
    zone = draw(st.sampled_from(ZONES))
    if naive and draw(st.booleans()):  # internal callers may pass naive UTC times
        return t.replace(tzinfo=None)
    return t.astimezone(zone)


@st.composite
def _memory(draw: st.DrawFn, i: int) -> Memory:
    return Memory(
        id=f"m{i}",
        user_id=draw(st.sampled_from(USERS)),
        session_id=draw(st.sampled_from(("", *SESSIONS))),
        content=f"note {i}",
        type=draw(st.sampled_from(TYPES)),
        tags=draw(st.lists(st.sampled_from(LABELS), max_size=4)),
        categories=draw(st.lists(st.sampled_from(LABELS), max_size=2)),
        metadata=draw(st.dictionaries(st.sampled_from(META_KEYS), META_VALUES, max_size=2)),
        importance=0.5,
        archived=draw(st.booleans()),
        version=1,
        event_time=draw(st.none() | _instant(naive=False)),
        create_time=T0,
        update_time=T0,
        seq=draw(st.none() | st.integers(0, 4)),
        # "": a row written before origins were recorded (its column is NULL; see _row)
        origin=draw(st.sampled_from(("", *ORIGINS))),
        profile_slot=draw(st.sampled_from(("", *SLOTS))),
        entities=draw(st.lists(st.sampled_from(ENTITIES), max_size=2)),
        **draw(_scope()),
    )


@st.composite
def _scope(draw: st.DrawFn) -> dict[str, str]:
    """An agent scope: none (general), an agent's default state, or one of its instances."""
    agent = draw(st.sampled_from(("", *AGENTS)))
    instance = draw(st.sampled_from(("", *INSTANCES))) if agent else ""
    return {"agent_id": agent, "instance_id": instance}


@st.composite
def _filter(draw: st.DrawFn, ids: list[str]) -> MemoryFilter:
    """A filter on a few fields (on all of them at once, nearly nothing would match)."""

    def some(values: Any, max_size: int = 3) -> st.SearchStrategy[tuple[Any, ...]]:
        return st.lists(st.sampled_from(values), min_size=1, max_size=max_size).map(tuple)

    fields: dict[str, st.SearchStrategy[Any]] = {
        "user_id": st.sampled_from(USERS),
        "session_id": st.sampled_from(SESSIONS),
        "types": some(TYPES),
        "tags": some(LABELS, 2),
        "categories": some(LABELS),
        "metadata_kv": st.dictionaries(
            st.sampled_from(META_KEYS), META_VALUES, min_size=1, max_size=2
        ).map(lambda meta: tuple(metadata_pairs(meta))),
        "start_time": _instant(naive=True),
        "end_time": _instant(naive=True),
        "ids": some([*ids, "absent"], 4),
        "seqs": some(range(6)),
        "origins": some(ORIGINS),
        "profile_slots": some(SLOTS),
        "entities": some(ENTITIES, 2),
    }
    chosen = draw(st.sets(st.sampled_from(sorted([*fields, "scope"])), max_size=3))
    # an agent-scoped recall, or an exact scope (reconciliation's), general ones included
    scope = (
        draw(_scope()) | {"scope_mode": draw(st.sampled_from(("recall", "exact")))}
        if "scope" in chosen
        else {}
    )
    return MemoryFilter(
        project_id="",  # set per example
        tags_all=draw(st.booleans()),
        include_archived=draw(st.booleans()),
        **{name: draw(fields[name]) for name in sorted(chosen - {"scope"})},
        **scope,
    )


@st.composite
def _case(draw: st.DrawFn) -> tuple[list[Memory], int, set[str], list[MemoryFilter]]:
    """Memories, how many of them go into the indexes, users cached before the writes, filters."""
    n = draw(st.integers(1, 12))
    memories = [draw(_memory(i)) for i in range(n)]
    indexed = draw(st.integers(0, n))
    early = set(draw(st.lists(st.sampled_from(USERS), max_size=len(USERS))))
    filters = draw(st.lists(_filter([m.id for m in memories]), min_size=1, max_size=6))
    return memories, indexed, early, filters


def _m(i: int, **kw: Any) -> Memory:
    base = {"user_id": "u1", "content": f"note {i}", "type": TYPES[0], "version": 1}
    return Memory(id=f"m{i}", **(base | {"create_time": T0, "update_time": T0} | kw))


# edges hypothesis may not reach in 60 examples: all of two tags, a naive bound at an event time
EDGES = (
    [
        _m(0, tags=["a"], event_time=T0, seq=1),
        _m(1, tags=["a", "b"], event_time=T0 + timedelta(microseconds=1), seq=2),
        _m(2, user_id="u2", tags=["b"], archived=True, metadata={"k": 1}),
        _m(3, type="message"),  # no origin: reads as "message"
        _m(4, type="summary", origin="extracted"),
        _m(5, agent_id="agt_a"),
        _m(6, agent_id="agt_a", instance_id="ins_1"),
        _m(7, agent_id="agt_b", instance_id="ins_1"),
    ],
    1,
    {"u1"},
    [
        MemoryFilter("", tags=("a", "b"), tags_all=True),
        MemoryFilter("", tags=("a", "b")),
        MemoryFilter("", end_time=(T0 + timedelta(microseconds=1)).replace(tzinfo=None)),
        MemoryFilter("", start_time=T0.astimezone(ZONES[1])),
        MemoryFilter("", ids=("m1", "m2"), include_archived=True),
        MemoryFilter("", seqs=(2, 3)),
        MemoryFilter("", user_id="u2", metadata_kv=("k=1.0", "k=1"), include_archived=True),
        MemoryFilter("", origins=("client",), include_archived=True),
        MemoryFilter("", origins=("message", "extracted"), include_archived=True),
        # the agent's default state + general; an instance + general; exact scopes
        MemoryFilter("", agent_id="agt_a"),
        MemoryFilter("", agent_id="agt_a", instance_id="ins_1"),
        MemoryFilter("", agent_id="agt_a", scope_mode="exact"),
        MemoryFilter("", agent_id="agt_b", instance_id="ins_1", scope_mode="exact"),
        MemoryFilter("", scope_mode="exact"),
    ],
)


@pytest.fixture(scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    path: Path = tmp_path_factory.mktemp("filters")
    store = Store(StoreConfig(uri=str(path / "db"), dim=DIM, read_consistency_s=0))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


_projects = itertools.count()


def _row(m: Memory, project_id: str) -> dict[str, Any]:
    vector = np.eye(DIM, dtype=np.float32)[int(m.id[1:]) % DIM]
    row = rowconv.to_row(m, project_id, vector, m.create_time)
    if not m.origin:  # as a version before origins wrote it
        row["origin"] = None
        row["doc"] = encode_doc(row)
    return row


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=_case())
@example(case=EDGES)
async def test_cached_filter_agrees_with_the_store(
    store: Store, case: tuple[list[Memory], int, set[str], list[MemoryFilter]]
) -> None:
    memories, indexed, early, filters = case
    project = f"p{next(_projects)}"
    table, tbl = MemoryTable(store), store.table("memories")
    cache = IndexCache(table, DIM, refresh_s=3600)
    for user in early:  # these users get the rows as own writes (the service's path)
        assert await cache.get(project, user) is not None
    rows = [_row(m, project) for m in memories]
    for part, fold in ((rows[:indexed], True), (rows[indexed:], False)):
        if part:
            await table.writer.insert(part)
            await cache.written(project, part)
            if fold:  # into the scalar indexes: the store's filter then reads them there
                await tbl.optimize()
    held: dict[str, Memory] = {}
    for user in USERS:
        cached = await cache.get(project, user)
        assert cached is not None
        held |= cached.memories
    assert held.keys() == {m.id for m in memories}
    for f in filters:
        flt = MemoryFilter(**{**f.__dict__, "project_id": project})
        # the filter text every read and search prefilter of the store uses
        found = await tbl.query().where(str(flt.where())).select(["id"]).to_arrow()
        in_python = {i for i, m in held.items() if matches(m, flt)}
        assert set(found.column("id").to_pylist()) == in_python, str(flt.where())
        event("some match" if in_python else "none match")
