"""Embedders: the local ONNX default and an optional OpenAI-compatible endpoint.

Everything satisfies :class:`Embedder` (blocking ``embed_sync``); async servers wrap
one in :class:`BatchingEmbedder` so concurrent requests share model calls.
"""

from __future__ import annotations

import os

from memgrpc.embed.base import Embedder, EmbedderError, Vectors
from memgrpc.embed.batcher import BatchingEmbedder
from memgrpc.embed.local import LocalEmbedder
from memgrpc.embed.remote import RemoteEmbedder

__all__ = [
    "BatchingEmbedder",
    "Embedder",
    "EmbedderError",
    "LocalEmbedder",
    "RemoteEmbedder",
    "Vectors",
    "load_embedder",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"


def load_embedder(
    kind: str = "local",
    *,
    url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
) -> Embedder:
    """Build the embedder named by configuration.

    ``"local"``: the bundled int8 MiniLM (offline; ``url``/``api_key`` are not used,
    ``model`` if given must be its id). ``"openai"``: any OpenAI-compatible endpoint;
    ``url`` defaults to OpenAI and ``api_key`` to ``$OPENAI_API_KEY``.
    """
    kind = kind.strip().lower()
    if kind == "local":
        if model is not None and model != LocalEmbedder.model_id:
            raise EmbedderError(
                f"the local embedder only serves {LocalEmbedder.model_id!r}, not {model!r}"
            )
        return LocalEmbedder()
    if kind == "openai":
        return RemoteEmbedder(
            url or OPENAI_BASE_URL,
            api_key=api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"),
            model=model or "text-embedding-3-small",
        )
    raise EmbedderError(f"unknown embedder kind {kind!r}: expected 'local' or 'openai'")
