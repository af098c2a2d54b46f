"""The seeds' flows end to end through the generated stubs: GUMem quickstart, RecallrAI."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import sessions_pb2_grpc, users_pb2_grpc
from memgrpc.v1 import users_pb2 as upb
from tests.convhelpers import add, eventually, msg, new_session, new_user
from tests.helpers import md
from tests.memhelpers import details, struct


@pytest.fixture(scope="module")
def users(channel: grpc.aio.Channel) -> users_pb2_grpc.UserServiceStub:
    return users_pb2_grpc.UserServiceStub(channel)


@pytest.fixture(scope="module")
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


async def test_gumem_quickstart(sessions, memory_stub, new_key) -> None:
    _, key = await new_key()
    session = await sessions.CreateSession(
        new_session("user_123", title="Team scheduling session"), metadata=md(key)
    )
    assert session.id.startswith("ses_")
    assert session.status == spb.SESSION_STATUS_ACTIVE
    added = await sessions.AddMessages(
        add(
            session.id,
            msg(
                "For team scheduling, use Berlin when I mention Europe "
                "and Toronto when I mention the Americas.",
                role="user",
            ),
            msg(
                "Got it. I will use Berlin for Europe scheduling "
                "and Toronto for Americas scheduling.",
                role="assistant",
            ),
            msg("Also, my favourite pizza topping is mushrooms.", role="user"),
        ),
        metadata=md(key),
    )
    assert [m.role for m in added.messages] == ["user", "assistant", "user"]
    assert all(m.memory_id.startswith("mem_") and m.id.startswith("msg_") for m in added.messages)
    # searchable as soon as AddMessages returns
    found = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(
            user_id="user_123", query="which city should be used for Europe team scheduling"
        ),
        metadata=md(key),
    )
    top = found.results[0].memory
    assert top.id == added.messages[0].memory_id
    assert "Berlin" in top.content
    assert top.type == mpb.MEMORY_TYPE_MESSAGE
    assert top.session_id == session.id
    assert list(top.source_message_ids) == [added.messages[0].id]
    assert top.speaker == "user"


async def test_recallrai_flow(users, sessions, memory_stub, new_key, server) -> None:
    _, key = await new_key()
    # users: create with metadata, duplicate, get, update + rename, list by metadata
    u = await users.CreateUser(new_user("user123", {"name": "John Doe"}), metadata=md(key))
    assert u.metadata == struct({"name": "John Doe"})
    assert u.create_time.seconds > 0 and u.last_active_time == u.create_time
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.CreateUser(new_user("user123"), metadata=md(key))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details(e.value)[1] == "USER_ALREADY_EXISTS"

    chat = await sessions.CreateSession(
        new_session(
            "user123",
            metadata={"type": "chat"},
            auto_process_after=duration_pb2.Duration(seconds=600),
        ),
        metadata=md(key),
    )
    await sessions.AddMessages(
        add(
            chat.id,
            msg("Hello! I am allergic to peanuts and I live in Lisbon.", role="user"),
            msg("Noted: a peanut allergy, and Lisbon as your home.", role="assistant"),
        ),
        metadata=md(key),
    )
    renamed = await users.UpdateUser(
        upb.UpdateUserRequest(
            user=upb.User(id="user123", metadata=struct({"name": "John Doe", "role": "admin"})),
            new_id="john_doe",
        ),
        metadata=md(key),
    )
    assert renamed.id == "john_doe" and renamed.metadata["role"] == "admin"
    assert renamed.create_time == u.create_time
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await users.GetUser(upb.GetUserRequest(id="user123"), metadata=md(key))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # the rename carried the session, its messages and their memories along
    moved = await sessions.GetSession(spb.GetSessionRequest(id=chat.id), metadata=md(key))
    assert moved.user_id == "john_doe" and moved.message_count == 2
    found = await memory_stub.SearchMemories(
        mpb.SearchMemoriesRequest(user_id="john_doe", query="peanut allergy"), metadata=md(key)
    )
    assert len(found.results) == 2 and "peanut" in found.results[0].memory.content
    old = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(user_id="user123"), metadata=md(key)
    )
    assert old.total_size == 0
    await users.CreateUser(new_user("jane", {"role": "member"}), metadata=md(key))
    admins = await users.ListUsers(
        upb.ListUsersRequest(metadata_filter=struct({"role": "admin"})), metadata=md(key)
    )
    assert [x.id for x in admins.users] == ["john_doe"] and admins.total_size == 1

    # sessions with auto_process_after: the sweeper processes the idle one
    server.app.conversations.sweeper.interval_s = 0.2
    idle = await sessions.CreateSession(
        new_session("john_doe", auto_process_after=duration_pb2.Duration(nanos=300_000_000)),
        metadata=md(key),
    )
    await sessions.AddMessages(
        add(idle.id, msg("I will be travelling to Japan next spring for two weeks.")),
        metadata=md(key),
    )

    async def idle_processed() -> bool:
        s = await sessions.GetSession(spb.GetSessionRequest(id=idle.id), metadata=md(key))
        return s.status == spb.SESSION_STATUS_PROCESSED

    await eventually(idle_processed)
    chat_now = await sessions.GetSession(spb.GetSessionRequest(id=chat.id), metadata=md(key))
    assert chat_now.status == spb.SESSION_STATUS_ACTIVE  # 600 s idle not reached

    # list sessions by metadata, by user metadata, by status
    by_meta = await sessions.ListSessions(
        spb.ListSessionsRequest(user_id="john_doe", metadata_filter=struct({"type": "chat"})),
        metadata=md(key),
    )
    assert [s.id for s in by_meta.sessions] == [chat.id]
    by_user_meta = await sessions.ListSessions(
        spb.ListSessionsRequest(user_metadata_filter=struct({"role": "admin"})), metadata=md(key)
    )
    assert {s.id for s in by_user_meta.sessions} == {chat.id, idle.id}
    by_status = await sessions.ListSessions(
        spb.ListSessionsRequest(statuses=[spb.SESSION_STATUS_PROCESSED]), metadata=md(key)
    )
    assert [s.id for s in by_status.sessions] == [idle.id]

    # more messages, then process(wait): PROCESSED with a summary memory
    await sessions.AddMessages(
        add(
            chat.id,
            msg("My sister Ana is visiting me in Lisbon in August.", role="user"),
            msg("Lovely! Do you want restaurant ideas without peanuts?", role="assistant"),
            msg("Yes please, somewhere near the river would be great.", role="user"),
        ),
        metadata=md(key),
    )
    job = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=chat.id, wait=True), metadata=md(key)
    )
    assert job.id.startswith("job_") and job.state == spb.JOB_STATE_DONE and not job.error
    assert job.kind == "process_session" and job.session_id == chat.id
    got_job = await sessions.GetJob(spb.GetJobRequest(id=job.id), metadata=md(key))
    assert got_job.state == spb.JOB_STATE_DONE
    processed = await sessions.GetSession(spb.GetSessionRequest(id=chat.id), metadata=md(key))
    assert processed.status == spb.SESSION_STATUS_PROCESSED
    summaries = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(session_id=chat.id, types=[mpb.MEMORY_TYPE_SUMMARY]),
        metadata=md(key),
    )
    assert summaries.total_size == 1
    summary = summaries.memories[0]
    assert summary.user_id == "john_doe" and summary.content
    assert len(summary.content.split()) <= 130
    assert summary.source_message_ids

    # adding afterwards is refused
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sessions.AddMessages(add(chat.id, msg("one more thing")), metadata=md(key))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(e.value)[1] == "SESSION_PROCESSED"

    # messages paged in session order
    page1 = await sessions.ListMessages(
        spb.ListMessagesRequest(session_id=chat.id, page_size=3), metadata=md(key)
    )
    page2 = await sessions.ListMessages(
        spb.ListMessagesRequest(session_id=chat.id, page_size=3, page_token=page1.next_page_token),
        metadata=md(key),
    )
    assert page1.total_size == 5 and page2.next_page_token == ""
    texts = [m.content for m in [*page1.messages, *page2.messages]]
    assert texts[0].startswith("Hello!") and texts[-1].startswith("Yes please")

    # the last n messages across the user's sessions, newest last
    recent = await users.ListRecentMessages(
        upb.ListRecentMessagesRequest(user_id="john_doe", n=2), metadata=md(key)
    )
    assert [m.content for m in recent.messages] == texts[-2:]
    recent = await users.ListRecentMessages(
        upb.ListRecentMessagesRequest(user_id="john_doe"), metadata=md(key)
    )
    assert len(recent.messages) == 6
    assert {m.session_id for m in recent.messages} == {chat.id, idle.id}

    # and the user's activity time moved
    john = await users.GetUser(upb.GetUserRequest(id="john_doe"), metadata=md(key))
    assert john.last_active_time.ToDatetime() > u.create_time.ToDatetime()
    mask = field_mask_pb2.FieldMask(paths=["metadata"])
    cleared = await users.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(id="john_doe"), update_mask=mask), metadata=md(key)
    )
    assert len(cleared.metadata) == 0
