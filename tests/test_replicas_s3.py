"""Two replicas on one dataset in S3 (moto's server on loopback): exactly-once writes, reads across.

Each replica is a real `memgrpc serve` process with `--data s3://...` and MEMGRPC_STORAGE_OPTIONS.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from memgrpc.store.versionlog import MAINTENANCE_GRACE_S
from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import memory_pb2_grpc
from tests.helpers import md
from tests.memhelpers import mem
from tests.procs import free_port, start_memgrpc, start_moto, stop_server, wait_serving

pytest.importorskip("boto3")
pytest.importorskip("moto")

KEY = "mgk_replica_test_bootstrap_key_0123456789"
CONSISTENCY_S = 0.5


async def _all_ids(stub: memory_pb2_grpc.MemoryServiceStub) -> list[str]:
    ids: list[str] = []
    token = ""
    while True:
        resp = await stub.ListMemories(
            pb.ListMemoriesRequest(page_size=1000, page_token=token), metadata=md(KEY)
        )
        ids += [m.id for m in resp.memories]
        token = resp.next_page_token
        if not token:
            return ids


async def _cello_search_until(
    stub: memory_pb2_grpc.MemoryServiceStub, memory_id: str, *, found: bool
) -> list[str]:
    """The ids found for the cello once `memory_id` is (or is no longer) among them, searched
    until the documented bound (deploy/README): the read consistency interval, or 5 s after a
    compaction of the table began on that replica (the maintainers run every 2 s here)."""
    deadline = time.monotonic() + CONSISTENCY_S + MAINTENANCE_GRACE_S + 1.0
    while True:
        reply = await stub.SearchMemories(
            pb.SearchMemoriesRequest(user_id="alice", query="musical instrument"),
            metadata=md(KEY),
        )
        ids = [r.memory.id for r in reply.results]
        if (memory_id in ids) == found:
            return ids
        assert time.monotonic() < deadline, (memory_id, found, ids)
        await asyncio.sleep(0.1)


@pytest.mark.timeout(300)
async def test_two_replicas_share_one_s3_dataset(tmp_path: Path) -> None:
    s3_port = free_port()
    moto = start_moto(s3_port, "memgrpc")
    replicas: list[subprocess.Popen[bytes]] = []
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        options = json.dumps(
            {
                "aws_access_key_id": "test",
                "aws_secret_access_key": "test",
                "region": "us-east-1",
                "endpoint": endpoint,
                "allow_http": "true",
            }
        )
        env = {
            "MEMGRPC_STORAGE_OPTIONS": options,
            "MEMGRPC_READ_CONSISTENCY": str(CONSISTENCY_S),
            "MEMGRPC_MAINTENANCE_INTERVAL": "2",  # both replicas run upkeep concurrently
        }
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            replicas.append(
                start_memgrpc("s3://memgrpc/prod", port, tmp_path / f"r{i}.log", KEY, **env)
            )
            # the first replica creates the tables; the second opens them
            await wait_serving(f"127.0.0.1:{port}", replicas[-1])

        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ports[0]}") as ch_a,
            grpc.aio.insecure_channel(f"127.0.0.1:{ports[1]}") as ch_b,
        ):
            a, b = memory_pb2_grpc.MemoryServiceStub(ch_a), memory_pb2_grpc.MemoryServiceStub(ch_b)
            # concurrent writes through both replicas, batches and singles
            created = await asyncio.gather(
                *(
                    a.CreateMemory(mem(f"u{i % 4}", f"note {i} from replica A"), metadata=md(KEY))
                    for i in range(40)
                ),
                *(
                    b.CreateMemory(mem(f"u{i % 4}", f"note {i} from replica B"), metadata=md(KEY))
                    for i in range(40)
                ),
            )
            batch = await b.BatchMemories(
                pb.BatchMemoriesRequest(
                    operations=[pb.BatchOperation(create=mem("u9", f"bulk {i}")) for i in range(50)]
                ),
                metadata=md(KEY),
            )
            acked = [m.id for m in created] + [r.memory.id for r in batch.results]
            assert len(set(acked)) == 130
            await asyncio.sleep(CONSISTENCY_S + 0.5)
            for stub in (a, b):  # every acknowledged write exactly once, seen from either replica
                seen = await _all_ids(stub)
                assert len(seen) == len(set(seen)) == 130
                assert set(seen) == set(acked)

            # read-after-write across replicas within the consistency interval
            m = await a.CreateMemory(
                mem("alice", "Alice's cat is called Miso and loves tuna"), metadata=md(KEY)
            )
            deadline = time.monotonic() + CONSISTENCY_S + 1.0
            while True:
                try:
                    got = await b.GetMemory(pb.GetMemoryRequest(id=m.id), metadata=md(KEY))
                    break
                except grpc.aio.AioRpcError as e:
                    assert e.code() == grpc.StatusCode.NOT_FOUND and time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert got.content == m.content
            # B's recall index for alice (loaded before A's next write) catches up too
            await b.SearchMemories(
                pb.SearchMemoriesRequest(user_id="alice", query="pets"), metadata=md(KEY)
            )
            m2 = await a.CreateMemory(
                mem("alice", "Alice started learning the cello"), metadata=md(KEY)
            )
            assert (await _cello_search_until(b, m2.id, found=True))[0] == m2.id
            # and deletes on one replica are seen on the other (or the helper fails at its bound)
            await b.DeleteMemory(pb.DeleteMemoryRequest(id=m2.id), metadata=md(KEY))
            await _cello_search_until(a, m2.id, found=False)
            await asyncio.sleep(2.5)  # let both maintainers run at least once, concurrently
            assert all(r.poll() is None for r in replicas)
            assert len(await _all_ids(a)) == 130 + 1
    finally:
        for r in replicas:
            stop_server(r)
        moto.terminate()
        moto.wait(timeout=10)
    for i in range(2):
        log = (tmp_path / f"r{i}.log").read_text()
        assert "Traceback" not in log, log[-3000:]
