"""The client against a real memgrpc server with its per-key rate limit on: RateLimitError
with retry_after when retries are off, transparent waiting when they are on."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from memgrpc.client import AsyncMemgrpcClient, RateLimitError
from memgrpc.embed import Embedder
from memgrpc.server.app import RunningServer, start
from tests.conftest import make_config

RPS, BURST = 20.0, 2


@pytest.fixture(scope="module")
async def limited(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[tuple[RunningServer, str]]:
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    config = make_config(
        tmp_path_factory.mktemp("limited"), admin_key, rate_limit_rps=RPS, rate_limit_burst=BURST
    )
    running = await start(config, embedder=shared_embedder)
    try:
        yield running, admin_key
    finally:
        await running.stop(1.0)


async def test_rate_limit_error_and_retries(limited: tuple[RunningServer, str]) -> None:
    running, key = limited
    async with AsyncMemgrpcClient(running.address, api_key=key, max_retries=0) as client:
        # all at once: calls one after another could each take longer than a token's refill
        # on a busy machine, and never run out
        replies = await asyncio.gather(
            *(client.memory.list() for _ in range(BURST + 8)), return_exceptions=True
        )
    errors = [r for r in replies if isinstance(r, BaseException)]
    assert errors and all(isinstance(e, RateLimitError) for e in errors), errors
    err = errors[0]
    assert isinstance(err, RateLimitError)
    assert err.reason == "RATE_LIMITED" and err.request_id
    assert err.retry_after is not None and 0 < err.retry_after <= 1 / RPS + 0.01

    await asyncio.sleep(BURST / RPS)  # a full bucket again
    started = time.monotonic()
    async with AsyncMemgrpcClient(
        running.address, api_key=key, initial_backoff=0.001, max_backoff=0.002
    ) as client:
        for i in range(BURST + 4):
            await client.memory.create(user_id="u", content=f"note {i}")
    # 4 calls past the burst, each waiting for its token (retry_after, not the tiny backoff)
    assert time.monotonic() - started >= 4 / RPS * 0.8
