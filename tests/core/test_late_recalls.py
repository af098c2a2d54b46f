"""ASYNC late recalls: kept per session for the next turn, taken once, bounded (oldest first)."""

from __future__ import annotations

from memgrpc.core.chat.context import Context
from memgrpc.core.chat.late import LateRecalls


def ctx(text: str) -> Context:
    return Context(text=text, memories=[], recent_messages=[], summaries=[], counter=len)


def test_taken_once_and_bounded() -> None:
    late = LateRecalls(size=2)
    late.put("a", ctx("A"))
    late.put("b", ctx("B"))
    late.put("a", ctx("A2"))  # a refreshed session moves to the back
    late.put("c", ctx("C"))  # over the bound: the oldest (b) goes
    assert len(late) == 2
    assert late.take("b") is None
    got = late.take("a")
    assert got is not None and got.text == "A2"
    assert late.take("a") is None  # taken once
