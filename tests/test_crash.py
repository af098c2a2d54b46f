"""Crash durability: every acknowledged write survives a kill -9 of the server, exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import grpc
import pytest

from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import memory_pb2_grpc
from tests.helpers import md
from tests.memhelpers import mem
from tests.procs import free_port, start_memgrpc, stop_server, wait_serving

ADMIN_KEY = "mgk_crash_test_bootstrap_key_0123456789"


@pytest.mark.timeout(240)
async def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    port = free_port()
    addr = f"127.0.0.1:{port}"
    proc = start_memgrpc(str(data), port, log, ADMIN_KEY)
    acked: list[str] = []
    try:
        await wait_serving(addr, proc)
        async with grpc.aio.insecure_channel(addr) as ch:
            stub = memory_pb2_grpc.MemoryServiceStub(ch)
            stop = asyncio.Event()

            async def single_writer(w: int) -> None:
                i = 0
                while not stop.is_set():
                    try:
                        m = await stub.CreateMemory(
                            mem(f"w{w}", f"writer {w} note {i}"), metadata=md(ADMIN_KEY)
                        )
                        acked.append(m.id)
                    except grpc.aio.AioRpcError:
                        return  # the server died mid-call: not acknowledged
                    i += 1

            async def batch_writer() -> None:
                i = 0
                while not stop.is_set():
                    ops = [
                        pb.BatchOperation(create=mem("bw", f"batch {i} item {j}"))
                        for j in range(20)
                    ]
                    try:
                        resp = await stub.BatchMemories(
                            pb.BatchMemoriesRequest(operations=ops), metadata=md(ADMIN_KEY)
                        )
                        acked.extend(r.memory.id for r in resp.results)
                    except grpc.aio.AioRpcError:
                        return
                    i += 1

            tasks = [asyncio.create_task(single_writer(w)) for w in range(12)]
            tasks.append(asyncio.create_task(batch_writer()))
            while len(acked) < 300:
                await asyncio.sleep(0.05)
                assert proc.poll() is None
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert len(acked) >= 300
    proc = start_memgrpc(str(data), port, log, ADMIN_KEY)
    try:
        await wait_serving(addr, proc)
        async with grpc.aio.insecure_channel(addr) as ch:
            stub = memory_pb2_grpc.MemoryServiceStub(ch)
            seen: list[str] = []
            token = ""
            while True:
                resp = await stub.ListMemories(
                    pb.ListMemoriesRequest(page_size=1000, page_token=token), metadata=md(ADMIN_KEY)
                )
                seen += [m.id for m in resp.memories]
                token = resp.next_page_token
                if not token:
                    break
            assert len(seen) == len(set(seen)), "duplicate rows after restart"
            missing = set(acked) - set(seen)
            assert not missing, f"{len(missing)} acknowledged writes lost"
            # and the restarted server takes writes again
            await stub.CreateMemory(mem("after", "after restart"), metadata=md(ADMIN_KEY))
    finally:
        stop_server(proc)
