"""A run's events: appended by its owner with indexes 0, 1, 2, ... and read by any replica.

An event is visible only once its row is committed (the append awaits the write, then wakes
this process's followers), so nothing streamed can be lost by a crash. Followers poll the
table at a short interval, which is what lets a replica that does not run the run serve its
stream; the in-process wake-up only makes the local case faster. A follower sends events in
index order and never skips one: an index it cannot see yet (another replica's write not yet
visible here) is waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from memgrpc.core.kernel.errors import OutOfRange
from memgrpc.core.simulation.model import (
    HEARTBEAT,
    TERMINAL_EVENTS,
    RunEvent,
    event_from_row,
    event_row,
)
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Table

READ_BATCH = 500

# called while a follower idles: may end the run (e.g. its owner is gone)
IdleCheck = Callable[[], Awaitable[None]]


class EventLog:
    def __init__(self, store: Store, *, poll_s: float = 0.25, heartbeat_s: float = 10.0) -> None:
        self._table = Table(store, "run_events")
        self._wake: dict[str, asyncio.Event] = {}
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s

    @staticmethod
    def _where(project_id: str, run_id: str) -> Where:
        return Where().eq("project_id", project_id).eq("run_id", run_id)

    async def append(
        self,
        project_id: str,
        run_id: str,
        index: int,
        kind: str,
        message: str,
        data: dict[str, Any],
    ) -> RunEvent:
        e = RunEvent(run_id, index, kind, message, data, datetime.now(UTC))
        await self._table.writer.insert([event_row(project_id, e)])
        wake = self._wake.get(run_id)
        if wake is not None:
            wake.set()
        return e

    async def count(self, project_id: str, run_id: str) -> int:
        return await self._table.count(self._where(project_id, run_id))

    async def read(
        self, project_id: str, run_id: str, from_index: int, limit: int = READ_BATCH
    ) -> list[RunEvent]:
        where = self._where(project_id, run_id).cmp("index", ">=", from_index)
        where = where.cmp("index", "<", from_index + limit)
        rows = await self._table.rows(where)
        return sorted((event_from_row(r) for r in rows), key=lambda e: e.index)

    async def all(self, project_id: str, run_id: str) -> list[RunEvent]:
        out: list[RunEvent] = []
        while True:
            batch = await self.read(project_id, run_id, len(out))
            out.extend(batch)
            if len(batch) < READ_BATCH:
                return out

    async def finished_count(self, project_id: str, run_id: str) -> int | None:
        """The number of events when the terminal one is stored, else None."""
        n = await self.count(project_id, run_id)
        if n == 0:
            return None
        last = await self.read(project_id, run_id, n - 1, 1)
        return n if last and last[0].type in TERMINAL_EVENTS else None

    async def delete(self, project_id: str, run_id: str) -> None:
        await self._table.writer.delete(str(self._where(project_id, run_id)))

    async def follow(
        self, project_id: str, run_id: str, from_index: int, idle: IdleCheck | None = None
    ) -> AsyncIterator[RunEvent]:
        """Stored events from `from_index`, then new ones, until the terminal event; a heartbeat
        (index = the next index) after `heartbeat_s` without one. OUT_OF_RANGE when the run
        has finished and `from_index` is past its last event."""
        n = await self.finished_count(project_id, run_id)
        if n is not None and from_index >= n:
            raise OutOfRange(
                f"run {run_id} has finished with {n} events (indexes 0..{n - 1}): "
                f"from_index {from_index} is past its end",
                reason="RUN_EVENT_INDEX_OUT_OF_RANGE",
                metadata={"run_id": run_id, "event_count": str(n)},
            )
        wake = self._wake.setdefault(run_id, asyncio.Event())
        next_index = from_index
        last_sent = time.monotonic()
        while True:
            wake.clear()
            for e in await self.read(project_id, run_id, next_index):
                if e.index != next_index:
                    break  # not visible here yet: wait for it
                yield e
                next_index += 1
                last_sent = time.monotonic()
                if e.type in TERMINAL_EVENTS:
                    return
            if time.monotonic() - last_sent >= self.heartbeat_s:
                if idle is not None:
                    await idle()
                n = await self.finished_count(project_id, run_id)
                if n is not None and next_index >= n:  # it ended before the index asked for
                    raise OutOfRange(
                        f"run {run_id} finished with {n} events (indexes 0..{n - 1}): "
                        f"from_index {from_index} is past its end",
                        reason="RUN_EVENT_INDEX_OUT_OF_RANGE",
                        metadata={"run_id": run_id, "event_count": str(n)},
                    )
                yield RunEvent(run_id, next_index, HEARTBEAT, "", {}, datetime.now(UTC))
                last_sent = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.poll_s)

    def forget(self, run_id: str) -> None:
        """The run's wake-up is no longer needed here (its followers poll on)."""
        self._wake.pop(run_id, None)
