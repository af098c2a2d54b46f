"""Client test helpers: a fresh tenant key per test, client factories against the real server.

The sync client blocks, so sync tests run their body with `asyncio.to_thread` (the in-process
server is served by the pytest event loop thread).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from memgrpc.client import AsyncMemgrpcClient, MemgrpcClient
from tests.conftest import NewKey, ServerHandle

FAST = {"initial_backoff": 0.01, "max_backoff": 0.05, "timeout": 10.0}


@pytest.fixture
async def key(new_key: NewKey) -> str:
    """A key with every scope in a project of its own."""
    return (await new_key())[1]


@pytest.fixture
def make_client(server: ServerHandle) -> Callable[..., MemgrpcClient]:
    def make(api_key: str | None, **kwargs: Any) -> MemgrpcClient:
        return MemgrpcClient(server.address, api_key=api_key, **{**FAST, **kwargs})

    return make


@pytest.fixture
async def aclient(server: ServerHandle, key: str) -> AsyncIterator[AsyncMemgrpcClient]:
    async with AsyncMemgrpcClient(server.address, api_key=key, **FAST) as client:
        yield client
