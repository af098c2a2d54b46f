"""client.memory.watch against real servers: it resumes by itself, with nothing missed or seen
twice, after the server restarts (async) and after the server ends a stalled watch (sync)."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memgrpc.client import AsyncMemgrpcClient, MemgrpcClient
from memgrpc.embed import Embedder
from memgrpc.server.app import RunningServer, start
from tests.client.conftest import FAST
from tests.conftest import make_config
from tests.procs import free_port


class Replica:
    """An in-process server on a fixed port, which can be stopped and started again."""

    def __init__(self, data: Path, embedder: Embedder, **settings: Any) -> None:
        self.addr = f"127.0.0.1:{free_port()}"
        self.key = "mgk_test_" + secrets.token_urlsafe(24)
        self._config = make_config(data, self.key, addr=self.addr, **settings)
        self._embedder = embedder
        self.running: RunningServer | None = None

    async def start(self) -> None:
        self.running = await start(self._config, embedder=self._embedder)

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop(0.5)
            self.running = None


@pytest.fixture
async def replica(tmp_path: Path, shared_embedder: Embedder) -> AsyncIterator[Replica]:
    r = Replica(
        tmp_path / "data",
        shared_embedder,
        watch_buffer=4,
        watch_stall_s=0.5,
        watch_heartbeat_s=0.3,
        watch_poll_s=0.1,
    )
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def test_async_watch_resumes_after_the_server_restarts(replica: Replica) -> None:
    async with AsyncMemgrpcClient(replica.addr, api_key=replica.key, **FAST) as client:
        made = [(await client.memory.create(user_id="ann", content=f"before {i}"))["id"]
                for i in range(3)]  # fmt: skip
        seen: list[dict[str, Any]] = []
        watch = client.memory.watch(max_retries=20)
        while len(seen) < 3:
            seen.append(await anext(watch))
        await replica.stop()  # the stream breaks; the watch retries with backoff meanwhile
        await replica.start()
        made += [(await client.memory.create(user_id="ann", content=f"after {i}"))["id"]
                 for i in range(3)]  # fmt: skip
        while len(seen) < 6:
            seen.append(await asyncio.wait_for(anext(watch), 20))
        await watch.aclose()
    assert [c["sequence"] for c in seen] == [1, 2, 3, 4, 5, 6]
    assert [c["memory_id"] for c in seen] == made
    assert {c["kind"] for c in seen} == {"created"}
    assert seen[0]["memory"]["content"] == "before 0" and seen[0]["user_id"] == "ann"


async def test_sync_watch_resumes_after_the_server_ends_a_stalled_stream(
    replica: Replica,
) -> None:
    assert replica.running is not None
    changes = replica.running.app.memories.changes
    big = "y" * 20_000  # a few changes fill a 64 KiB window
    n = 40
    first_read = threading.Event()
    seen: list[dict[str, Any]] = []

    def body() -> None:
        # a fixed window (gRPC would grow it): the stalled reader blocks the server's writes
        with MemgrpcClient(
            replica.addr,
            api_key=replica.key,
            channel_options=[("grpc.http2.bdp_probe", 0)],
            **FAST,
        ) as client:
            watch = client.memory.watch()
            seen.append(next(watch))
            first_read.set()
            for _ in range(200):  # stalled until the server gave up on this stream
                if changes.lagging_ends:
                    break
                threading.Event().wait(0.1)
            while len(seen) < n + 1:
                seen.append(next(watch))
            watch.close()

    async with AsyncMemgrpcClient(replica.addr, api_key=replica.key, **FAST) as writer:
        await writer.memory.create(user_id="bo", content="first")
        reader = asyncio.create_task(asyncio.to_thread(body))
        assert await asyncio.to_thread(first_read.wait, 30)
        for i in range(n):
            await writer.memory.create(user_id="bo", content=f"{i} {big}")
        await asyncio.wait_for(reader, 60)
    assert changes.lagging_ends >= 1
    assert [c["sequence"] for c in seen] == list(range(1, n + 2))
    assert seen[0]["memory"]["content"] == "first"
