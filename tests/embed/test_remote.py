"""RemoteEmbedder against a real loopback HTTP server speaking the OpenAI embeddings API."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

import memgrpc.embed.remote as remote_mod
from memgrpc.embed import (
    BatchingEmbedder,
    Embedder,
    EmbedderError,
    LocalEmbedder,
    RemoteEmbedder,
    load_embedder,
)

API_KEY = "sk-test-good"
DIM = 6


def fake_vector(text: str) -> list[float]:
    """Deterministic, unnormalised, text-dependent vector."""
    codes = [ord(c) for c in text] or [0]
    return [len(text) + 1.0, sum(codes) % 97 + 1.0, max(codes) / 10 + 1.0, 3.0, -2.0, 0.5]


def expected(texts: list[str]) -> np.ndarray:
    raw = np.array([fake_vector(t) for t in texts], dtype=np.float32)
    normalised: np.ndarray = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    return normalised


@dataclass
class Recorder:
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    """Routes by path prefix: /v1 ok, /auth needs API_KEY, /fail500, /short, /garbage, /wide."""

    recorder: Recorder

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.recorder.requests.append(request)
        self.recorder.auth.append(self.headers.get("Authorization"))
        prefix, _, rest = self.path.strip("/").partition("/")
        if rest != "embeddings":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if prefix == "fail500":
            return self._send(500, {"error": {"message": "model overloaded", "type": "server"}})
        if prefix == "auth" and self.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._send(401, {"error": {"message": "Incorrect API key provided"}})
        if prefix == "garbage":
            return self._send(200, b"<html>definitely not json</html>")
        texts = request["input"]
        if prefix == "short":
            texts = texts[:-1]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": fake_vector(t) + [1.0] * (prefix == "wide"),
            }
            for i, t in enumerate(texts)
        ]
        data.reverse()  # clients must sort by index, not trust the order
        self._send(200, {"object": "list", "data": data, "model": request["model"]})


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only: never route the test traffic through an environment proxy."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    handler = type("BoundHandler", (Handler,), {"recorder": recorder})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", recorder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_normalised_and_ordered(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    emb = RemoteEmbedder(f"{base}/v1/", api_key=API_KEY, model="my-model")
    assert isinstance(emb, Embedder)
    texts = ["first", "a much longer second text", "3rd", "fourth!"]
    vectors = emb.embed_sync(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (4, DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)
    assert recorder.requests[-1] == {"model": "my-model", "input": texts}
    assert recorder.auth[-1] == f"Bearer {API_KEY}"
    assert emb.model_id == "my-model"


def test_dim_learnt_from_first_answer(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    emb = RemoteEmbedder(f"{base}/v1")
    emb.embed_sync(["hello"])
    n = len(recorder.requests)
    assert emb.dim == DIM
    assert len(recorder.requests) == n  # no extra request once known
    assert emb.embed_sync([]).shape == (0, DIM)


def test_dim_probed_when_asked_first(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    n = len(recorder.requests)
    assert RemoteEmbedder(f"{base}/v1").dim == DIM
    assert len(recorder.requests) == n + 1


def test_explicit_dim_is_enforced(server: tuple[str, Recorder]) -> None:
    base, _ = server
    assert RemoteEmbedder(f"{base}/v1", dim=DIM).embed_sync(["x"]).shape == (1, DIM)
    with pytest.raises(EmbedderError, match="width 7, expected 6"):
        RemoteEmbedder(f"{base}/wide", dim=DIM).embed_sync(["x"])


def test_empty_input_with_known_dim_sends_nothing(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    n = len(recorder.requests)
    assert RemoteEmbedder(f"{base}/v1", dim=DIM).embed_sync([]).shape == (0, DIM)
    assert len(recorder.requests) == n


def test_empty_strings_are_sent_as_a_space(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    vectors = RemoteEmbedder(f"{base}/v1").embed_sync(["", "x"])
    assert recorder.requests[-1]["input"] == [" ", "x"]
    assert np.isfinite(vectors).all()


def test_large_inputs_are_chunked_in_order(
    server: tuple[str, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, recorder = server
    monkeypatch.setattr(remote_mod, "MAX_INPUTS_PER_REQUEST", 3)
    texts = [f"text number {i} " + "x" * i for i in range(8)]
    n = len(recorder.requests)
    vectors = RemoteEmbedder(f"{base}/v1").embed_sync(texts)
    assert len(recorder.requests) == n + 3
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)


def test_401_is_an_embedder_error(server: tuple[str, Recorder]) -> None:
    base, _ = server
    with pytest.raises(EmbedderError, match=r"HTTP 401.*API key.*Incorrect API key"):
        RemoteEmbedder(f"{base}/auth", api_key="sk-wrong").embed_sync(["x"])
    with pytest.raises(EmbedderError, match="HTTP 401"):
        RemoteEmbedder(f"{base}/auth").embed_sync(["x"])
    assert RemoteEmbedder(f"{base}/auth", api_key=API_KEY).embed_sync(["x"]).shape == (1, DIM)


def test_500_is_an_embedder_error(server: tuple[str, Recorder]) -> None:
    base, _ = server
    with pytest.raises(EmbedderError, match=r"HTTP 500.*model overloaded"):
        RemoteEmbedder(f"{base}/fail500").embed_sync(["x"])


def test_malformed_answers(server: tuple[str, Recorder]) -> None:
    base, _ = server
    with pytest.raises(EmbedderError, match="unexpected answer"):
        RemoteEmbedder(f"{base}/garbage").embed_sync(["x"])
    with pytest.raises(EmbedderError, match="1 vectors for 2 inputs"):
        RemoteEmbedder(f"{base}/short").embed_sync(["x", "y"])


def test_unreachable_endpoint() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(EmbedderError, match="unreachable"):
        RemoteEmbedder(f"http://127.0.0.1:{port}/v1", timeout=2).embed_sync(["x"])


def test_bad_configuration() -> None:
    with pytest.raises(EmbedderError):
        RemoteEmbedder("ftp://example.invalid")
    with pytest.raises(EmbedderError):
        RemoteEmbedder("http://127.0.0.1:1", dim=0)


def test_count_tokens_heuristic() -> None:
    emb = RemoteEmbedder("http://127.0.0.1:1", dim=DIM)
    assert emb.count_tokens("") == 0
    assert emb.count_tokens("hello world") == 2
    assert emb.count_tokens("internationalisation") == 4
    assert emb.count_tokens("Hi, you!") == 4
    assert 8 <= emb.count_tokens("The user's dog is named Biscuit.") <= 14
    assert emb.count_tokens_many(["hello world", "Hi, you!"]) == [2, 4]


async def test_through_the_batcher(server: tuple[str, Recorder]) -> None:
    base, _ = server
    b = BatchingEmbedder(RemoteEmbedder(f"{base}/v1"), max_wait_ms=20)
    try:
        texts = [f"query {i}" for i in range(10)]
        got = await asyncio.gather(*(b.embed_one(t) for t in texts))
        np.testing.assert_allclose(np.stack(got), expected(texts), atol=1e-6)
        assert b.batches == 1
        assert b.dim == DIM
    finally:
        await b.aclose()


def test_load_embedder(server: tuple[str, Recorder], monkeypatch: pytest.MonkeyPatch) -> None:
    base, recorder = server
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    emb = load_embedder("openai", url=f"{base}/auth", model="m")
    assert isinstance(emb, RemoteEmbedder)
    emb.embed_sync(["x"])
    assert recorder.auth[-1] == f"Bearer {API_KEY}"
    assert recorder.requests[-1]["model"] == "m"
    assert isinstance(load_embedder(), LocalEmbedder)
    with pytest.raises(EmbedderError, match="unknown embedder kind"):
        load_embedder("word2vec")
    with pytest.raises(EmbedderError, match="only serves"):
        load_embedder("local", model="text-embedding-3-small")
