"""A background loop that runs one sweep every `interval_s` (auto-processing, notification
checks): started and stopped with the server, and never taken down by a failing sweep."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

log = structlog.get_logger(__name__)


class Periodic:
    """Subclasses give `name` and `run_once`; the loop keeps the interval from sweep start to
    sweep start, so a slow sweep delays the next one rather than piling them up."""

    name = "periodic"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a sweep must never take the server down
                log.warning("sweep_failed", sweep=self.name, error=str(exc))
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
