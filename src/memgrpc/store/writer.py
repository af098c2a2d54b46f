"""One writer per table: coalesces concurrent writes into few LanceDB commits.

Every `add` is a new fragment and version in LanceDB, and concurrent `merge_insert`s of the same
new key create duplicates. So all mutations of a table go through one task that drains its queue,
groups consecutive operations of the same kind into one commit, and resolves each caller's future
only after that commit (acknowledged = durable). A flush takes up to `max_rows` rows, waiting at
most `max_wait_ms` for more; the default wait is 0 because what arrives while a commit is in
flight forms the next commit by itself, and an idle writer should not delay a lone caller. While
this process compacts the table, the wait is at least MAINTAINING_WAIT_S.

Inserts never wait for a slow commit of other rows: a compaction (`exclusive`) or a patch (a
`merge_insert` that reads every fragment of the table, the slowest commit there is) runs aside
while inserts keep committing (new fragments never conflict with it), and the other writes wait
for it in their order.

The version of each commit goes to `versions` (store/versionlog.py), which the row caches check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar

import pyarrow as pa
import structlog

from memgrpc import tracing
from memgrpc.store.versionlog import VersionLog

log = structlog.get_logger(__name__)
# how long a patch's first try runs alongside inserts: LanceDB retries a merge_insert that lost
# its commit for up to 30 s, and a steady stream of inserts can outrun it all that time; the
# retries hold inserts, so they commit (measured: docs/BENCHMARKS.md)
PATCH_ALONGSIDE_S = 2.0
# while this process compacts the table, what arrives waits up to this long to share a commit:
# the compaction's commit is rebased over every commit made meanwhile, and many small ones can
# outrun it until LanceDB gives up (measured: docs/BENCHMARKS.md)
MAINTAINING_WAIT_S = 0.05
T = TypeVar("T")

OpKind = Literal[
    "insert", "upsert", "insert_absent", "delete", "update", "patch", "exclusive", "wake"
]
# (kind, rows, seconds, ok) of every commit, for metrics (server/metrics.py)
CommitObserver = Callable[[str, int, float, bool], None]


@dataclass
class _Op:
    kind: OpKind
    rows: list[dict[str, Any]] = field(default_factory=list)
    where: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    # `exclusive`: the work to run between this writer's commits, and whether inserts may
    # commit while it runs
    work: Callable[[], Awaitable[Any]] | None = None
    appends: bool = True
    # None for most kinds; the number of rows changed for `update`
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    # the submitting caller's span, if traced: the commit's span goes under it
    trace: tracing.Parent | None = None

    @property
    def group_key(self) -> tuple[str, ...]:
        """Ops with equal keys may share a commit: same kind and, for patches, same columns."""
        if self.kind == "patch":
            return (self.kind, self.where, *self.rows[0].keys())
        return (self.kind,)


@dataclass
class WriterStats:
    commits: int = 0
    rows: int = 0
    last_flush_rows: int = 0
    queue_depth: int = 0


class TableWriter:
    """Serialises and batches the writes of one table."""

    def __init__(
        self,
        table: Any,
        schema: pa.Schema,
        key: str,
        *,
        max_rows: int = 2000,
        max_wait_ms: float = 0.0,
        name: str = "",
    ) -> None:
        self.name = name
        self._table = table
        self._schema = schema
        self._key = key
        self._max_rows = max_rows
        self._max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Op | None] = asyncio.Queue()
        self._held: list[list[_Op]] = []  # groups waiting for the work aside to end
        self._task: asyncio.Task[None] | None = None
        self._aside: asyncio.Future[None] | None = None  # an exclusive work or patch running
        self._appends = True  # whether inserts may commit while it runs
        self._closed = False
        self.stats = WriterStats()
        # every commit is a fragment: the maintainer listens to compact before reads slow down
        self.commits_since_compaction = 0
        self.on_pressure: Callable[[int], None] | None = None
        self.on_commit: CommitObserver | None = None
        # the versions committed here, for the caches of this table
        self.versions = VersionLog()

    # -- public API: each returns once the rows are committed ---------------------------------
    async def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows whose keys are new (server-generated ids)."""
        await self._submit(_Op("insert", rows=list(rows)))

    async def upsert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or fully replace rows by key."""
        await self._submit(_Op("upsert", rows=list(rows)))

    async def insert_absent(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows whose key is not there yet; existing rows are left alone."""
        await self._submit(_Op("insert_absent", rows=list(rows)))

    async def delete(self, where: str) -> None:
        if not where:
            raise ValueError("refusing to delete without a filter")
        await self._submit(_Op("delete", where=where))

    async def update(self, where: str, values: dict[str, Any]) -> int:
        """Set `values` on the rows matching `where`; returns how many rows changed.

        Committed alone (values differ per op). The count makes it a compare-and-set: put the
        expected old state in `where` and check the result.
        """
        if not where or not values:
            raise ValueError("update needs a filter and values")
        result: int = await self._submit(_Op("update", where=where, values=dict(values)))
        return result

    async def patch(self, rows: Sequence[dict[str, Any]], *, only_if: str = "") -> None:
        """Overwrite the columns present in `rows` (key included) of rows whose key exists (and
        that meet `only_if`, a merge condition over `target.` and `source.` columns).

        Missing keys are ignored, so a late patch (e.g. a hot counter flushed after a purge)
        never brings a deleted row back. Every row of one call must carry the same columns.
        """
        if rows and any(r.keys() != rows[0].keys() for r in rows):
            raise ValueError("every patched row must have the same columns")
        await self._submit(_Op("patch", rows=list(rows), where=only_if))

    async def exclusive(self, work: Callable[[], Awaitable[T]], *, appends: bool = True) -> T:
        """Run `work` (a compaction) with no commit of this writer in between but appends: a
        rewrite of the table's fragments that ran alongside an update would lose the commit race
        to it, while new fragments never conflict with it (so inserts keep flowing).
        `appends=False` holds inserts too: a steady stream of them can outrun its commit."""
        result: T = await self._submit(_Op("exclusive", work=work, appends=appends))
        return result

    def rebind(self, table: Any) -> None:
        """Commit through `table` from now on (a handle of a new session, Store.renew_session):
        called from this writer's exclusive work, with no commit in flight."""
        self._table = table

    async def close(self) -> None:
        """Flush what is queued, then stop."""
        self._closed = True
        if self._task is not None:
            await self._queue.put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def pending(self) -> int:
        """Operations queued and not yet taken into a commit."""
        return self._queue.qsize()

    # -- internals ----------------------------------------------------------------------------
    async def _submit(self, op: _Op) -> Any:
        if self._closed:
            raise RuntimeError("writer is closed")
        if op.kind not in ("delete", "update", "exclusive") and not op.rows:
            return None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="table-writer")
        with tracing.span("store.write", table=self.name, kind=op.kind, rows=len(op.rows)):
            op.trace = tracing.capture()
            await self._queue.put(op)
            self.stats.queue_depth = self._queue.qsize()
            # shield: a cancelled caller must not cancel a commit that others share
            return await asyncio.shield(op.future)

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            if first.kind == "wake":  # the exclusive work ended: commit what waited for it
                await self._flush([])
                continue
            batch = [first]
            nrows = len(first.rows)
            wait = self._max_wait
            if self.versions.in_maintenance:
                wait = max(wait, MAINTAINING_WAIT_S)
            deadline = time.monotonic() + wait
            while nrows < self._max_rows:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if item is None:
                    stop = True
                    break
                if item.kind == "wake":
                    continue
                batch.append(item)
                nrows += len(item.rows)
            self.stats.queue_depth = self._queue.qsize()
            await self._flush(batch)
        await self._drain()

    def _group(self, batch: list[_Op]) -> list[list[_Op]]:
        """Ops that may share a commit, in commit order. A row op joins the latest group of its
        kind when no op in between touches its keys or filters rows (delete, update,
        exclusive): interleaved inserts and patches of different rows (new sessions and their
        counters) then take two commits, not one each. Deletes group only when consecutive."""
        groups: list[list[_Op]] = []
        keys: list[set[Any]] = []
        for op in batch:
            mine = {r[self._key] for r in op.rows}
            target = None
            if op.kind in ("insert", "upsert", "insert_absent", "patch"):
                for i in range(len(groups) - 1, -1, -1):
                    if groups[i][0].kind in ("delete", "update", "exclusive"):
                        break
                    if groups[i][0].group_key == op.group_key:
                        target = i
                        break
                    if keys[i] & mine:
                        break
            elif op.kind == "delete" and groups and groups[-1][0].kind == "delete":
                target = len(groups) - 1
            if target is None:
                groups.append([op])
                keys.append(mine)
            else:
                groups[target].append(op)
                keys[target] |= mine
        return groups

    async def _aside_done(self) -> None:
        if self._aside is not None:
            await self._aside  # never raises: the work's outcome goes to its callers
            self._aside = None

    def _set_aside(self, work: Awaitable[None], appends: bool) -> None:
        self._aside = asyncio.ensure_future(work)
        self._appends = appends
        # the loop may be idle when it ends: wake it for the groups held meanwhile
        self._aside.add_done_callback(lambda _: self._queue.put_nowait(_Op("wake")))

    async def _flush(self, batch: list[_Op]) -> None:
        """Commit the batch's groups in order; while an exclusive work or a patch runs aside,
        inserts commit at once and the other groups wait for it, in their order, across
        flushes."""
        for group in self._group(batch):
            if not self._aside_running:
                await self._commit_held()  # which may set a held one aside
            if not self._aside_running:
                await self._start(group)
            elif group[0].kind == "insert" and self._appends:
                await self._commit_group(group)
            else:
                self._held.append(group)
        if not self._aside_running:
            await self._commit_held()

    async def _start(self, group: list[_Op]) -> None:
        """Commit `group`, or set it running aside (an exclusive work, a patch)."""
        if group[0].kind == "exclusive":
            self._set_aside(_run_exclusive(group[0]), group[0].appends)
        elif group[0].kind == "patch":
            self._set_aside(self._commit_group(group), appends=True)
        else:
            await self._commit_group(group)

    @property
    def _aside_running(self) -> bool:
        return self._aside is not None and not self._aside.done()

    async def _commit_held(self) -> None:
        """Wait for the work aside (if any), then commit the groups held for it; a held patch
        or exclusive work is set aside again, and the rest waits for it as before."""
        await self._aside_done()
        while self._held and not self._aside_running:
            await self._start(self._held.pop(0))

    async def _drain(self) -> None:
        """Everything held and aside, committed (the writer is closing)."""
        while self._aside is not None or self._held:
            await self._commit_held()

    async def _commit_group(self, group: list[_Op]) -> None:
        traced = [op.trace for op in group if op.trace is not None]
        start = time.perf_counter()
        nrows = 0
        try:
            with tracing.span_under(
                traced[0] if traced else None,
                "store.commit",
                links=traced[1:32],
                table=self.name,
                kind=group[0].kind,
                ops=len(group),
            ) as span:
                nrows = await self._commit_with_retry(group)
                tracing.set_attributes(span, rows=nrows)
            self._observe(group[0].kind, nrows, time.perf_counter() - start, True)
            self.stats.commits += 1
            self.commits_since_compaction += 1
            if self.on_pressure is not None:
                self.on_pressure(self.commits_since_compaction)
            self.stats.rows += nrows
            self.stats.last_flush_rows = nrows
            result = nrows if group[0].kind == "update" else None
            for op in group:
                if not op.future.done():
                    op.future.set_result(result)
        except Exception as exc:  # every caller of the failed commit sees the error
            log.error("store_commit_failed", kind=group[0].kind, error=str(exc))
            self._observe(group[0].kind, nrows, time.perf_counter() - start, False)
            for op in group:
                if not op.future.done():
                    op.future.set_exception(exc)

    def _observe(self, kind: str, rows: int, seconds: float, ok: bool) -> None:
        if self.on_commit is None:
            return
        try:
            self.on_commit(kind, rows, seconds, ok)
        except Exception as exc:  # metrics must never fail a write
            log.warning("commit_observer_failed", error=str(exc))

    def _dedup(self, group: list[_Op]) -> list[dict[str, Any]]:
        """Last write per key wins, so a commit never holds one key twice."""
        by_key: dict[Any, dict[str, Any]] = {}
        for op in group:
            for row in op.rows:
                by_key[row[self._key]] = row
        return list(by_key.values())

    async def _commit_with_retry(self, group: list[_Op]) -> int:
        """Retry commits that lost a race (compaction or another replica committed first)."""
        patch = group[0].kind == "patch"
        for attempt in range(4):
            try:
                alongside = patch and attempt == 0
                return await self._commit(group, PATCH_ALONGSIDE_S if alongside else None)
            except Exception as exc:
                if attempt == 3 or not _retryable(exc):
                    raise
                if patch:
                    self._appends = False  # the patch runs aside: inserts now wait for it
                log.info("store_commit_retry", attempt=attempt + 1, error=str(exc))
                await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    async def _commit(self, group: list[_Op], patch_timeout_s: float | None = None) -> int:
        kind = group[0].kind
        rows_done = 0
        if kind == "delete":
            await self._table.checkout_latest()
            res = await self._table.delete(" OR ".join(f"({op.where})" for op in group))
        elif kind == "update":
            (op,) = group
            await self._table.checkout_latest()
            res = await self._table.update(op.values, where=op.where)
            rows_done = int(res.rows_updated)
        else:
            rows = self._dedup(group)
            rows_done = len(rows)
            if kind == "patch":
                cols = pa.schema([self._schema.field(c) for c in rows[0]])
                await self._table.checkout_latest()
                merge = self._table.merge_insert(self._key)
                merge = merge.when_matched_update_all(where=group[0].where or None)
                res = await merge.execute(
                    pa.Table.from_pylist(rows, schema=cols),
                    timeout=None if patch_timeout_s is None else timedelta(seconds=patch_timeout_s),
                )
            else:
                data = pa.Table.from_pylist(rows, schema=self._schema)
                if kind == "insert":
                    res = await self._table.add(data)
                else:
                    await self._table.checkout_latest()
                    merge = self._table.merge_insert(self._key)
                    if kind == "upsert":
                        merge = merge.when_matched_update_all()
                    res = await merge.when_not_matched_insert_all().execute(data)
        self.versions.record(getattr(res, "version", None))
        return rows_done


async def _run_exclusive(op: _Op) -> None:
    assert op.work is not None
    try:
        result = await op.work()
    except Exception as exc:
        if not op.future.done():
            op.future.set_exception(exc)
    else:
        if not op.future.done():
            op.future.set_result(result)


def _retryable(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("conflict", "retryable", "concurrent", "merge insert timed out"))
