"""Session counters written behind: seen here at once, one commit for many sessions, written
before any other write of the session, at shutdown, and recounted after a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memgrpc.core.conversation import session_store
from memgrpc.core.conversation.messages import MessageService
from memgrpc.core.conversation.records import Message, Session
from memgrpc.core.conversation.session_store import SessionStore
from memgrpc.core.memory.service import MemoryService
from memgrpc.embed import BatchingEmbedder, Embedder
from memgrpc.store.db import Store, StoreConfig
from tests.convhelpers import eventually


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(StoreConfig(uri=str(tmp_path / "db"), dim=384, read_consistency_s=0.0))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _on_disk(store: Store, session_id: str) -> dict[str, object]:
    rows = await store.table("sessions").query().where(f"id = '{session_id}'").to_arrow()
    return rows.to_pylist()[0]  # type: ignore[no-any-return]


def _counters(session_id: str, count: int) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "id": session_id,
        "message_count": count,
        "active_time": now,
        "auto_process_at": None,
        "update_time": now,
    }


async def test_counters_are_coalesced_into_one_commit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a second, not 0.25 s: "not on the table yet" must hold on a busy machine too
    monkeypatch.setattr(session_store, "COUNTERS_FLUSH_S", 1.0)
    sessions = SessionStore(store)
    for i in range(5):
        await sessions.insert("p", Session(id=f"s{i}", user_id="u"), None)
    writer = store.writer("sessions")
    before = writer.stats.commits
    for i in range(5):
        sessions.patch_behind("p", _counters(f"s{i}", 1))
        sessions.patch_behind("p", _counters(f"s{i}", 2))
    # this process sees them at once; the table a moment later
    assert (await sessions.require("p", "s3")).message_count == 2
    assert (await _on_disk(store, "s3"))["message_count"] == 0

    async def flushed() -> bool:
        return [(await _on_disk(store, f"s{i}"))["message_count"] for i in range(5)] == [2] * 5

    await eventually(flushed, timeout_s=10, every_s=0.05)
    assert writer.stats.commits - before == 1


async def test_other_writes_of_the_session_come_after_its_counters(store: Store) -> None:
    sessions = SessionStore(store)
    await sessions.insert("p", Session(id="s1", user_id="u"), None)
    sessions.patch_behind("p", _counters("s1", 3))
    later = datetime.now(UTC) + timedelta(seconds=5)
    claimed = await sessions.claim(
        "p", "s1", ["active"], {"status": "processing", "update_time": later}
    )
    assert claimed
    row = await _on_disk(store, "s1")  # counters first, then the claim: its time stays
    assert (row["message_count"], row["status"], row["update_time"]) == (3, "processing", later)
    # a deleted session's held counters are dropped; stop() writes the rest
    await sessions.insert("p", Session(id="s2", user_id="u"), None)
    sessions.patch_behind("p", _counters("s2", 7))
    sessions.patch_behind("p", _counters("s1", 4))
    await sessions.delete("p", "s2")
    await sessions.stop()
    assert (await _on_disk(store, "s1"))["message_count"] == 4
    assert await sessions.row("p", "s2") is None


async def test_counters_lost_in_a_crash_are_recounted(
    store: Store, shared_embedder: Embedder
) -> None:
    memories = MemoryService(store, BatchingEmbedder(shared_embedder))
    crashed = SessionStore(store)
    await crashed.insert("p", Session(id="s1", user_id="u"), None)
    msgs = MessageService(store, memories, crashed)
    await msgs.add("p", "s1", [Message(role="user", content="one")])
    await msgs.add("p", "s1", [Message(role="assistant", content="two")])
    assert (await crashed.require("p", "s1")).message_count == 2
    # the process dies before the counters are written; a new one counts the messages
    fresh = SessionStore(store)
    assert (await fresh.require("p", "s1")).message_count == 0
    again = MessageService(store, memories, fresh)
    (third,) = await again.add("p", "s1", [Message(role="user", content="three")])
    assert third.seq == 2
    await fresh.stop()
    assert (await _on_disk(store, "s1"))["message_count"] == 3
    await crashed.stop()  # (the "dead" process's flusher, so the test leaves no task behind)


async def test_held_counters_below_the_stored_ones_are_dropped(
    store: Store, tmp_path: Path
) -> None:
    """Two replicas: A's counters are held while B writes later ones; A drops its own."""
    other = Store(StoreConfig(uri=str(tmp_path / "db"), dim=384, read_consistency_s=0.0))
    await other.open()
    try:
        a, b = SessionStore(store), SessionStore(other)
        await a.insert("p", Session(id="s1", user_id="u"), None)
        a.patch_behind("p", _counters("s1", 2))
        b.patch_behind("p", _counters("s1", 3))
        await b.flush()
        assert (await a.require("p", "s1")).message_count == 3  # B's, read: A's dropped
        await a.flush()
        assert (await _on_disk(store, "s1"))["message_count"] == 3
    finally:
        await other.close()


async def test_nothing_is_written_behind_after_stop(store: Store) -> None:
    """A write racing shutdown is held, not flushed into a closing store by a loop that would
    retry (and log) forever; the session's next write after a restart recounts."""
    sessions = SessionStore(store)
    await sessions.insert("p", Session(id="s1", user_id="u"), None)
    await sessions.stop()
    sessions.patch_behind("p", _counters("s1", 5))
    assert sessions._flusher is None or sessions._flusher.done()
    assert (await _on_disk(store, "s1"))["message_count"] == 0
