"""Measure the cosine threshold reconciliation uses to call two extracted facts restatements.

Pairs of our own (not the dev scenarios' sentences), written as the extractors write facts:
paraphrases that should reinforce one memory, and near misses (same subject, other fact) that
must stay two. Prints each pair's cosine under the local embedder and the separating range.
Run: .venv/bin/python scripts/paraphrase_threshold.py
"""

from __future__ import annotations

import numpy as np

from memgrpc.core.intelligence.reconcile import _clash
from memgrpc.embed import load_embedder

PARAPHRASES = [
    ("User drinks only black coffee.", "Black coffee is the only coffee user drinks."),
    ("User drinks only black coffee.", "User sticks to black coffee, nothing else."),
    ("User swims every Thursday.", "User goes swimming every Thursday."),
    ("User plays the trumpet in a jazz band.", "User plays trumpet in a band."),
    ("User plays the trumpet in a jazz band.", "User is a trumpet player in a jazz band."),
    ("User loves hiking in the mountains.", "User really enjoys mountain hiking."),
    ("User is learning Japanese.", "User is studying Japanese."),
    ("User's favourite film is Alien.", "User's favorite movie is Alien."),
    ("User runs a marathon every spring.", "Every spring user runs a marathon."),
    ("User has a peanut allergy.", "User is allergic to peanuts."),
    ("User bakes sourdough bread on weekends.", "User bakes sourdough on the weekend."),
    ("User prefers aisle seats on trains.", "User likes aisle seats on trains best."),
    ("User reads science fiction before bed.", "User reads sci-fi before going to bed."),
    ("User volunteers at an animal shelter.", "User does volunteer work at an animal shelter."),
    ("User cycles to work.", "User rides a bike to work."),
    ("User meditates every morning.", "Every morning user meditates."),
]
NEAR_MISSES = [
    ("User drinks only black coffee.", "User drinks only green tea."),
    ("User swims every Thursday.", "User swims every Sunday."),
    ("User plays the trumpet in a jazz band.", "User plays the violin in an orchestra."),
    ("User loves hiking in the mountains.", "User hates hiking in the mountains."),
    ("User is learning Japanese.", "User is learning Korean."),
    ("User's favourite film is Alien.", "User's favourite film is Amélie."),
    ("User runs a marathon every spring.", "User runs a 5k every weekend."),
    ("User has a peanut allergy.", "User has a cat allergy."),
    ("User bakes sourdough bread on weekends.", "User bakes cakes for birthdays."),
    ("User prefers aisle seats on trains.", "User prefers window seats on planes."),
    ("User reads science fiction before bed.", "User watches documentaries before bed."),
    ("User volunteers at an animal shelter.", "User volunteers at a food bank."),
    ("User cycles to work.", "User drives to work."),
    ("User meditates every morning.", "User goes jogging every morning."),
    ("User has a dog named Biscuit.", "User has a dog named Rolo."),
    ("User's sister lives in Lyon.", "User's brother lives in Lyon."),
]


def main() -> None:
    emb = load_embedder("local")
    texts = [t for pairs in (PARAPHRASES, NEAR_MISSES) for p in pairs for t in p]
    vecs = np.asarray(emb.embed_sync(texts))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    it = iter(vecs)
    scores: dict[str, list[float]] = {"paraphrase": [], "near miss": []}
    for label, pairs in (("paraphrase", PARAPHRASES), ("near miss", NEAR_MISSES)):
        for a, b in pairs:
            s = float(next(it) @ next(it))
            guarded = _clash(a, b)  # names/numbers or polarity differ: never one fact
            scores[label].append(-1.0 if guarded else s)
            print(f"{label:10} {s:.3f}{' guarded' if guarded else '        '}  {a} | {b}")
    lo, hi = min(scores["paraphrase"]), max(scores["near miss"])
    print(f"after the lexical guards: lowest paraphrase {lo:.3f}, highest near miss {hi:.3f}")
    for t in np.arange(0.70, 0.96, 0.01):
        tp = sum(s >= t for s in scores["paraphrase"])
        fp = sum(s >= t for s in scores["near miss"])
        print(
            f"threshold {t:.2f}: paraphrases merged {tp}/{len(PARAPHRASES)}, near misses merged {fp}/{len(NEAR_MISSES)}"
        )


if __name__ == "__main__":
    main()
