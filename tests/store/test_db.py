"""The store's LanceDB helpers."""

from __future__ import annotations

import asyncio
import warnings
from datetime import timedelta
from pathlib import Path

import lancedb
import pyarrow as pa

from memgrpc.store.db import list_versions


async def test_versions_are_listed_while_a_cleanup_removes_them(tmp_path: Path) -> None:
    """LanceDB lists the versions, then reads each manifest: a cleanup in between failed the
    listing (seen under load as metrics_store_stats_failed "Not found: ..._versions/N.manifest";
    with `tries=1` this test fails so)."""
    db = await lancedb.connect_async(str(tmp_path))
    tbl = await db.create_table("t", pa.table({"x": [0]}))
    for i in range(300):
        await tbl.add(pa.table({"x": [i]}))

    async def count_often() -> list[int]:
        return [len(await list_versions(tbl)) for _ in range(20)]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # cleanup_older_than=0 is meant here
        _, counts, more = await asyncio.gather(
            tbl.optimize(cleanup_older_than=timedelta(0)), count_often(), count_often()
        )
    assert all(1 <= n <= 303 for n in counts + more)  # the 301 written and the compaction's
    assert [int(v["version"]) for v in await list_versions(tbl)] == [await tbl.version()]
