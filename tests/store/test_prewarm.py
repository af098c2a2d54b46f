"""A store prewarms the memories' search indexes at open (unless told not to): the first
searches then find them in LanceDB's index cache instead of loading them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lancedb.index import IvfHnswSq

from memgrpc.store.db import Store, StoreConfig
from tests.store.memory_rows import DIM, _row


async def _cached_bytes(uri: str, *, prewarm: bool) -> int:
    store = Store(StoreConfig(uri=uri, dim=DIM, prewarm_indexes=prewarm))
    await store.open()
    try:
        return int(store.session.size_bytes)
    finally:
        await store.close()


async def test_open_prewarms_the_search_indexes(tmp_path: Path) -> None:
    uri = str(tmp_path / "db")
    store = Store(StoreConfig(uri=uri, dim=DIM))
    await store.open()
    rng = np.random.default_rng(3)
    rows = [_row(i, doc=True) | {"id": f"m{i:04d}"} for i in range(2000)]
    for row in rows:
        row["vector"] = rng.normal(size=DIM).astype(np.float32).tolist()
    await store.writer("memories").insert(rows)
    tbl = store.table("memories")
    await tbl.create_index("vector", config=IvfHnswSq(distance_type="cosine", num_partitions=2))
    await tbl.optimize()  # the rows into the full-text index
    kinds = {ix.index_type for ix in await tbl.list_indices()}
    assert {"IvfHnswSq", "FTS"} <= kinds
    await store.close()

    cold = await _cached_bytes(uri, prewarm=False)
    warm = await _cached_bytes(uri, prewarm=True)
    assert warm > cold + 500_000, (cold, warm)  # ~1 MB: the two indexes of 2000 rows
