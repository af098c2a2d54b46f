"""Offline recall evaluation of ``memgrpc.core.memory.recall`` on LoCoMo-format conversations.

Protocol (shared/bench/README.md): each conversation is one user's memory, each turn one
message (id = dia_id, the speaker's name, the session's date as its time, the session as
its session); the query is the question verbatim, k = 10. A hit at k: an evidence turn in
the top k. Scored: categories 1-4 with evidence; category 5 (adversarial) apart.

    .venv/bin/python scripts/eval_recall_offline.py [--data PATH] [--ablation]
        [--set window=0.4 --set speaker=0.2 ...] [--show-misses N]
        [--turns int8|float] [--queries int8|float]

Embeddings (the local int8 MiniLM) are cached under /tmp/memgrpc-recall-cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from memgrpc.core.memory.recall import RankParams, UserIndex, embed_text
from memgrpc.embed import int8

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "locomo_dev.json"
CACHE_DIR = Path("/tmp/memgrpc-recall-cache")
CATEGORY_NAMES = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}
#: The weights an ablation turns off one at a time (k1, b and tau shape signals instead).
SIGNALS = (
    "window",
    "session_lexical",
    "session_best",
    "neighbour",
    "answer",
    "speaker",
    "when",
    "date",
    "question_prior",
)


@dataclass
class Turn:
    id: str
    speaker: str
    text: str
    session: str
    position: int
    time: datetime


@dataclass
class Question:
    text: str
    category: int
    evidence: list[str]


@dataclass
class Conversation:
    id: str
    turns: list[Turn]
    questions: list[Question]
    index: UserIndex = field(default_factory=UserIndex)


def _parse_session_date(raw: str) -> datetime:
    return datetime.strptime(raw.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def clean_evidence(raw: Sequence[str], valid: set[str]) -> list[str]:
    """Split on ; , and spaces; ``D:11:26`` -> ``D11:26``, ``D30:05`` -> ``D30:5``; keep real turns."""
    out: list[str] = []
    for entry in raw:
        for part in re.split(r"[;,\s]+", entry):
            m = re.fullmatch(r"D:?(\d+):(\d+)", part.strip())
            if m:
                turn_id = f"D{int(m.group(1))}:{int(m.group(2))}"
                if turn_id in valid and turn_id not in out:
                    out.append(turn_id)
    return out


def load(path: Path) -> list[Conversation]:
    convs: list[Conversation] = []
    for sample in json.loads(path.read_text()):
        c = sample["conversation"]
        numbers = sorted(int(k.split("_")[1]) for k in c if re.fullmatch(r"session_\d+", k))
        turns = [
            Turn(t["dia_id"], t["speaker"], t["text"], f"session_{n}", i, when)
            for n in numbers
            for when in [_parse_session_date(c[f"session_{n}_date_time"])]
            for i, t in enumerate(c[f"session_{n}"])
        ]
        valid = {t.id for t in turns}
        questions = [
            Question(
                q["question"], int(q["category"]), clean_evidence(q.get("evidence", []), valid)
            )
            for q in sample["qa"]
        ]
        convs.append(Conversation(sample["sample_id"], turns, questions))
    return convs


def embed_cached(texts: list[str], integer: bool) -> npt.NDArray[np.float32]:
    """Embeddings of ``texts`` with the local model, its products integer or float
    (memgrpc.embed.int8), cached on disk by content and kernels."""
    kernels = "int8" if integer else "float"
    digest = hashlib.sha256("\x00".join([kernels, *texts]).encode()).hexdigest()[:24]
    path = CACHE_DIR / f"{digest}.npy"
    if path.exists():
        cached: npt.NDArray[np.float32] = np.load(path)
        return cached
    from memgrpc.embed import LocalEmbedder

    vectors = LocalEmbedder(integer=integer).embed_sync(texts)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def build(
    convs: list[Conversation], kernels: tuple[bool, bool]
) -> tuple[list[npt.NDArray[np.float32]], float]:
    """Ingest every conversation through ``UserIndex.add``; returns query vectors, ingest s.
    ``kernels``: integer products for (turns, queries)."""
    turns = [embed_text(t.text, t.speaker) for c in convs for t in c.turns]
    turn_vecs = embed_cached(turns, kernels[0])
    query_vecs = embed_cached([q.text for c in convs for q in c.questions], kernels[1])
    qv: list[npt.NDArray[np.float32]] = []
    row = qrow = 0
    spent = 0.0
    for conv in convs:
        start = time.perf_counter()
        for turn in conv.turns:
            conv.index.add(
                turn.id,
                turn.text,
                turn_vecs[row],
                speaker=turn.speaker,
                session=turn.session,
                position=turn.position,
                time=turn.time,
            )
            row += 1
        spent += time.perf_counter() - start
        qv.append(query_vecs[qrow : qrow + len(conv.questions)])
        qrow += len(conv.questions)
    return qv, spent


@dataclass
class Outcome:
    category: int
    first: int  # rank of the first evidence turn in the top 10, or 10 if none
    all_found: bool


def run(
    convs: list[Conversation],
    qvecs: list[npt.NDArray[np.float32]],
    params: RankParams,
    latencies: list[float] | None = None,
    misses: list[tuple[Conversation, Question, list[str]]] | None = None,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for conv, vecs in zip(convs, qvecs, strict=True):
        for q, vec in zip(conv.questions, vecs, strict=True):
            if not q.evidence:
                continue
            start = time.perf_counter()
            hits = conv.index.search(q.text, vec, 10, params=params)
            if latencies is not None:
                latencies.append(time.perf_counter() - start)
            ids = [i for i, _ in hits]
            ranks = [r for r, i in enumerate(ids) if i in q.evidence]
            outcomes.append(
                Outcome(q.category, ranks[0] if ranks else 10, len(ranks) == len(q.evidence))
            )
            if misses is not None and not ranks and q.category < 5:
                misses.append((conv, q, ids))
    return outcomes


def summary(outcomes: list[Outcome]) -> dict[str, float]:
    n = len(outcomes)
    if n == 0:
        return {"n": 0, "hit@1": 0.0, "hit@5": 0.0, "hit@10": 0.0, "all@10": 0.0}
    return {
        "n": n,
        "hit@1": 100 * sum(o.first < 1 for o in outcomes) / n,
        "hit@5": 100 * sum(o.first < 5 for o in outcomes) / n,
        "hit@10": 100 * sum(o.first < 10 for o in outcomes) / n,
        "all@10": 100 * sum(o.all_found for o in outcomes) / n,
    }


def print_table(outcomes: list[Outcome]) -> None:
    print("| set | n | hit@1 | hit@5 | hit@10 | all-evidence@10 |")
    print("| --- | --- | --- | --- | --- | --- |")
    groups = [("categories 1-4", [o for o in outcomes if o.category < 5])]
    groups += [
        (f"{c} {CATEGORY_NAMES[c]}", [o for o in outcomes if o.category == c]) for c in (1, 2, 3, 4)
    ]
    groups.append(("5 adversarial (apart)", [o for o in outcomes if o.category == 5]))
    for name, group in groups:
        s = summary(group)
        print(
            f"| {name} | {s['n']:.0f} | {s['hit@1']:.1f} | {s['hit@5']:.1f} | "
            f"{s['hit@10']:.1f} | {s['all@10']:.1f} |"
        )


def scored(outcomes: list[Outcome]) -> dict[str, float]:
    return summary([o for o in outcomes if o.category < 5])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--ablation", action="store_true", help="also turn each signal off in turn")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a RankParams field",
    )
    ap.add_argument(
        "--show-misses", type=int, default=0, metavar="N", help="print N questions missed at 10"
    )
    for part in ("turns", "queries"):
        ap.add_argument(
            f"--{part}",
            choices=("int8", "float"),
            help=f"embed the {part} with integer or float products (default: what the server "
            "uses on this CPU); a mix tells whether a store's older vectors still match",
        )
    args = ap.parse_args(argv)
    default = int8.cpu_has_int8_dot()
    kernels = (
        default if args.turns is None else args.turns == "int8",
        default if args.queries is None else args.queries == "int8",
    )

    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        overrides[name.strip()] = float(value)
    params = dataclasses.replace(RankParams(), **overrides)

    convs = load(args.data)
    qvecs, ingest_s = build(convs, kernels)
    n_turns = sum(len(c.turns) for c in convs)
    latencies: list[float] = []
    misses: list[tuple[Conversation, Question, list[str]]] = []
    outcomes = run(convs, qvecs, params, latencies, misses)
    print(f"data: {args.data} ({len(convs)} conversations, {n_turns} turns)")
    print(f"params: {params}")
    names = ["int8" if k else "float" for k in kernels]
    print(f"embedding products: turns {names[0]}, queries {names[1]}")
    print_table(outcomes)
    lat = sorted(latencies)
    print(
        f"search latency over {len(lat)} queries (~{n_turns // len(convs)} items per user, "
        f"query embedding excluded): p50 {1000 * statistics.median(lat):.2f} ms, "
        f"p99 {1000 * lat[int(0.99 * (len(lat) - 1))]:.2f} ms; "
        f"ingest (index only) {1e6 * ingest_s / n_turns:.0f} us per message"
    )

    if args.ablation:
        base = scored(outcomes)
        print("\nablation (categories 1-4): each signal set to 0 alone, and reference points")
        print("| variant | hit@1 | hit@5 | hit@10 | all@10 | d hit@1 | d hit@10 |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        off = {s: 0.0 for s in SIGNALS}
        variants: list[tuple[str, RankParams]] = [
            ("BM25 alone", dataclasses.replace(params, lexical=1.0, **off)),
            ("dense alone", dataclasses.replace(params, lexical=0.0, **off)),
            ("hybrid alone (no context, no cues)", dataclasses.replace(params, **off)),
        ]
        variants += [(f"without {s}", dataclasses.replace(params, **{s: 0.0})) for s in SIGNALS]
        for name, variant in variants:
            s = scored(run(convs, qvecs, variant))
            print(
                f"| {name} | {s['hit@1']:.1f} | {s['hit@5']:.1f} | {s['hit@10']:.1f} | "
                f"{s['all@10']:.1f} | {s['hit@1'] - base['hit@1']:+.1f} | "
                f"{s['hit@10'] - base['hit@10']:+.1f} |"
            )

    for conv, q, ids in misses[: args.show_misses]:
        print(f"\n[{conv.id} c{q.category}] {q.text}  evidence={q.evidence}  top3={ids[:3]}")
        turns = {t.id: t for t in conv.turns}
        for e in q.evidence:
            print(f"   EV {e} {turns[e].speaker}: {turns[e].text[:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
