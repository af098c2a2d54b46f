"""The object store goes away: RPCs fail fast with UNAVAILABLE, the server stays up and recovers.

moto's S3 sits behind a TCP proxy in this process; closing the proxy makes the store unreachable
(connections refused) while moto keeps its data, and reopening it on the same port brings it back.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest
from grpc_status import rpc_status

from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import memory_pb2_grpc
from tests.helpers import md
from tests.memhelpers import details, mem
from tests.procs import free_port, start_memgrpc, start_moto, stop_server, wait_serving

pytest.importorskip("moto")
KEY = "mgk_outage_test_bootstrap_key_0123456789"


class Proxy:
    """A TCP forwarder 127.0.0.1:port -> 127.0.0.1:target that can be switched off and on."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)

            async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                try:
                    while data := await r.read(65536):
                        w.write(data)
                        await w.drain()
                finally:
                    w.close()

            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        except (OSError, asyncio.CancelledError):
            writer.close()
        finally:
            self._tasks.discard(task)


@pytest.mark.timeout(300)
async def test_store_outage_fails_fast_and_recovers(tmp_path: Path) -> None:
    moto_port, proxy_port, port = free_port(), free_port(), free_port()
    moto = start_moto(moto_port, "memgrpc")
    proxy = Proxy(proxy_port, moto_port)
    await proxy.start()
    options = {
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
        "region": "us-east-1",
        "endpoint": f"http://127.0.0.1:{proxy_port}",
        "allow_http": "true",
    }
    env = {"MEMGRPC_STORAGE_OPTIONS": json.dumps(options), "MEMGRPC_READ_CONSISTENCY": "0"}
    server = start_memgrpc("s3://memgrpc/data", port, tmp_path / "server.log", KEY, **env)
    try:
        await wait_serving(f"127.0.0.1:{port}", server)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = memory_pb2_grpc.MemoryServiceStub(ch)
            before = await stub.CreateMemory(
                mem("u", "written before the outage"), metadata=md(KEY)
            )

            await proxy.stop()  # the store is gone
            calls = {
                "create": stub.CreateMemory(mem("u", "during the outage"), metadata=md(KEY)),
                "get": stub.GetMemory(pb.GetMemoryRequest(id=before.id), metadata=md(KEY)),
                "list": stub.ListMemories(pb.ListMemoriesRequest(user_id="u"), metadata=md(KEY)),
                "search": stub.SearchMemories(
                    pb.SearchMemoriesRequest(user_id="other", query="outage"), metadata=md(KEY)
                ),
            }
            for name, call in calls.items():
                t0 = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await call
                took = time.monotonic() - t0
                assert e.value.code() == grpc.StatusCode.UNAVAILABLE, (name, e.value.details())
                assert details(e.value)[1] == "STORE_UNAVAILABLE"
                status = rpc_status.from_call(e.value)  # type: ignore[arg-type]
                assert status is not None and any(
                    d.type_url.endswith("RetryInfo") for d in status.details
                )
                assert took < 15, f"{name} took {took:.1f}s to fail"
            assert server.poll() is None  # still up

            await proxy.start()  # the store is back: no restart needed
            deadline = time.monotonic() + 30
            while True:
                try:
                    after = await stub.CreateMemory(
                        mem("u", "written after the outage"), metadata=md(KEY)
                    )
                    break
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                    await asyncio.sleep(0.5)
            listed = await stub.ListMemories(pb.ListMemoriesRequest(user_id="u"), metadata=md(KEY))
            assert {m.id for m in listed.memories} == {before.id, after.id}
    finally:
        stop_server(server)
        await proxy.stop()
        moto.terminate()
        moto.wait(timeout=10)
    log = (tmp_path / "server.log").read_text()
    assert "rpc_internal_error" not in log, log[-3000:]
