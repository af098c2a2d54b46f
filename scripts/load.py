#!/usr/bin/env python
"""Load test: N concurrent clients, a mixed workload, a fixed duration, loopback only.

Starts a memgrpc server in its own process, seeds some users, warms it up with `--clients`
workers for `--warmup` seconds, then runs them for `--duration` seconds, each picking search /
create / get / chat by the mix weights. Prints req/s, p50/p99 per RPC, errors by code, and the
server's RSS before and after the run (and before the warm-up), and the parts of it that grow
with the data by design, read from the server's /metrics: LanceDB's caches (bounded by
MEMGRPC_INDEX_CACHE_MB + MEMGRPC_METADATA_CACHE_MB) and the memories in the recall cache; and the
CPU the server, this client and the machine's other processes used (the machine may be shared).
Targets (issue 5): 0 errors, p99 < 1 s, RSS growth < 50% over a 5-minute run.
Usage: .venv/bin/python scripts/load.py [--clients 32] [--duration 300] [--warmup 30]
    [--env NAME=VALUE ...] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memgrpc.v1 import chat_pb2, chat_pb2_grpc, memory_pb2, memory_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench_scale import cpu_s, free_port  # noqa: E402
from benchdoc import Summary, report  # noqa: E402

KEY = "mgk_load_test_bootstrap_key_0123456789ab"
MD = (("x-api-key", KEY),)
WORDS = [
    "coffee",
    "tea",
    "garden",
    "dog",
    "cat",
    "piano",
    "guitar",
    "trip",
    "paris",
    "tokyo",
    "berlin",
    "meeting",
    "project",
    "deadline",
    "sister",
    "brother",
    "birthday",
    "cake",
    "hiking",
    "beach",
    "book",
    "movie",
    "dentist",
    "yoga",
    "running",
    "marathon",
    "recipe",
    "pasta",
    "allergy",
    "peanuts",
    "car",
    "train",
    "bike",
    "office",
    "promotion",
    "school",
    "daughter",
    "son",
    "holiday",
    "camping",
]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine_busy_s() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def sentence(rng: random.Random) -> str:
    return "User mentioned " + " ".join(rng.choices(WORDS, k=rng.randint(5, 14)))


GAUGES = ("memgrpc_store_cache_bytes", "memgrpc_recall_cache_rows", "memgrpc_recall_cache_users")


def gauges(url: str) -> dict[str, float]:
    """The memory gauges of the server's /metrics (a loopback HTTP GET)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in GAUGES:
            out[name] = float(value)
    return out


async def start_server(
    data: Path, extra_env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str, str]:
    port, metrics_port = free_port(), free_port()
    env = dict(os.environ, MEMGRPC_ADMIN_KEY=KEY, MEMGRPC_LOG_LEVEL="warning", **extra_env)
    cmd = [
        sys.executable,
        "-m",
        "memgrpc",
        "serve",
        "--addr",
        f"127.0.0.1:{port}",
        "--data",
        str(data),
        "--metrics-addr",
        f"127.0.0.1:{metrics_port}",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)  # noqa: ASYNC220
    addr = f"127.0.0.1:{port}"
    async with grpc.aio.insecure_channel(addr) as ch:
        for _ in range(450):
            try:
                r = await health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return proc, addr, f"http://127.0.0.1:{metrics_port}/metrics"
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


class Stats:
    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter[str] = collections.Counter()

    def line(self, name: str, duration: float) -> str:
        xs = sorted(self.lat[name])
        if not xs:
            return f"{name}: no calls"
        p50, p99 = xs[len(xs) // 2], xs[min(len(xs) - 1, int(len(xs) * 0.99))]
        return f"{name}: {len(xs)} calls, {len(xs) / duration:.1f}/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"


async def worker(
    i: int, ch: grpc.aio.Channel, stop_at: float, stats: Stats, ids: list[str], chat: bool
) -> None:
    rng = random.Random(i)
    mem = memory_pb2_grpc.MemoryServiceStub(ch)
    chat_stub = chat_pb2_grpc.ChatServiceStub(ch)
    ops = ["search"] * 5 + ["create"] * 2 + ["get"] * 2 + (["chat"] if chat else [])
    while time.monotonic() < stop_at:
        op = rng.choice(ops)
        user = f"user{rng.randrange(20)}"
        t0 = time.perf_counter()
        try:
            if op == "search":
                await mem.SearchMemories(
                    memory_pb2.SearchMemoriesRequest(user_id=user, query=sentence(rng)),
                    metadata=MD,
                    timeout=10,
                )
            elif op == "create":
                m = await mem.CreateMemory(
                    memory_pb2.CreateMemoryRequest(
                        memory=memory_pb2.Memory(user_id=user, content=sentence(rng))
                    ),
                    metadata=MD,
                    timeout=10,
                )
                ids.append(m.id)
            elif op == "get":
                await mem.GetMemory(
                    memory_pb2.GetMemoryRequest(id=rng.choice(ids)), metadata=MD, timeout=10
                )
            else:
                async for _ in chat_stub.Chat(
                    chat_pb2.ChatRequest(
                        user_id=user, message="What do you remember about " + rng.choice(WORDS)
                    ),
                    metadata=MD,
                    timeout=10,
                ):
                    pass
            stats.lat[op].append((time.perf_counter() - t0) * 1000)
        except grpc.aio.AioRpcError as e:
            stats.errors[f"{op}:{e.code().name}"] += 1


def memory_parts(
    rss_cold: int,
    rss_before: int,
    rss_after: int,
    g_cold: dict[str, float],
    g_before: dict[str, float],
    g_after: dict[str, float],
) -> list[str]:
    """What of the RSS growth is the caches that grow with the data, bounded by their settings."""
    if not g_after:
        return []
    mib = 2**20
    cache = [g.get("memgrpc_store_cache_bytes", 0.0) / mib for g in (g_cold, g_before, g_after)]
    rows = [int(g.get("memgrpc_recall_cache_rows", 0)) for g in (g_cold, g_before, g_after)]
    rest = (rss_after - rss_before) / 1024 - (cache[2] - cache[1])
    return [
        f"LanceDB caches: {cache[0]:.0f} / {cache[1]:.0f} / {cache[2]:.0f} MiB before the"
        " warm-up / before / after",
        f"recall cache: {rows[0]} / {rows[1]} / {rows[2]} memories of"
        f" {int(g_after.get('memgrpc_recall_cache_users', 0))} users",
        f"RSS growth after the warm-up less the LanceDB caches' growth: {rest:+.0f} MiB"
        f" ({100 * rest * 1024 / max(rss_before, 1):+.0f}%)",
    ]


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds of load before measuring")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the server, e.g. MEMGRPC_RECALL_CACHE_ROWS=5000 (repeatable)",
    )
    ap.add_argument("--write", action="store_true", help="append the results to docs/BENCHMARKS.md")
    args = ap.parse_args()
    if any("=" not in e for e in args.env):
        ap.error("--env takes NAME=VALUE")
    extra_env = dict(e.split("=", 1) for e in args.env)
    rng = random.Random(0)
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, addr, metrics_url = await start_server(Path(tmp) / "data", extra_env)
        try:
            async with grpc.aio.insecure_channel(addr) as ch:
                mem = memory_pb2_grpc.MemoryServiceStub(ch)
                ops = [
                    memory_pb2.BatchOperation(
                        create=memory_pb2.CreateMemoryRequest(
                            memory=memory_pb2.Memory(user_id=f"user{j % 20}", content=sentence(rng))
                        )
                    )
                    for j in range(1000)
                ]
                seeded = await mem.BatchMemories(
                    memory_pb2.BatchMemoriesRequest(operations=ops), metadata=MD
                )
                ids = [r.memory.id for r in seeded.results]
                chat = True
                try:
                    await chat_pb2_grpc.ChatServiceStub(ch).ListProviders(
                        chat_pb2.ListProvidersRequest(), metadata=MD
                    )
                except grpc.aio.AioRpcError:
                    chat = False
                # warm-up at the run's concurrency (the model's and LanceDB's buffers and caches
                # reach their working size), then measure
                rss_cold, g_cold = rss_kb(proc.pid), gauges(metrics_url)
                warm_until = time.monotonic() + args.warmup
                warm = Stats()
                await asyncio.gather(
                    *(worker(i, ch, warm_until, warm, ids, chat) for i in range(args.clients))
                )
                rss_before, g_before = rss_kb(proc.pid), gauges(metrics_url)
                stats = Stats()
                cpu0 = (cpu_s(proc.pid), time.process_time(), machine_busy_s())
                t0 = time.monotonic()
                await asyncio.gather(
                    *(
                        worker(i, ch, t0 + args.duration, stats, ids, chat)
                        for i in range(args.clients)
                    )
                )
                took = time.monotonic() - t0
                cpu1 = (cpu_s(proc.pid), time.process_time(), machine_busy_s())
                rss_after, g_after = rss_kb(proc.pid), gauges(metrics_url)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    total = sum(len(v) for v in stats.lat.values())
    every = sorted(x for v in stats.lat.values() for x in v)
    lines.append(
        f"{args.clients} clients for {took:.0f} s: {total / took:.1f} req/s, {sum(stats.errors.values())} errors"
    )
    for name in ("search", "create", "get", "chat"):
        if stats.lat[name]:
            lines.append(stats.line(name, took))
    if every:
        lines.append(
            f"all RPCs: p50 {every[len(every) // 2]:.1f} ms, p99 {every[int(len(every) * 0.99)]:.1f} ms"
        )
    if stats.errors:
        lines.append("errors: " + ", ".join(f"{k}={v}" for k, v in stats.errors.most_common()))
    server, client, machine = (b - a for a, b in zip(cpu0, cpu1, strict=True))
    others = max(0.0, machine - server - client)  # the machine is shared: were runs alike?
    lines.append(
        f"CPU: the server {server / took:.2f} cores ({1000 * server / max(total, 1):.1f} ms a call),"
        f" this client {client / took:.2f}, other processes {others / took:.2f}"
        f" of {os.cpu_count()}"
    )
    warm_calls = sum(len(v) for v in warm.lat.values())
    lines.append(
        f"warm-up: {warm_calls} calls, {sum(warm.errors.values())} errors (not counted above)"
    )
    growth = 100 * (rss_after - rss_before) / max(rss_before, 1)
    from_cold = 100 * (rss_after - rss_cold) / max(rss_cold, 1)
    lines.append(
        f"server RSS: {rss_before / 1024:.0f} MiB before, {rss_after / 1024:.0f} MiB after"
        f" ({growth:+.0f}%); {rss_cold / 1024:.0f} MiB before the {args.warmup:.0f} s warm-up"
        f" ({from_cold:+.0f}% from there)"
    )
    lines.extend(memory_parts(rss_cold, rss_before, rss_after, g_cold, g_before, g_after))
    errors = sum(stats.errors.values())
    p99 = every[int(len(every) * 0.99)] if every else float("nan")
    met = errors == 0 and p99 < 1000 and growth < 50
    summary = Summary(
        f"{total / took:.1f} req/s, {errors} errors, p99 of all calls {p99:.1f} ms, server RSS"
        f" {growth:+.0f}% after the warm-up ({args.clients} clients, {took:.0f} s)",
        f"server RSS {rss_before / 1024:.0f} MiB before the run (after the {args.warmup:.0f} s"
        " warm-up)",
        f"0 errors, p99 < 1 s, RSS growth < 50%: {'met' if met else 'NOT met'}",
    )
    report("load", lines, summary, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
