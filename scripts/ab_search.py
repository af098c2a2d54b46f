#!/usr/bin/env python3
"""A/B of server settings on one table: project-wide searches alternated query by query.

Each variant is a `memgrpc serve` process on the same dataset (e.g. the 1M table bench_scale
keeps with `--data`), started with extra environment variables; the same LoCoMo questions go to
each in turn, the order rotating per question, so a slow moment of the machine hits all of them.
The first variant is the baseline. Several servers on one machine are slower than one alone:
compare the ratios, not the absolute times, with bench_scale's.

    .venv/bin/python scripts/ab_search.py --data DIR [--queries 300] [--write] \\
        asyncio=MEMGRPC_EVENT_LOOP:asyncio uvloop=MEMGRPC_EVENT_LOOP:uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_memory import load_texts  # noqa: E402
from bench_scale import MD, cpu_s, start_server, stop_server  # noqa: E402
from benchdoc import Summary, report  # noqa: E402

from memgrpc.v1 import memory_pb2 as pb  # noqa: E402
from memgrpc.v1 import memory_pb2_grpc  # noqa: E402


def variant(spec: str) -> tuple[str, dict[str, str]]:
    """`name=VAR:value,VAR:value` -> (name, environment)."""
    name, _, rest = spec.partition("=")
    env = dict(item.split(":", 1) for item in rest.split(",") if item)
    if not name or any(not k for k in env):
        raise SystemExit(f"bad variant {spec!r}: expected name=VAR:value[,VAR:value]")
    return name, env


def p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q / 100))]


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="an existing memgrpc data directory")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--write", action="store_true", help="append the results to docs/BENCHMARKS.md")
    ap.add_argument("variants", nargs="+", help="name=VAR:value[,VAR:value] (the first: baseline)")
    args = ap.parse_args()
    variants = [variant(v) for v in args.variants]
    _, questions = load_texts()
    random.Random(args.seed).shuffle(questions)
    queries, warm = questions[: args.queries], questions[args.queries : args.queries + 40]
    procs: dict[str, Any] = {}
    channels: dict[str, grpc.aio.Channel] = {}
    try:
        for name, env in variants:
            log = Path(tempfile.mkdtemp()) / f"{name}.log"
            procs[name], address = await start_server(Path(args.data), log, settings=env)
            channels[name] = grpc.aio.insecure_channel(address)
        stubs = {k: memory_pb2_grpc.MemoryServiceStub(c) for k, c in channels.items()}
        for stub in stubs.values():
            for q in warm:
                await stub.SearchMemories(pb.SearchMemoriesRequest(query=q, limit=10), metadata=MD)
        names = list(stubs)
        lat: dict[str, list[float]] = {k: [] for k in names}
        cpu0 = {k: cpu_s(proc.pid) for k, proc in procs.items()}
        for i, q in enumerate(queries):
            for k in names[i % len(names) :] + names[: i % len(names)]:
                t0 = time.perf_counter()
                await stubs[k].SearchMemories(
                    pb.SearchMemoriesRequest(query=q, limit=10), metadata=MD
                )
                lat[k].append((time.perf_counter() - t0) * 1000)
        cpu = {k: (cpu_s(procs[k].pid) - cpu0[k]) * 1000 / len(queries) for k in names}
    finally:
        for c in channels.values():
            await c.close()
        for proc in procs.values():
            stop_server(proc)
    base = names[0]
    lines = [
        f"{len(queries)} project-wide searches (limit 10) alternated between {len(names)} servers "
        f"on {args.data}; baseline {base}"
    ]
    for k in names:
        lines.append(
            f"{k} ({', '.join(f'{a}={b}' for a, b in dict(variants)[k].items()) or 'no env'}): "
            f"p50 {p(lat[k], 50):.1f} ms ({p(lat[k], 50) / p(lat[base], 50):.2f}x), "
            f"p99 {p(lat[k], 99):.1f} ms, server CPU per search {cpu[k]:.1f} ms "
            f"({cpu[k] / cpu[base]:.2f}x)"
        )
    summary = Summary(
        "; ".join(
            f"{k}: p50 {p(lat[k], 50):.1f} ms ({p(lat[k], 50) / p(lat[base], 50):.2f}x),"
            f" server CPU per search {cpu[k]:.1f} ms ({cpu[k] / cpu[base]:.2f}x)"
            for k in names[1:]
        ),
        f"{base}: p50 {p(lat[base], 50):.1f} ms, server CPU per search {cpu[base]:.1f} ms",
        "none: an A/B, the ratios to the baseline are the result",
    )
    report("ab_search", lines, summary, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
