"""When to retry a failed call, and after how long.

Only UNAVAILABLE and RESOURCE_EXHAUSTED are retried: they mean "not now", never "not this".
The wait is exponential backoff with full jitter (uniform in [0, min(cap, base * 2**attempt)]),
and at least the server's RetryInfo delay when it sends one. A server asking for more than
`max_retry_after` seconds is not waited for: the error goes to the caller at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from memgrpc.client.errors import MemgrpcError, RateLimitError, UnavailableError

RETRYABLE: tuple[type[MemgrpcError], ...] = (UnavailableError, RateLimitError)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    initial_backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff must be >= 0")

    def delay(self, error: MemgrpcError, attempt: int) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None: raise `error`."""
        if attempt >= self.max_retries or not isinstance(error, RETRYABLE):
            return None
        backoff = self.jitter() * min(self.max_backoff, self.initial_backoff * float(2**attempt))
        if error.retry_after is None:
            return backoff
        if error.retry_after > self.max_retry_after:
            return None
        return max(error.retry_after, backoff)
