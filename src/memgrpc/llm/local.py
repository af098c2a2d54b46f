"""The built-in responder: no network, no model, deterministic.

It lets chat work offline and in tests: it answers the last user message with the recalled
sentences (and earlier user turns) that share the most words with it; a question that shares no
more than half its words with them ("What theme do I like?" against "User prefers dark mode")
gets the memories recall ranked first, since recall matched them by meaning too. Every reply
says plainly what it is. It streams word by word, yielding to the event loop every
`WORDS_PER_YIELD` words so a cancelled turn stops at once. A yield per word made a reply wait
for a pass of a loaded event loop per word (measured: docs/BENCHMARKS.md); the words queued
between yields still go out one by one to a client that keeps up.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final

import Stemmer  # type: ignore[import-not-found]  # PyStemmer ships no type hints

from memgrpc.llm.base import ChatMessage, Fact, Generation, Tool, Usage

MODEL: Final = "memgrpc-local"
NOTHING_TO_GROUND: Final = (
    "I'm memgrpc's built-in responder, not a language model, and nothing I have stored answers "
    "that yet. Configure an LLM provider (for example MEMGRPC_OPENAI_BASE_URL) for open-ended "
    "replies."
)
SELF: Final = "I'm memgrpc's built-in responder, not a language model."
MAX_SENTENCES: Final = 3
WORDS_PER_YIELD: Final = 8
# a sentence joins the reply when it scores at least this share of the best one
_CLOSE_TO_BEST: Final = 0.8
_WEAK_MATCH: Final = 0.5
# earlier user turns of the session count as facts of this recall score
_TURN_SCORE: Final = 0.5

_STOPWORD_TEXT: Final = """
a about above after again all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having
he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should
so some such than that the their theirs them themselves then there these they this those through
to too under until up very was we were what when where which while who whom why will with would
you your yours yourself yourselves tell know remember please
"""
_STOPWORDS: Final = frozenset(_STOPWORD_TEXT.split())
_WORD: Final = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_SENTENCE_END: Final = re.compile(r"(?<=[.!?])\s+")
_QUESTION_START_TEXT: Final = """
what which who whom whose where when why how do does did is are am was were can could should
would will shall have has may might
"""
_QUESTION_START: Final = frozenset(_QUESTION_START_TEXT.split())
_STEMMER: Final = Stemmer.Stemmer("english")


@lru_cache(maxsize=50_000)
def _stem(word: str) -> str:
    stemmed: str = _STEMMER.stemWord(word)
    return stemmed


def terms(text: str) -> set[str]:
    """Stemmed content words (possessive 's dropped, stopwords removed)."""
    out = set()
    for raw in _WORD.findall(text.lower().replace("\u2019", "'")):
        word = raw[:-2] if raw.endswith("'s") else raw.replace("'", "")
        if word and word not in _STOPWORDS:
            out.add(_stem(word))
    return out


@dataclass(frozen=True)
class _Candidate:
    sentence: str
    fact: Fact
    score: float
    order: int
    covered: float = 0.0  # share of the question's words the sentence has


def _own_words_out(f: Fact) -> Fact | None:
    """A summary's `assistant: ...` lines taken out: what the assistant said is no ground for
    an answer (it would quote its own earlier replies back as facts)."""
    lines = f.text.split("\n")
    kept = [line for line in lines if not line.lower().startswith("assistant:")]
    if len(kept) == len(lines):
        return f
    return replace(f, text="\n".join(kept)) if kept else None


def _grounding(messages: Sequence[ChatMessage]) -> list[Fact]:
    """The grounding of every message (in rank order), never the assistant's own words."""
    facts = [f for m in messages for f in m.grounding if f.speaker.lower() != "assistant"]
    return [g for g in (_own_words_out(f) for f in facts) if g is not None]


def _facts(messages: Sequence[ChatMessage]) -> list[Fact]:
    """The grounding, then the earlier user turns."""
    turns = [Fact(m.content, "user", _TURN_SCORE) for m in messages[:-1] if m.role == "user"]
    return _grounding(messages) + turns


def _candidates(question: str, facts: Sequence[Fact]) -> list[_Candidate]:
    wanted = terms(question)
    if not wanted:
        return []
    out: list[_Candidate] = []
    for fact in facts:
        for sentence in _SENTENCE_END.split(fact.text.strip()):
            sentence = " ".join(sentence.split())
            if not sentence or sentence.endswith("?"):  # a question answers nothing
                continue
            overlap = len(wanted & terms(sentence))
            if overlap:
                covered = overlap / len(wanted)
                out.append(
                    _Candidate(sentence, fact, covered + 0.2 * fact.score, len(out), covered)
                )
    out.sort(key=lambda c: (-c.score, c.order))
    return out


def _is_question(text: str) -> bool:
    words = text.strip().lower().split()
    return text.rstrip().endswith("?") or (bool(words) and words[0] in _QUESTION_START)


def _recalled(facts: Sequence[Fact]) -> list[_Candidate]:
    """The recalled memories (not earlier turns, not questions), best recall score first."""
    out: list[_Candidate] = []
    for fact in facts:
        text = " ".join(fact.text.split())
        if text and not text.endswith("?"):
            out.append(_Candidate(text, fact, fact.score, len(out)))
    out.sort(key=lambda c: (-c.score, c.order))
    return out


def _phrase(c: _Candidate) -> str:
    text = c.sentence if c.sentence[-1] in ".!?" else c.sentence + "."
    speaker = c.fact.speaker
    if not speaker:
        return text
    who = "You" if speaker.lower() == "user" else speaker
    verb = "told me" if who == "You" else "said"
    return f'{who} {verb}: "{text}"'


def answer(messages: Sequence[ChatMessage]) -> str:
    """The whole reply for the last user message of `messages` (deterministic)."""
    question = next((m.content for m in reversed(messages) if m.role == "user"), "")
    ranked = _candidates(question, _facts(messages))
    lead = "From what I remember:"
    # a sentence with at most half the question's words is weaker evidence than recall's own
    # ranking, which matched by meaning too ("theme" finds "dark mode"; "like" finds anything)
    weak = not ranked or ranked[0].covered <= _WEAK_MATCH
    recalled = _recalled(_grounding(messages)) if weak and _is_question(question) else []
    if recalled:
        ranked, lead = recalled, "The closest I have stored:"
    if not ranked:
        return NOTHING_TO_GROUND
    best = ranked[0].score
    picked: list[_Candidate] = []
    for c in ranked:
        if c.score < best * _CLOSE_TO_BEST or len(picked) == MAX_SENTENCES:
            break
        if all(p.sentence != c.sentence for p in picked):
            picked.append(c)
    return f"{SELF} {lead} " + " ".join(_phrase(c) for c in picked)


class LocalProvider:
    """The default provider (`local`); always available."""

    name: Final = "local"
    models: Final = (MODEL,)
    default_model: Final = MODEL
    available: Final = True
    #: its replies restate stored memories (or say none matched): chat stores them unindexed
    indexes_replies: Final = False

    def stream(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
        tools: Sequence[Tool] = (),
    ) -> Generation:
        """`tools` are ignored: the built-in responder never calls a tool."""
        return Generation(self._words(messages, max_tokens))

    async def _words(
        self, messages: Sequence[ChatMessage], max_tokens: int | None
    ) -> AsyncGenerator[str | Usage, None]:
        words = answer(messages).split()
        if max_tokens is not None:
            words = words[:max_tokens]
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
            if i % WORDS_PER_YIELD == WORDS_PER_YIELD - 1:
                await asyncio.sleep(0)

    async def aclose(self) -> None:
        return None
