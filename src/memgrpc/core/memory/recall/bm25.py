"""An incremental inverted index and the Okapi BM25 formula, over dense slot numbers.

Items live in slots ``0..n-1`` (the owner keeps them compact); the index maps each term
to its postings ``{slot: tf}`` and caches them as numpy arrays until the term changes, so
adding, removing or moving an item costs O(its distinct terms) and a search reads arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
Float32Array = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]


class TermIndex:
    """term -> {slot: term frequency}, with per-term numpy postings cached between changes."""

    def __init__(self) -> None:
        self._postings: dict[str, dict[int, int]] = {}
        self._cache: dict[str, tuple[Int64Array, Float32Array]] = {}

    def __len__(self) -> int:
        """Distinct terms."""
        return len(self._postings)

    def add(self, slot: int, counts: Mapping[str, int]) -> None:
        """Index ``counts`` (term -> tf) under ``slot``."""
        for term, tf in counts.items():
            self._postings.setdefault(term, {})[slot] = tf
            self._cache.pop(term, None)

    def remove(self, slot: int, terms: Iterable[str]) -> None:
        """Drop ``slot``'s postings; ``terms`` must be those added for it."""
        for term in terms:
            posting = self._postings.get(term)
            if posting is None:
                continue
            posting.pop(slot, None)
            if not posting:
                del self._postings[term]
            self._cache.pop(term, None)

    def move(self, src: int, dst: int, terms: Iterable[str]) -> None:
        """Renumber an item (with ``terms``) from slot ``src`` to the (free) slot ``dst``."""
        for term in terms:
            posting = self._postings[term]
            posting[dst] = posting.pop(src)
            self._cache.pop(term, None)

    def postings(self, term: str) -> tuple[Int64Array, Float32Array] | None:
        """(slots, term frequencies) of ``term``, or ``None`` if no item has it."""
        cached = self._cache.get(term)
        if cached is not None:
            return cached
        posting = self._postings.get(term)
        if not posting:
            return None
        slots = np.fromiter(posting.keys(), dtype=np.int64, count=len(posting))
        tfs = np.fromiter(posting.values(), dtype=np.float32, count=len(posting))
        self._cache[term] = (slots, tfs)
        return slots, tfs


def idf(df: FloatArray, n_docs: float) -> FloatArray:
    """BM25 inverse document frequency, the non-negative (Lucene) form."""
    out: FloatArray = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    return out


def bm25(
    tf: FloatArray, doc_len: FloatArray, weights: FloatArray, k1: float, b: float
) -> FloatArray:
    """Okapi BM25 of every document: ``tf`` is (terms, docs), ``weights`` the terms' idf.

    ``doc_len`` holds one length per document; the average is taken over all of them, so
    callers pass live documents only (or zero-length padding that carries no tf).
    """
    n_docs = doc_len.shape[0]
    if tf.shape[0] == 0 or n_docs == 0:
        return np.zeros(n_docs, dtype=np.float64)
    live = doc_len > 0
    avg = float(doc_len[live].mean()) if live.any() else 1.0
    norm = k1 * (1.0 - b + b * doc_len / max(avg, 1e-9))
    sat = tf * (k1 + 1.0) / (tf + norm)
    out: FloatArray = weights @ sat
    return out
