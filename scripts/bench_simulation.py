#!/usr/bin/env python
"""Memory continuity in conversation, measured on the offline path (issue 21).

A real server on loopback (local embedder, local provider, rules extractor) runs one RunEval per
persona per repeat through the real RPCs: `--sessions` sessions of `--turns` turns, a day apart
(advance_time). The scripted user tells the facts of its background in the early sessions,
changes one later, and asks recall questions about facts told in EARLIER sessions; the offline
judge counts a question answered when the agent's reply holds the expected fact's words (its
`evaluation` event: recall_correct / recall_total, score, contradictions in its feedback). The
agent side is the real chat turn: what it knows of an earlier session comes from recall only
(a new session has no history of the old ones).

Baseline, same run: the run itself cannot switch recall off (no agent capability or run option
does), so each run's user messages are replayed through ChatService.Chat with use_memory=false,
same agent, a fresh user, one session per simulated session, and the replies are scored with the
judge's own recall function on the run's own recall questions and expected answers. It measures
how much of the recall comes from memory rather than from the question or the session's history.
Usage: .venv/bin/python scripts/bench_simulation.py [--repeats 1] [--sessions 3] [--turns 5]
  [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchdoc
import grpc
from google.protobuf import duration_pb2
from google.protobuf.json_format import MessageToDict

from memgrpc.config import ServerConfig
from memgrpc.core.simulation.judge import recall
from memgrpc.core.simulation.model import Turn
from memgrpc.embed import load_embedder
from memgrpc.server.app import start
from memgrpc.server.logging import configure_logging
from memgrpc.v1 import agents_pb2 as apb
from memgrpc.v1 import agents_pb2_grpc, chat_pb2_grpc, simulation_pb2_grpc
from memgrpc.v1 import chat_pb2 as cpb
from memgrpc.v1 import simulation_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))

KEY = "mgk_bench_bootstrap_key_0123456789abcdef"
MD = (("x-api-key", KEY),)
RUN_TIMEOUT_S = 600.0
DAY = duration_pb2.Duration(seconds=86_400)

# Written as a user would describe themselves, not shaped to the persona parser.
PERSONAS = (
    pb.UserPersona(
        name="Priya",
        background=(
            "Priya is a software engineer at a fintech startup in Bristol. She has two cats, "
            "Mango and Pickle. Her younger brother Arjun is studying medicine in Edinburgh. On "
            "weekends she plays cricket for a local club. She is vegetarian and makes a mean "
            "masala dosa."
        ),
        personality_traits=["direct", "funny"],
        communication_style="casual",
    ),
    pb.UserPersona(
        name="Tomás",
        background=(
            "Tomás teaches history at a secondary school in Valencia. He is married to Lucía and "
            "they have a little girl called Inés. He runs marathons and is training for Berlin "
            "this autumn. Nothing beats his grandmother's paella."
        ),
        personality_traits=["warm", "talkative"],
        communication_style="friendly",
    ),
    pb.UserPersona(
        name="Grace",
        background=(
            "Grace retired last year after thirty years as a midwife in Dublin. She lives with "
            "her husband Declan and an old border collie called Bess. She sings alto in the "
            "church choir. Her son Liam emigrated to Toronto. She grows tomatoes on an allotment."
        ),
        personality_traits=["patient", "wry"],
        communication_style="formal",
    ),
    pb.UserPersona(
        name="Kenji",
        background=(
            "Kenji is 27 years old and doing a PhD in marine biology in Halifax. He moved there "
            "from Osaka two years ago. He has a parrot named Kiwi who only whistles Beatles "
            "songs. He goes bouldering most evenings. He roasts his own coffee beans."
        ),
        personality_traits=["curious", "shy"],
        communication_style="casual",
    ),
    pb.UserPersona(
        name="Amara",
        background=(
            "Amara runs a small bakery in Accra called Sweet Crumbs. She has three kids and her "
            "eldest, Kofi, just started university. She loves highlife music and dances every "
            "Friday. Her favourite dish is jollof rice with fried plantain."
        ),
        personality_traits=["energetic", "generous"],
        communication_style="friendly",
    ),
    pb.UserPersona(
        name="Marek",
        background=(
            "Marek works as a paramedic in Glasgow. He lives in Partick with his partner Joanna. "
            "They adopted a greyhound called Biscuit last spring. He plays bass in a covers band. "
            "He can't get enough of pierogi."
        ),
        personality_traits=["calm", "dry"],
        communication_style="casual",
    ),
)


@dataclass
class Result:
    persona: str
    run_id: str
    correct: int
    total: int
    contradicted: int
    score: float
    facts_extracted: int
    seconds: float
    told: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)  # the reply to each recall question
    base_correct: int = 0
    base_evidence: list[str] = field(default_factory=list)


def _data(e: pb.RunEvent) -> dict[str, Any]:
    return MessageToDict(e.data) if e.HasField("data") else {}


async def run_eval(
    sim: simulation_pb2_grpc.SimulationServiceStub,
    agent_id: str,
    persona: pb.UserPersona,
    cfg: pb.SimulationConfig,
) -> list[pb.RunEvent]:
    events: list[pb.RunEvent] = []
    stream = sim.RunEval(
        pb.RunEvalRequest(agent_id=agent_id, user_persona=persona, config=cfg),
        metadata=MD,
        timeout=RUN_TIMEOUT_S,
    )
    async for e in stream:
        if e.type != "heartbeat":
            events.append(e)
    if [e.index for e in events] != list(range(len(events))):
        raise RuntimeError("the run's events have gaps")
    if events[-1].type != "run_completed":
        raise RuntimeError(f"run ended with {events[-1].type}: {events[-1].message}")
    return events


def transcript(events: list[pb.RunEvent]) -> list[Turn]:
    """The run's transcript with its ground truth, as the server's judge reads it."""
    out: list[Turn] = []
    for e in events:
        d = _data(e)
        session = int(d.get("session", 0))
        if e.type == "user_message":
            facts = tuple(d.get("facts") or ())
            out.append(Turn("user", e.message, session, facts, d.get("probe")))
        elif e.type == "agent_message":
            out.append(Turn("assistant", e.message, session))
    return out


async def without_memory(
    chat: chat_pb2_grpc.ChatServiceStub, agent_id: str, user_id: str, turns: list[Turn]
) -> list[Turn]:
    """The run's user messages again, through Chat with use_memory=false: the replies swapped."""
    out: list[Turn] = []
    sessions: dict[int, str] = {}
    for t in turns:
        if t.role != "user":
            continue
        known = sessions.get(t.session)
        req = (
            cpb.ChatRequest(session_id=known, message=t.content, use_memory=False)
            if known
            else cpb.ChatRequest(
                user_id=user_id, agent_id=agent_id, message=t.content, use_memory=False
            )
        )
        parts: list[str] = []
        async for ev in chat.Chat(req, metadata=MD, timeout=60):
            if ev.HasField("started"):
                sessions[t.session] = ev.started.session_id
            elif ev.HasField("delta"):
                parts.append(ev.delta.text)
        out.append(t)
        out.append(Turn("assistant", "".join(parts), t.session))
    return out


async def one(
    ch: grpc.aio.Channel, agent_id: str, persona: pb.UserPersona, cfg: pb.SimulationConfig
) -> Result:
    sim = simulation_pb2_grpc.SimulationServiceStub(ch)
    t0 = time.perf_counter()
    events = await run_eval(sim, agent_id, persona, cfg)
    seconds = time.perf_counter() - t0
    ev = next(e for e in events if e.type == "evaluation")
    d = _data(ev)
    turns = transcript(events)
    mine = recall(turns)
    correct, total = int(d["recall_correct"]), int(d["recall_total"])
    if (mine.correct, mine.total) != (correct, total):  # the judge's count, re-read from events
        raise RuntimeError(f"evaluation says {correct}/{total}, the events {mine}")
    extracted = sum(int(_data(e)["facts_extracted"]) for e in events if e.type == "facts_extracted")
    told = [f["value"] for t in turns for f in t.facts]
    res = Result(
        persona.name,
        events[0].run_id,
        correct,
        total,
        mine.contradicted,
        float(d["score"]),
        extracted,
        seconds,
        told,
        list(mine.evidence),
        [b.content for a, b in itertools.pairwise(turns) if a.probe is not None],
    )
    chat = chat_pb2_grpc.ChatServiceStub(ch)
    base = recall(await without_memory(chat, agent_id, f"{res.run_id}-nomemory", turns))
    res.base_correct, res.base_evidence = base.correct, list(base.evidence)
    if base.total != total:
        raise RuntimeError(f"baseline asked {base.total} questions, the run {total}")
    return res


def lines_for(results: list[Result]) -> list[str]:
    out = []
    for r in results:
        missed = [e for e in r.evidence if "-> recalled" not in e]
        out.append(
            f"{r.persona} ({r.run_id}): recall {r.correct}/{r.total}, contradicted"
            f" {r.contradicted}, offline judge score {r.score:.2f}; {r.facts_extracted} facts"
            f" extracted; without memory {r.base_correct}/{r.total}; {r.seconds:.1f} s"
            + (f"; missed: {'; '.join(missed)}" if missed else "")
        )
    return out


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1, help="RunEval runs per persona")
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--turns", type=int, default=5, help="turns per session")
    ap.add_argument("--verbose", action="store_true", help="print every run's evidence")
    ap.add_argument("--write", action="store_true", help="append the results to docs/BENCHMARKS.md")
    args = ap.parse_args()
    if not 1 <= args.repeats <= 10:
        ap.error("--repeats must be 1..10")
    configure_logging("warning")
    cfg = pb.SimulationConfig(
        max_sessions=args.sessions, max_turns_per_session=args.turns, advance_time=DAY
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(
            addr="127.0.0.1:0",
            data=str(Path(tmp) / "data"),
            admin_key=KEY,
            log_level="warning",
            chat_provider="local",
            extractor="rules",
        )
        running = await start(config, embedder=load_embedder("local"))
        try:
            async with grpc.aio.insecure_channel(running.address) as ch:
                agents = agents_pb2_grpc.AgentServiceStub(ch)
                agent = await agents.CreateAgent(
                    apb.CreateAgentRequest(agent=apb.Agent(display_name="Ava")), metadata=MD
                )
                for _ in range(args.repeats):
                    for persona in PERSONAS:
                        r = await one(ch, agent.id, persona, cfg)
                        results.append(r)
                        print(lines_for([r])[0], flush=True)
                        if args.verbose:
                            print("  told: " + " | ".join(r.told))
                            for e, reply in zip(r.evidence, r.replies, strict=True):
                                print(f"  {e}\n      reply: {reply}")
                            for e in r.base_evidence:
                                print("  no memory: " + e)
        finally:
            await running.stop(5.0)
    correct = sum(r.correct for r in results)
    total = sum(r.total for r in results)
    base = sum(r.base_correct for r in results)
    contradicted = sum(r.contradicted for r in results)
    share = correct / total if total else 0.0
    lines = lines_for(results)
    lines.append(
        f"all: recall {correct}/{total} ({share:.0%}), contradicted {contradicted}; without"
        f" memory {base}/{total}; {len(results)} RunEval runs of {args.sessions} sessions x"
        f" {args.turns} turns, a day apart (local provider, rules extractor, machine load"
        f" average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    summary = benchdoc.Summary(
        f"recall questions answered with the right fact: {correct}/{total} ({share:.0%}),"
        f" contradicted {contradicted} ({len(PERSONAS)} personas, {args.sessions} sessions x"
        f" {args.turns} turns, local provider)",
        f"the same user messages with use_memory=false: {base}/{total}",
        "none: issue 21 asks for the measure; without memory must stay at 0"
        f" ({'it does' if base == 0 else 'it does NOT'})",
    )
    print(lines[-1], flush=True)
    benchdoc.report("bench_simulation", lines, summary, write=args.write, printed=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
