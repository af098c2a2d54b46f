"""Embeddings from any OpenAI-compatible ``POST /embeddings`` endpoint, stdlib only."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from memgrpc.embed.base import EmbedderError, Vectors, l2_normalise

#: Inputs per request; OpenAI accepts up to 2048, smaller keeps bodies and retries cheap.
MAX_INPUTS_PER_REQUEST: Final = 256
_WORDS: Final = re.compile(r"\w+|[^\w\s]")
#: Text used only to learn ``dim`` when it is asked for before any real call.
_PROBE: Final = "dimension probe"


def approx_tokens(text: str) -> int:
    """Rough BPE token count: one per punctuation mark or short word, +1 per 6 more letters.

    Remote tokenizers are unknown to us; this errs slightly high for English,
    which is the safe side for budgets.
    """
    return sum(1 + (len(w) - 1) // 6 for w in _WORDS.findall(text))


class RemoteEmbedder:
    """Client of an OpenAI-compatible embeddings API (OpenAI, vLLM, Ollama, LiteLLM...).

    Blocking by design (``urllib``): run it through BatchingEmbedder, which calls it
    off the event loop. Results are L2-normalised since not every server does.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str = "text-embedding-3-small",
        dim: int | None = None,
        timeout: float = 30,
    ) -> None:
        """``dim=None`` learns the width from the first answer; a given ``dim`` is enforced."""
        if not base_url.startswith(("http://", "https://")):
            raise EmbedderError(f"embeddings base_url must be http(s)://..., got {base_url!r}")
        if dim is not None and dim < 1:
            raise EmbedderError(f"dim must be >= 1, got {dim}")
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.model_id = model
        self.timeout = timeout
        self._api_key = api_key
        self._dim = dim
        self._dim_lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Vector width; asks the server once (a one-text request) if not yet known."""
        if self._dim is None:
            with self._dim_lock:
                if self._dim is None:
                    self.embed_sync([_PROBE])
        assert self._dim is not None
        return self._dim

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """Embed ``texts`` in requests of at most MAX_INPUTS_PER_REQUEST, order kept."""
        if isinstance(texts, str):
            raise TypeError("embed_sync takes a sequence of texts, not a single str")
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        parts = [
            self._request(list(texts[i : i + MAX_INPUTS_PER_REQUEST]))
            for i in range(0, len(texts), MAX_INPUTS_PER_REQUEST)
        ]
        return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]

    def count_tokens(self, text: str) -> int:
        """Approximation, see :func:`approx_tokens`."""
        return approx_tokens(text)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return [approx_tokens(t) for t in texts]

    def _request(self, texts: list[str]) -> Vectors:
        # OpenAI rejects empty strings; a lone space embeds as "nothing" all the same.
        body = json.dumps({"model": self.model, "input": [t or " " for t in texts]}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            hint = " (check the API key)" if exc.code in (401, 403) else ""
            raise EmbedderError(
                f"embeddings request to {self.url} failed: HTTP {exc.code} {exc.reason}{hint}"
                + (f": {detail}" if detail else "")
            ) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EmbedderError(f"embeddings endpoint {self.url} unreachable: {reason}") from exc
        return self._parse(raw, len(texts))

    def _parse(self, raw: bytes, expected: int) -> Vectors:
        try:
            payload: Any = json.loads(raw)
            items = sorted(payload["data"], key=lambda d: int(d["index"]))
            matrix = np.asarray([d["embedding"] for d in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderError(
                f"embeddings endpoint {self.url} sent an unexpected answer: {exc!r}"
            ) from exc
        if matrix.ndim != 2 or matrix.shape[0] != expected:
            raise EmbedderError(
                f"embeddings endpoint {self.url} returned {matrix.shape[0]} vectors "
                f"for {expected} inputs"
            )
        if self._dim is None:
            self._dim = int(matrix.shape[1])
        elif matrix.shape[1] != self._dim:
            raise EmbedderError(
                f"embeddings endpoint {self.url} returned width {matrix.shape[1]}, "
                f"expected {self._dim} (model {self.model!r})"
            )
        return l2_normalise(matrix)


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The server's error message (OpenAI style ``{"error": {"message": ...}}``) or body start."""
    try:
        text = exc.read().decode("utf-8", "replace")
    except Exception:
        return ""
    try:
        err = json.loads(text)["error"]
        message = err["message"] if isinstance(err, dict) else err
        return str(message)[:300]
    except (ValueError, KeyError, TypeError):
        return text.strip()[:300]
