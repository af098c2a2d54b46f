"""The background loop: sweeps repeat at the interval, a failing sweep does not end the loop,
and stop ends it."""

from __future__ import annotations

import asyncio

from memgrpc.core.kernel.periodic import Periodic


class Counting(Periodic):
    name = "counting"

    def __init__(self) -> None:
        super().__init__(interval_s=0.01)
        self.runs = 0

    async def run_once(self) -> int:
        self.runs += 1
        if self.runs == 2:
            raise RuntimeError("one bad sweep")
        return self.runs


async def test_sweeps_repeat_survive_a_failure_and_stop() -> None:
    loop = Counting()
    loop.start()
    loop.start()  # a second start is a no-op, not a second loop
    for _ in range(200):
        if loop.runs >= 4:
            break
        await asyncio.sleep(0.01)
    await loop.stop()
    assert loop.runs >= 4
    stopped_at = loop.runs
    await asyncio.sleep(0.05)
    assert loop.runs == stopped_at
    await loop.stop()  # stopping twice is fine
