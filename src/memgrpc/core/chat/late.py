"""ASYNC memory_mode's late recalls: a recall that missed its turn's deadline is kept for the
session's next turn, so what it found is not lost.

Test hook: MEMGRPC_TEST_RECALL_DELAY_MS delays each turn's context fetch (ASYNC tests and the
benchmark). Unset in production.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from memgrpc.core.chat.context import Context

LATE_SESSIONS = 1024  # sessions whose late (ASYNC) recall this process keeps for the next turn
RECALL_DELAY_ENV = "MEMGRPC_TEST_RECALL_DELAY_MS"


class LateRecalls:
    """ASYNC recall results that missed their turn's deadline, kept (bounded, per session, in
    this process) for the session's next turn."""

    def __init__(self, size: int = LATE_SESSIONS) -> None:
        self._size = size
        self._by_session: OrderedDict[str, Context] = OrderedDict()

    def put(self, key: str, ctx: Context) -> None:
        self._by_session[key] = ctx
        self._by_session.move_to_end(key)
        while len(self._by_session) > self._size:
            self._by_session.popitem(last=False)

    def take(self, key: str) -> Context | None:
        return self._by_session.pop(key, None)

    def __len__(self) -> int:
        return len(self._by_session)


def recall_delay_s() -> float:
    raw = os.environ.get(RECALL_DELAY_ENV, "")
    return float(raw) / 1000 if raw else 0.0
