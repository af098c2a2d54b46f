"""Background upkeep, never on the request path: compaction, index refresh, old-version cleanup.

Lance's `optimize` merges small fragments, folds new rows into the FTS/scalar indexes and removes
old versions. The vector index is built once a table is large enough (exact search is fast and
exact below that) and rebuilt when the table has doubled since, or when it has the partitions of an
older version.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from lancedb.index import IvfHnswSq

from memgrpc.store.changes import ChangeTable
from memgrpc.store.db import Store, list_versions
from memgrpc.store.filters import Where
from memgrpc.store.memories import MemoryTable
from memgrpc.store.writer import TableWriter

log = structlog.get_logger(__name__)

# The vector index: IVF_HNSW_SQ, one HNSW graph per IVF partition, searched in the partitions
# nearest the query (store.memories.PROBES). Fewer, larger partitions mean fewer graphs walked for
# the same recall (measured: docs/BENCHMARKS.md). An index under another name has the old
# partitions.
VECTOR_INDEX = "vector_hnsw_idx"
ROWS_PER_PARTITION = 65_536


@dataclass(frozen=True)
class MaintenanceConfig:
    interval_s: float = 30.0
    small_fragments: int = 8  # compact once a table has this many small fragments
    unindexed_rows: int = 5000  # or this many rows outside the FTS/scalar indexes
    # versions older than this are removed once a compaction is done: Lance's commits, version
    # checks and version listing slow down with every version kept (measured: docs/BENCHMARKS.md)
    cleanup_older_than_s: float = 15.0
    # a snapshot read in flight (an export) keeps the versions since the one it reads, for at
    # most this long: a client that stops reading must not pile up versions for good
    snapshot_max_s: float = 600.0
    ann_min_rows: int = 50_000
    request_ttl_s: float = 24 * 3600.0
    # the change feed keeps its changes this long (MEMGRPC_CHANGE_RETENTION)
    change_retention_s: float = 7 * 86400.0
    # compact early once a table took this many commits since its last compaction,
    # but not more often than every `min_gap_s`
    pressure_commits: int = 64
    min_gap_s: float = 5.0
    # memories written before docs get theirs this many at a time, for at most doc_fill_s a pass
    doc_batch: int = 5000
    doc_fill_s: float = 10.0
    # a new LanceDB session (Store.renew_session) once its caches hold twice what they held at
    # the first pass after the last one, and at least this many MiB (0: never). Small against a
    # large store's indexes, so it renews only where replaced index versions are most of it.
    cache_renew_mb: int = 64


class Maintainer:
    def __init__(self, store: Store, config: MaintenanceConfig | None = None) -> None:
        self._store = store
        self.config = config or MaintenanceConfig()
        self._task: asyncio.Task[None] | None = None
        self._ann_rows: int | None = None
        self._docs_filled = False
        self._wake = asyncio.Event()
        self._cache_settled: int | None = None  # the caches' bytes a pass after a new session
        self.runs = 0

    def start(self) -> None:
        for writer in self._store.writers().values():
            writer.on_pressure = self._on_commit
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="maintainer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_commit(self, commits: int) -> None:
        if commits >= self.config.pressure_commits:
            self._wake.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.interval_s)
            self._wake.clear()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # upkeep must never take the server down
                log.warning("maintenance_failed", error=str(exc))
            await asyncio.sleep(self.config.min_gap_s)

    async def run_once(self, *, force: bool = False) -> None:
        """One pass over every table; `force` compacts regardless of thresholds."""
        await self._expire_requests()
        await self._expire_changes()
        for name in self._store.specs:
            tbl = self._store.table(name)
            if force or await self._needs_optimize(tbl):
                await self._optimize(name, tbl)
        await self._vector_index(self._store.table("memories"))
        await self._fill_docs()
        await self._renew_cache()
        self.runs += 1

    async def _renew_cache(self) -> None:
        if not self.config.cache_renew_mb:
            return
        size = int(self._store.session.size_bytes)
        if self._cache_settled is None:
            self._cache_settled = size
            return
        if size < max(self.config.cache_renew_mb * 2**20, 2 * self._cache_settled):
            return
        await self._store.renew_session()
        log.info(
            "store_session_renewed",
            cache_mib=round(size / 2**20),
            settled_mib=round(self._cache_settled / 2**20),
        )
        self._cache_settled = None

    async def _fill_docs(self) -> None:
        """Until every memory has its doc: once none is left, this process stops looking (its
        writes carry docs, and a rename refills the ones it voids)."""
        if self._docs_filled:
            return
        table = MemoryTable(self._store)
        deadline = time.monotonic() + self.config.doc_fill_s
        while time.monotonic() < deadline:
            filled = await table.fill_docs(limit=self.config.doc_batch)
            if filled:
                log.info("memory_docs_filled", rows=filled)
            if filled < self.config.doc_batch:
                self._docs_filled = True
                return

    async def _optimize(self, name: str, tbl: Any) -> None:
        """Compact one table alongside its writes; when a write wins the commit race (a table
        whose rows are updated all the time, like sessions), the last try runs between the
        writer's commits. When a stream of inserts outran its commit (LanceDB gives up after 30
        s), the next try holds the inserts too. Failing that (another replica's write), it is
        left for the next pass without holding up the other tables."""
        writer = self._store.writer(name)
        outrun = False  # the last try's commit lost to a stream of others (inserts, here)
        held = self._store.snapshot_age_s(name)
        if held > self.config.snapshot_max_s:
            log.warning("snapshot_read_outlived", table=name, age_s=round(held))
        keep = self.config.cleanup_older_than_s + min(held, self.config.snapshot_max_s)
        work = functools.partial(tbl.optimize, cleanup_older_than=timedelta(seconds=keep))
        for attempt in range(3):
            try:
                async with adopting(tbl, writer):
                    exclusive = attempt == 2 or outrun
                    stats = await (
                        writer.exclusive(work, appends=not outrun) if exclusive else work()
                    )
            except Exception as exc:
                text = str(exc).lower()
                outrun = "too many concurrent writers" in text
                if attempt == 2 or ("conflict" not in text and not outrun):
                    log.warning("table_optimize_failed", table=name, error=str(exc)[:300])
                    return
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            writer.commits_since_compaction = 0
            log.info("table_optimized", table=name, stats=str(stats))
            return

    async def _needs_optimize(self, tbl: Any) -> bool:
        stats = await tbl.stats()
        if stats["fragment_stats"]["num_small_fragments"] >= self.config.small_fragments:
            return True
        for ix in await tbl.list_indices():
            ix_stats = await tbl.index_stats(ix.name)
            if ix_stats is not None and ix_stats.num_unindexed_rows >= self.config.unindexed_rows:
                return True
        return False

    async def _vector_index(self, tbl: Any) -> None:
        rows = int(await tbl.count_rows())
        if rows < self.config.ann_min_rows:
            return
        names = [ix.name for ix in await tbl.list_indices() if ix.columns == ["vector"]]
        legacy = [n for n in names if n != VECTOR_INDEX]  # older partitions: rebuilt now
        has_index = VECTOR_INDEX in names
        if has_index and self._ann_rows is not None and rows < 2 * self._ann_rows:
            return
        if has_index and self._ann_rows is None:
            self._ann_rows = rows  # built by an earlier run or another replica
            return
        partitions = max(1, rows // ROWS_PER_PARTITION)
        async with adopting(tbl, self._store.writer("memories")):
            await tbl.create_index(
                "vector",
                config=IvfHnswSq(distance_type="cosine", num_partitions=partitions),
                replace=True,
                name=VECTOR_INDEX,
            )
            now = {ix.name for ix in await tbl.list_indices()}  # another replica's pass may
            for name in legacy:  # have dropped them meanwhile
                if name in now:
                    await tbl.drop_index(name)
        self._ann_rows = rows
        log.info("vector_index_built", rows=rows, partitions=partitions, replaced=legacy)
        await self._store.prewarm("memories")

    async def _expire_requests(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.config.request_ttl_s)
        tbl = self._store.table("requests")
        where = str(Where().cmp("create_time", "<", cutoff))
        if await tbl.count_rows(where):
            await self._store.writer("requests").delete(where)

    async def _expire_changes(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.config.change_retention_s)
        pruned = await ChangeTable(self._store).prune(cutoff)
        if pruned:
            log.info("changes_pruned", batches=pruned)


@contextlib.asynccontextmanager
async def adopting(tbl: Any, writer: TableWriter) -> AsyncIterator[None]:
    """Around a compaction or index build here: its versions are adopted as own when it ends,
    failed or not (a failed pass may have committed its compaction before an index conflict),
    and the table's version log says it is maintaining until then (the row caches wait for
    that: store/versionlog.py)."""
    with writer.versions.maintaining():
        before = int(await tbl.version())
        try:
            yield
        finally:
            try:
                await adopt_unchanged(tbl, writer, before)
            except Exception as exc:  # the caches then re-read: slower, never wrong
                log.warning("versions_not_adopted", table=writer.name, error=str(exc)[:300])


async def adopt_unchanged(tbl: Any, writer: TableWriter, before: int) -> None:
    """Count as own the versions after `before` that changed no rows: this pass's compaction and
    index commits. A version that added or removed rows meanwhile is another replica's write,
    which caches of this process must still see (core/kernel/rowcache.py), so it is left out."""
    after = int(await tbl.version())
    if after <= before:
        return
    summary = {int(v["version"]): v["metadata"] for v in await list_versions(tbl)}
    writer.versions.adopt(
        v
        for v in range(before + 1, after + 1)
        if v not in writer.versions.own_versions
        and rows_unchanged(summary.get(v - 1), summary.get(v))
    )


def rows_unchanged(prev: dict[str, str] | None, cur: dict[str, str] | None) -> bool:
    """Whether a version kept every row as it was, by its manifest summary: a compaction keeps the
    row count and drops deleted rows, an index build changes nothing; an append, delete or update
    adds data rows or deletion rows, and an update of some columns (a patch, which Lance writes as
    new files of those columns beside a fragment's) adds data files but no fragment."""
    if prev is None or cur is None:
        return False
    try:
        return (
            int(cur["total_rows"]) == int(prev["total_rows"])
            and int(cur["total_data_file_rows"]) <= int(prev["total_data_file_rows"])
            and int(cur["total_deletion_file_rows"]) <= int(prev["total_deletion_file_rows"])
            and _files_beyond_one(cur) <= _files_beyond_one(prev)
        )
    except (KeyError, ValueError):  # an unknown summary: treat it as a write
        return False


def _files_beyond_one(summary: dict[str, str]) -> int:
    """Data files beyond one per fragment: the column files patches wrote (compaction folds them)."""
    return int(summary["total_data_files"]) - int(summary["total_fragments"])
