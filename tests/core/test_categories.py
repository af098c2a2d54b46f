"""Categories across replicas (two registries on one store, as two processes would be): a name
one registered is found by the other on a cache miss, written once, and a write with known
names does no I/O at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memgrpc.core.kernel.errors import InvalidArgument
from memgrpc.core.memory import categories as catmod
from memgrpc.core.memory.categories import Categories, Category
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.filters import Where


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(StoreConfig(uri=str(tmp_path / "db"), dim=8, read_consistency_s=0.0))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _rows(store: Store, project_id: str) -> int:
    where = str(Where().eq("project_id", project_id))
    return int(await store.table("categories").count_rows(where))


async def test_another_replicas_registration_is_found_and_not_written_twice(store: Store) -> None:
    one, two = Categories(store), Categories(store)
    await two.check_filter("p", ["work"])  # two caches p before one registers anything
    await one.register("p", ["travel", "work"])
    await two.check_filter("p", ["travel"])  # a miss reads the table
    await two.register("p", ["travel", "work"])
    assert await _rows(store, "p") == 2
    await two.register("p", ["travel", "later"])
    assert [c.name for c in await one.list("p") if c.from_memories] == ["later", "travel"]
    assert await _rows(store, "p") == 3


async def test_known_names_cost_no_io(tmp_path: Path) -> None:
    s = Store(StoreConfig(uri=str(tmp_path / "db"), dim=8, read_consistency_s=0.0))
    await s.open()
    cats = Categories(s)
    await cats.register("p", ["a", "b"])
    await cats.check_filter("p", ["a", "work"])
    await s.close()  # the tables are gone: any read or write now fails
    await cats.register("p", ["b", "a"])
    await cats.register("p", [])
    await cats.check_filter("p", ["b", "pets"])
    with pytest.raises(KeyError):
        await cats.register("p", ["new"])


async def test_another_replicas_set_reaches_checks_after_the_ttl(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = Categories(store), Categories(store)
    await two.check_filter("p", ["work"])
    await one.set("p", [Category("travel")])
    await two.check_filter("p", ["work"])  # still within CHOSEN_TTL_S: the cached set answers
    with pytest.raises(InvalidArgument):
        await two.check_filter("p", ["nope"])
    await two.check_filter("p", ["travel"])  # a miss re-reads: the new set is seen
    monkeypatch.setattr(catmod, "CHOSEN_TTL_S", 0.0)
    with pytest.raises(InvalidArgument) as e:
        await two.check_filter("p", ["travel", "work"])
    assert e.value.reason == "INVALID_CATEGORIES"
    assert [v.field for v in e.value.violations] == ["categories[1]"]


async def test_registered_names_outlive_a_set_and_projects_stay_apart(store: Store) -> None:
    cats = Categories(store)
    await cats.register("p", ["work"])
    await cats.set("p", [Category("travel", "trips")])
    assert await cats.list("p") == [Category("travel", "trips"), Category("work", "", True)]
    assert [c.name for c in await cats.list("q")] == [n for n, _ in catmod.DEFAULT_CATEGORIES]
    await cats.check_filter("p", ["work", "travel"])
    with pytest.raises(InvalidArgument):
        await cats.check_filter("q", ["travel"])
