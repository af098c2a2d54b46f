"""Bad input on every UserService / SessionService RPC: INVALID_ARGUMENT with the field path in a
BadRequest violation, and nothing written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import sessions_pb2_grpc, users_pb2_grpc
from memgrpc.v1 import users_pb2 as upb
from tests.convhelpers import add, msg, new_session, new_user
from tests.helpers import md
from tests.memhelpers import details, struct

BIG = {f"k{i}": "v" * 400 for i in range(60)}
BAD_KEY = {"a=b": 1}
Call = Callable[[Any, Any, str], Any]


@pytest.fixture(scope="module")
def users(channel: grpc.aio.Channel) -> users_pb2_grpc.UserServiceStub:
    return users_pb2_grpc.UserServiceStub(channel)


@pytest.fixture(scope="module")
def sessions(channel: grpc.aio.Channel) -> sessions_pb2_grpc.SessionServiceStub:
    return sessions_pb2_grpc.SessionServiceStub(channel)


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


# (name, rpc(users, sessions, session_id) -> awaitable, expected field path)
CASES: list[tuple[str, Call, str]] = [
    ("create user no id", lambda u, s, sid: u.CreateUser(new_user("")), "user.id"),
    ("create user ctrl id", lambda u, s, sid: u.CreateUser(new_user("a\x01b")), "user.id"),
    ("create user long id", lambda u, s, sid: u.CreateUser(new_user("x" * 300)), "user.id"),
    ("create user big meta", lambda u, s, sid: u.CreateUser(new_user("x", BIG)), "user.metadata"),
    ("create user bad key", lambda u, s, sid: u.CreateUser(new_user("x", BAD_KEY)), "user.metadata.a=b"),
    ("get user", lambda u, s, sid: u.GetUser(upb.GetUserRequest(id="")), "id"),
    ("update user no id", lambda u, s, sid: u.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(metadata=struct({"a": 1})))), "user.id"),
    ("update user nothing", lambda u, s, sid: u.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(id="x"))), "user"),
    ("update user bad mask", lambda u, s, sid: u.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(id="x"), update_mask=_mask("create_time"))),
     "update_mask"),
    ("update user bad new id", lambda u, s, sid: u.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(id="x"), new_id="bad\x00")), "new_id"),
    ("update user big meta", lambda u, s, sid: u.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(id="x", metadata=struct(BIG)))), "user.metadata"),
    ("delete user", lambda u, s, sid: u.DeleteUser(upb.DeleteUserRequest(id="")), "id"),
    ("list users size", lambda u, s, sid: u.ListUsers(upb.ListUsersRequest(page_size=-1)),
     "page_size"),
    ("list users token", lambda u, s, sid: u.ListUsers(upb.ListUsersRequest(page_token="zz!")),
     "page_token"),
    ("list users filter", lambda u, s, sid: u.ListUsers(
        upb.ListUsersRequest(metadata_filter=struct(BAD_KEY))), "metadata_filter.a=b"),
    ("recent no user", lambda u, s, sid: u.ListRecentMessages(
        upb.ListRecentMessagesRequest(user_id="")), "user_id"),
    ("recent negative n", lambda u, s, sid: u.ListRecentMessages(
        upb.ListRecentMessagesRequest(user_id="x", n=-1)), "n"),
    ("create session no user", lambda u, s, sid: s.CreateSession(new_session("")),
     "session.user_id"),
    ("create session long title", lambda u, s, sid: s.CreateSession(
        new_session("x", title="t" * 1001)), "session.title"),
    ("create session negative auto", lambda u, s, sid: s.CreateSession(
        new_session("x", auto_process_after=duration_pb2.Duration(seconds=-5))),
     "session.auto_process_after"),
    ("create session zero auto", lambda u, s, sid: s.CreateSession(
        new_session("x", auto_process_after=duration_pb2.Duration())),
     "session.auto_process_after"),
    ("create session big meta", lambda u, s, sid: s.CreateSession(new_session("x", metadata=BIG)),
     "session.metadata"),
    ("get session", lambda u, s, sid: s.GetSession(spb.GetSessionRequest(id="")), "id"),
    ("update session no id", lambda u, s, sid: s.UpdateSession(
        spb.UpdateSessionRequest(session=spb.Session(title="t"))), "session.id"),
    ("update session nothing", lambda u, s, sid: s.UpdateSession(
        spb.UpdateSessionRequest(session=spb.Session(id=sid))), "session"),
    ("update session empty mask", lambda u, s, sid: s.UpdateSession(
        spb.UpdateSessionRequest(session=spb.Session(id=sid), update_mask=_mask())),
     "update_mask"),
    ("update session bad mask", lambda u, s, sid: s.UpdateSession(
        spb.UpdateSessionRequest(session=spb.Session(id=sid), update_mask=_mask("status"))),
     "update_mask"),
    ("delete session", lambda u, s, sid: s.DeleteSession(spb.DeleteSessionRequest(id="")), "id"),
    ("list sessions size", lambda u, s, sid: s.ListSessions(
        spb.ListSessionsRequest(page_size=-3)), "page_size"),
    ("list sessions status 0", lambda u, s, sid: s.ListSessions(
        spb.ListSessionsRequest(statuses=[spb.SESSION_STATUS_UNSPECIFIED])), "statuses[0]"),
    ("list sessions status 99", lambda u, s, sid: s.ListSessions(
        spb.ListSessionsRequest(statuses=[spb.SESSION_STATUS_ACTIVE, 99])), "statuses[1]"),
    ("list sessions user", lambda u, s, sid: s.ListSessions(
        spb.ListSessionsRequest(user_id="\x00")), "user_id"),
    ("list sessions user meta", lambda u, s, sid: s.ListSessions(
        spb.ListSessionsRequest(user_metadata_filter=struct(BAD_KEY))),
     "user_metadata_filter.a=b"),
    ("list sessions token", lambda u, s, sid: s.ListSessions(
        spb.ListSessionsRequest(page_token="not-a-token")), "page_token"),
    ("add no session", lambda u, s, sid: s.AddMessages(add("", msg("hi"))), "session_id"),
    ("add no messages", lambda u, s, sid: s.AddMessages(add(sid)), "messages"),
    ("add too many", lambda u, s, sid: s.AddMessages(add(sid, *[msg("x")] * 1001)), "messages"),
    ("add empty content", lambda u, s, sid: s.AddMessages(
        add(sid, msg("ok"), msg("fine"), msg("  "))), "messages[2].content"),
    ("add huge content", lambda u, s, sid: s.AddMessages(add(sid, msg("x" * 40_000))),
     "messages[0].content"),
    ("add bad role", lambda u, s, sid: s.AddMessages(add(sid, msg("hi", role="us\ner"))),
     "messages[0].role"),
    ("add bad name", lambda u, s, sid: s.AddMessages(add(sid, msg("hi", name="n" * 300))),
     "messages[0].name"),
    ("add bad id", lambda u, s, sid: s.AddMessages(add(sid, msg("hi", id="a\x00"))),
     "messages[0].id"),
    ("add dup ids", lambda u, s, sid: s.AddMessages(
        add(sid, msg("a", id="same"), msg("b", id="same"))), "messages[1].id"),
    ("add big meta", lambda u, s, sid: s.AddMessages(add(sid, msg("hi", metadata=BIG))),
     "messages[0].metadata"),
    ("list messages no session", lambda u, s, sid: s.ListMessages(spb.ListMessagesRequest()),
     "session_id"),
    ("list messages size", lambda u, s, sid: s.ListMessages(
        spb.ListMessagesRequest(session_id=sid, page_size=-1)), "page_size"),
    ("list messages token", lambda u, s, sid: s.ListMessages(
        spb.ListMessagesRequest(session_id=sid, page_token="eyJ4IjoxfQ")), "page_token"),
    ("process no session", lambda u, s, sid: s.ProcessSession(spb.ProcessSessionRequest()),
     "session_id"),
    ("get job", lambda u, s, sid: s.GetJob(spb.GetJobRequest(id="")), "id"),
    ("link no session", lambda u, s, sid: s.LinkMemory(spb.LinkMemoryRequest(memory_id="m")),
     "session_id"),
    ("link no memory", lambda u, s, sid: s.LinkMemory(spb.LinkMemoryRequest(session_id=sid)),
     "memory_id"),
]  # fmt: skip


@pytest.fixture(scope="module")
async def tenant(users, sessions, new_key_module) -> tuple[str, str]:
    """One project with one empty session, shared by every case (each case writes nothing)."""
    _, key = await new_key_module()
    s = await sessions.CreateSession(new_session("x"), metadata=md(key))
    return key, s.id


@pytest.mark.parametrize(("name", "call", "field"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_rejected(
    users, sessions, memory_stub, tenant, name: str, call: Call, field: str
) -> None:
    key, sid = tenant
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call(_Keyed(users, key), _Keyed(sessions, key), sid)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    fields, reason = details(e.value)
    assert field in fields, fields
    assert reason
    # nothing written
    got = await sessions.GetSession(spb.GetSessionRequest(id=sid), metadata=md(key))
    assert got.message_count == 0 and got.status == spb.SESSION_STATUS_ACTIVE
    assert got.title == "" and len(got.metadata) == 0
    listed = await sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(key))
    assert listed.total_size == 1
    assert (await users.ListUsers(upb.ListUsersRequest(), metadata=md(key))).total_size == 1
    mems = await memory_stub.ListMemories(mpb.ListMemoriesRequest(), metadata=md(key))
    assert mems.total_size == 0


class _Keyed:
    """A stub whose calls carry the API key, so the case table stays short."""

    def __init__(self, stub: Any, key: str) -> None:
        self._stub, self._key = stub, key

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        return lambda request: method(request, metadata=md(self._key))


async def test_unknown_ids_are_not_found(users, sessions, tenant) -> None:
    key, _ = tenant
    for call in (
        users.GetUser(upb.GetUserRequest(id="nobody"), metadata=md(key)),
        users.DeleteUser(upb.DeleteUserRequest(id="nobody"), metadata=md(key)),
        users.UpdateUser(
            upb.UpdateUserRequest(user=upb.User(id="nobody", metadata=struct({"a": 1}))),
            metadata=md(key),
        ),
        sessions.GetSession(spb.GetSessionRequest(id="ses_nope"), metadata=md(key)),
        sessions.AddMessages(add("ses_nope", msg("hi")), metadata=md(key)),
        sessions.ListMessages(spb.ListMessagesRequest(session_id="ses_nope"), metadata=md(key)),
        sessions.ProcessSession(spb.ProcessSessionRequest(session_id="ses_nope"), metadata=md(key)),
        sessions.GetJob(spb.GetJobRequest(id="job_nope"), metadata=md(key)),
        sessions.DeleteSession(spb.DeleteSessionRequest(id="ses_nope"), metadata=md(key)),
        sessions.UpdateSession(
            spb.UpdateSessionRequest(session=spb.Session(id="ses_nope", title="t")),
            metadata=md(key),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert details(e.value)[1].endswith("_NOT_FOUND")
