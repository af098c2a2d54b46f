#!/usr/bin/env python3
"""The local embedder with integer products (memgrpc.embed.int8) against float ones, in one run.

Both embedders load the packaged model; the float one is the baseline. Measured, in alternating
rounds: one query at a time (LoCoMo questions: p50 and CPU per query), LoCoMo turns in batches
(texts/s), whether a text gets the same vector alone and in a batch, and how close the two
embedders' vectors are. Recall: `scripts/eval_recall_offline.py --turns ... --queries ...`.

    .venv/bin/python scripts/bench_embed.py [--queries 300] [--texts 600] [--rounds 2] [--write]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_memory import load_texts  # noqa: E402
from benchdoc import Summary, report  # noqa: E402

from memgrpc.embed import LocalEmbedder, int8  # noqa: E402


def one_at_a_time(embedder: LocalEmbedder, texts: list[str]) -> tuple[float, float]:
    """(p50 ms, CPU ms) per text, each embedded alone."""
    lat = []
    cpu0 = time.process_time()
    for t in texts:
        t0 = time.perf_counter()
        embedder.embed_sync([t])
        lat.append((time.perf_counter() - t0) * 1000)
    return statistics.median(lat), (time.process_time() - cpu0) * 1000 / len(texts)


def batched(embedder: LocalEmbedder, texts: list[str]) -> float:
    """Texts per second, all in one call (the embedder sorts and chunks them itself)."""
    t0 = time.perf_counter()
    embedder.embed_sync(texts)
    return len(texts) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--texts", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="append the results to docs/BENCHMARKS.md")
    args = ap.parse_args()
    turns, questions = load_texts()
    rng = random.Random(5)
    queries = rng.sample(questions, min(args.queries, len(questions)))
    texts = rng.sample(turns, min(args.texts, len(turns)))
    both = {"float": LocalEmbedder(integer=False), "int8": LocalEmbedder(integer=True)}
    if not both["int8"].integer:
        print("the packaged model has no int8 products to rewire", file=sys.stderr)
        return 1
    single: dict[str, list[tuple[float, float]]] = {k: [] for k in both}
    rate: dict[str, list[float]] = {k: [] for k in both}
    for r in range(args.rounds):
        for name in list(both)[:: 1 if r % 2 == 0 else -1]:  # alternate who goes first
            single[name].append(one_at_a_time(both[name], queries))
            rate[name].append(batched(both[name], texts))
    p50 = {k: statistics.median(x[0] for x in v) for k, v in single.items()}
    cpu = {k: statistics.median(x[1] for x in v) for k, v in single.items()}
    tps = {k: statistics.median(v) for k, v in rate.items()}

    fast = both["int8"]
    some = texts[:200]
    alone = np.vstack([fast.embed_sync([t]) for t in some])
    drift = float(np.abs(alone - fast.embed_sync(some)).max())
    a, b = fast.embed_sync(texts), both["float"].embed_sync(texts)
    cosine = (a * b).sum(axis=1)
    lines = [
        f"CPU: int8 dot products (VNNI) {'yes' if int8.cpu_has_int8_dot() else 'no'}; "
        f"{len(queries)} questions one at a time, {len(texts)} turns in one call, "
        f"{args.rounds} alternating rounds (medians)",
        f"one query: float p50 {p50['float']:.2f} ms, CPU {cpu['float']:.2f} ms; "
        f"int8 p50 {p50['int8']:.2f} ms ({p50['int8'] / p50['float']:.2f}x), "
        f"CPU {cpu['int8']:.2f} ms ({cpu['int8'] / cpu['float']:.2f}x)",
        f"batched: float {tps['float']:.0f} texts/s; int8 {tps['int8']:.0f} texts/s "
        f"({tps['int8'] / tps['float']:.2f}x)",
        f"int8 vector alone vs in a batch: max difference {drift:.1e} ({len(some)} turns)",
        f"int8 vs float vectors: cosine mean {cosine.mean():.4f}, min {cosine.min():.4f}",
    ]
    summary = Summary(
        f"int8: one query p50 {p50['int8']:.2f} ms ({p50['int8'] / p50['float']:.2f}x),"
        f" CPU {cpu['int8']:.2f} ms ({cpu['int8'] / cpu['float']:.2f}x); batched"
        f" {tps['int8']:.0f} texts/s ({tps['int8'] / tps['float']:.2f}x); cosine to float mean"
        f" {cosine.mean():.4f}",
        f"float: one query p50 {p50['float']:.2f} ms, CPU {cpu['float']:.2f} ms; batched"
        f" {tps['float']:.0f} texts/s",
        "none: an A/B, the ratios to the float embedder are the result",
    )
    report("bench_embed", lines, summary, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
