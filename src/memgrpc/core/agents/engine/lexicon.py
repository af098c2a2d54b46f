"""The offline sentiment lexicon: a small fixed word list that scores a user's message, so the
mood and the relationship move the same way for the same words on every server, with no model.

A message's score sums its words' weights; a negator ("not", "never", "n't", ...) up to three
words before a word flips it and halves it ("not happy" counts as mildly negative), and an
intensifier just before it multiplies it by 1.5. Besides polarity, words are tagged as warmth
(gratitude, affection towards the agent), hostility (insults aimed at it) or sadness (the
user's own distress), which the engine reads for affinity and for the mood's label.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# word -> polarity weight (positive pleasant)
POSITIVE: dict[str, float] = dict.fromkeys(
    _words(
        "good great nice happy glad fun awesome amazing wonderful fantastic excellent cool love "
        "loved lovely enjoy enjoyed excited exciting beautiful perfect brilliant fine yay proud "
        "relieved calm delighted cheerful hopeful better best interesting sweet kind helpful "
        "haha lol fabulous superb pleased thrilled grateful"
    ),
    1.0,
)
NEGATIVE: dict[str, float] = dict.fromkeys(
    _words(
        "bad sad terrible awful horrible angry annoyed annoying upset hate hated worst boring "
        "bored tired stressed stressful worried anxious afraid scared lonely depressed miserable "
        "hurt sick pain painful disappointed frustrated frustrating unhappy cry crying fail "
        "failed lost wrong ugh"
    ),
    -1.0,
)
# gratitude and affection towards the agent
WARMTH = _words("thanks thank thx appreciate appreciated grateful sweet kind helpful friend")
# insults and dismissal aimed at the agent
HOSTILITY = _words(
    "stupid idiot dumb useless worthless shut hate pathetic moron annoying terrible "
    "garbage trash incompetent ridiculous"
)
HOSTILE_WEIGHT = -1.5  # hostility words that are not in NEGATIVE score this
SADNESS = _words(
    "sad lonely depressed miserable cry crying hurt worried anxious afraid scared stressed tired "
    "lost"
)
NEGATORS = _words("not no never none nobody nothing hardly barely neither nor cannot")
INTENSIFIERS = _words("very really so extremely super totally incredibly truly")
_WINDOW = 3  # a negator this many words back flips a word
_TOKEN = re.compile(r"[a-z']+")


@dataclass(frozen=True)
class Reading:
    """What one message says: polarity in [-1, 1], intensity in [0, 1], tag counts."""

    valence: float = 0.0
    intensity: float = 0.0
    warmth: int = 0
    hostility: int = 0
    sadness: int = 0
    hits: int = 0


def _negated(tokens: list[str], i: int) -> bool:
    return any(t in NEGATORS or t.endswith("n't") for t in tokens[max(0, i - _WINDOW) : i])


def read(text: str) -> Reading:
    """Score one message (deterministic: the same text always reads the same)."""
    tokens = _TOKEN.findall(text.lower())
    total, hits, warmth, hostility, sadness = 0.0, 0, 0, 0, 0
    for i, tok in enumerate(tokens):
        weight = POSITIVE.get(tok) or NEGATIVE.get(tok)
        if weight is None and tok in HOSTILITY:
            weight = HOSTILE_WEIGHT
        if weight is None and tok in WARMTH:
            weight = 1.0
        if weight is None:
            continue
        negated = _negated(tokens, i)
        if i and tokens[i - 1] in INTENSIFIERS:
            weight *= 1.5
        if negated:
            weight *= -0.5
        total += weight
        hits += 1
        if not negated:
            warmth += tok in WARMTH
            hostility += tok in HOSTILITY
            sadness += tok in SADNESS
    shouting = text.count("!") + sum(1 for w in text.split() if len(w) > 2 and w.isupper())
    valence = math.tanh(total / 2.0)
    intensity = min(1.0, abs(valence) * 0.7 + 0.1 * shouting)
    return Reading(valence, intensity, warmth, hostility, sadness, hits)
