"""What a crash between AddMessages' commits leaves is repaired by the next write to the session:
memories whose message never committed are deleted, messages whose memory never committed are
indexed, and a memory the client deleted on purpose stays deleted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from memgrpc.core.chat.turn import _UserMessageWrite
from memgrpc.core.conversation.messages import AddHooks, MessageService, _as_memory
from memgrpc.core.conversation.records import Message, Session, message_row
from memgrpc.core.conversation.session_store import SessionStore
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.memory.model import MemoryQuery
from memgrpc.core.memory.service import MemoryService
from memgrpc.embed import BatchingEmbedder, Embedder
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.filters import Where

P = "p"


class Parts:
    def __init__(self, store: Store, embedder: Embedder) -> None:
        self.store = store
        self.memories = MemoryService(store, BatchingEmbedder(embedder))
        self.sessions = SessionStore(store)

    def fresh_messages(self) -> MessageService:
        """A new process's view: nothing cached, so the first write heals."""
        return MessageService(self.store, self.memories, self.sessions)

    async def memory_ids(self) -> set[str]:
        rows = await self.store.table("memories").query().select(["id"]).to_arrow()
        return set(rows.column("id").to_pylist())


@pytest.fixture
async def parts(tmp_path: Path, shared_embedder: Embedder) -> AsyncIterator[Parts]:
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=shared_embedder.dim))
    await store.open()
    try:
        p = Parts(store, shared_embedder)
        await p.sessions.insert(P, Session(id="s1", user_id="u"), None)
        yield p
    finally:
        await store.close()


async def test_memory_without_its_message_is_deleted(parts: Parts) -> None:
    first = await parts.fresh_messages().add(P, "s1", [Message(role="user", content="hi")])
    # the crash: the next message's memory committed, its message row and counters did not
    lost = Message(id="msg_lost", session_id="s1", user_id="u", content="never stored", seq=1)
    (orphan,) = parts.memories.prepare_many([_as_memory(lost)])
    await parts.memories.insert_prepared(P, [orphan])
    assert orphan.id in await parts.memory_ids()
    added = await parts.fresh_messages().add(P, "s1", [Message(role="user", content="again")])
    ids = await parts.memory_ids()
    assert orphan.id not in ids
    assert {first[0].memory_id, added[0].memory_id} <= ids
    assert added[0].seq == 1  # the lost message took no position


async def test_message_without_its_memory_is_indexed(parts: Parts) -> None:
    await parts.fresh_messages().add(P, "s1", [Message(role="user", content="hi")])
    # the crash: a message row committed, its memory and the counters did not
    stored = Message(
        id="msg_kept",
        session_id="s1",
        user_id="u",
        role="user",
        content="My sister Ada lives in Lisbon",
        seq=1,
        memory_id="mem_kept",
    )
    await parts.store.writer("messages").insert([message_row(P, stored)])
    assert "mem_kept" not in await parts.memory_ids()
    added = await parts.fresh_messages().add(P, "s1", [Message(role="user", content="ok")])
    assert added[0].seq == 2
    assert "mem_kept" in await parts.memory_ids()
    hits = await parts.memories.search(P, MemoryQuery(user_id="u"), "where does Ada live", limit=1)
    assert hits[0].memory.id == "mem_kept"
    assert hits[0].memory.source_message_ids == ["msg_kept"]
    row = await parts.sessions.require(P, "s1")
    assert row.message_count == 3


async def test_a_memory_deleted_on_purpose_stays_deleted(parts: Parts) -> None:
    msgs = parts.fresh_messages()
    (said,) = await msgs.add(P, "s1", [Message(role="user", content="forget this please")])
    await parts.memories.delete_many(P, [said.memory_id])
    # a new process (nothing cached) writes to the session: counted messages are left alone
    await parts.fresh_messages().add(P, "s1", [Message(role="user", content="thanks")])
    assert said.memory_id not in await parts.memory_ids()
    rows = (
        await parts.store.table("messages").query().where(str(Where().eq("id", said.id))).to_arrow()
    )
    assert rows.num_rows == 1  # the message itself is kept


@pytest.mark.parametrize("outcome", ["done", "cancelled"])
async def test_a_turns_memory_waits_for_its_recall_and_the_message_does_not(
    parts: Parts, outcome: str
) -> None:
    """A chat turn's recall goes first (the turn's AddHooks): its message commits at once, its
    memory after recall, whatever recall's outcome."""
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    hooks = _UserMessageWrite(gate)
    committed = asyncio.Event()
    hooks.stored.add_done_callback(lambda _: committed.set())
    add = asyncio.ensure_future(
        parts.fresh_messages().add(
            P,
            "s1",
            [Message(id=new_id("msg"), role="user", content="my dog is Biscuit")],
            hooks=hooks,
        )
    )
    await asyncio.wait_for(committed.wait(), 10)
    stored = await parts.store.table("messages").query().select(["id"]).to_arrow()
    assert stored.num_rows == 1
    await asyncio.sleep(0.1)
    assert await parts.memory_ids() == set()
    assert not add.done()
    if outcome == "done":
        gate.set_result(None)
    else:
        gate.cancel()
    (message,) = await asyncio.wait_for(add, 10)
    assert await parts.memory_ids() == {message.memory_id}


class FailingIndex(AddHooks):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def committed(self, messages: Sequence[Message]) -> None:
        self.seen.extend(m.id for m in messages)

    async def before_indexing(self) -> None:
        raise RuntimeError("the caller gave up")


async def test_hooks_that_fail_before_indexing_fail_the_add_and_the_next_write_heals(
    parts: Parts,
) -> None:
    messages = parts.fresh_messages()
    hooks = FailingIndex()
    with pytest.raises(RuntimeError):
        await messages.add(P, "s1", [Message(role="user", content="my cat is Miso")], hooks=hooks)
    (said,) = await messages.all_in_session(P, "s1")
    assert hooks.seen == [said.id]  # told at the message's commit
    assert await parts.memory_ids() == set()
    await messages.add(P, "s1", [Message(role="user", content="thanks")])
    assert said.memory_id in await parts.memory_ids()
