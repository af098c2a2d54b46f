"""Micro-batching of concurrent async embedding requests onto one worker thread.

Many gRPC calls each embedding one query would otherwise run the model one text
at a time (and block the event loop); gathering them for a millisecond or two
into one batch gives far higher throughput at the same latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from memgrpc import tracing
from memgrpc.embed.base import Embedder, EmbedderError, Vectors

# (texts, seconds, ok) of every batch run by the inner embedder, for metrics (server/metrics.py)
BatchObserver = Callable[[int, float, bool], None]


@dataclass(eq=False)
class _Request:
    texts: list[str]
    future: asyncio.Future[Vectors] = field(repr=False)
    trace: tracing.Parent | None = field(default=None, repr=False)


class BatchingEmbedder:
    """Async front of a blocking :class:`Embedder`: queue, micro-batch, run off-loop.

    One background task (started lazily in the running loop) collects requests until
    ``max_batch`` texts wait or ``max_wait_ms`` passed since the first; the batch runs
    in a single dedicated thread, since the model already uses every core itself.
    The default wait is 0: an idle embedder starts at once (a lone query pays no wait),
    and requests that arrive while a batch runs form the next batch by themselves.
    """

    def __init__(self, inner: Embedder, max_batch: int = 128, max_wait_ms: float = 0.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.inner = inner
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        #: Batches run by the inner embedder (including failed ones), and texts in them.
        self.batches = 0
        self.texts = 0
        self.on_batch: BatchObserver | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memgrpc-embed")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens_many(texts)

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """Blocking pass-through (no batching), so this also satisfies :class:`Embedder`."""
        return self.inner.embed_sync(texts)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Vectors for ``texts`` (shape (n, dim)), computed in a shared micro-batch."""
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts; use embed_one for a single str")
        if self._closed:
            raise EmbedderError("embedder is closed")
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        queue = self._ensure_started()
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        with tracing.span("embed", texts=len(texts), model=self.model_id):
            queue.put_nowait(_Request(list(texts), future, tracing.capture()))
            # Cancelling the caller cancels this future; the collector then skips or drops it.
            return await future

    @property
    def pending(self) -> int:
        """Requests queued and not yet taken into a batch."""
        return self._queue.qsize() if self._queue is not None else 0

    async def embed_one(self, text: str) -> Vectors:
        """The 1-D vector (dim,) of a single text."""
        row: Vectors = (await self.embed([text]))[0]
        return row

    async def aclose(self) -> None:
        """Stop the collector, fail still-queued requests, and shut the worker thread down."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._queue is not None:  # the collector drains it, unless it never ran
            pending = []
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            _fail(pending, EmbedderError("embedder closed"))
        # Waits for a batch still in the thread without blocking the loop.
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)

    def _ensure_started(self) -> asyncio.Queue[_Request]:
        loop = asyncio.get_running_loop()
        alive = self._loop is not None and not self._loop.is_closed()
        if self._task is not None and not self._task.done() and alive:
            if self._loop is not loop:
                raise EmbedderError("BatchingEmbedder is already running in another event loop")
            assert self._queue is not None
            return self._queue
        # First use, or the previous loop/task is gone: start afresh in this loop.
        self._loop = loop
        self._queue = asyncio.Queue()
        self._task = loop.create_task(self._collect(self._queue), name="memgrpc-embed-batcher")
        return self._queue

    async def _collect(self, queue: asyncio.Queue[_Request]) -> None:
        """Forever: take one request, gather more briefly, run the batch, hand out rows."""
        loop = asyncio.get_running_loop()
        batch: list[_Request] = []
        try:
            while True:
                batch = [await queue.get()]
                waiting = len(batch[0].texts)
                deadline = loop.time() + self.max_wait
                while waiting < self.max_batch:
                    if queue.empty():
                        timeout = deadline - loop.time()
                        if timeout <= 0:
                            break
                        try:
                            req = await asyncio.wait_for(queue.get(), timeout)
                        except TimeoutError:
                            break
                    else:
                        req = queue.get_nowait()
                    batch.append(req)
                    waiting += len(req.texts)
                await self._run(loop, [r for r in batch if not r.future.done()])
                batch = []
        except BaseException:
            # Closed (or a bug): nobody may be left awaiting a future that will never resolve.
            while not queue.empty():
                batch.append(queue.get_nowait())
            _fail(batch, EmbedderError("embedder closed"))
            raise

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        """One inner call for the whole batch; each caller gets its slice or the error."""
        if not batch:  # every caller gave up while queued
            return
        texts = [t for r in batch for t in r.texts]
        self.batches += 1
        self.texts += len(texts)
        traced = [r.trace for r in batch if r.trace is not None]
        start = time.perf_counter()
        try:
            with tracing.span_under(
                traced[0] if traced else None,
                "embed.batch",
                links=traced[1:32],
                texts=len(texts),
                requests=len(batch),
            ):
                vectors = await loop.run_in_executor(self._executor, self.inner.embed_sync, texts)
                if vectors.shape[0] != len(texts):
                    raise EmbedderError(
                        f"{type(self.inner).__name__} returned {vectors.shape[0]} vectors "
                        f"for {len(texts)} texts"
                    )
        except Exception as exc:
            self._observe(len(texts), time.perf_counter() - start, False)
            _fail(batch, exc)
            return
        self._observe(len(texts), time.perf_counter() - start, True)
        offset = 0
        for r in batch:
            n = len(r.texts)
            if not r.future.done():  # a caller cancelled mid-batch just misses its rows
                r.future.set_result(vectors[offset : offset + n].copy())
            offset += n

    def _observe(self, texts: int, seconds: float, ok: bool) -> None:
        if self.on_batch is not None:
            with contextlib.suppress(Exception):  # metrics must never fail an embedding
                self.on_batch(texts, seconds, ok)


def _fail(batch: list[_Request], exc: BaseException) -> None:
    for r in batch:
        if not r.future.done():
            r.future.set_exception(exc)
