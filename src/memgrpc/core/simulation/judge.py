"""Judges: score a transcript with a template's weighted categories.

The offline judge (the default) measures only what it can check. Memory continuity comes from
the transcript's ground truth: the facts the user stated and the recall questions asked, each
with the answer it expects (a simulation knows them; for a bare conversation they are read from
the user's own statements). A recall question counts as answered when the next reply holds the
expected fact's identifying words, as contradicted when it holds a replaced (stale) value
instead. The other categories get measurable signals: length, question answered, repetition.
A category it has no measure for gets the mean of those signals, and its feedback says so.
The LLM judge asks the configured provider for JSON and fails with JUDGE_BAD_OUTPUT otherwise.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memgrpc.core.kernel.errors import Unavailable
from memgrpc.core.kernel.provider_errors import provider_failure
from memgrpc.core.simulation.model import (
    CategoryScore,
    Evaluation,
    Persona,
    Template,
    Turn,
)
from memgrpc.core.simulation.persona import parse_facts, words
from memgrpc.llm import ChatMessage, Provider, ProviderError

BAD_OUTPUT = "JUDGE_BAD_OUTPUT"
MIN_WORDS, MAX_WORDS = 3, 150
DUPLICATE_OVERLAP = 0.8
EVIDENCE_ITEMS = 4
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "i",
        "you",
        "me",
        "my",
        "your",
        "is",
        "are",
        "am",
        "do",
        "did",
        "does",
        "to",
        "of",
        "and",
        "or",
        "in",
        "on",
        "it",
    ]
)
_MEASURES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("memory_continuity", re.compile(r"memor|continu|recall|remember", re.I)),
    ("length", re.compile(r"length|concise|brief|verbos", re.I)),
    ("repetition", re.compile(r"repet|repeat|variety", re.I)),
    ("question_answered", re.compile(r"question|answer|helpful|relevan", re.I)),
)


@dataclass(frozen=True)
class Measure:
    score: float
    feedback: str


@dataclass(frozen=True)
class Recall:
    correct: int
    total: int
    contradicted: int
    evidence: tuple[str, ...]


def _with_truth(turns: Sequence[Turn]) -> list[Turn]:
    """Ground truth for a conversation that carries none: the user's statements are its facts,
    and a user question about a topic stated earlier ("do you remember ...") probes it."""
    if any(t.facts or t.probe for t in turns):
        return list(turns)
    out: list[Turn] = []
    known: dict[str, str] = {}
    for t in turns:
        if t.role != "user":
            out.append(t)
            continue
        stated = parse_facts(Persona(name="I", background=t.content))
        if "?" in t.content and "remember" in t.content.lower():
            asked = parse_facts(Persona(name="I", background=t.content.replace("?", ".")))
            key = next((f.key for f in asked if f.key in known), "")
            probe = {"key": key, "expected": known[key], "stale": ""} if key else None
            out.append(Turn(t.role, t.content, t.session, probe=probe))
            continue
        facts = tuple({"key": f.key, "value": f.text} for f in stated)
        for f in stated:
            known[f.key] = ",".join(f.marks)
        out.append(Turn(t.role, t.content, t.session, facts=facts))
    return out


def _reply_after(turns: Sequence[Turn], i: int) -> str:
    for t in turns[i + 1 :]:
        if t.role == "assistant":
            return t.content
        if t.role == "user":
            return ""
    return ""


def recall(turns: Sequence[Turn]) -> Recall:
    correct = total = contradicted = 0
    evidence: list[str] = []
    for i, t in enumerate(turns):
        if t.role != "user" or t.probe is None:
            continue
        total += 1
        said = set(words(_reply_after(turns, i)))
        expected = [m for m in t.probe["expected"].split(",") if m]
        stale = [m for m in t.probe.get("stale", "").split(",") if m]
        hits = [m for m in expected if m in said]
        ok = bool(expected) and len(hits) * 2 >= len(expected)
        if ok:
            correct += 1
            evidence.append(f"{t.content!r} -> recalled {', '.join(hits)}")
        elif stale and any(m in said for m in stale):
            contradicted += 1
            evidence.append(f"{t.content!r} -> answered the old {', '.join(stale)}")
        else:
            evidence.append(f"{t.content!r} -> missed (expected {', '.join(expected)})")
    return Recall(correct, total, contradicted, tuple(evidence))


def _continuity(turns: Sequence[Turn], r: Recall) -> Measure:
    facts = [(i, f) for i, t in enumerate(turns) if t.role == "user" for f in t.facts]
    if r.total:
        score = max(0.0, (r.correct - r.contradicted) / r.total)
        shown = "; ".join(r.evidence[:EVIDENCE_ITEMS])
        more = f" (+{len(r.evidence) - EVIDENCE_ITEMS} more)" if len(r.evidence) > 4 else ""
        return Measure(
            score,
            f"recall questions answered with the right fact: {r.correct}/{r.total}, "
            f"contradicted: {r.contradicted}. {shown}{more}",
        )
    if not facts:
        return Measure(0.5, "no facts stated and no recall questions: nothing to measure")
    used = 0
    for i, f in facts:
        marks = set(_marks_of(f["value"]))
        later = " ".join(t.content for t in turns[i + 1 :] if t.role == "assistant")
        used += bool(marks & set(words(later)))
    return Measure(
        used / len(facts),
        f"no recall questions; {used}/{len(facts)} stated facts came up in later replies",
    )


def _marks_of(text: str) -> list[str]:
    return [w for w in words(text) if w not in _STOP and len(w) > 2]


def _length(replies: Sequence[str]) -> Measure:
    if not replies:
        return Measure(0.0, "the agent never replied")
    scores = []
    for r in replies:
        n = len(r.split())
        scores.append(
            0.0 if n == 0 else 1.0 if MIN_WORDS <= n <= MAX_WORDS else min(n / MIN_WORDS, 0.5)
        )
    avg = sum(len(r.split()) for r in replies) / len(replies)
    return Measure(
        sum(scores) / len(scores),
        f"{len(replies)} replies, {avg:.0f} words on average "
        f"({sum(s == 1.0 for s in scores)} within {MIN_WORDS}-{MAX_WORDS} words)",
    )


def _answered(turns: Sequence[Turn]) -> Measure:
    asked = answered = 0
    missed: list[str] = []
    for i, t in enumerate(turns):
        if t.role != "user" or "?" not in t.content:
            continue
        asked += 1
        reply = set(_marks_of(_reply_after(turns, i)))
        if reply & set(_marks_of(t.content)):
            answered += 1
        elif len(missed) < 2:
            missed.append(repr(t.content))
    if not asked:
        return Measure(1.0, "the user asked no questions")
    tail = f"; unanswered: {', '.join(missed)}" if missed else ""
    return Measure(
        answered / asked, f"{answered}/{asked} questions got a reply on their subject{tail}"
    )


def _repetition(replies: Sequence[str]) -> Measure:
    if not replies:
        return Measure(0.0, "the agent never replied")
    seen: list[set[str]] = []
    dups = 0
    for r in replies:
        ws = set(words(r))
        if ws and any(len(ws & s) / len(ws | s) >= DUPLICATE_OVERLAP for s in seen):
            dups += 1
        seen.append(ws)
    return Measure(
        1.0 - dups / len(replies), f"{dups}/{len(replies)} replies repeat an earlier one"
    )


def _weighted(template: Template, scores: Sequence[CategoryScore]) -> float:
    total = math.fsum(c.weight * s.score for c, s in zip(template.categories, scores, strict=True))
    return min(1.0, max(0.0, total))


def offline(template: Template, turns: Sequence[Turn]) -> Evaluation:
    turns = _with_truth(turns)
    replies = [t.content for t in turns if t.role == "assistant"]
    r = recall(turns)
    measures = {
        "memory_continuity": _continuity(turns, r),
        "length": _length(replies),
        "repetition": _repetition(replies),
        "question_answered": _answered(turns),
    }
    generic = ("length", "repetition", "question_answered")
    scores = []
    for c in template.categories:
        text = f"{c.name} {c.criteria}"
        picked = next((m for m, pat in _MEASURES if pat.search(c.name)), None)
        picked = picked or next((m for m, pat in _MEASURES if pat.search(text)), None)
        if picked is not None:
            m = measures[picked]
            scores.append(CategoryScore(c.name, m.score, f"[{picked}] {m.feedback}"))
        else:
            mean = sum(measures[g].score for g in generic) / len(generic)
            scores.append(
                CategoryScore(
                    c.name,
                    mean,
                    "no offline measure for this category: the mean of length, question "
                    "answered and repetition (use the llm judge to score it as written)",
                )
            )
    score = _weighted(template, scores)
    return Evaluation(
        score,
        f"offline judge: {score:.2f}; {measures['memory_continuity'].feedback}",
        tuple(scores),
        "offline",
        template.id,
        r.correct,
        r.total,
    )


JUDGE_SYSTEM = """You are an evaluation judge for a conversational agent. Score the
conversation against the rubric and each category's criteria. Answer with JSON only:
{"feedback": "one paragraph", "categories": [{"name": CATEGORY NAME, "score": 0..1,
"feedback": "the evidence, quoting the conversation"}, ...]} with every category exactly once."""


def _bad(what: str) -> Unavailable:
    return Unavailable(f"the LLM judge's answer {what}", reason=BAD_OUTPUT)


def parse_judgement(text: str, template: Template) -> tuple[str, list[CategoryScore]]:
    body = text.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.S)
    if fence:
        body = fence.group(1)
    try:
        d: Any = json.loads(body)
    except json.JSONDecodeError:
        raise _bad("is not JSON") from None
    if not isinstance(d, dict) or not isinstance(d.get("categories"), list):
        raise _bad('has no "categories" list')
    by_name: dict[str, CategoryScore] = {}
    for c in d["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise _bad("has a category without a name")
        s = c.get("score")
        if isinstance(s, bool) or not isinstance(s, int | float) or not 0 <= s <= 1:
            raise _bad(f"scores {c['name']!r} outside 0..1")
        by_name[c["name"].strip().lower()] = CategoryScore(
            c["name"], float(s), str(c.get("feedback", ""))
        )
    out = []
    for cat in template.categories:
        got = by_name.get(cat.name.strip().lower())
        if got is None:
            raise _bad(f"misses the category {cat.name!r}")
        out.append(CategoryScore(cat.name, got.score, got.feedback))
    return str(d.get("feedback", "")), out


async def with_llm(
    provider: Provider, model: str, template: Template, turns: Sequence[Turn]
) -> Evaluation:
    rubric = {
        "rubric": template.scoring_rubric,
        "categories": [{"name": c.name, "criteria": c.criteria} for c in template.categories],
        "conversation": [{"role": t.role, "content": t.content} for t in turns],
    }
    prompt = [
        ChatMessage("system", JUDGE_SYSTEM),
        ChatMessage("user", json.dumps(rubric)),
    ]
    try:
        text = "".join([d async for d in provider.stream(prompt, model, 0.0, 2048)])
    except ProviderError as exc:
        raise provider_failure(exc) from exc
    feedback, scores = parse_judgement(text, template)
    r = recall(_with_truth(turns))  # recall stays measured, whoever judges
    score = _weighted(template, scores)
    return Evaluation(score, feedback, tuple(scores), "llm", template.id, r.correct, r.total)
