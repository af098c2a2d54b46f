#!/usr/bin/env python
"""Chat benchmark: the service-added time to first delta, with the local provider.

Service-added = (request sent -> first delta received, measured by the client) minus the
provider's own first-token time (the local provider reports it: `Generation.first_token_s`,
read through the `ChatService.on_first_delta` hook). What remains is memgrpc's part: auth,
session lookup, storing the user message (embed + commits) and recall, all before generation.

The memories (LoCoMo dev turns, varied to reach the size) are bulk-loaded with BatchMemories
for `--users` users and compacted first; the server's maintainer runs at its default interval.
Turns run one at a time, each user in one ongoing session, from a client in its own process
(as real clients are: a client in the server's process would add its own gRPC work to the
server's event loop). The server runs in this process (the hook has to be read); the client's
turns and the hook's timings are paired in order. The gRPC hop to the client counts as service
time. Baseline from the same run: AddMessages of one message into the same sessions (a turn must
commit its user message before generating) and SearchMemories on the same users.

memory_mode (same run, after the turns above): the same users talk to two agents, one SYNC and
one ASYNC (recall races MEMGRPC_ASYNC_RECALL_DEADLINE_MS, 50 ms by default), alternating,
`--mode-turns` turns each, first with recall as it is, then with recall slowed by the test hook
MEMGRPC_TEST_RECALL_DELAY_MS (`--slow-recall-ms`, a stand-in for a loaded or remote store): the
client's time to first delta of each mode, and how many ASYNC turns still had memories (the
previous turn's late ones). `--modes-only` skips the turns above (a quick run).
Usage: .venv/bin/python scripts/bench_chat.py [--memories 10000] [--users 10] [--turns 300]
  [--mode-turns 100] [--slow-recall-ms 200] [--modes-only] [--write]
(`--client ADDRESS` is the client process's mode.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchdoc
import grpc

from memgrpc.config import ServerConfig
from memgrpc.core.chat.late import RECALL_DELAY_ENV
from memgrpc.core.chat.turn import TurnTiming
from memgrpc.embed import load_embedder
from memgrpc.server.app import start
from memgrpc.server.logging import configure_logging
from memgrpc.v1 import agents_pb2 as apb
from memgrpc.v1 import agents_pb2_grpc, chat_pb2_grpc, memory_pb2_grpc, sessions_pb2_grpc
from memgrpc.v1 import chat_pb2 as pb
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import corpus, load_texts, pct

ROOT = Path(__file__).resolve().parent.parent
KEY = "mgk_bench_bootstrap_key_0123456789abcdef"
MD = (("x-api-key", KEY),)
TARGET_P50_MS = 15.0


async def bulk_load(stub: memory_pb2_grpc.MemoryServiceStub, texts: list[str], users: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(texts), 250):
        ops = [
            mpb.BatchOperation(
                create=mpb.CreateMemoryRequest(
                    memory=mpb.Memory(user_id=f"u{(i + j) % users}", content=t)
                )
            )
            for j, t in enumerate(texts[i : i + 250])
        ]
        resp = await stub.BatchMemories(mpb.BatchMemoriesRequest(operations=ops), metadata=MD)
        assert resp.summary.failed == 0
    return len(texts) / (time.perf_counter() - t0)


async def one_turn(
    stub: chat_pb2_grpc.ChatServiceStub, req: pb.ChatRequest, recalled: list[int] | None = None
) -> tuple[float, str, str]:
    """(ms to the first delta, session id, reply); `recalled` gets the count of memories."""
    t0 = time.perf_counter()
    first = 0.0
    session_id, parts = "", list[str]()
    async for ev in stub.Chat(req, metadata=MD):
        if ev.HasField("started"):
            session_id = ev.started.session_id
        elif ev.HasField("context") and recalled is not None:
            recalled.append(len(ev.context.memories))
        elif ev.HasField("delta"):
            if not parts:
                first = (time.perf_counter() - t0) * 1000
            parts.append(ev.delta.text)
    return first, session_id, "".join(parts)


async def baselines(
    ch: grpc.aio.Channel, sessions: dict[str, str], questions: list[str]
) -> tuple[list[float], list[float]]:
    """Client-side ms of AddMessages (one message) and SearchMemories on the same users."""
    add_stub = sessions_pb2_grpc.SessionServiceStub(ch)
    search_stub = memory_pb2_grpc.MemoryServiceStub(ch)
    adds, searches = [], []
    for i, q in enumerate(questions):
        user = f"u{i % len(sessions)}"
        t0 = time.perf_counter()
        await add_stub.AddMessages(
            spb.AddMessagesRequest(
                session_id=sessions[user], messages=[spb.Message(role="user", content=q)]
            ),
            metadata=MD,
        )
        adds.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await search_stub.SearchMemories(
            mpb.SearchMemoriesRequest(user_id=user, query=q, limit=10), metadata=MD
        )
        searches.append((time.perf_counter() - t0) * 1000)
    return adds, searches


async def mode_turns(address: str, users: int, turns: int, seed: int, agents: list[str]) -> int:
    """The client process, memory_mode part: turns alternating between the agents (one session
    per user and agent), one JSON line per turn."""
    _, questions = load_texts()
    rng = random.Random(seed)
    sessions: dict[tuple[str, str], str] = {}
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        for i in range(turns * len(agents)):
            agent = agents[i % len(agents)]
            user = f"u{(i // len(agents)) % users}"
            question = rng.choice(questions)
            known = sessions.get((user, agent))
            req = (
                pb.ChatRequest(session_id=known, message=question)
                if known
                else pb.ChatRequest(user_id=user, agent_id=agent, message=question)
            )
            recalled: list[int] = []
            first, session_id, _ = await one_turn(chat, req, recalled)
            sessions[(user, agent)] = session_id
            line = {"agent": agent, "first_ms": first, "memories": sum(recalled)}
            print(json.dumps(line), flush=True)
    return 0


async def client_turns(address: str, users: int, turns: int, seed: int) -> int:
    """The client process: run the turns, print one JSON line per turn."""
    _, questions = load_texts()
    rng = random.Random(seed)
    sessions: dict[str, str] = {}
    async with grpc.aio.insecure_channel(address) as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        for i in range(turns):
            user = f"u{i % users}"
            question = rng.choice(questions)
            req = (
                pb.ChatRequest(session_id=sessions[user], message=question)
                if user in sessions
                else pb.ChatRequest(user_id=user, message=question)
            )
            first, session_id, reply = await one_turn(chat, req)
            sessions[user] = session_id
            # the built-in responder says what it is, then quotes recall: "From what I
            # remember: ..." (a word match) or "The closest I have stored: ..." (recall's best)
            grounded = "From what I remember:" in reply or "The closest I have stored:" in reply
            turn = {"first_ms": first, "session_id": session_id, "grounded": grounded}
            print(json.dumps(turn), flush=True)
        adds, searches = await baselines(ch, sessions, rng.sample(questions, 100))
        print(json.dumps({"adds": adds, "searches": searches}), flush=True)
    return 0


async def run_client(
    address: str, users: int, turns: int, seed: int, agents: list[str] | None = None
) -> list[dict[str, Any]]:
    more = ["--agents", ",".join(agents)] if agents else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        address,
        "--users",
        str(users),
        "--turns",
        str(turns),
        "--seed",
        str(seed),
        *more,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"client process exited with {proc.returncode}")
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--memories", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--mode-turns", type=int, default=100, help="memory_mode turns per mode")
    ap.add_argument("--slow-recall-ms", type=float, default=200.0)
    ap.add_argument("--modes-only", action="store_true", help="only the memory_mode part")
    ap.add_argument("--client", metavar="ADDRESS", help=argparse.SUPPRESS)
    ap.add_argument("--agents", help=argparse.SUPPRESS)
    ap.add_argument("--write", action="store_true", help="append the results to docs/BENCHMARKS.md")
    args = ap.parse_args()
    if args.client and args.agents:
        agents = args.agents.split(",")
        return await mode_turns(args.client, args.users, args.turns, args.seed, agents)
    if args.client:
        return await client_turns(args.client, args.users, args.turns, args.seed)
    configure_logging("warning")
    turns, _ = load_texts()
    texts = corpus(turns, args.memories)
    lines: list[str] = []

    def report(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(
            addr="127.0.0.1:0",
            data=str(Path(tmp) / "data"),
            admin_key=KEY,
            log_level="warning",
        )
        running = await start(config, embedder=load_embedder("local"))
        try:
            app = running.app
            async with grpc.aio.insecure_channel(running.address) as ch:
                memories = memory_pb2_grpc.MemoryServiceStub(ch)
                rate = await bulk_load(memories, texts, args.users)
                await app.maintainer.run_once(force=True)  # what the background maintainer does
                report(
                    f"{args.memories} memories for {args.users} users, bulk-loaded with"
                    f" BatchMemories at {rate:.0f} memories/s, then compacted"
                    f" (machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
                )
                parts: list[Any] = []
                if not args.modes_only:
                    parts = await turns_part(app, running.address, args, report)
                parts.append(await modes_part(ch, running.address, app, args, report))
        finally:
            await running.stop(5.0)
    *turns, (modes, verdict) = parts
    if turns:  # the turns' figure, baseline and target; memory_mode after the figure
        summary = benchdoc.Summary(f"{turns[0]}; {modes}", turns[1], f"{turns[2]}; {verdict}")
    else:
        summary = benchdoc.Summary(modes, "-", verdict)
    benchdoc.report("bench_chat", lines, summary, write=args.write, printed=True)
    return 0


async def turns_part(
    app: Any, address: str, args: argparse.Namespace, report: Callable[[str], None]
) -> list[str]:
    """The service-added time to first delta: (figure, baseline, target) of the summary."""
    timings: list[TurnTiming] = []
    warm = args.users * 2  # every user's session started, caches warm
    app.chat.service.on_first_delta = timings.append
    loads = app.memories.cache.loads
    *results, base = await run_client(address, args.users, warm + args.turns, args.seed)
    app.chat.service.on_first_delta = None
    if len(results) != len(timings):
        raise RuntimeError(f"{len(results)} turns but {len(timings)} timings")
    firsts = [float(r["first_ms"]) for r in results[warm:]]
    grounded = sum(bool(r["grounded"]) for r in results[warm:])
    provider = [t.provider_first_token_s * 1000 for t in timings[warm:]]
    server_side = [t.to_first_delta_s * 1000 for t in timings[warm:]]
    added = [f - p for f, p in zip(firsts, provider, strict=True)]
    a50, a99 = pct(added, 50), pct(added, 99)
    report(
        f"service-added time to first delta over {len(added)} turns"
        f" (local provider, one at a time, client in its own process): p50 {a50:.1f} ms,"
        f" p99 {a99:.1f} ms (target p50 <= {TARGET_P50_MS:.0f} ms:"
        f" {'met' if a50 <= TARGET_P50_MS else 'NOT met'})"
    )
    report(
        f"request -> first delta at the client: p50 {pct(firsts, 50):.1f} ms,"
        f" p99 {pct(firsts, 99):.1f} ms; inside the server (plan -> first delta):"
        f" p50 {pct(server_side, 50):.1f} ms; the provider's own first token:"
        f" p50 {pct(provider, 50):.2f} ms"
    )
    report(
        f"replies grounded in recalled memories: {grounded}/{len(added)};"
        f" full reloads of a user's recall index during the turns:"
        f" {app.memories.cache.loads - loads}"
    )
    adds, searches = base["adds"], base["searches"]
    add50 = pct(adds, 50)
    report(
        f"baseline, same run: AddMessages (one message) p50 {add50:.1f} ms,"
        f" SearchMemories p50 {pct(searches, 50):.1f} ms; service-added p50 ="
        f" {a50 / add50:.2f}x AddMessages"
    )
    return [
        f"service-added time to first delta p50 {a50:.1f} ms, p99 {a99:.1f} ms"
        f" ({len(added)} turns at {args.memories} memories)",
        f"AddMessages (one message) p50 {add50:.1f} ms (service-added = {a50 / add50:.2f}x);"
        f" SearchMemories p50 {pct(searches, 50):.1f} ms",
        f"p50 <= {TARGET_P50_MS:.0f} ms: {'met' if a50 <= TARGET_P50_MS else 'NOT met'}",
    ]


async def modes_part(
    ch: grpc.aio.Channel,
    address: str,
    app: Any,
    args: argparse.Namespace,
    report: Callable[[str], None],
) -> tuple[str, str]:
    """SYNC vs ASYNC time to first delta, with recall as it is and slowed: (figure, verdict)."""
    stub = agents_pb2_grpc.AgentServiceStub(ch)
    ids = {}
    for mode, value in (("SYNC", apb.MEMORY_MODE_SYNC), ("ASYNC", apb.MEMORY_MODE_ASYNC)):
        agent = apb.Agent(display_name=mode, capabilities=apb.Capabilities(memory_mode=value))
        made = await stub.CreateAgent(apb.CreateAgentRequest(agent=agent), metadata=MD)
        ids[made.id] = mode
    deadline = app.config.async_recall_deadline_ms
    out: dict[str, dict[str, float]] = {}
    for label, delay in (
        ("as it is", 0.0),
        (f"slowed by {args.slow_recall_ms:g} ms", args.slow_recall_ms),
    ):
        if delay:
            os.environ[RECALL_DELAY_ENV] = str(delay)
        try:
            rows = await run_client(address, args.users, args.mode_turns, args.seed, list(ids))
        finally:
            os.environ.pop(RECALL_DELAY_ENV, None)
        warm = 2 * args.users  # each user's first turn with each agent
        by_mode: dict[str, list[dict[str, Any]]] = {"SYNC": [], "ASYNC": []}
        for r in rows[warm:]:
            by_mode[ids[r["agent"]]].append(r)
        stats = {}
        for mode, turns in by_mode.items():
            firsts = [float(r["first_ms"]) for r in turns]
            with_memories = sum(1 for r in turns if r["memories"])
            stats[mode] = pct(firsts, 50)
            report(
                f"memory_mode {mode}, recall {label}: time to first delta at the client over"
                f" {len(turns)} turns p50 {pct(firsts, 50):.1f} ms, p99 {pct(firsts, 99):.1f} ms;"
                f" turns with memories {with_memories}/{len(turns)}"
            )
        out[label] = stats
    fast, slow = out["as it is"], out[f"slowed by {args.slow_recall_ms:g} ms"]
    bound = fast["SYNC"] + deadline
    figure = (
        f"memory_mode time to first delta p50: SYNC {fast['SYNC']:.1f} ms, ASYNC"
        f" {fast['ASYNC']:.1f} ms; recall slowed by {args.slow_recall_ms:g} ms: SYNC"
        f" {slow['SYNC']:.1f} ms, ASYNC {slow['ASYNC']:.1f} ms (deadline {deadline:g} ms)"
    )
    verdict = (
        f"ASYNC with slow recall p50 <= SYNC p50 + deadline ({bound:.0f} ms):"
        f" {'met' if slow['ASYNC'] <= bound else 'NOT met'}"
    )
    return figure, verdict


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
