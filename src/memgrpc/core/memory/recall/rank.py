"""The recall ranking function: hybrid relevance plus conversational context and cues.

Every item gets a score from signals any conversation (or plain memory store) has:
its text, its vector, its speaker, its session and place in it, and its time. Each
signal below is a weight in :class:`RankParams`; setting one to 0 turns it off, which is
how the offline evaluation measures what each contributes.

The order matters and is fixed:

1. ``base`` = hybrid relevance of the item alone: max-scaled BM25 and min-max scaled
   cosine, mixed ``lexical`` : ``1 - lexical``.
2. ``+ window`` x the same hybrid over the item with its previous and next turn
   (pooled term counts, summed vectors): a reply like "We even won a trophy!" only
   means something next to the turn it answers.
3. ``+ session_lexical`` x BM25 of the whole session as one document, and
   ``+ session_best`` x the best ``base`` in the session: a question is usually about
   one conversation, and the right turn is often in the session that talks about it.
4. ``+ neighbour`` x the better of the two adjacent turns' running score: evidence is
   often the turn next to the best match (the photo shared before the comment on it).
5. ``+ answer`` x ``base`` of the previous turn when that turn is a question: a
   question turn echoes the user's query, and the fact sits in the reply to it.
6. Cues: ``speaker`` (exactly one participant is named in the query: that person's
   turns), ``when`` (a when/how-long query: turns with a time expression), ``date``
   (the query names a date: items from about then), and ``- question_prior`` for turns
   that are themselves questions (they ask for facts more than they hold them).

Items without a session count as a session of their own and have no neighbours, so for
plain memories everything reduces to the hybrid relevance plus the cues; such an item is
its own context (its ``neighbour`` term is its own score), so a memory stored on its own
is not outscored by a turn merely for having neighbours.

7. Stored memories before the turns they beat on their own text: a memory stored on its
   own (not a question, not derived from the turns: an extracted fact or summary competes
   beside the turns it came from) whose ``base`` is at least ``memory_floor`` ranks above every
   conversation turn whose own ``base`` is lower, a question's counting as 0 (it asks for
   the fact; it does not hold it). The memory takes the score of the best such turn (plus
   a hair, by its ``base``), so turns keep their scores and their order. A user asking
   "What theme do I like?" in a chat then no longer outranks "User prefers dark mode"
   for "what theme does the user like?".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from memgrpc.core.memory.recall.bm25 import FloatArray, bm25, idf
from memgrpc.core.memory.recall.text import DayRange

IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class RankParams:
    """Weights of the ranking signals (see the module docstring for what each does).

    Defaults are round values from one dev split, each on a broad plateau (moving any by
    +-50% costs at most about one point of hit@10 or hit@1).
    """

    #: BM25 term-frequency saturation and length normalisation (flat for 0.6-1.5 / 0.2-0.5).
    k1: float = 1.2
    b: float = 0.3
    #: Share of BM25 in the hybrid; the rest is dense cosine.
    lexical: float = 0.45
    window: float = 0.5
    session_lexical: float = 0.2
    session_best: float = 0.3
    neighbour: float = 0.3
    answer: float = 0.3
    speaker: float = 0.3
    when: float = 0.1
    date: float = 0.3
    #: Days outside a date named in the query after which the date cue has faded out.
    date_tau_days: float = 14.0
    question_prior: float = 0.1
    #: ``base`` from which a stored memory counts as relevant (step 7); 1 turns step 7 off.
    memory_floor: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"RankParams.{f.name} must be finite and >= 0, got {value}")
        if self.memory_floor > 1:
            raise ValueError(f"RankParams.memory_floor must be in [0, 1], got {self.memory_floor}")
        if self.lexical > 1:
            raise ValueError(f"RankParams.lexical must be in [0, 1], got {self.lexical}")
        if self.date_tau_days <= 0:
            raise ValueError("RankParams.date_tau_days must be > 0")

    def bound(self) -> float:
        """The largest raw score any item can get: dividing by it maps scores into [0, 1]."""
        context = 1.0 + self.window + self.session_lexical + self.session_best
        return context * (1.0 + self.neighbour) + self.answer + self.speaker + self.when + self.date


@dataclass(frozen=True, slots=True)
class Corpus:
    """Read-only arrays over the ``n`` live items for one search (built by ``UserIndex``).

    Neighbour arrays hold the slot of the previous/next item of the same session, or
    ``n`` (a padding slot with no text, no vector and score 0) where there is none.
    """

    vectors: npt.NDArray[np.float32]  # (n, dim), unit rows
    doc_len: FloatArray  # (n,) BM25 tokens per item
    prev: IntArray  # (n,) values in 0..n
    next: IntArray  # (n,) values in 0..n
    window_norm: FloatArray  # (n,) |v_prev + v + v_next|
    session: IntArray  # (n,) session numbers in 0..n_sessions_allocated-1
    session_len: FloatArray  # (S,) BM25 tokens per session (0 for unused numbers)
    n_sessions: int  # live sessions
    speaker: npt.NDArray[np.int32]  # (n,) speaker numbers, -1 for none
    question: BoolArray  # (n,)
    derived: BoolArray  # (n,) made from other items (extracted facts, summaries): never promoted
    timex: BoolArray  # (n,)
    day: FloatArray  # (n,) day ordinal of the item's time, NaN if unknown

    @property
    def n(self) -> int:
        return int(self.vectors.shape[0])


@dataclass(frozen=True, slots=True)
class QuerySignals:
    """What the search extracted from the query, in the corpus's terms."""

    term_tf: FloatArray  # (terms, n + 1): each query term's tf per item, padding column 0
    term_df: FloatArray  # (terms,) items containing each term
    vector: npt.NDArray[np.float32]  # (dim,)
    speakers: Sequence[int]  # speaker numbers of participants named in the query
    when: bool
    day_ranges: Sequence[DayRange]


def _scale_max(x: FloatArray) -> FloatArray:
    top = float(x.max()) if x.size else 0.0
    return x / top if top > 0 else np.zeros_like(x)


def _minmax(x: FloatArray) -> FloatArray:
    if not x.size:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _pad(x: FloatArray) -> FloatArray:
    """``x`` with a trailing 0 for the padding slot ``n``."""
    return np.append(x, 0.0)


def _session_lexical(c: Corpus, q: QuerySignals, p: RankParams) -> FloatArray:
    """BM25 of each item's session taken as one document, max-scaled, per item."""
    n_alloc = c.session_len.shape[0]
    if q.term_tf.shape[0] == 0 or c.n_sessions == 0:
        return np.zeros(c.n)
    stf = np.stack(
        [np.bincount(c.session, weights=row[: c.n], minlength=n_alloc) for row in q.term_tf]
    ).astype(np.float64)
    sdf = (stf > 0).sum(axis=1).astype(np.float64)
    scores = bm25(stf, c.session_len, idf(sdf, c.n_sessions), p.k1, p.b)
    out: FloatArray = _scale_max(scores)[c.session]
    return out


def _session_best(c: Corpus, base: FloatArray) -> FloatArray:
    """The best ``base`` in each item's session, max-scaled, per item."""
    best = np.zeros(c.session_len.shape[0])
    np.maximum.at(best, c.session, base)
    out: FloatArray = _scale_max(best)[c.session]
    return out


def _date_cue(c: Corpus, ranges: Sequence[DayRange], tau: float) -> FloatArray:
    """1 inside a date range named by the query, fading linearly to 0 ``tau`` days out."""
    cue = np.zeros(c.n)
    known = ~np.isnan(c.day)
    day = np.where(known, c.day, 0.0)
    for lo, hi in ranges:
        outside = np.maximum(lo - day, 0.0) + np.maximum(day - hi, 0.0)
        cue = np.maximum(cue, np.where(known, np.clip(1.0 - outside / tau, 0.0, 1.0), 0.0))
    return cue


def score(c: Corpus, q: QuerySignals, p: RankParams) -> FloatArray:
    """Scores in [0, 1] for every live item (higher is more relevant); see the module doc."""
    n = c.n
    if n == 0:
        return np.zeros(0)
    tf = q.term_tf
    weights = idf(q.term_df, float(n))
    dense = (c.vectors @ q.vector).astype(np.float64)

    # 1. the item alone
    lexical = bm25(tf[:, :n], c.doc_len, weights, p.k1, p.b)
    base = p.lexical * _scale_max(lexical) + (1.0 - p.lexical) * _minmax(dense)
    total = base.copy()

    # 2. the item within its +-1 window
    if p.window:
        wtf = tf[:, :n] + tf[:, c.prev] + tf[:, c.next]
        dlen = _pad(c.doc_len)
        wlen = c.doc_len + dlen[c.prev] + dlen[c.next]
        wlex = bm25(wtf, wlen, weights, p.k1, p.b)
        dpad = _pad(dense)
        wdense = (dense + dpad[c.prev] + dpad[c.next]) / np.maximum(c.window_norm, 1e-9)
        total += p.window * (p.lexical * _scale_max(wlex) + (1.0 - p.lexical) * _minmax(wdense))

    # 3. its session
    if p.session_lexical:
        total += p.session_lexical * _session_lexical(c, q, p)
    if p.session_best:
        total += p.session_best * _session_best(c, base)

    # 4. its neighbours, 5. the question it answers
    if p.neighbour:
        tpad = _pad(total)
        near = np.maximum(tpad[c.prev], tpad[c.next])
        total += p.neighbour * np.where(_alone(c), total, near)
    if p.answer:
        asked = np.append(c.question, False)[c.prev]
        total += p.answer * np.where(asked, _pad(base)[c.prev], 0.0)

    # 6. cues
    if p.speaker and len(q.speakers) == 1:
        total += p.speaker * (c.speaker == q.speakers[0])
    if p.when and q.when:
        total += p.when * c.timex
    if p.date and q.day_ranges:
        total += p.date * _date_cue(c, q.day_ranges, p.date_tau_days)
    if p.question_prior:
        total -= p.question_prior * c.question

    out: FloatArray = np.clip(total / p.bound(), 0.0, 1.0)
    return _memories_first(c, base, out, p.memory_floor)


def _alone(c: Corpus) -> BoolArray:
    """Items with no neighbouring turn: memories stored on their own (and one-turn sessions)."""
    out: BoolArray = (c.prev == c.n) & (c.next == c.n)
    return out


#: What a promoted memory scores above the turn it beats, per unit of its ``base``.
_HAIR = 0.02


def _memories_first(c: Corpus, base: FloatArray, scores: FloatArray, floor: float) -> FloatArray:
    """Step 7: each relevant stored memory scores above every turn it beats on its own text."""
    alone = _alone(c)
    facts = np.flatnonzero(alone & ~c.question & ~c.derived & (base >= floor))
    turns = np.flatnonzero(~alone)
    if facts.size == 0 or turns.size == 0:
        return scores
    own = np.where(c.question[turns], 0.0, base[turns])
    order = np.argsort(own, kind="stable")
    best_below = np.maximum.accumulate(scores[turns][order])  # best score of the i+1 least relevant
    beaten = np.searchsorted(own[order], base[facts], side="left")  # turns with own < base
    has = beaten > 0
    lifted = np.where(has, best_below[np.maximum(beaten - 1, 0)] + _HAIR * base[facts], 0.0)
    out = scores.copy()
    out[facts] = np.clip(np.maximum(scores[facts], lifted), 0.0, 1.0)
    return out
