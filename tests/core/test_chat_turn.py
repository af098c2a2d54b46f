"""A streamed turn's events: deltas that queue up behind a slow consumer go out as one, in order,
with consecutive sequence numbers; nothing waits for text that is not there yet. Its observer
sees every event as emitted and how the turn ended."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from memgrpc.core.chat.events import Delta, Done, Emit, EventBody, Started
from memgrpc.core.chat.turn import Turn
from memgrpc.core.kernel.errors import Unavailable
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
            elif isinstance(step, BaseException):
                raise step
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


class Recorder:
    def __init__(self) -> None:
        self.events: list[EventBody] = []
        self.ends: list[BaseException | None] = []
        self.ended = asyncio.Event()

    def on_event(self, body: EventBody) -> None:
        self.events.append(body)

    def on_end(self, error: BaseException | None) -> None:
        self.ends.append(error)
        self.ended.set()


async def test_the_observer_sees_each_event_as_emitted_and_the_end() -> None:
    words = [Delta(w) for w in ("one ", "two ", "three")]
    done = Done("m", Usage(1, 1), timedelta(0))
    run = ScriptedRun([Started("msg_1", "ses_1"), *words, done])
    seen = Recorder()
    turn = Turn(run, object(), seen)  # type: ignore[arg-type]
    events = []
    async for event in turn.events():
        events.append(event)
        await asyncio.sleep(0.03)  # the consumer's deltas are coalesced, the observer's not
    assert len(events) < len(seen.events)
    assert seen.events == [Started("msg_1", "ses_1"), *words, done]
    assert seen.ends == [None]


async def test_the_observer_sees_the_error_that_ended_the_turn() -> None:
    error = Unavailable("provider down", reason="PROVIDER_UNAVAILABLE")
    seen = Recorder()
    turn = Turn(ScriptedRun([Started("msg_1", "ses_1"), error]), object(), seen)  # type: ignore[arg-type]
    with pytest.raises(Unavailable):
        async for _ in turn.events():
            pass
    assert seen.events == [Started("msg_1", "ses_1")]
    assert seen.ends == [error]


async def test_the_observer_sees_a_cancelled_turn_end() -> None:
    seen = Recorder()
    turn = Turn(ScriptedRun([Started("msg_1", "ses_1"), 10.0]), object(), seen)  # type: ignore[arg-type]
    async for _ in turn.events():
        break  # started
    turn.cancel()
    await asyncio.wait_for(seen.ended.wait(), 5)
    assert len(seen.ends) == 1 and isinstance(seen.ends[0], asyncio.CancelledError)
