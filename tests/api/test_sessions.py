"""SessionService: CRUD, list paging and filters, messages, processing jobs, links, deletion."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from memgrpc.core.kernel.errors import Unavailable
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import sessions_pb2_grpc
from tests.convhelpers import add, eventually, msg, new_session
from tests.helpers import md
from tests.memhelpers import details, mem, struct


@pytest.fixture(scope="module")
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


async def test_create_get_update(sessions, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(
        new_session("u", title="Support chat", metadata={"source": "web-chat", "locale": "en-US"}),
        metadata=md(key),
    )
    assert s.status == spb.SESSION_STATUS_ACTIVE and s.message_count == 0
    assert not s.HasField("auto_process_after")
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got == s
    upd = await sessions.UpdateSession(
        spb.UpdateSessionRequest(session=spb.Session(id=s.id, title="Billing")), metadata=md(key)
    )
    assert upd.title == "Billing" and upd.metadata == s.metadata  # unset fields untouched
    upd = await sessions.UpdateSession(
        spb.UpdateSessionRequest(
            session=spb.Session(
                id=s.id,
                metadata=struct({"type": "support_chat"}),
                auto_process_after=duration_pb2.Duration(seconds=1800),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["metadata", "auto_process_after"]),
        ),
        metadata=md(key),
    )
    assert upd.metadata == struct({"type": "support_chat"}) and upd.title == "Billing"
    assert upd.auto_process_after.seconds == 1800
    cleared = await sessions.UpdateSession(
        spb.UpdateSessionRequest(
            session=spb.Session(id=s.id),
            update_mask=field_mask_pb2.FieldMask(paths=["auto_process_after", "title"]),
        ),
        metadata=md(key),
    )
    assert not cleared.HasField("auto_process_after") and cleared.title == ""
    assert await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key)) == cleared


async def test_list_sessions_paging_and_filters(sessions, new_key) -> None:
    _, key = await new_key()
    made = []
    for i in range(7):
        user = "a" if i < 4 else "b"
        meta = {"type": "chat" if i % 2 else "support"}
        made.append(
            await sessions.CreateSession(new_session(user, metadata=meta), metadata=md(key))
        )
    seen: list[str] = []
    token = ""
    while True:
        page = await sessions.ListSessions(
            spb.ListSessionsRequest(page_size=3, page_token=token), metadata=md(key)
        )
        assert page.total_size == 7
        seen += [s.id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert seen == [s.id for s in reversed(made)]  # newest first, each once
    chats_of_a = await sessions.ListSessions(
        spb.ListSessionsRequest(user_id="a", metadata_filter=struct({"type": "chat"})),
        metadata=md(key),
    )
    assert [s.id for s in chats_of_a.sessions] == [made[3].id, made[1].id]
    assert chats_of_a.total_size == 2
    none = await sessions.ListSessions(
        spb.ListSessionsRequest(user_metadata_filter=struct({"role": "nobody"})), metadata=md(key)
    )
    assert none.total_size == 0 and not none.sessions
    active = await sessions.ListSessions(
        spb.ListSessionsRequest(
            user_id="b", statuses=[spb.SESSION_STATUS_ACTIVE, spb.SESSION_STATUS_PROCESSING]
        ),
        metadata=md(key),
    )
    assert active.total_size == 3


async def test_add_messages_fields_order_and_count(sessions, memory_stub, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    when = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    added = await sessions.AddMessages(
        add(
            s.id,
            msg("hello", id="c-1", name="Ana", metadata={"channel": "chat"}, create_time=when),
            msg("tool output here", role="tool"),
            msg("custom role speaks", role="narrator"),
        ),
        metadata=md(key),
    )
    a, b, c = added.messages
    assert (a.id, a.role, a.name, a.create_time) == ("c-1", "user", "Ana", when)
    assert a.metadata == struct({"channel": "chat"}) and a.user_id == "u"
    assert b.role == "tool" and c.role == "narrator"
    memory = await memory_stub.GetMemory(mpb.GetMemoryRequest(id=a.memory_id), metadata=md(key))
    assert memory.speaker == "Ana" and memory.event_time == when
    assert memory.metadata == struct({"channel": "chat"}) and memory.session_id == s.id
    tool_mem = await memory_stub.GetMemory(mpb.GetMemoryRequest(id=b.memory_id), metadata=md(key))
    assert tool_mem.speaker == "tool"
    more = await sessions.AddMessages(add(s.id, msg("later")), metadata=md(key))
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got.message_count == 4
    listed = await sessions.ListMessages(spb.ListMessagesRequest(session_id=s.id), metadata=md(key))
    assert [m.id for m in listed.messages] == [a.id, b.id, c.id, more.messages[0].id]
    assert listed.messages[0] == a


async def test_duplicate_client_id_is_already_exists(sessions, memory_stub, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    await sessions.AddMessages(add(s.id, msg("first", id="m1")), metadata=md(key))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sessions.AddMessages(
            add(s.id, msg("fine", id="m2"), msg("again", id="m1")), metadata=md(key)
        )
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details(e.value)[1] == "MESSAGE_ALREADY_EXISTS"
    assert "messages[1].id" in (e.value.details() or "")
    # all or nothing: m2 was not written either, nor indexed
    listed = await sessions.ListMessages(spb.ListMessagesRequest(session_id=s.id), metadata=md(key))
    assert [m.id for m in listed.messages] == ["m1"]
    mems = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(session_id=s.id), metadata=md(key)
    )
    assert mems.total_size == 1
    # the same client id in another session is fine
    other = await sessions.CreateSession(new_session("u"), metadata=md(key))
    await sessions.AddMessages(add(other.id, msg("first", id="m1")), metadata=md(key))


async def test_failed_write_leaves_no_duplicate_memory(
    sessions, memory_stub, new_key, server
) -> None:
    """A failure (or crash) between the memory commit and the message commit leaves memories
    without messages; readers tolerate them and the next write to the session deletes them."""
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    kept = await memory_stub.CreateMemory(
        mem("u", "made by hand", session_id=s.id, type=mpb.MEMORY_TYPE_MESSAGE), metadata=md(key)
    )
    await sessions.AddMessages(add(s.id, msg("before")), metadata=md(key))
    writer = server.app.store.writer("messages")

    async def broken(rows: object) -> None:
        raise RuntimeError("disk full")

    writer.insert = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await sessions.AddMessages(add(s.id, msg("I like jazz", id="c-9")), metadata=md(key))
        assert e.value.code() == grpc.StatusCode.INTERNAL
    finally:
        del writer.insert
    listed = await sessions.ListMessages(spb.ListMessagesRequest(session_id=s.id), metadata=md(key))
    assert [m.content for m in listed.messages] == ["before"]  # the orphan is not in the way
    added = await sessions.AddMessages(add(s.id, msg("I like jazz", id="c-9")), metadata=md(key))
    assert added.messages[0].id == "c-9"
    mems = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(session_id=s.id), metadata=md(key)
    )
    assert sorted(m.content for m in mems.memories) == ["I like jazz", "before", "made by hand"]
    assert kept.id in {m.id for m in mems.memories}
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got.message_count == 2
    listed = await sessions.ListMessages(spb.ListMessagesRequest(session_id=s.id), metadata=md(key))
    assert [m.content for m in listed.messages] == ["before", "I like jazz"]


async def test_add_messages_retry_with_request_id(sessions, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    req = add(s.id, msg("once"), request_id="add-1")
    first, second = await asyncio.gather(
        sessions.AddMessages(req, metadata=md(key)), sessions.AddMessages(req, metadata=md(key))
    )
    assert first == second
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got.message_count == 1


async def test_concurrent_adds_keep_order_and_count(sessions, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    await asyncio.gather(
        *(
            sessions.AddMessages(add(s.id, msg(f"m{i}a"), msg(f"m{i}b")), metadata=md(key))
            for i in range(6)
        )
    )
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got.message_count == 12
    listed = await sessions.ListMessages(spb.ListMessagesRequest(session_id=s.id), metadata=md(key))
    texts = [m.content for m in listed.messages]
    assert len(set(texts)) == 12
    for i in range(6):  # a call's messages stay adjacent and in order
        assert texts.index(f"m{i}b") == texts.index(f"m{i}a") + 1


async def test_list_messages_pages(sessions, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    await sessions.AddMessages(add(s.id, *(msg(f"line {i}") for i in range(11))), metadata=md(key))
    seen: list[str] = []
    token = ""
    while True:
        page = await sessions.ListMessages(
            spb.ListMessagesRequest(session_id=s.id, page_size=4, page_token=token),
            metadata=md(key),
        )
        assert page.total_size == 11
        seen += [m.content for m in page.messages]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"line {i}" for i in range(11)]


async def test_process_without_wait_then_poll(sessions, memory_stub, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    await sessions.AddMessages(
        add(
            s.id,
            msg("We are planning the product launch for the third week of June."),
            msg("The launch needs a press kit, a landing page and a demo video.", role="assistant"),
            msg("Marta owns the demo video. Hi!"),
        ),
        metadata=md(key),
    )
    job = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id), metadata=md(key)
    )
    assert job.state in (spb.JOB_STATE_QUEUED, spb.JOB_STATE_RUNNING, spb.JOB_STATE_DONE)
    again = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id), metadata=md(key)
    )
    assert again.id == job.id or again.state == spb.JOB_STATE_DONE

    async def done() -> bool:
        j = await sessions.GetJob(spb.GetJobRequest(id=job.id), metadata=md(key))
        return j.state == spb.JOB_STATE_DONE

    await eventually(done)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sessions.ProcessSession(spb.ProcessSessionRequest(session_id=s.id), metadata=md(key))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    summary = (
        await memory_stub.ListMemories(
            mpb.ListMemoriesRequest(session_id=s.id, types=[mpb.MEMORY_TYPE_SUMMARY]),
            metadata=md(key),
        )
    ).memories[0]
    assert "launch" in summary.content and "Hi!" not in summary.content
    assert (
        summary.event_time
        == (await sessions.ListMessages(spb.ListMessagesRequest(session_id=s.id), metadata=md(key)))
        .messages[-1]
        .create_time
    )
    # the summary is found by search, like any memory
    found = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(
            user_id="u", query="launch plan", types=[mpb.MEMORY_TYPE_SUMMARY]
        ),
        metadata=md(key),
    )
    assert [r.memory.id for r in found.results] == [summary.id]


async def test_failed_step_marks_failed_and_can_be_retried(sessions, new_key, server) -> None:
    _, key = await new_key()
    jobs = server.app.conversations.jobs

    class Boom:
        name = "boom"

        async def run(self, work: object) -> None:
            raise RuntimeError("step exploded")

    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    await sessions.AddMessages(add(s.id, msg("hello there my friend")), metadata=md(key))
    steps = jobs.steps
    jobs.steps = [*steps, Boom()]
    try:
        job = await sessions.ProcessSession(
            spb.ProcessSessionRequest(session_id=s.id, wait=True), metadata=md(key)
        )
    finally:
        jobs.steps = steps
    assert job.state == spb.JOB_STATE_FAILED and "boom: step exploded" in job.error
    failed = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert failed.status == spb.SESSION_STATUS_FAILED
    # a failed session still takes messages and can be processed again
    await sessions.AddMessages(add(s.id, msg("one more message here")), metadata=md(key))
    job2 = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id, wait=True), metadata=md(key)
    )
    assert job2.state == spb.JOB_STATE_DONE and job2.id != job.id


async def test_empty_session_processes(sessions, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    job = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id, wait=True), metadata=md(key)
    )
    assert job.state == spb.JOB_STATE_DONE


async def test_link_memory(sessions, memory_stub, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    m = await memory_stub.CreateMemory(mem("u", "Prefers email"), metadata=md(key))
    linked = await sessions.LinkMemory(
        spb.LinkMemoryRequest(session_id=s.id, memory_id=m.id), metadata=md(key)
    )
    assert linked.session_id == s.id and linked.content == m.content and linked.version == 1
    in_session = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(session_id=s.id), metadata=md(key)
    )
    assert [x.id for x in in_session.memories] == [m.id]
    theirs = await memory_stub.CreateMemory(mem("other-user", "Not yours"), metadata=md(key))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sessions.LinkMemory(
            spb.LinkMemoryRequest(session_id=s.id, memory_id=theirs.id), metadata=md(key)
        )
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sessions.LinkMemory(
            spb.LinkMemoryRequest(session_id=s.id, memory_id="mem_nope"), metadata=md(key)
        )
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_delete_session_takes_what_was_made_from_it(sessions, memory_stub, new_key) -> None:
    _, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    keep = await sessions.CreateSession(new_session("u"), metadata=md(key))
    added = await sessions.AddMessages(
        add(s.id, msg("My passport expires in March."), msg("Renew it in January.")),
        metadata=md(key),
    )
    await sessions.AddMessages(add(keep.id, msg("Unrelated and kept")), metadata=md(key))
    linked = await memory_stub.CreateMemory(mem("u", "Linked, not made here"), metadata=md(key))
    await sessions.LinkMemory(
        spb.LinkMemoryRequest(session_id=s.id, memory_id=linked.id), metadata=md(key)
    )
    job = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id, wait=True), metadata=md(key)
    )
    await sessions.DeleteSession(spb.DeleteSessionRequest(id=s.id), metadata=md(key))
    for call in (
        sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key)),
        sessions.ListMessages(spb.ListMessagesRequest(session_id=s.id), metadata=md(key)),
        sessions.GetJob(spb.GetJobRequest(id=job.id), metadata=md(key)),
        sessions.DeleteSession(spb.DeleteSessionRequest(id=s.id), metadata=md(key)),
        memory_stub.GetMemory(
            mpb.GetMemoryRequest(id=added.messages[0].memory_id), metadata=md(key)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    left = await memory_stub.ListMemories(mpb.ListMemoriesRequest(user_id="u"), metadata=md(key))
    assert sorted(m.content for m in left.memories) == [
        "Linked, not made here",
        "Unrelated and kept",
    ]
    unlinked = await memory_stub.GetMemory(mpb.GetMemoryRequest(id=linked.id), metadata=md(key))
    assert unlinked.session_id == ""
    found = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(user_id="u", query="passport renewal"), metadata=md(key)
    )
    assert all("passport" not in r.memory.content for r in found.results)


async def test_delete_session_runs_the_registered_cleanups_and_a_failing_one_keeps_it(
    sessions, new_key, server
) -> None:
    """What other packages made of a session goes through their `on_delete` cleanups (chat's is
    in tests/api/test_chat.py), before the session's row: a cleanup that fails leaves the
    session, and deleting it again completes."""
    project, key = await new_key()
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    other = await sessions.CreateSession(new_session("u"), metadata=md(key))
    await sessions.AddMessages(add(s.id, msg("Delete me, eventually.")), metadata=md(key))
    calls: list[tuple[str, str]] = []
    failing = {s.id}

    async def cleanup(project_id: str, session_id: str) -> None:
        calls.append((project_id, session_id))
        if session_id in failing:
            raise Unavailable("cleanup store unavailable", reason="TEST_CLEANUP_FAILED")

    server.app.conversations.sessions.on_delete(cleanup)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sessions.DeleteSession(spb.DeleteSessionRequest(id=s.id), metadata=md(key))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert calls == [(project, s.id)]
    still = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert still.id == s.id
    failing.clear()
    await sessions.DeleteSession(spb.DeleteSessionRequest(id=s.id), metadata=md(key))
    await sessions.DeleteSession(spb.DeleteSessionRequest(id=other.id), metadata=md(key))
    assert calls == [(project, s.id), (project, s.id), (project, other.id)]
    for gone in (s.id, other.id):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await sessions.GetSession(spb.GetSessionRequest(id=gone), metadata=md(key))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_sweeper_only_takes_idle_sessions(sessions, new_key, server) -> None:
    _, key = await new_key()
    sweeper = server.app.conversations.sweeper
    never = await sessions.CreateSession(new_session("u"), metadata=md(key))
    soon = await sessions.CreateSession(
        new_session("u", auto_process_after=duration_pb2.Duration(nanos=200_000_000)),
        metadata=md(key),
    )
    later = await sessions.CreateSession(
        new_session("u", auto_process_after=duration_pb2.Duration(seconds=3600)),
        metadata=md(key),
    )
    await sessions.AddMessages(add(soon.id, msg("quick chat about gardening")), metadata=md(key))
    await asyncio.sleep(0.3)
    await sweeper.run_once()  # or the background loop got there first: either way it runs once

    async def processed() -> bool:
        got = await sessions.GetSession(spb.GetSessionRequest(id=soon.id), metadata=md(key))
        return got.status == spb.SESSION_STATUS_PROCESSED

    await eventually(processed)
    for sid in (never.id, later.id):
        got = await sessions.GetSession(spb.GetSessionRequest(id=sid), metadata=md(key))
        assert got.status == spb.SESSION_STATUS_ACTIVE


async def test_stale_processing_is_abandoned(sessions, new_key, server) -> None:
    """A session left PROCESSING by a replica that died is failed by the sweeper."""
    project, key = await new_key()
    conv = server.app.conversations
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    store = conv.sweeper._sessions
    await store.claim(
        project,
        s.id,
        ("active",),
        {
            "status": "processing",
            "job_id": "job_dead",
            "update_time": datetime(2020, 1, 1, tzinfo=UTC),
        },
    )
    await conv.sweeper.run_once()
    got = await sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(key))
    assert got.status == spb.SESSION_STATUS_FAILED
