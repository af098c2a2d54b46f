"""The change feed: every memory write records a change, watchers stream them in order.

Order of a write: the memory's rows commit first, then its change, then the caller is answered;
a write is never acknowledged before its change is durable. A kill -9 between the two leaves an
unacknowledged write without its change (the caller saw an error and retries; a retried update
or delete records the change then), never a change of a write that did not happen.

Writers only append to the store (store/changes.py): watchers read the store themselves, each
at its own pace, so a slow watcher costs writers nothing. Each watcher holds a bounded buffer
between its reads and its stream: a client reading slower than changes come is fed at its pace
(from the store), and one that stops reading for `stall_s` with the buffer full is ended with
ABORTED / WATCH_LAGGING naming the sequence to resume after.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog

from memgrpc.core.kernel.errors import Aborted, InvalidArgument, OutOfRange
from memgrpc.core.memory.model import Memory
from memgrpc.store.changes import ChangeTable
from memgrpc.store.db import Store

log = structlog.get_logger(__name__)

# sequences read from the store at a time by a watcher
READ_WINDOW = 500
_TIME_FIELDS = frozenset(f.name for f in dataclasses.fields(Memory) if f.name.endswith("_time"))


class ChangeKind(StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    # the content changed: a new version of the memory
    VERSIONED = "VERSIONED"
    CONFLICT_OPENED = "CONFLICT_OPENED"
    CONFLICT_RESOLVED = "CONFLICT_RESOLVED"
    # every memory of `user_id` was deleted (the user was purged): one change, not one per memory
    USER_DELETED = "USER_DELETED"
    # nothing new; `sequence` is how far the feed has been read (a filtered watcher resumes there)
    HEARTBEAT = "HEARTBEAT"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    user_id: str = ""
    memory_id: str = ""
    # the memory as written (None for deletes and conflicts)
    memory: Memory | None = None
    conflict_id: str = ""
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    sequence: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "user_id": self.user_id,
            "memory_id": self.memory_id,
            "memory": None if self.memory is None else _memory_json(self.memory),
            "conflict_id": self.conflict_id,
            "time": self.time.isoformat(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], sequence: int) -> Change:
        mem = d.get("memory")
        return cls(
            kind=ChangeKind(d["kind"]),
            user_id=d.get("user_id", ""),
            memory_id=d.get("memory_id", ""),
            memory=None if mem is None else _memory_from_json(mem),
            conflict_id=d.get("conflict_id", ""),
            time=datetime.fromisoformat(d["time"]),
            sequence=sequence,
        )


def written(kind: ChangeKind, m: Memory) -> Change:
    return Change(kind, user_id=m.user_id, memory_id=m.id, memory=m)


def deleted(user_id: str, memory_id: str) -> Change:
    return Change(ChangeKind.DELETED, user_id=user_id, memory_id=memory_id)


def _memory_json(m: Memory) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(m):
        value = getattr(m, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _memory_from_json(d: dict[str, Any]) -> Memory:
    known = {f.name for f in dataclasses.fields(Memory)}
    values: dict[str, Any] = {
        k: (datetime.fromisoformat(v) if k in _TIME_FIELDS and isinstance(v, str) else v)
        for k, v in d.items()
        if k in known  # a field a newer replica added is left out, not an error
    }
    return Memory(**values)


@dataclass(frozen=True)
class WatchConfig:
    # how often a watcher looks for other replicas' changes (this process's wake it at once)
    poll_s: float = 0.5
    # a HEARTBEAT after this long without a change sent
    heartbeat_s: float = 15.0
    # changes a watcher holds for a client that reads slower than they come, and how long
    # they may wait for it when the buffer is full before the stream ends with WATCH_LAGGING
    buffer: int = 1000
    stall_s: float = 30.0


@dataclass
class _Pending:
    project_id: str
    changes: list[Change]
    future: asyncio.Future[None]


class ChangeLog:
    """Appends changes (coalesced: what arrives while a commit runs shares the next one) and
    serves watchers."""

    def __init__(self, store: Store, config: WatchConfig | None = None) -> None:
        self.table = ChangeTable(store)
        self.config = config or WatchConfig()
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self.lagging_ends = 0

    # -- writing ------------------------------------------------------------------------------
    async def record(self, project_id: str, changes: Sequence[Change]) -> None:
        """Returns once `changes` are durable in the feed, in the order given."""
        if not changes:
            return
        item = _Pending(project_id, list(changes), asyncio.get_running_loop().create_future())
        self._pending.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._commit_loop())
        # shield: a cancelled writer must not cancel a commit other writers share
        await asyncio.shield(item.future)

    async def _commit_loop(self) -> None:
        # one commit at a time in this process: commits of the feed serialise anyway
        while self._pending:
            taken, self._pending = self._pending, []
            by_project: dict[str, list[_Pending]] = {}
            for p in taken:
                by_project.setdefault(p.project_id, []).append(p)
            for project_id, items in by_project.items():
                try:
                    await self.table.append(
                        project_id, [c.to_json() for p in items for c in p.changes]
                    )
                except Exception as exc:
                    log.error("change_commit_failed", project_id=project_id, error=str(exc))
                    for p in items:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                for p in items:
                    if not p.future.done():
                        p.future.set_result(None)
                for wake in self._watchers.get(project_id, ()):
                    wake.set()

    # -- watching -----------------------------------------------------------------------------
    async def watch(
        self, project_id: str, user_id: str, after: int, *, from_now: bool = False
    ) -> AsyncIterator[Change]:
        """The project's changes after sequence `after` (of `user_id` alone when given), then
        the new ones as they come, with heartbeats when idle. Ends with OUT_OF_RANGE when the
        changes after `after` were pruned, ABORTED / WATCH_LAGGING when the client lags."""
        head = await self.table.head(project_id, latest=True)
        if from_now:
            after = head
        if after < 0:
            raise InvalidArgument.field("after_sequence", "must not be negative")
        if after > head:
            raise InvalidArgument.field(
                "after_sequence", f"is past the last sequence of the feed ({head})"
            )
        wake = asyncio.Event()
        queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=self.config.buffer)
        self._watchers.setdefault(project_id, set()).add(wake)
        pump = asyncio.get_running_loop().create_task(
            self._pump(project_id, user_id, after, head, queue, wake)
        )
        getter: asyncio.Future[Change] | None = None
        try:
            while True:
                if queue.empty() and pump.done():
                    pump.result()  # its error ends the stream, after what it buffered
                    return
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, pump}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
        finally:
            if getter is not None:
                getter.cancel()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            watchers = self._watchers.get(project_id, set())
            watchers.discard(wake)
            if not watchers:
                self._watchers.pop(project_id, None)

    async def _put(self, queue: asyncio.Queue[Change], change: Change, cursor: int) -> None:
        """Waits for room while the client reads; a buffer full for `stall_s` ends the stream
        (the client stopped reading: its changes stay in the store, not in this process)."""
        try:
            await asyncio.wait_for(queue.put(change), self.config.stall_s)
        except TimeoutError:
            self.lagging_ends += 1
            raise Aborted(
                f"the watcher stopped reading with {self.config.buffer} changes waiting; "
                f"resume after sequence {cursor}",
                reason="WATCH_LAGGING",
                metadata={"resume_after_sequence": str(cursor)},
            ) from None

    async def _pump(
        self,
        project_id: str,
        user_id: str,
        cursor: int,
        head: int,
        queue: asyncio.Queue[Change],
        wake: asyncio.Event,
    ) -> None:
        """Reads the store from `cursor` on into `queue`; raises to end the stream."""
        cfg = self.config
        quiet_since = time.monotonic()
        while True:
            wake.clear()
            while True:
                batches = await self.table.read(project_id, cursor, READ_WINDOW)
                if not batches:
                    if head > cursor:  # known to exist, yet nothing to read: pruned
                        raise _out_of_range(cursor)
                    break
                for first, changes in batches:
                    if first > cursor + 1:
                        raise _out_of_range(cursor)
                    for i, raw in enumerate(changes):
                        seq = first + i
                        if seq <= cursor:
                            continue
                        if not user_id or raw.get("user_id") == user_id:
                            await self._put(queue, Change.from_json(raw, seq), cursor)
                            quiet_since = time.monotonic()
                        cursor = seq
                head = max(head, cursor)
            idle = time.monotonic() - quiet_since
            if idle >= cfg.heartbeat_s:
                if not queue.full():
                    queue.put_nowait(Change(ChangeKind.HEARTBEAT, user_id=user_id, sequence=cursor))
                quiet_since = time.monotonic()
                idle = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(cfg.poll_s, cfg.heartbeat_s - idle))


def _out_of_range(cursor: int) -> OutOfRange:
    return OutOfRange(
        f"the changes after sequence {cursor} are older than the feed keeps; "
        "read the memories again and watch from the sequence of the feed now",
        reason="CURSOR_EXPIRED",
        metadata={"after_sequence": str(cursor)},
    )
