#!/usr/bin/env python
"""Memory benchmark: ingestion and search of the real server, as ratios of same-run baselines.

Measured in one run, on the same texts (LoCoMo dev turns, varied to reach the sizes):
  - raw embedder throughput (in-process, length-sorted batches): the ingestion baseline;
  - BatchMemories and 16 concurrent CreateMemory callers, as ratios of it;
  - fragments left by 1000 CreateMemory calls (all in flight at once) and by the 16-caller run;
  - SearchMemories p50/p99 at 5k and 50k memories (50 users) against a floor: the same query
    embedded in-process + a direct LanceDB hybrid query with the user prefilter.
Usage: .venv/bin/python scripts/bench_memory.py [--sizes 5000,50000] [--queries 200] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchdoc
import grpc
import lancedb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memgrpc.embed import LocalEmbedder
from memgrpc.server.logging import configure_logging
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.maintenance import Maintainer
from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import memory_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
LOCOMO = ROOT.parent / "shared" / "bench" / "locomo_dev.json"
KEY = "mgk_bench_bootstrap_key_0123456789abcdef"
USERS = 50
MD = (("x-api-key", KEY),)


def load_texts() -> tuple[list[str], list[str]]:
    data = json.loads(LOCOMO.read_text())
    turns, questions = [], []
    for conv in data:
        c = conv["conversation"]
        for k, v in c.items():
            if k.startswith("session_") and isinstance(v, list):
                turns += [f'{t["speaker"]} said, "{t["text"]}"' for t in v]
        questions += [q["question"] for q in conv["qa"]]
    return turns, questions


def corpus(turns: list[str], n: int, seed: int = 7) -> list[str]:
    """n texts: the turns, then recombinations of them (same style and length mix)."""
    rng = random.Random(seed)
    out = list(turns[:n])
    while len(out) < n:
        a, b = rng.choice(turns), rng.choice(turns)
        out.append(
            a.split('"')[0] + '"' + " ".join(b.split('"')[1].split()[: rng.randint(6, 30)]) + '"'
        )
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def ingest_batch(stub: Any, texts: list[str], offset: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(texts), 250):
        ops = [
            pb.BatchOperation(
                create=pb.CreateMemoryRequest(
                    memory=pb.Memory(user_id=f"u{(offset + i + j) % USERS}", content=t)
                )
            )
            for j, t in enumerate(texts[i : i + 250])
        ]
        resp = await stub.BatchMemories(pb.BatchMemoriesRequest(operations=ops), metadata=MD)
        assert resp.summary.failed == 0
    return len(texts) / (time.perf_counter() - t0)


async def ingest_concurrent(stub: Any, texts: list[str], callers: int, offset: int) -> float:
    queue = list(enumerate(texts))
    queue.reverse()

    async def worker() -> None:
        while queue:
            i, t = queue.pop()
            await stub.CreateMemory(
                pb.CreateMemoryRequest(
                    memory=pb.Memory(user_id=f"u{(offset + i) % USERS}", content=t)
                ),
                metadata=MD,
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(callers)))
    return len(texts) / (time.perf_counter() - t0)


def fragments(data: Path) -> int:
    tbl = lancedb.connect(str(data)).open_table("memories")
    return int(tbl.stats()["fragment_stats"]["num_fragments"])


async def search_latency(stub: Any, questions: list[str]) -> list[float]:
    out = []
    for i, q in enumerate(questions):
        t0 = time.perf_counter()
        await stub.SearchMemories(
            pb.SearchMemoriesRequest(user_id=f"u{i % USERS}", query=q, limit=10), metadata=MD
        )
        out.append((time.perf_counter() - t0) * 1000)
    return out


def floor_latency(data: Path, emb: LocalEmbedder, questions: list[str]) -> list[float]:
    """In-process embed + LanceDB's own hybrid query (vector + FTS, RRF) with the user prefilter."""
    tbl = lancedb.connect(str(data), read_consistency_interval=None).open_table("memories")
    out = []
    for i, q in enumerate(questions):
        t0 = time.perf_counter()
        vec = emb.embed_sync([q])[0]
        (
            tbl.search(query_type="hybrid", fts_columns="content")
            .vector(vec)
            .text(q)
            .distance_type("cosine")
            .where(f"project_id = 'default' AND user_id = 'u{i % USERS}'", prefilter=True)
            .select(["id", "content"])
            .limit(10)
            .to_list()
        )
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The server in its own process, as deployed: the client's work does not share its CPU."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(
        os.environ,
        MEMGRPC_ADMIN_KEY=KEY,
        MEMGRPC_MAINTENANCE_INTERVAL="3600",
        MEMGRPC_LOG_LEVEL="warning",
    )
    cmd = [
        sys.executable,
        "-m",
        "memgrpc",
        "serve",
        "--addr",
        f"127.0.0.1:{port}",
        "--data",
        str(data),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)  # noqa: ASYNC220
    address = f"127.0.0.1:{port}"
    async with grpc.aio.insecure_channel(address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for _ in range(300):
            try:
                resp = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return proc, address
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


async def compact(data: Path) -> None:
    """One maintenance pass from this process (a second opener of the same dataset)."""
    store = Store(StoreConfig(uri=str(data), dim=384))
    await store.open()
    try:
        await Maintainer(store).run_once(force=True)
    finally:
        await store.close()
    await asyncio.sleep(1.0)  # the server's read-consistency interval


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000,50000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--write", action="store_true", help="append the results to docs/BENCHMARKS.md")
    args = ap.parse_args()
    configure_logging("warning")
    sizes = [int(s) for s in args.sizes.split(",")]
    turns, questions = load_texts()
    texts = corpus(turns, max(sizes) + 5000)
    rng = random.Random(11)
    qs = rng.sample(questions, min(args.queries, len(questions)))
    lines: list[str] = []
    searched: list[tuple[int, float, float]] = []  # size, p50, floor p50

    def report(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    emb = LocalEmbedder()
    sample = texts[:2000]
    emb.embed_sync(sample[:64])  # warm-up
    t0 = time.perf_counter()
    emb.embed_sync(sample)
    raw = len(sample) / (time.perf_counter() - t0)
    report(f"raw embedder (in-process, sorted batches): {raw:.0f} texts/s")

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        server, address = await start_server(data)
        try:
            async with grpc.aio.insecure_channel(address) as ch:
                stub = memory_pb2_grpc.MemoryServiceStub(ch)
                done = 0
                rate_b = await ingest_batch(stub, texts[done : done + 2000], done)
                done += 2000
                report(
                    f"BatchMemories (250 per call): {rate_b:.0f} memories/s"
                    f" = {rate_b / raw:.2f}x raw embedder"
                )
                f0 = fragments(data)
                rate_c = await ingest_concurrent(stub, texts[done : done + 1000], 16, done)
                done += 1000
                f1 = fragments(data)
                report(
                    f"CreateMemory, 16 concurrent callers: {rate_c:.0f} memories/s"
                    f" = {rate_c / raw:.2f}x raw embedder"
                    f" ({f1 - f0} fragments for 1000 creates)"
                )
                t0 = time.perf_counter()
                await ingest_concurrent(stub, texts[done : done + 1000], 1000, done)
                done += 1000
                f2 = fragments(data)
                frags = f2 - f1
                report(
                    f"1000 CreateMemory calls in flight at once: {frags} fragments"
                    " before compaction"
                    f" ({1000 / (time.perf_counter() - t0):.0f} memories/s)"
                )
                for size in sizes:
                    if done < size:
                        await ingest_batch(stub, texts[done:size], done)
                        done = size
                    await compact(data)  # what the server's background maintainer does
                    await search_latency(stub, [qs[0]] * USERS)  # warm-up: every user once
                    svc = await search_latency(stub, qs)
                    floor_latency(data, emb, qs[:20])
                    flo = floor_latency(data, emb, qs)
                    p50, p99, f50, f99 = pct(svc, 50), pct(svc, 99), pct(flo, 50), pct(flo, 99)
                    searched.append((size, p50, f50))
                    report(
                        f"SearchMemories at {size} memories ({USERS} users):"
                        f" p50 {p50:.1f} ms, p99 {p99:.1f} ms;"
                        f" floor p50 {f50:.1f} ms, p99 {f99:.1f} ms;"
                        f" p50 ratio {p50 / f50:.2f}x floor"
                    )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    size, p50, f50 = searched[-1]
    met = (
        rate_b / raw >= 0.8
        and rate_c / raw >= 0.6
        and max(p / f for _, p, f in searched) <= 1.5
        and frags <= 20
    )
    summary = benchdoc.Summary(
        f"BatchMemories {rate_b / raw:.2f}x, 16 concurrent CreateMemory callers"
        f" {rate_c / raw:.2f}x the raw embedder; 1000 creates in flight: {frags} fragments;"
        f" search p50 {p50:.1f} ms = {p50 / f50:.2f}x the floor at {size} memories",
        f"raw embedder {raw:.0f} texts/s; floor p50 {f50:.1f} ms at {size} memories",
        "BatchMemories >= 0.8x, 16 callers >= 0.6x, search p50 <= 1.5x the floor (every size),"
        f" <= 20 fragments: {'met' if met else 'NOT met'}",
    )
    benchdoc.report("bench_memory", lines, summary, write=args.write, printed=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
