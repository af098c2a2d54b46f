"""Per-API-key rate limiting: a token bucket per key id, checked after authentication.

Each key gets a bucket of `burst` tokens refilled at `rps` tokens a second; a call takes one
token (a streaming call counts once, when it starts). With the bucket empty the call fails with
RESOURCE_EXHAUSTED, ErrorInfo reason `RATE_LIMITED` and a RetryInfo saying how long until a
token is back; a rejected call takes nothing. Health and reflection are never limited (they need
no key), and calls without a valid key never get here: auth rejects them first.

Buckets live in this process only, so with N replicas behind a balancer a key may make up to
N x rps calls a second in all. Everything runs on the server's event loop with no await between
reading and updating a bucket, so no lock is needed.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc

from memgrpc.config import ServerConfig
from memgrpc.core.access import principal as principal_ctx
from memgrpc.core.kernel.errors import ResourceExhausted
from memgrpc.server import auth
from memgrpc.server.handlers import wrap

Clock = Callable[[], float]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

REASON = "RATE_LIMITED"
# buckets idle long enough to be full again are dropped once the map grows past this
_PRUNE_FLOOR = 1024
_EPSILON = 1e-9


@dataclass
class TokenBucket:
    """`tokens` available at time `updated`; refills at `rate`/s up to `capacity`."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when taken, else the seconds until one is available (nothing
        is taken then)."""
        self._refill(now)
        if self.tokens >= 1.0 - _EPSILON:  # a client that waited the delay exactly gets in
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def full_at(self, now: float) -> bool:
        """Whether the bucket would be full at `now` (and so is the same as a fresh one)."""
        return self.tokens + max(0.0, now - self.updated) * self.rate >= self.capacity


class RateLimiter:
    """A token bucket per key, created full on a key's first call."""

    def __init__(self, rps: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        if not (rps > 0 and math.isfinite(rps)):
            raise ValueError("rps must be a positive finite number")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rps = rps
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._prune_at = _PRUNE_FLOOR

    def __len__(self) -> int:
        return len(self._buckets)

    def try_acquire(self, key: str) -> float:
        """0.0 when `key` may make a call now (a token is taken), else the seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
            bucket = TokenBucket(self.rps, float(self.burst), float(self.burst), now)
            self._buckets[key] = bucket
        return bucket.take(now)

    def check(self, key: str) -> None:
        """Take a token for `key` or raise ResourceExhausted(RATE_LIMITED) with the delay."""
        wait = self.try_acquire(key)
        if wait > 0:
            raise ResourceExhausted(
                f"rate limit exceeded for this API key ({_fmt(self.rps)} requests/s, "
                f"burst {self.burst}); retry in {wait:.3f} s",
                reason=REASON,
                metadata={"rps": _fmt(self.rps), "burst": str(self.burst)},
                retry_after_s=wait,
            )

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled completely: a fresh bucket is the same thing."""
        self._buckets = {k: b for k, b in self._buckets.items() if not b.full_at(now)}
        self._prune_at = max(_PRUNE_FLOOR, 2 * len(self._buckets))


def _fmt(value: float) -> str:
    return f"{value:g}"


def from_config(config: ServerConfig, *, clock: Clock = time.monotonic) -> RateLimiter | None:
    """The limiter `config` asks for, or None when rate limiting is off."""
    if config.rate_limit_rps is None:
        return None
    burst = config.rate_limit_burst
    if burst is None:
        burst = default_burst(config.rate_limit_rps)
    return RateLimiter(config.rate_limit_rps, burst, clock=clock)


def default_burst(rps: float) -> int:
    """Two seconds' worth of calls, at least one."""
    return max(1, math.ceil(2 * rps))


class RateLimitInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Takes a token from the caller's bucket when a call starts; goes after AuthInterceptor,
    whose Principal (bound for the call) names the key."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or auth.required_scope(details.method) is None:
            return handler  # unknown method, or health / reflection: never limited
        return wrap(handler, lambda context: self._scope())

    @contextlib.asynccontextmanager
    async def _scope(self) -> AsyncIterator[None]:
        self._limiter.check(principal_ctx.current().key_id)
        yield
