#!/usr/bin/env python3
"""Bytes per memory held by the recall cache (core/memory/recall_cache.py), measured with tracemalloc.

One user's memories, made like scripts/load.py's (a sentence, a 384-d vector, timestamps), go
into a cached user two ways: loaded at once (as a first search loads a user from the store) and
written one by one (as the server's own writes arrive). Python's allocations are exact and the
same on every run, so this reports bytes, not ratios.

    .venv/bin/python scripts/bench_cache_memory.py [--rows N ...] [--write]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from benchdoc import Summary, report  # noqa: E402
from load import sentence  # noqa: E402

from memgrpc.core.memory import recall_cache  # noqa: E402
from memgrpc.core.memory.recall import UserIndex  # noqa: E402

DIM = 384


def rows(n: int) -> list[dict[str, Any]]:
    rng, vecs = random.Random(0), np.random.default_rng(0)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "id": f"mem_{rng.getrandbits(96):024x}",
            "user_id": "user1",
            "content": sentence(rng),
            "type": "observation",
            "tags": [],
            "metadata": "",
            "categories": [],
            "version": 1,
            "create_time": t0 + timedelta(seconds=i),
            "update_time": t0 + timedelta(seconds=i),
            "vector": vecs.standard_normal(DIM).astype(np.float32),
        }
        for i in range(n)
    ]


def cached_bytes(data: list[dict[str, Any]], *, load: bool) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    user = recall_cache.CachedUser(UserIndex(dim=DIM))
    if load:  # what IndexCache._load does
        user.index.reserve(len(data))
    for row in data:
        recall_cache._put(user, row)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del user
    return held


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--write", action="store_true", help="append to docs/BENCHMARKS.md")
    args = ap.parse_args()
    lines = [f"vectors alone: {DIM * 4} bytes per memory (float32)"]
    for n in args.rows:
        data = rows(n)
        loaded = cached_bytes(data, load=True) / n
        written = cached_bytes(data, load=False) / n
        lines.append(
            f"{n} memories of one user: {loaded:.0f} bytes per memory loaded at once,"
            f" {written:.0f} written one by one"
        )
    summary = Summary(
        f"{loaded:.0f} bytes per memory loaded at once, {written:.0f} written one by one"
        f" ({args.rows[-1]} memories of one user)",
        f"the vector alone: {DIM * 4} bytes per memory (float32)",
        "none: bytes are exact, compared with earlier runs",
    )
    report("bench_cache_memory", lines, summary, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
