"""Users come into being implicitly on their first write; each write marks them active.

`last_active_time` is a hot counter: every memory or message write touches it. Committing it per
write would add a LanceDB version per write, so touches are coalesced in memory (latest time per
user) and flushed as one partial-row patch every `flush_interval_s` and at shutdown. Reads merge
the pending value in, so this replica never shows a stale time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import structlog

from memgrpc.core.conversation.records import User, user_pk, user_row
from memgrpc.store.db import Store

log = structlog.get_logger(__name__)

Key = tuple[str, str]  # (project_id, user_id)
# how long an existence check is trusted (another replica may purge the user meanwhile)
KNOWN_TTL_S = 300.0
_KNOWN_MAX = 100_000


class UserRegistry:
    def __init__(self, store: Store, *, flush_interval_s: float = 2.0) -> None:
        self._writer = store.writer("users")
        self._known: dict[Key, float] = {}
        self._pending: dict[Key, datetime] = {}
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.flush_interval_s = flush_interval_s

    async def ensure(
        self, project_id: str, user_ids: Iterable[str], *, active: bool = True
    ) -> None:
        """Create the users that do not exist yet; `active` marks all of them active now (a
        memory or message write does, a session creation does not)."""
        ids = set(user_ids)
        now = datetime.now(UTC)
        if active:
            self.touch(project_id, ids, now)
        mono = time.monotonic()
        new = {
            u for u in ids if mono - self._known.get((project_id, u), -KNOWN_TTL_S) >= KNOWN_TTL_S
        }
        if not new:
            return
        await self._writer.insert_absent(
            [
                user_row(project_id, User(u, create_time=now, last_active_time=now))
                for u in sorted(new)
            ]
        )
        self.remember(project_id, new)

    def remember(self, project_id: str, user_ids: Iterable[str]) -> None:
        """Note users known to exist (just created), so `ensure` skips the write."""
        mono = time.monotonic()
        self._known.update(((project_id, u), mono) for u in user_ids)
        if len(self._known) > _KNOWN_MAX:  # drop expired entries; they would be re-checked anyway
            self._known = {k: t for k, t in self._known.items() if mono - t < KNOWN_TTL_S}

    def touch(self, project_id: str, user_ids: Iterable[str], when: datetime) -> None:
        for u in user_ids:
            key = (project_id, u)
            prev = self._pending.get(key)
            if prev is None or when > prev:
                self._pending[key] = when

    def pending(self, project_id: str, user_id: str) -> datetime | None:
        """A not yet flushed activity time of the user on this replica."""
        return self._pending.get((project_id, user_id))

    def forget(self, project_id: str, user_id: str) -> None:
        """Drop everything cached about the user (it is being purged or renamed)."""
        self._known.pop((project_id, user_id), None)
        self._pending.pop((project_id, user_id), None)

    # -- flushing -------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write the pending activity times as one patch; on failure they stay pending."""
        async with self._flush_lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            try:
                await self._writer.patch(
                    [
                        {"pk": user_pk(p, u), "last_active_time": t}
                        for (p, u), t in sorted(batch.items())
                    ]
                )
            except Exception:
                for key, t in batch.items():
                    prev = self._pending.get(key)
                    self._pending[key] = t if prev is None or t > prev else prev
                raise

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="user-activity")

    async def stop(self) -> None:
        """Stop the loop, then flush what is pending (before the store closes)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as exc:
            log.warning("activity_flush_failed", error=str(exc))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed flush is retried on the next tick
                log.warning("activity_flush_failed", error=str(exc))
