"""What ProcessSession does to a session: an ordered list of steps over its messages.

`default_steps` is the seam: today it writes an extractive summary; fact extraction and conflict
detection (a later issue) become further steps appended there. A step that raises fails the job
and marks the session FAILED with the step's name in the error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from memgrpc.core.conversation.records import JobStats, Message, Session
from memgrpc.core.kernel.paging import PageRequest
from memgrpc.core.memory.model import Memory, MemoryQuery
from memgrpc.core.memory.service import AsyncEmbedder, MemoryService, embed_text

SUMMARY_WORDS = 120
# only the messages closest to the centroid are split and embedded sentence by sentence
CANDIDATE_MESSAGES = 40
MIN_WORDS = 3
# a sentence this similar to one already picked adds nothing
REDUNDANT = 0.92
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class SessionWork:
    """The input of every step, and what the steps wrote (for the next steps)."""

    project_id: str
    session: Session
    messages: list[Message]
    memories: MemoryService
    written: list[Memory] = field(default_factory=list)
    # what the steps did, recorded on the job when it is DONE
    stats: JobStats = field(default_factory=JobStats)


class ProcessingStep(Protocol):
    name: str

    async def run(self, work: SessionWork) -> None: ...


@dataclass(frozen=True)
class Sentence:
    message: int  # index into the session's messages
    index: int  # position in its message
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = x / np.maximum(norms, 1e-12)
    return out


def pick(
    sentences: list[Sentence], vectors: np.ndarray, centroid: np.ndarray, max_words: int
) -> list[Sentence]:
    """Most central sentences first, skipping near-duplicates, within `max_words`; returned in
    conversation order. Deterministic: ties go to the earlier sentence."""
    vecs = _unit(vectors)
    scores = vecs @ _unit(centroid)
    order = sorted(range(len(sentences)), key=lambda i: (-round(float(scores[i]), 6), i))
    chosen: list[int] = []
    budget = max_words
    for i in order:
        s = sentences[i]
        if s.words > budget or any(float(vecs[i] @ vecs[j]) > REDUNDANT for j in chosen):
            continue
        chosen.append(i)
        budget -= s.words
        if budget < MIN_WORDS:
            break
    if not chosen and order:  # even the best sentence is too long: keep its start
        best = sentences[order[0]]
        cut = " ".join(best.text.split()[:max_words]) + " …"
        return [Sentence(best.message, best.index, cut)]
    return sorted((sentences[i] for i in chosen), key=lambda s: (s.message, s.index))


def render(picked: list[Sentence], messages: list[Message]) -> str:
    """One line per speaker turn: `speaker: sentence sentence`."""
    lines: list[str] = []
    last = -1
    for s in picked:
        if s.message == last:
            lines[-1] += " " + s.text
        else:
            lines.append(f"{messages[s.message].speaker}: {s.text}")
            last = s.message
    return "\n".join(lines)


class ExtractiveSummary:
    """A session summary made of its most central sentences (no LLM needed, deterministic).

    Centrality is cosine similarity to the centroid of the session's message embeddings (the
    stored ones; nothing is re-embedded but the candidate sentences).
    """

    name = "summary"

    def __init__(self, embedder: AsyncEmbedder, max_words: int = SUMMARY_WORDS) -> None:
        self._embedder = embedder
        self._max_words = max_words

    async def run(self, work: SessionWork) -> None:
        msgs = [m for m in work.messages if m.content.strip()]
        if not msgs:
            return
        msg_vecs = _unit(await self._message_vectors(work, msgs))
        centroid = _unit(msg_vecs.mean(axis=0))
        closeness = msg_vecs @ centroid
        best = sorted(range(len(msgs)), key=lambda i: (-round(float(closeness[i]), 6), i))
        sentences = [
            Sentence(i, j, text)
            for i in sorted(best[:CANDIDATE_MESSAGES])
            for j, text in enumerate(split_sentences(msgs[i].content))
        ]
        sentences = [s for s in sentences if s.words >= MIN_WORDS] or sentences
        vectors = await self._embedder.embed([s.text for s in sentences])
        # at most half the session's words: a summary as long as the transcript is the
        # transcript again (a two-message session's was both messages, shown twice in a context)
        words = sum(len(m.content.split()) for m in msgs)
        budget = max(MIN_WORDS, min(self._max_words, words // 2))
        picked = pick(sentences, np.asarray(vectors), centroid, budget)
        await self._replace_summary(work, picked, msgs)

    async def _message_vectors(self, work: SessionWork, msgs: list[Message]) -> np.ndarray:
        stored = await work.memories.vectors(
            work.project_id, [m.memory_id for m in msgs if m.memory_id]
        )
        missing = [m for m in msgs if m.memory_id not in stored]
        if missing:
            texts = [embed_text(Memory(content=m.content, speaker=m.speaker)) for m in missing]
            fresh = np.asarray(await self._embedder.embed(texts))
            for m, vec in zip(missing, fresh, strict=True):
                stored[m.memory_id or m.id] = vec
        return np.stack([stored[m.memory_id or m.id] for m in msgs])

    async def _replace_summary(
        self, work: SessionWork, picked: list[Sentence], msgs: list[Message]
    ) -> None:
        """One summary per session: a re-run (after a failed job) replaces the earlier one."""
        old = await work.memories.list(
            work.project_id,
            MemoryQuery(session_id=work.session.id, types=("summary",), include_archived=True),
            PageRequest(size=1000),
        )
        if old.items:
            await work.memories.delete_many(work.project_id, [m.id for m in old.items])
        sources = list(dict.fromkeys(msgs[s.message].id for s in picked))
        summary = await work.memories.create(
            work.project_id,
            Memory(
                user_id=work.session.user_id,
                session_id=work.session.id,
                content=render(picked, msgs),
                type="summary",
                origin="summary",
                source_message_ids=sources,
                event_time=msgs[-1].create_time,
                # an agent session's summary is that agent's memory of the user
                agent_id=work.session.agent_id,
                instance_id=work.session.instance_id,
            ),
        )
        work.written.append(summary)


def default_steps(embedder: AsyncEmbedder) -> list[ProcessingStep]:
    """The pipeline ProcessSession runs, in order. Fact extraction and conflict detection are
    added here as further steps (they see `SessionWork.written`)."""
    return [ExtractiveSummary(embedder)]
