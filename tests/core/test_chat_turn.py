"""A streamed turn's events: deltas that queue up behind a slow consumer go out as one, in order,
with consecutive sequence numbers; nothing waits for text that is not there yet."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from memgrpc.core.chat.turn import Delta, Done, Emit, Started, Turn
from memgrpc.llm import Usage


class ScriptedRun:
    """Stands in for ChatService: runs a fixed script of events (the Turn is what is tested)."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.tasks: set[asyncio.Future[Any]] = set()

    def track(self, task: asyncio.Future[Any]) -> asyncio.Future[Any]:
        self.tasks.add(task)
        return task

    async def run(self, plan: object, emit: Emit) -> None:
        for step in self.script:
            if isinstance(step, float):
                await asyncio.sleep(step)
            else:
                emit(step)


async def test_queued_deltas_are_sent_as_one() -> None:
    done = Done("msg_2", Usage(1, 3), timedelta(seconds=0.1))
    words = [Delta("The "), Delta("dog "), Delta("is "), Delta("Biscuit.")]
    run = ScriptedRun([Started("msg_1", "ses_1"), *words, 0.3, Delta(" Bye."), done])
    turn = Turn(run, object())  # type: ignore[arg-type]
    events = []
    async for event in turn.events():
        events.append(event)
        await asyncio.sleep(0.03)  # a consumer slower than the provider (COALESCE_AFTER_S)
    bodies = [e.body for e in events]
    assert bodies[0] == Started("msg_1", "ses_1")
    assert bodies[1] == Delta("The dog is Biscuit.")
    assert bodies[2] == Delta(" Bye.")  # produced later: not held back for more
    assert bodies[3] == done
    assert [e.sequence for e in events] == [1, 2, 3, 4]


async def test_a_consumer_that_keeps_up_gets_every_delta() -> None:
    words = [Delta(w) for w in ("one ", "two ", "three")]
    run = ScriptedRun([Started("msg_1", "ses_1"), *words, Done("m", Usage(1, 1), timedelta(0))])
    turn = Turn(run, object())  # type: ignore[arg-type]
    bodies = [e.body async for e in turn.events()]
    assert bodies[1:4] == words
