#!/usr/bin/env python
"""Conversational recall on LoCoMo (dev split) through the public API, plus ingest and search speed.

Protocol (../shared/bench/README.md): each conversation is one user; each LoCoMo session one
memgrpc session; each turn one message (id = dia_id, create_time = the session's date, name = the
speaker) sent with AddMessages. Each question goes verbatim to SearchMemories (that user, limit 10);
a hit at k = an evidence turn among the top k (results map back through source_message_ids).
With `--process`, every session is processed (ProcessSession: summary and fact extraction)
before the questions, so summaries and extracted facts compete with the turns; a result maps
back to the first message it cites, so a fact counts as a hit when it came from an evidence turn.
Usage: .venv/bin/python scripts/bench_locomo.py [--data FILE] [--process] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchdoc
import grpc
from google.protobuf import timestamp_pb2

from memgrpc.config import ServerConfig
from memgrpc.embed import load_embedder
from memgrpc.server.app import start
from memgrpc.server.logging import configure_logging
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import memory_pb2_grpc, sessions_pb2, sessions_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "bench" / "locomo_dev.json"
KEY = "mgk_bench_locomo_bootstrap_key_0123456789"
MD = (("x-api-key", KEY),)
PUBLISHED = "BM25 32.8 / 62.9, an offline local pipeline 51.3 / 86.8"  # hit@1 / hit@10
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


def session_time(text: str) -> datetime:
    """'1:56 pm on 8 May, 2023' -> an aware UTC datetime."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def clean_evidence(raw: list[str], turns: set[str]) -> list[str]:
    out = []
    for item in raw:
        for part in re.split(r"[;,\s]+", item):
            m = re.fullmatch(r"D:?(\d+):0*(\d+)", part.strip())
            if m and (dia := f"D{m.group(1)}:{m.group(2)}") in turns:
                out.append(dia)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def ingest(
    ch: grpc.aio.Channel, user: str, conv: dict[str, Any], made: list[str] | None = None
) -> tuple[int, float]:
    """Adds the conversation; the session ids go to `made` when given."""
    sessions = sessions_pb2_grpc.SessionServiceStub(ch)
    n, spent = 0, 0.0
    keys = sorted(
        (k for k in conv if re.fullmatch(r"session_\d+", k)), key=lambda k: int(k.split("_")[1])
    )
    for key in keys:
        when = timestamp_pb2.Timestamp()
        when.FromDatetime(session_time(conv[f"{key}_date_time"]))
        s = await sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(
                session=sessions_pb2.Session(user_id=user, title=key)
            ),
            metadata=MD,
        )
        if made is not None:
            made.append(s.id)
        msgs = [
            sessions_pb2.Message(
                id=t["dia_id"], role="user", name=t["speaker"], content=t["text"], create_time=when
            )
            for t in conv[key]
        ]
        t0 = time.perf_counter()
        await sessions.AddMessages(
            sessions_pb2.AddMessagesRequest(session_id=s.id, messages=msgs), metadata=MD
        )
        spent += time.perf_counter() - t0
        n += len(msgs)
    return n, spent


async def process_all(ch: grpc.aio.Channel, session_ids: list[str]) -> float:
    """ProcessSession (wait) for every session, two at a time; seconds taken."""
    sessions = sessions_pb2_grpc.SessionServiceStub(ch)
    gate = asyncio.Semaphore(2)

    async def one(sid: str) -> None:
        async with gate:
            job = await sessions.ProcessSession(
                sessions_pb2.ProcessSessionRequest(session_id=sid, wait=True), metadata=MD
            )
            if job.state != sessions_pb2.JOB_STATE_DONE:
                raise RuntimeError(f"processing {sid} failed: {job.error}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one(s) for s in session_ids))
    return time.perf_counter() - t0


async def run(
    data: list[dict[str, Any]], process: bool = False
) -> tuple[list[str], benchdoc.Summary]:
    emb = load_embedder("local")
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ServerConfig(
            addr="127.0.0.1:0",
            data=str(Path(tmp) / "data"),
            admin_key=KEY,
            maintenance_interval_s=3600,
        )
        server = await start(cfg, embedder=emb)
        try:
            async with grpc.aio.insecure_channel(server.address) as ch:
                # one client per conversation, all at once: the server batches across them
                t0 = time.perf_counter()
                made: list[str] = []
                done = await asyncio.gather(
                    *(
                        ingest(ch, f"user{i}", item["conversation"], made)
                        for i, item in enumerate(data)
                    )
                )
                wall = time.perf_counter() - t0
                total_msgs = sum(n for n, _ in done)
                # and one client alone (a separate user, not scored)
                seq_msgs, seq_s = await ingest(ch, "sequential", data[0]["conversation"])
                processed_s = await process_all(ch, made) if process else 0.0
                await server.app.maintainer.run_once(force=True)
                memories = memory_pb2_grpc.MemoryServiceStub(ch)
                hits: dict[str, list[list[int]]] = defaultdict(
                    list
                )  # category -> [h1, h5, h10, all10]
                latencies: list[float] = []
                for i, item in enumerate(data):
                    conv = item["conversation"]
                    turns = {t["dia_id"] for k, v in conv.items() if isinstance(v, list) for t in v}
                    for qa in item["qa"]:
                        evidence = set(clean_evidence(qa.get("evidence", []), turns))
                        if not evidence:
                            continue
                        t0 = time.perf_counter()
                        resp = await memories.SearchMemories(
                            mpb.SearchMemoriesRequest(
                                user_id=f"user{i}", query=qa["question"], limit=10
                            ),
                            metadata=MD,
                        )
                        latencies.append((time.perf_counter() - t0) * 1000)
                        ranked = [
                            r.memory.source_message_ids[0]
                            for r in resp.results
                            if r.memory.source_message_ids
                        ]
                        row = [int(bool(evidence & set(ranked[:k]))) for k in (1, 5, 10)]
                        row.append(int(evidence <= set(ranked[:10])))
                        hits[str(qa["category"])].append(row)
        finally:
            await server.stop(5)

    def line(name: str, rows: list[list[int]]) -> str:
        cols = [100 * statistics.fmean(r[j] for r in rows) for j in range(4)]
        return f"| {name} | {len(rows)} | {cols[0]:.1f} | {cols[1]:.1f} | {cols[2]:.1f} | {cols[3]:.1f} |"

    scored = [r for c in ("1", "2", "3", "4") for r in hits[c]]
    lines.append("| set | questions | hit@1 | hit@5 | hit@10 | all-evidence@10 |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    lines.append(line("**categories 1-4**", scored))
    for c in ("1", "2", "3", "4", "5"):
        if hits[c]:
            lines.append(line(f"{c} {CATEGORIES[int(c)]}", hits[c]))
    lines.append("")
    lines.append(
        f"Ingest, {len(data)} concurrent clients (CreateSession + one AddMessages per session):"
        f" {total_msgs / wall:.0f} messages/s ({total_msgs} messages in {wall:.1f} s)"
    )
    lines.append(
        f"Ingest, one client, sequential AddMessages calls: {seq_msgs / seq_s:.0f} messages/s"
        f" ({seq_msgs} messages; time in AddMessages only)"
    )
    if process:
        lines.append(
            f"Processed all {len(made)} sessions first (summary + fact extraction):"
            f" {processed_s:.1f} s"
        )
    lines.append(
        f"SearchMemories latency over {len(latencies)} questions: p50 {pct(latencies, 50):.1f} ms,"
        f" p99 {pct(latencies, 99):.1f} ms"
    )
    h1, h10 = (100 * statistics.fmean(r[j] for r in scored) for j in (0, 2))
    together, alone, p50 = total_msgs / wall, seq_msgs / seq_s, pct(latencies, 50)
    met = h10 >= 87 and h1 >= 52 and min(together, alone) >= 100 and p50 <= 15
    summary = benchdoc.Summary(
        f"hit@1 {h1:.1f}, hit@10 {h10:.1f} (categories 1-4"
        f"{'; every session processed first' if process else ''}); ingest {together:.0f} messages/s"
        f" ({len(data)} clients), {alone:.0f} (one client); search p50 {p50:.1f} ms",
        f"none in the run; published on this split (hit@1 / hit@10): {PUBLISHED}",
        "hit@10 >= 87, hit@1 >= 52, ingest >= 100 messages/s, search p50 <= 15 ms:"
        f" {'met' if met else 'NOT met'}",
    )
    return lines, summary


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--process", action="store_true", help="process every session before the questions"
    )
    ap.add_argument("--write", action="store_true", help="append the results to docs/BENCHMARKS.md")
    args = ap.parse_args()
    configure_logging("warning")
    lines, summary = await run(json.loads(args.data.read_text()), args.process)
    print("\n".join(lines))
    print(summary.line())
    if args.write:  # its lines are markdown already (a table), not bullets
        benchdoc.log_run("bench_locomo", "\n".join(lines), summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
