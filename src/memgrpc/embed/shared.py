"""One embedding per distinct text within a unit of work (a chat turn, a context assembly).

A chat turn embeds its message ahead (while its session is looked up), then its store asks for
that same text; a context assembly searches memories and summaries with one query. The model is
deterministic, so inside `shared_embeddings()` (and in the tasks started there, which inherit the
context) the first request for a text runs the model and the others await that same result.
Outside such a block nothing changes, so callers that count model runs see exactly what they
asked for. Only equal texts share: a search with another text's vector is given it explicitly
(`MemoryService.search(vector=...)`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import numpy as np
import numpy.typing as npt

from memgrpc.embed.base import EmbedderError, Vectors
from memgrpc.embed.batcher import BatchingEmbedder

Row = npt.NDArray[np.float32]
Memo = dict[str, "asyncio.Future[Row]"]
_memo: ContextVar[Memo | None] = ContextVar("memgrpc_embedding_memo", default=None)


@contextlib.contextmanager
def shared_embeddings(memo: Memo | None = None) -> Iterator[Memo]:
    """Share embeddings of equal texts in this block (through `memo`, to reuse one across
    blocks); a block inside another joins the outer one."""
    current = _memo.get()
    if current is not None:
        yield current
        return
    memo = {} if memo is None else memo
    token = _memo.set(memo)
    try:
        yield memo
    finally:
        _memo.reset(token)


def row_of(batch: asyncio.Future[Vectors], index: int) -> asyncio.Future[Row]:
    """Row `index` of a batch being embedded, as its own future (to put in a memo)."""
    row: asyncio.Future[Row] = asyncio.get_running_loop().create_future()

    def settle(done: asyncio.Future[Vectors]) -> None:
        if row.done():
            return
        if done.cancelled():
            row.set_exception(EmbedderError("embedding cancelled"))
        elif (exc := done.exception()) is not None:
            row.set_exception(exc)
        else:
            row.set_result(done.result()[index])

    batch.add_done_callback(settle)
    # a failure nobody else awaits must not be reported as "never retrieved"
    row.add_done_callback(lambda f: f.cancelled() or f.exception())
    return row


class SharingEmbedder(BatchingEmbedder):
    """A BatchingEmbedder that honours `shared_embeddings()` blocks."""

    async def embed(self, texts: Sequence[str]) -> Vectors:
        memo = _memo.get()
        if memo is None or isinstance(texts, str) or not texts:
            return await super().embed(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in memo]
        if missing:
            # its own task: a cancelled first caller must not fail the others waiting for it
            batch = asyncio.ensure_future(super().embed(missing))
            for i, text in enumerate(missing):
                memo[text] = row_of(batch, i)
        rows = [await asyncio.shield(memo[t]) for t in texts]
        return np.stack(rows).astype(np.float32, copy=False)
