#!/usr/bin/env python
"""memgrpc vs a Chroma server, side by side in one run: same texts, same vectors, same queries.

Data: as in scripts/bench_scale.py (LoCoMo turns and recombinations embedded once with
LocalEmbedder; each memory = a base text + its vector with small gaussian noise, renormalised;
log-normal memories per user), `--size` memories.

Servers: `python -m memgrpc serve` and `chroma run --host 127.0.0.1 --port P --path DIR` (chromadb
from PyPI, in its own venv .venv-peers, created on first use), both on loopback, both running for
the whole run (the idle one costs nothing).
- Ingest: the same records in the same batches (`--batch`): memgrpc through ImportMemories with
  the vectors (one stream, `--batch` records per message), Chroma through its REST add API with the
  embeddings (base64 float32, as its own Python client sends them), ids, documents and a user_id
  metadata, one request per batch. Request bodies are built before the clock starts on both
  sides; the clock stops when the last write is acknowledged. Each side's background indexing
  (memgrpc: compaction + index refresh by the maintainer; Chroma: its index build) is then run or
  awaited and reported separately ("until indexed").
- Search, like with like: one user's memories, k = 10. memgrpc: SearchMemories(user_id, query
  text): the server embeds the query and ranks the user's memories (hybrid). Chroma: the query
  embedded here with the same model (LocalEmbedder), then its query API with `where: {user_id}`;
  both timings are the client's wall time per call. Users are drawn in proportion to their size;
  each user's first search is reported apart (memgrpc loads the user into its recall cache then),
  and the steady-state searches are run in alternating rounds on the two servers so that the
  machine's noise falls on both alike.
Prints `memgrpc/chroma search p50 ratio: X` and `memgrpc/chroma ingest ratio: Y` last.

Usage: .venv/bin/python scripts/bench_peers.py [--size 100000] [--queries 400] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchdoc
import grpc
import httpx
import numpy as np
from bench_scale import (
    MD,
    ROOT,
    Synth,
    base_texts,
    base_vectors,
    free_port,
    load_texts,
    maintain,
    pct,
    rss_mb,
    start_server,
    stop_server,
    to_pb,
)

from memgrpc.embed import LocalEmbedder
from memgrpc.server.logging import configure_logging
from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import memory_pb2_grpc

PEERS_VENV = ROOT / ".venv-peers"
CHROMA = "chromadb==1.5.9"
API = "/api/v2/tenants/default_tenant/databases/default_database"


def ensure_chroma() -> Path:
    """The `chroma` command of .venv-peers, installing chromadb there on first use (its own venv:
    its dependencies must not move memgrpc's grpcio/protobuf pins)."""
    exe = PEERS_VENV / "bin" / "chroma"
    if not exe.exists():
        print(f"creating {PEERS_VENV} with {CHROMA} (first use)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        pip = [str(PEERS_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, CHROMA], check=True)
    return exe


def start_chroma(path: Path, log: Path) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    port = free_port()
    env = dict(os.environ, ANONYMIZED_TELEMETRY="FALSE")
    cmd = [str(ensure_chroma()), "run", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cmd, "--path", str(path)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
    for _ in range(300):
        if proc.poll() is not None:
            break
        try:
            if client.get("/api/v2/heartbeat").status_code == 200:
                return proc, client
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"chroma did not start (see {log})")


def check(resp: httpx.Response) -> Any:
    if resp.status_code >= 300:
        raise RuntimeError(f"chroma: {resp.status_code} {resp.text[:500]}")
    return resp.json()


def chroma_body(recs: list[tuple[str, str, str, np.ndarray, Any]]) -> bytes:
    """One add request: embeddings as base64 little-endian float32, as chromadb's client does."""
    return json.dumps(
        {
            "ids": [r[0] for r in recs],
            "embeddings": [
                base64.b64encode(r[3].astype("<f4").tobytes()).decode("ascii") for r in recs
            ],
            "documents": [r[2] for r in recs],
            "metadatas": [{"user_id": r[1], "created": int(r[4].timestamp())} for r in recs],
        }
    ).encode()


def ingest_memgrpc(stub: Any, requests: list[pb.ImportMemoriesRequest], n: int) -> float:
    t0 = time.perf_counter()
    resp = stub.ImportMemories(iter(requests), metadata=MD, timeout=3600)
    took = time.perf_counter() - t0
    if resp.imported != n or resp.embedded or resp.failed:
        raise RuntimeError(f"memgrpc import went wrong: {resp}")
    return took


def ingest_chroma(client: httpx.Client, cid: str, bodies: list[bytes]) -> float:
    headers = {"content-type": "application/json"}
    t0 = time.perf_counter()
    for body in bodies:
        check(client.post(f"{API}/collections/{cid}/add", content=body, headers=headers))
    return time.perf_counter() - t0


def chroma_indexed(client: httpx.Client, cid: str, n: int, limit_s: float = 900) -> float:
    """Seconds until Chroma reports every record indexed (bounded); nan if it cannot say."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        resp = client.get(f"{API}/collections/{cid}/indexing_status")
        if resp.status_code != 200:
            return float("nan")
        status = resp.json()
        if status.get("num_unindexed_ops", 1) == 0 or status.get("indexing_progress", 0) >= 1:
            return time.perf_counter() - t0
        time.sleep(0.5)
    return float("nan")


def search_memgrpc(stub: Any, queries: list[tuple[str, str]]) -> tuple[list[float], list[Any]]:
    lat, out = [], []
    for user, q in queries:
        t0 = time.perf_counter()
        resp = stub.SearchMemories(
            pb.SearchMemoriesRequest(user_id=user, query=q, limit=10), metadata=MD, timeout=60
        )
        lat.append((time.perf_counter() - t0) * 1000)
        out.append([r.memory.id for r in resp.results])
    return lat, out


def search_chroma(
    client: httpx.Client,
    cid: str,
    emb: LocalEmbedder,
    queries: list[tuple[str, str]],
    *,
    per_user: bool = True,
) -> tuple[list[float], list[Any]]:
    lat, out = [], []
    for user, q in queries:
        t0 = time.perf_counter()
        vec = emb.embed_sync([q])[0]
        body: dict[str, Any] = {
            "query_embeddings": [vec.tolist()],
            "n_results": 10,
            "include": ["documents", "metadatas", "distances"],
        }
        if per_user:
            body["where"] = {"user_id": user}
        found = check(client.post(f"{API}/collections/{cid}/query", json=body))
        lat.append((time.perf_counter() - t0) * 1000)
        out.append(found["ids"][0])
    return lat, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500, help="records per write request")
    ap.add_argument("--queries", type=int, default=400, help="steady-state searches per side")
    ap.add_argument("--users", type=int, default=60, help="distinct users searched")
    ap.add_argument("--rounds", type=int, default=4, help="alternating search rounds")
    ap.add_argument("--write", action="store_true", help="append the results to BENCHMARKS.md")
    args = ap.parse_args()
    configure_logging("warning")
    ensure_chroma()
    turns, questions = load_texts()
    texts = base_texts(turns, 12000)
    vecs = base_vectors(texts)
    synth = Synth(texts, vecs, args.size, 0.015)
    rng = random.Random(11)
    lines: list[str] = []

    def report(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    sizes = np.bincount(synth.owners)
    report(
        f"data: {args.size} memories of {len(sizes)} users (median {int(np.median(sizes))},"
        f" max {int(sizes.max())} per user): {len(texts)} base texts (LoCoMo turns +"
        " recombinations) embedded once with LocalEmbedder, each memory = a base text + its"
        " vector with N(0, 0.015) noise per dimension, renormalised; both servers get the same"
        f" ids, texts, vectors and user ids, in batches of {args.batch}"
    )
    order = synth.order(0, args.size)
    recs = [synth.records(order[s : s + args.batch]) for s in range(0, args.size, args.batch)]
    grpc_reqs = [pb.ImportMemoriesRequest(records=[to_pb(r) for r in b]) for b in recs]
    bodies = [chroma_body(b) for b in recs]
    del recs
    picks = [synth.user(int(i)) for i in rng.choices(range(args.size), k=20 * args.users)]
    users = list(dict.fromkeys(picks))[: args.users]
    first = [(u, rng.choice(questions)) for u in users]
    steady = [(rng.choice(users), q) for q in rng.choices(questions, k=args.queries)]
    emb = LocalEmbedder()
    emb.embed_sync(questions[:16])

    with tempfile.TemporaryDirectory(prefix="memgrpc-peers-") as tmp:
        data = Path(tmp) / "memgrpc"
        server, address = asyncio.run(start_server(data, Path(tmp) / "memgrpc.log"))
        chroma, client = start_chroma(Path(tmp) / "chroma", Path(tmp) / "chroma.log")
        try:
            channel = grpc.insecure_channel(
                address, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
            )
            stub = memory_pb2_grpc.MemoryServiceStub(channel)
            coll = check(
                client.post(
                    f"{API}/collections",
                    json={"name": "memories", "metadata": {"hnsw:space": "cosine"}},
                )
            )
            cid = coll["id"]
            # ingest, one after the other
            t_m = ingest_memgrpc(stub, grpc_reqs, args.size)
            t0 = time.perf_counter()
            asyncio.run(maintain(data, server.pid, ann=True))  # the maintainer quiet, then a pass
            idx_m = time.perf_counter() - t0 - 9.5  # less the 8 s quiet check + 1.5 s sleep
            t_c = ingest_chroma(client, cid, bodies)
            idx_c = chroma_indexed(client, cid, args.size)
            count = check(client.get(f"{API}/collections/{cid}/count"))
            if count != args.size:
                raise RuntimeError(f"chroma holds {count} records, expected {args.size}")
            rate_m, rate_c = args.size / t_m, args.size / t_c
            report(
                f"ingest: memgrpc ImportMemories {rate_m:.0f} records/s ({t_m:.1f} s);"
                f" Chroma add {rate_c:.0f} records/s ({t_c:.1f} s);"
                f" ratio {rate_m / rate_c:.2f}x"
            )
            chroma_idx = (
                "its local server reports no indexing status (scout_logs not implemented);"
                " every acknowledged record is searchable"
                if np.isnan(idx_c)
                else f"{args.size / (t_c + idx_c):.0f} records/s (+{idx_c:.1f} s until its"
                " indexing status shows no unindexed records)"
            )
            report(
                f"until indexed: memgrpc {args.size / (t_m + idx_m):.0f} records/s"
                f" (+{idx_m:.0f} s until the server's maintainer is idle and one more pass has"
                " run: compaction, FTS/scalar indexes, IVF_HNSW_SQ; searches see every"
                " acknowledged write before that too);"
                f" Chroma: {chroma_idx}"
            )
            # first search of each user, alternating the side that goes first
            first_m, first_c = [], []
            for i, q in enumerate(first):
                if i % 2:
                    first_c += search_chroma(client, cid, emb, [q])[0]
                    first_m += search_memgrpc(stub, [q])[0]
                else:
                    first_m += search_memgrpc(stub, [q])[0]
                    first_c += search_chroma(client, cid, emb, [q])[0]
            # steady state, alternating rounds
            lat_m: list[float] = []
            lat_c: list[float] = []
            ids_m: list[Any] = []
            ids_c: list[Any] = []
            per = max(1, len(steady) // args.rounds)
            for r in range(args.rounds):
                chunk = steady[r * per : (r + 1) * per]
                for side in ("m", "c") if r % 2 == 0 else ("c", "m"):
                    if side == "m":
                        lat, ids = search_memgrpc(stub, chunk)
                        lat_m += lat
                        ids_m += ids
                    else:
                        lat, ids = search_chroma(client, cid, emb, chunk)
                        lat_c += lat
                        ids_c += ids
            embed_ms = []
            for _, q in steady[:100]:
                t0 = time.perf_counter()
                emb.embed_sync([q])
                embed_ms.append((time.perf_counter() - t0) * 1000)
            # context, not compared: Chroma over the whole collection (no user filter)
            wide, _ = search_chroma(client, cid, emb, steady[:100], per_user=False)
            same = sum(len(set(a) & set(b)) for a, b in zip(ids_m, ids_c, strict=True))
            report(
                f"per-user search, k=10, {len(users)} users, first search of each user:"
                f" memgrpc p50 {pct(first_m, 50):.1f} ms, p99 {pct(first_m, 99):.1f} ms;"
                f" Chroma p50 {pct(first_c, 50):.1f} ms, p99 {pct(first_c, 99):.1f} ms"
            )
            report(
                f"per-user search, k=10, {len(lat_m)} searches in {args.rounds} alternating"
                f" rounds: memgrpc p50 {pct(lat_m, 50):.1f} ms, p99 {pct(lat_m, 99):.1f} ms;"
                f" Chroma (embed here + query) p50 {pct(lat_c, 50):.1f} ms,"
                f" p99 {pct(lat_c, 99):.1f} ms; query embedding alone p50"
                f" {pct(embed_ms, 50):.1f} ms; for context, Chroma without the user filter"
                f" (whole collection) p50 {pct(wide, 50):.1f} ms"
            )
            report(
                f"result overlap (memgrpc hybrid top-10 vs Chroma vector top-10):"
                f" {100 * same / max(1, 10 * len(ids_m)):.0f}%;"
                f" server RSS: memgrpc {rss_mb(server.pid):.0f} MB,"
                f" Chroma {rss_mb(chroma.pid):.0f} MB"
            )
            search_ratio = pct(lat_m, 50) / pct(lat_c, 50)
            ingest_ratio = rate_m / rate_c
            report(f"memgrpc/chroma search p50 ratio: {search_ratio:.2f}")
            report(f"memgrpc/chroma ingest ratio: {ingest_ratio:.2f}")
            channel.close()
        finally:
            client.close()
            stop_server(chroma)
            stop_server(server)
    met = search_ratio < 1 and ingest_ratio > 1
    summary = benchdoc.Summary(
        f"per-user search p50 {pct(lat_m, 50):.1f} ms = {search_ratio:.2f}x Chroma's;"
        f" ingest {rate_m:.0f} records/s = {ingest_ratio:.2f}x Chroma's ({args.size} memories)",
        f"Chroma, same data and queries: search p50 {pct(lat_c, 50):.1f} ms (embed here + query),"
        f" ingest {rate_c:.0f} records/s",
        f"search p50 ratio < 1, ingest ratio > 1: {'met' if met else 'NOT met'}",
    )
    benchdoc.report("bench_peers", lines, summary, write=args.write, printed=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
