"""The embedder contract shared by the local model, remote endpoints and the batcher."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

#: What every embedder returns: float32, shape (n, dim), each row of unit L2 norm.
Vectors = npt.NDArray[np.float32]


class EmbedderError(Exception):
    """An embedder could not load or answer; the message says which and why."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors, so cosine similarity is a plain dot product.

    ``model_id`` and ``dim`` are read-only properties here so that implementations may
    use plain attributes or properties (a remote endpoint only learns ``dim`` lazily).
    """

    @property
    def model_id(self) -> str:
        """Stable id stored next to each vector so mixed models can be detected."""
        ...

    @property
    def dim(self) -> int:
        """Vector width; stores need it to create their schema."""
        ...

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """Blocking: float32 array (len(texts), dim), rows L2-normalised, input order kept.

        Empty input gives shape (0, dim). Call it off the event loop (see BatchingEmbedder).
        """
        ...

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` (exact or approximate), for budgets and truncation checks."""
        ...

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        """`count_tokens` of each text; blocking, call it off the event loop."""
        ...


def l2_normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Row-wise L2 normalisation to float32; all-zero rows stay zero instead of becoming NaN."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.ascontiguousarray(out / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)
