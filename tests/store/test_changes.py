"""The change feed's table: sequences without duplicates or gaps across processes, pruning by
the maintainer, and a reader that sees a prefix."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from memgrpc.store.changes import ChangeTable
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.maintenance import Maintainer, MaintenanceConfig
from tests.procs import run

DIM = 8
ROOT = Path(__file__).resolve().parents[2]

# one writer process: appends batches of 1-3 changes to two projects for `seconds`
_WRITER = """
import asyncio, json, random, sys, time
from memgrpc.store.changes import ChangeTable
from memgrpc.store.db import Store, StoreConfig

async def main(uri, who, seconds):
    store = Store(StoreConfig(uri=uri, dim=8))
    await store.open()
    table = ChangeTable(store)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        size = random.randint(1, 3)
        project = random.choice(["p1", "p2"])
        await table.append(project, [{"who": who, "n": n + i} for i in range(size)])
        n += size
    await store.close()
    print(json.dumps({"changes": n, "commits": table.commits, "lost": table.races_lost}))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


async def test_writers_in_three_processes_never_duplicate_or_skip_a_sequence(
    tmp_path: Path,
) -> None:
    uri = str(tmp_path / "db")
    store = Store(StoreConfig(uri=uri, dim=DIM))
    await store.open()  # the table (and its anchor) exists before the writers race
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    runs = await asyncio.gather(
        *(
            run(sys.executable, str(script), uri, who, "4", cwd=ROOT, env={}, limit_s=120)
            for who in ("a", "b", "c")
        )
    )
    stats = []
    for code, out in runs:
        assert code == 0, out
        stats.append(json.loads(out.strip().splitlines()[-1]))
    table = ChangeTable(store)
    total = 0
    for project in ("p1", "p2"):
        head = await table.head(project, latest=True)
        changes = [c for _, batch in await table.read(project, 0, head + 10) for c in batch]
        # every change once, in sequences 1..head with no gap: a batch row per first sequence
        assert len(changes) == head
        firsts = [first for first, _ in await table.read(project, 0, head + 10)]
        assert firsts == sorted(set(firsts)) and firsts[0] == 1
        total += head
    assert total == sum(s["changes"] for s in stats)
    print("per process (changes, commits, races lost):", stats)
    await store.close()


async def test_the_maintainer_prunes_changes_past_the_retention_but_keeps_the_head(
    tmp_path: Path,
) -> None:
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=DIM))
    await store.open()
    table = ChangeTable(store)
    await table.append("p", [{"n": 1}, {"n": 2}])
    await asyncio.sleep(1.2)
    await table.append("p", [{"n": 3}])
    await Maintainer(store, MaintenanceConfig(change_retention_s=1.0)).run_once()
    assert await table.read("p", 0, 100) == [(3, [{"n": 3}])]
    assert await table.head("p") == 3
    # the next change continues the sequence
    assert await table.append("p", [{"n": 4}]) == 4
    await Maintainer(store).run_once()  # the default retention (7 days) keeps them
    assert [first for first, _ in await table.read("p", 0, 100)] == [3, 4]
    assert await table.prune(datetime.now(UTC) + timedelta(seconds=1)) == 2
    await store.close()
