"""BatchingEmbedder: micro-batching, error propagation and cancellation, on the real model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest

from memgrpc.embed import BatchingEmbedder, Embedder, EmbedderError, LocalEmbedder, Vectors

from .conftest import MIXED_TEXTS

WAIT = 10.0  # generous upper bound so a bug fails the test instead of hanging it


class Wrapped:
    """The real embedder, plus hooks: a gate to hold a batch, a poison text, a call log."""

    def __init__(self, inner: LocalEmbedder, gated: bool = False) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.started = threading.Event()
        self.release = threading.Event()
        if not gated:
            self.release.set()
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        self.started.set()
        assert self.release.wait(WAIT), "gate never released"
        if "boom" in texts:
            raise EmbedderError("poisoned batch")
        return self.inner.embed_sync(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens_many(texts)


@pytest.fixture
async def batcher(local_embedder: LocalEmbedder) -> AsyncIterator[BatchingEmbedder]:
    b = BatchingEmbedder(local_embedder, max_batch=64, max_wait_ms=2.0)
    yield b
    await b.aclose()


async def test_passthrough(batcher: BatchingEmbedder, local_embedder: LocalEmbedder) -> None:
    assert isinstance(batcher, Embedder)
    assert batcher.model_id == local_embedder.model_id
    assert batcher.dim == 384
    assert batcher.count_tokens("hello world") == 2
    assert batcher.embed_sync(["x"]).shape == (1, 384)


async def test_concurrent_embed_one_matches_sync(
    batcher: BatchingEmbedder, local_embedder: LocalEmbedder
) -> None:
    texts = [f"{t} (memory {i})" for i, t in enumerate(MIXED_TEXTS * 2)][:50]
    assert len(texts) == 50
    got = await asyncio.wait_for(asyncio.gather(*(batcher.embed_one(t) for t in texts)), WAIT)
    expected = local_embedder.embed_sync(texts)
    for row, vector in zip(expected, got, strict=True):
        assert vector.shape == (384,)
        assert vector.dtype == np.float32
        np.testing.assert_allclose(vector, row, atol=1e-4)
    assert batcher.texts == 50
    assert 1 <= batcher.batches < 50


async def test_each_caller_gets_its_rows(
    batcher: BatchingEmbedder, local_embedder: LocalEmbedder
) -> None:
    groups = [MIXED_TEXTS[i : i + n] for i, n in ((0, 3), (3, 1), (4, 70), (10, 5), (20, 2))]
    got = await asyncio.wait_for(asyncio.gather(*(batcher.embed(g) for g in groups)), WAIT)
    for group, vectors in zip(groups, got, strict=True):
        assert vectors.shape == (len(group), 384)
        np.testing.assert_allclose(vectors, local_embedder.embed_sync(group), atol=1e-4)


async def test_empty_input(batcher: BatchingEmbedder) -> None:
    assert (await batcher.embed([])).shape == (0, 384)
    assert batcher.batches == 0


async def test_flushes_at_max_batch_without_waiting(local_embedder: LocalEmbedder) -> None:
    # max_wait is an hour: only the max_batch trigger can flush these.
    b = BatchingEmbedder(local_embedder, max_batch=4, max_wait_ms=3_600_000)
    try:
        got = await asyncio.wait_for(
            asyncio.gather(*(b.embed_one(t) for t in MIXED_TEXTS[:8])), WAIT
        )
        assert len(got) == 8
        assert b.batches == 2
    finally:
        await b.aclose()


async def test_flushes_after_max_wait(local_embedder: LocalEmbedder) -> None:
    b = BatchingEmbedder(local_embedder, max_batch=1000, max_wait_ms=20)
    try:
        vector = await asyncio.wait_for(b.embed_one("lonely query"), WAIT)
        assert vector.shape == (384,)
        assert b.batches == 1
    finally:
        await b.aclose()


async def test_runs_off_loop_in_one_worker_thread(local_embedder: LocalEmbedder) -> None:
    inner = Wrapped(local_embedder, gated=True)
    b = BatchingEmbedder(inner)
    try:
        task = asyncio.ensure_future(b.embed_one("held in the worker"))
        assert await asyncio.to_thread(inner.started.wait, WAIT)
        await asyncio.sleep(0.01)  # the loop still runs while the batch is blocked
        assert not task.done()
        inner.release.set()
        await asyncio.wait_for(task, WAIT)
        await asyncio.wait_for(asyncio.gather(*(b.embed_one(t) for t in MIXED_TEXTS[:10])), WAIT)
        assert len(inner.threads) == 1
        assert next(iter(inner.threads)).startswith("memgrpc-embed")
        assert threading.current_thread().name not in inner.threads
    finally:
        await b.aclose()


async def test_exception_reaches_every_caller_of_the_batch(local_embedder: LocalEmbedder) -> None:
    inner = Wrapped(local_embedder)
    b = BatchingEmbedder(inner, max_batch=64, max_wait_ms=50)
    try:
        texts = ["fine", "boom", "also fine", "still fine"]
        results = await asyncio.wait_for(
            asyncio.gather(*(b.embed_one(t) for t in texts), return_exceptions=True), WAIT
        )
        assert len(inner.calls) == 1  # one shared batch ...
        assert all(isinstance(r, EmbedderError) for r in results)  # ... failed for everyone
        assert all("poisoned" in str(r) for r in results)
        # The batcher survives the failure.
        assert (await asyncio.wait_for(b.embed_one("after the storm"), WAIT)).shape == (384,)
    finally:
        await b.aclose()


async def test_cancel_while_batch_runs(local_embedder: LocalEmbedder) -> None:
    inner = Wrapped(local_embedder, gated=True)
    b = BatchingEmbedder(inner, max_batch=64, max_wait_ms=20)
    try:
        doomed = asyncio.ensure_future(b.embed_one("I will be cancelled"))
        keeper = asyncio.ensure_future(b.embed_one("I will be answered"))
        assert await asyncio.to_thread(inner.started.wait, WAIT)
        assert inner.calls == [["I will be cancelled", "I will be answered"]]
        doomed.cancel()
        inner.release.set()
        vector = await asyncio.wait_for(keeper, WAIT)
        np.testing.assert_allclose(
            vector, local_embedder.embed_sync(["I will be answered"])[0], atol=1e-4
        )
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert (await asyncio.wait_for(b.embed_one("next"), WAIT)).shape == (384,)
    finally:
        inner.release.set()
        await b.aclose()


async def test_cancel_while_queued(local_embedder: LocalEmbedder) -> None:
    inner = Wrapped(local_embedder, gated=True)
    b = BatchingEmbedder(inner, max_batch=64, max_wait_ms=1)
    try:
        first = asyncio.ensure_future(b.embed_one("occupies the worker"))
        assert await asyncio.to_thread(inner.started.wait, WAIT)
        doomed = asyncio.ensure_future(b.embed_one("cancelled in the queue"))
        keeper = asyncio.ensure_future(b.embed(["queued and kept", "me too"]))
        await asyncio.sleep(0)  # both are queued behind the running batch
        doomed.cancel()
        inner.release.set()
        await asyncio.wait_for(first, WAIT)
        kept = await asyncio.wait_for(keeper, WAIT)
        assert kept.shape == (2, 384)
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert ["cancelled in the queue"] not in inner.calls
        assert all("cancelled in the queue" not in call for call in inner.calls)
        assert b.texts == 3
    finally:
        inner.release.set()
        await b.aclose()


async def test_aclose_fails_pending_and_rejects_new(local_embedder: LocalEmbedder) -> None:
    inner = Wrapped(local_embedder, gated=True)
    b = BatchingEmbedder(inner, max_wait_ms=1)
    running = asyncio.ensure_future(b.embed_one("in flight"))
    assert await asyncio.to_thread(inner.started.wait, WAIT)
    queued = asyncio.ensure_future(b.embed_one("still queued"))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(b.aclose())
    await asyncio.sleep(0.01)
    inner.release.set()
    await asyncio.wait_for(closing, WAIT)
    for task in (running, queued):
        with pytest.raises(EmbedderError, match="closed"):
            await asyncio.wait_for(task, WAIT)
    with pytest.raises(EmbedderError, match="closed"):
        await b.embed_one("too late")
    await b.aclose()  # idempotent


async def test_aclose_while_gathering(local_embedder: LocalEmbedder) -> None:
    b = BatchingEmbedder(local_embedder, max_batch=1000, max_wait_ms=3_600_000)
    waiting = asyncio.ensure_future(b.embed_one("gathered, never run"))
    await asyncio.sleep(0.01)  # the collector holds it, waiting for company
    await asyncio.wait_for(b.aclose(), WAIT)
    with pytest.raises(EmbedderError, match="closed"):
        await asyncio.wait_for(waiting, WAIT)
    assert b.batches == 0


async def test_rejects_bad_arguments(local_embedder: LocalEmbedder) -> None:
    with pytest.raises(ValueError):
        BatchingEmbedder(local_embedder, max_batch=0)
    b = BatchingEmbedder(local_embedder)
    with pytest.raises(TypeError):
        await b.embed("a str, not a list")
    await b.aclose()
