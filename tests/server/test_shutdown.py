"""Graceful shutdown of a real `memgrpc serve` process: SIGTERM while an RPC is in flight."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import lancedb
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import memory_pb2_grpc
from tests.helpers import md

GRACE_S = 30.0  # generous: CI machines may be busy; the drain itself is what is tested
N_OPS = 300  # ~1 s of embedding on an idle 2-core box, so it is in flight at SIGTERM


def serve_command() -> list[str]:
    script = Path(sys.executable).parent / "memgrpc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "memgrpc"]


@dataclass
class ServeProcess:
    proc: asyncio.subprocess.Process
    admin_key: str
    data_dir: Path
    logs: list[dict[str, Any]] = field(default_factory=list)
    address: str = ""
    _started: asyncio.Event = field(default_factory=asyncio.Event)

    async def _drain(self) -> None:
        """Keep reading stderr (a full pipe would block the server) and parse its JSON lines."""
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            self.logs.append(record)
            if record.get("event") == "server_started":
                self.address = record["address"]
                self._started.set()

    def events(self) -> list[str]:
        return [r.get("event", "") for r in self.logs]


@pytest.fixture
async def serve_process(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[ServeProcess]:
    """A `memgrpc serve` process; indirect parameters add to its environment."""
    admin_key = "mgk_" + secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "MEMGRPC_ADMIN_KEY": admin_key,
        "MEMGRPC_GRACE_PERIOD": str(GRACE_S),
        "MEMGRPC_LOG_LEVEL": "info",
        **getattr(request, "param", {}),
    }
    proc = await asyncio.create_subprocess_exec(
        *serve_command(),
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--data",
        str(tmp_path / "data"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    sp = ServeProcess(proc, admin_key, tmp_path / "data")
    drain = asyncio.create_task(sp._drain())
    try:
        await asyncio.wait_for(sp._started.wait(), 60)
        yield sp
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await drain


def _batch(n: int) -> pb.BatchMemoriesRequest:
    return pb.BatchMemoriesRequest(
        operations=[
            pb.BatchOperation(
                create=pb.CreateMemoryRequest(
                    memory=pb.Memory(
                        user_id="shutdown",
                        content=f"note {i}: the trail by the lake was closed for repairs in week "
                        f"{i}, so the user hiked the ridge path instead and liked the view",
                    )
                )
            )
            for i in range(n)
        ]
    )


async def test_sigterm_drains_in_flight_rpc(serve_process: ServeProcess) -> None:
    sp = serve_process
    async with grpc.aio.insecure_channel(sp.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        watch = health.Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

        batch = asyncio.ensure_future(
            memory_pb2_grpc.MemoryServiceStub(ch).BatchMemories(
                _batch(N_OPS), metadata=md(sp.admin_key)
            )
        )
        await asyncio.sleep(0.3)
        assert not batch.done()
        sp.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        status = await asyncio.wait_for(watch.read(), 10)
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()  # a watcher is an in-flight RPC too; probes would disconnect here

        resp = await asyncio.wait_for(batch, GRACE_S + 5)
        assert resp.summary.succeeded == N_OPS and resp.summary.failed == 0

        code = await asyncio.wait_for(sp.proc.wait(), GRACE_S + 5)
        elapsed = time.monotonic() - signalled
    assert code == 0
    assert elapsed < GRACE_S
    events = sp.events()
    assert events.index("shutdown_started") < events.index("shutdown_complete")
    started = next(r for r in sp.logs if r.get("event") == "server_started")
    assert started["loop"] == "uvloop"  # the signal handling and drain above ran on uvloop
    rpc_lines = [r for r in sp.logs if r.get("event") == "rpc" and "BatchMemories" in r["method"]]
    assert [r["code"] for r in rpc_lines] == ["OK"]

    # every acknowledged row is on disk after the exit
    db = await lancedb.connect_async(str(sp.data_dir))
    table = await db.open_table("memories")
    assert await table.count_rows("user_id = 'shutdown'") == N_OPS


async def test_new_calls_are_refused_while_draining(serve_process: ServeProcess) -> None:
    sp = serve_process
    async with grpc.aio.insecure_channel(sp.address) as ch:
        stub = memory_pb2_grpc.MemoryServiceStub(ch)
        batch = asyncio.ensure_future(stub.BatchMemories(_batch(N_OPS), metadata=md(sp.admin_key)))
        await asyncio.sleep(0.3)
        assert not batch.done()
        sp.proc.send_signal(signal.SIGTERM)
        # asked again until refused: a busy server may take a moment to get to the signal
        deadline = time.monotonic() + 10
        while True:
            async with grpc.aio.insecure_channel(sp.address) as fresh:
                try:
                    await health_pb2_grpc.HealthStub(fresh).Check(
                        health_pb2.HealthCheckRequest(), timeout=5
                    )
                except grpc.aio.AioRpcError as exc:
                    # CANCELLED: accepted just as the listener closed; asked again
                    assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        break
            assert time.monotonic() < deadline, "still accepting calls 10 s after SIGTERM"
            await asyncio.sleep(0.05)
        assert sp.proc.returncode is None  # refused while draining, not because it had exited
        assert (await batch).summary.succeeded == N_OPS
    assert await asyncio.wait_for(sp.proc.wait(), GRACE_S + 5) == 0


@pytest.mark.parametrize("serve_process", [{"MEMGRPC_EVENT_LOOP": "asyncio"}], indirect=True)
async def test_asyncio_event_loop_when_asked(serve_process: ServeProcess) -> None:
    sp = serve_process
    started = next(r for r in sp.logs if r.get("event") == "server_started")
    assert started["loop"] == "asyncio"
    async with grpc.aio.insecure_channel(sp.address) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    sp.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(sp.proc.wait(), GRACE_S + 5) == 0
