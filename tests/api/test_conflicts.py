"""ConflictService through the real server: open (as reconciliation does, in-process), list, get,
resolve with each outcome, RecallrAI's errors, bad input, tenancy, purge and rename."""

from __future__ import annotations

import json
import secrets
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from memgrpc.core.intelligence.conflicts.answers import BOTH
from memgrpc.core.intelligence.conflicts.rows import Conflict
from memgrpc.core.kernel.errors import DomainError, InvalidArgument
from memgrpc.core.memory.model import Memory, Patch
from memgrpc.store.filters import Where
from memgrpc.v1 import conflicts_pb2 as pb
from memgrpc.v1 import conflicts_pb2_grpc, users_pb2_grpc
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import users_pb2 as upb
from tests.conftest import NewKey, ServerHandle
from tests.convhelpers import count_rows
from tests.helpers import md
from tests.memhelpers import details, mem


@pytest.fixture(scope="module")
def conflicts(channel: grpc.aio.Channel) -> conflicts_pb2_grpc.ConflictServiceStub:
    return conflicts_pb2_grpc.ConflictServiceStub(channel)


@pytest.fixture(scope="module")
def users(channel: grpc.aio.Channel) -> users_pb2_grpc.UserServiceStub:
    return users_pb2_grpc.UserServiceStub(channel)


async def extracted(
    server: ServerHandle, project: str, user: str, content: str, **kw: Any
) -> Memory:
    """A fact as extraction writes it (origin extracted)."""
    m = Memory(user_id=user, content=content, type="fact", origin="extracted", **kw)
    return await server.app.memories.create(project, m)


async def open_conflict(
    server: ServerHandle,
    project: str,
    user: str,
    new: str,
    old: list[Memory],
    *,
    key: str = "",
    **kw: Any,
) -> tuple[Conflict, bool]:
    """What reconciliation does on a contradiction."""
    new_memory = Memory(
        user_id=user, content=new, type="fact", origin="extracted",
        source_message_ids=["msg_new"], **kw,
    )  # fmt: skip
    return await server.app.conversations.conflicts.open(
        project,
        user_id=user,
        session_id="ses_1",
        new_memory=new_memory,
        conflicting=[(m, f"contradicts {m.content!r}") for m in old],
        key=key or secrets.token_hex(8),
    )


def info(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], dict[str, str]]:
    """(ErrorInfo reason, its metadata, BadRequest violations field -> description)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    reason, meta, violations = "", {}, {}
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            ei = error_details_pb2.ErrorInfo()
            d.Unpack(ei)
            reason, meta = ei.reason, dict(ei.metadata)
        elif d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            violations = {v.field: v.description for v in br.field_violations}
    return reason, meta, violations


def answer(c: pb.Conflict, option: str, message: str = "") -> pb.ResolveConflictRequest:
    q = c.clarifying_questions[0]
    return pb.ResolveConflictRequest(
        id=c.id, answers=[pb.ConflictAnswer(question=q.question, answer=option, message=message)]
    )


async def get(stub: conflicts_pb2_grpc.ConflictServiceStub, key: str, cid: str) -> pb.Conflict:
    c: pb.Conflict = await stub.GetConflict(pb.GetConflictRequest(id=cid), metadata=md(key))
    return c


async def flagged(memory_stub: Any, key: str, memory_id: str) -> bool:
    m = await memory_stub.GetMemory(mpb.GetMemoryRequest(id=memory_id), metadata=md(key))
    return bool(m.merge_conflict_in_progress)


async def test_open_is_idempotent_and_flags_the_memories(
    server: ServerHandle, new_key: NewKey, conflicts, memory_stub
) -> None:
    project, key = await new_key()
    old = await extracted(server, project, "ana", "User is vegetarian.", profile_slot="diet")
    assert not await flagged(memory_stub, key, old.id)

    first, created = await open_conflict(
        server, project, "ana", "User had a great steak.", [old], key="k1"
    )
    assert created and first.id.startswith("cfl_") and first.status == "pending"
    again, created_again = await open_conflict(
        server, project, "ana", "User had a great steak.", [old], key="k1"
    )
    assert not created_again and again.id == first.id
    other, created_other = await open_conflict(
        server, project, "ana", "User had a great steak.", [old], key="k2"
    )
    assert created_other and other.id != first.id

    got = await get(conflicts, key, first.id)
    assert got.status == pb.CONFLICT_STATUS_PENDING and got.user_id == "ana"
    assert got.session_id == "ses_1"
    assert got.new_memory.content == "User had a great steak."
    assert got.new_memory.origin == mpb.MEMORY_ORIGIN_EXTRACTED
    [cm] = got.conflicting_memories
    assert cm.memory.id == old.id and cm.memory.merge_conflict_in_progress
    assert "vegetarian" in cm.reason
    [q] = got.clarifying_questions
    assert "User is vegetarian." in q.question and "User had a great steak." in q.question
    assert list(q.options) == ["User had a great steak.", "User is vegetarian.", BOTH]
    assert got.HasField("create_time") and not got.HasField("resolve_time")
    assert await flagged(memory_stub, key, old.id)
    # the new fact is not a memory yet: recall does not see it
    listed = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(user_id="ana"), metadata=md(key)
    )
    assert [m.id for m in listed.memories] == [old.id]


async def test_a_rerun_completes_the_flags(
    server: ServerHandle, new_key: NewKey, memory_stub
) -> None:
    """A crash after the conflict row and before the flags: the re-run sets them."""
    project, key = await new_key()
    old = await extracted(server, project, "bo", "User lives in Berlin.")
    c, _ = await open_conflict(server, project, "bo", "User lives in Lima.", [old], key="k")
    await server.app.memories.update(  # undo the flag, as if the crash came before it
        project, _flag_patch(old.id, ""), internal=True
    )
    assert not await flagged(memory_stub, key, old.id)
    again, created = await open_conflict(
        server, project, "bo", "User lives in Lima.", [old], key="k"
    )
    assert not created and again.id == c.id
    assert await flagged(memory_stub, key, old.id)


def _flag_patch(memory_id: str, conflict_id: str) -> Patch:
    return Patch(Memory(id=memory_id, conflict_id=conflict_id), frozenset({"conflict_id"}))


async def test_choosing_the_new_fact_versions_the_old_one(
    server: ServerHandle, new_key: NewKey, conflicts, memory_stub
) -> None:
    project, key = await new_key()
    old = await extracted(
        server, project, "cy", "User is vegetarian.", profile_slot="diet",
        source_message_ids=["msg_old"], categories=["health"],
    )  # fmt: skip
    c, _ = await open_conflict(
        server, project, "cy", "User eats meat again.", [old],
        profile_slot="diet", categories=["preferences"], entities=["meat"],
    )  # fmt: skip
    pending = await get(conflicts, key, c.id)
    done = await conflicts.ResolveConflict(
        answer(pending, "User eats meat again.", "I changed my diet last year"), metadata=md(key)
    )
    assert done.status == pb.CONFLICT_STATUS_RESOLVED and done.HasField("resolve_time")
    assert f"version 2 of {old.id}" in done.resolution
    assert "I changed my diet last year" in done.resolution

    m = await memory_stub.GetMemory(mpb.GetMemoryRequest(id=old.id), metadata=md(key))
    assert m.content == "User eats meat again." and m.version == 2
    assert not m.merge_conflict_in_progress
    assert list(m.source_message_ids) == ["msg_old", "msg_new"]
    assert list(m.categories) == ["preferences"] and list(m.entities) == ["meat"]
    assert m.profile_slot == "diet" and m.origin == mpb.MEMORY_ORIGIN_EXTRACTED
    versions = await memory_stub.ListMemoryVersions(
        mpb.ListMemoryVersionsRequest(id=old.id), metadata=md(key)
    )
    assert [(v.version, v.content) for v in versions.versions] == [
        (2, "User eats meat again."),
        (1, "User is vegetarian."),
    ]
    assert versions.versions[1].expire_reason == "RESOLVED"
    # no second memory was written
    listed = await memory_stub.ListMemories(mpb.ListMemoriesRequest(user_id="cy"), metadata=md(key))
    assert [x.id for x in listed.memories] == [old.id]


async def test_choosing_the_new_fact_over_a_client_memory_creates_it(
    server: ServerHandle, new_key: NewKey, conflicts, memory_stub
) -> None:
    project, key = await new_key()
    old = await memory_stub.CreateMemory(mem("di", "Di lives in Oslo."), metadata=md(key))
    c, _ = await open_conflict(
        server,
        project,
        "di",
        "User lives in Rome.",
        [await server.app.memories.get(project, old.id)],
    )
    done = await conflicts.ResolveConflict(
        answer(await get(conflicts, key, c.id), "User lives in Rome."), metadata=md(key)
    )
    assert done.status == pb.CONFLICT_STATUS_RESOLVED
    kept = await memory_stub.GetMemory(mpb.GetMemoryRequest(id=old.id), metadata=md(key))
    assert kept.content == "Di lives in Oslo." and kept.version == 1
    assert not kept.merge_conflict_in_progress
    listed = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(user_id="di", origins=[mpb.MEMORY_ORIGIN_EXTRACTED]),
        metadata=md(key),
    )
    [made] = listed.memories
    assert made.content == "User lives in Rome." and made.id in done.resolution
    assert list(made.source_message_ids) == ["msg_new"]


async def test_choosing_the_old_fact_drops_the_new_one(
    server: ServerHandle, new_key: NewKey, conflicts, memory_stub
) -> None:
    project, key = await new_key()
    old = await extracted(server, project, "ed", "User has a cat.")
    c, _ = await open_conflict(server, project, "ed", "User has no pets.", [old])
    done = await conflicts.ResolveConflict(
        answer(await get(conflicts, key, c.id), "User has a cat."), metadata=md(key)
    )
    assert done.status == pb.CONFLICT_STATUS_RESOLVED and "dropped the new fact" in done.resolution
    assert done.new_memory.content == "User has no pets."  # kept by the conflict, not lost
    m = await memory_stub.GetMemory(mpb.GetMemoryRequest(id=old.id), metadata=md(key))
    assert m.content == "User has a cat." and m.version == 1 and not m.merge_conflict_in_progress
    listed = await memory_stub.ListMemories(mpb.ListMemoriesRequest(user_id="ed"), metadata=md(key))
    assert [x.id for x in listed.memories] == [old.id]


async def test_choosing_both_keeps_both(
    server: ServerHandle, new_key: NewKey, conflicts, memory_stub
) -> None:
    project, key = await new_key()
    old = await extracted(server, project, "fa", "User lives in Paris.", profile_slot="location")
    c, _ = await open_conflict(
        server, project, "fa", "User lives in Lyon.", [old], profile_slot="location"
    )
    done = await conflicts.ResolveConflict(
        answer(await get(conflicts, key, c.id), BOTH), metadata=md(key)
    )
    assert done.status == pb.CONFLICT_STATUS_RESOLVED and "kept both" in done.resolution
    listed = await memory_stub.ListMemories(mpb.ListMemoriesRequest(user_id="fa"), metadata=md(key))
    by_content = {x.content: x for x in listed.memories}
    assert set(by_content) == {"User lives in Paris.", "User lives in Lyon."}
    assert by_content["User lives in Paris."].version == 1
    assert not any(x.merge_conflict_in_progress for x in listed.memories)
    # a single-valued slot stays backed by one memory
    assert by_content["User lives in Paris."].profile_slot == "location"
    assert by_content["User lives in Lyon."].profile_slot == ""


async def test_resolving_twice_and_request_id_replay(
    server: ServerHandle, new_key: NewKey, conflicts
) -> None:
    project, key = await new_key()
    old = await extracted(server, project, "gu", "User drinks coffee.")
    c, _ = await open_conflict(server, project, "gu", "User never drinks coffee.", [old])
    req = answer(await get(conflicts, key, c.id), "User drinks coffee.")
    req.request_id = "resolve-1"
    first = await conflicts.ResolveConflict(req, metadata=md(key))
    assert await conflicts.ResolveConflict(req, metadata=md(key)) == first  # replayed
    req.request_id = "resolve-2"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await conflicts.ResolveConflict(req, metadata=md(key))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info(e.value)[0] == "CONFLICT_ALREADY_RESOLVED"
    # re-opening the same key after resolution finds it and flags nothing again
    again, created = await open_conflict(server, project, "gu", "x", [old], key="same")
    assert created
    resolved_again, created = await open_conflict(server, project, "gu", "x", [old], key="same")
    assert not created and resolved_again.id == again.id


async def test_resolve_errors_write_nothing(
    server: ServerHandle, new_key: NewKey, conflicts, memory_stub
) -> None:
    project, key = await new_key()
    old = await extracted(server, project, "ho", "User is single.")
    c, _ = await open_conflict(server, project, "ho", "User is married.", [old])
    pending = await get(conflicts, key, c.id)
    q = pending.clarifying_questions[0]

    async def fails(req: pb.ResolveConflictRequest) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await conflicts.ResolveConflict(req, metadata=md(key))
        return e.value

    err = await fails(
        pb.ResolveConflictRequest(id="cfl_nope", answers=list(answer(pending, "x").answers))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert info(err)[:2] == ("CONFLICT_NOT_FOUND", {"id": "cfl_nope"})

    err = await fails(
        pb.ResolveConflictRequest(
            id=c.id,
            answers=[
                pb.ConflictAnswer(question=q.question, answer=q.options[0]),
                pb.ConflictAnswer(question="Are you sure?", answer="yes"),
            ],
        )
    )
    reason, meta, violations = info(err)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason == "CONFLICT_INVALID_QUESTIONS"
    assert json.loads(meta["invalid_questions"]) == ["Are you sure?"]
    assert set(violations) == {"answers[1].question"}

    err = await fails(pb.ResolveConflictRequest(id=c.id, answers=[]))
    reason, meta, violations = info(err)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and reason == "CONFLICT_MISSING_ANSWERS"
    assert json.loads(meta["missing_questions"]) == [q.question]
    assert set(violations) == {"answers"}

    err = await fails(answer(pending, "Maybe"))
    reason, meta, violations = info(err)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and reason == "CONFLICT_INVALID_ANSWER"
    assert meta["question"] == q.question
    assert json.loads(meta["valid_options"]) == list(q.options)
    assert set(violations) == {"answers[0].answer"}
    assert all(o in violations["answers[0].answer"] for o in q.options)

    after = await get(conflicts, key, c.id)
    assert after.status == pb.CONFLICT_STATUS_PENDING and after.resolution == ""
    assert await flagged(memory_stub, key, old.id)


BAD_LIST = [
    (pb.ListConflictsRequest(user_id=""), "user_id"),
    (pb.ListConflictsRequest(user_id="u", status=99), "status"),  # type: ignore[arg-type]
    (pb.ListConflictsRequest(user_id="u", page_size=-1), "page_size"),
    (pb.ListConflictsRequest(user_id="u", page_token="garbage"), "page_token"),
    (pb.ListConflictsRequest(user_id="a\x01b"), "user_id"),
]


@pytest.mark.parametrize(("request_", "field"), BAD_LIST)
async def test_list_bad_input(conflicts, new_key: NewKey, request_, field: str) -> None:
    _, key = await new_key()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await conflicts.ListConflicts(request_, metadata=md(key))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(e.value) == ({field}, "INVALID_ARGUMENT")


async def test_get_and_resolve_bad_input(
    server: ServerHandle, new_key: NewKey, conflicts, memory_stub
) -> None:
    project, key = await new_key()
    old = await extracted(server, project, "ix", "User likes tea.")
    c, _ = await open_conflict(server, project, "ix", "User hates tea.", [old])
    q = c.questions[0].question
    cases = [
        (conflicts.GetConflict(pb.GetConflictRequest(id=""), metadata=md(key)), {"id"}),
        (conflicts.ResolveConflict(pb.ResolveConflictRequest(id=""), metadata=md(key)), {"id"}),
        (
            conflicts.ResolveConflict(
                pb.ResolveConflictRequest(id=c.id, answers=[pb.ConflictAnswer()]),
                metadata=md(key),
            ),
            {"answers[0].question", "answers[0].answer"},
        ),
        (
            conflicts.ResolveConflict(
                pb.ResolveConflictRequest(
                    id=c.id,
                    answers=[
                        pb.ConflictAnswer(question=q, answer="User hates tea."),
                        pb.ConflictAnswer(question=q, answer="User likes tea."),
                    ],
                ),
                metadata=md(key),
            ),
            {"answers[1].question"},
        ),
        (
            conflicts.ResolveConflict(
                pb.ResolveConflictRequest(
                    id=c.id,
                    answers=[
                        pb.ConflictAnswer(question=q, answer="User hates tea.", message="m" * 2001)
                    ],
                ),
                metadata=md(key),
            ),
            {"answers[0].message"},
        ),
    ]
    for call, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(e.value) == (fields, "INVALID_ARGUMENT")
    after = await get(conflicts, key, c.id)
    assert after.status == pb.CONFLICT_STATUS_PENDING and await flagged(memory_stub, key, old.id)
    m = await memory_stub.GetMemory(mpb.GetMemoryRequest(id=old.id), metadata=md(key))
    assert m.content == "User likes tea."


async def test_list_newest_first_paged_and_filtered(
    server: ServerHandle, new_key: NewKey, conflicts
) -> None:
    project, key = await new_key()
    old = await extracted(server, project, "jo", "User works at Acme.")
    opened = [
        (await open_conflict(server, project, "jo", f"User works at Corp {i}.", [old]))[0]
        for i in range(3)
    ]
    page1 = await conflicts.ListConflicts(
        pb.ListConflictsRequest(user_id="jo", page_size=2), metadata=md(key)
    )
    assert page1.total_size == 3 and page1.next_page_token
    page2 = await conflicts.ListConflicts(
        pb.ListConflictsRequest(user_id="jo", page_size=2, page_token=page1.next_page_token),
        metadata=md(key),
    )
    ids = [c.id for c in page1.conflicts] + [c.id for c in page2.conflicts]
    assert ids == [c.id for c in reversed(opened)] and not page2.next_page_token

    newest = page1.conflicts[0]
    await conflicts.ResolveConflict(
        answer(newest, newest.clarifying_questions[0].options[1]), metadata=md(key)
    )
    resolved = await conflicts.ListConflicts(
        pb.ListConflictsRequest(user_id="jo", status=pb.CONFLICT_STATUS_RESOLVED), metadata=md(key)
    )
    assert [c.id for c in resolved.conflicts] == [newest.id]
    pending = await conflicts.ListConflicts(
        pb.ListConflictsRequest(user_id="jo", status=pb.CONFLICT_STATUS_PENDING), metadata=md(key)
    )
    assert {c.id for c in pending.conflicts} == {opened[0].id, opened[1].id}
    # the memory is still in the two pending conflicts: it stays flagged
    assert all(
        c.conflicting_memories[0].memory.merge_conflict_in_progress for c in pending.conflicts
    )
    for c in pending.conflicts:
        await conflicts.ResolveConflict(answer(c, BOTH), metadata=md(key))
    got = await get(conflicts, key, opened[0].id)
    assert not got.conflicting_memories[0].memory.merge_conflict_in_progress


async def test_project_isolation(server: ServerHandle, new_key: NewKey, conflicts) -> None:
    project, key = await new_key()
    other_project, other_key = await new_key()
    old = await extracted(server, project, "ka", "User is 30.")
    c, _ = await open_conflict(server, project, "ka", "User is 40.", [old])
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await get(conflicts, other_key, c.id)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and info(e.value)[0] == "CONFLICT_NOT_FOUND"
    pending = await get(conflicts, key, c.id)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await conflicts.ResolveConflict(answer(pending, "User is 40."), metadata=md(other_key))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await conflicts.ListConflicts(
        pb.ListConflictsRequest(user_id="ka"), metadata=md(other_key)
    )
    assert listed.total_size == 0 and not listed.conflicts
    assert (await get(conflicts, key, c.id)).status == pb.CONFLICT_STATUS_PENDING
    # the same key in another project is another conflict
    mine, created = await open_conflict(
        server, other_project, "ka", "User is 40.", [old], key="same"
    )
    theirs, created_too = await open_conflict(
        server, project, "ka", "User is 40.", [old], key="same"
    )
    assert created and created_too and mine.id != theirs.id


async def test_scopes(server: ServerHandle, new_key: NewKey, conflicts) -> None:
    project, _ = await new_key()
    _, reader = await new_key(scopes=("read",), project_id=project)
    old = await extracted(server, project, "la", "User likes jazz.")
    c, _ = await open_conflict(server, project, "la", "User hates jazz.", [old])
    pending = await get(conflicts, reader, c.id)
    listed = await conflicts.ListConflicts(
        pb.ListConflictsRequest(user_id="la"), metadata=md(reader)
    )
    assert [x.id for x in listed.conflicts] == [c.id]
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await conflicts.ResolveConflict(answer(pending, BOTH), metadata=md(reader))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_delete_user_purges_conflicts(
    server: ServerHandle, new_key: NewKey, conflicts, users
) -> None:
    project, key = await new_key()
    gone = await extracted(server, project, "gone", "User is a nurse.")
    stays = await extracted(server, project, "stays", "User is a pilot.")
    c, _ = await open_conflict(server, project, "gone", "User is a teacher.", [gone])
    kept, _ = await open_conflict(server, project, "stays", "User is a chef.", [stays])
    await users.DeleteUser(upb.DeleteUserRequest(id="gone"), metadata=md(key))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await get(conflicts, key, c.id)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await conflicts.ListConflicts(
        pb.ListConflictsRequest(user_id="gone"), metadata=md(key)
    )
    assert listed.total_size == 0
    assert (await get(conflicts, key, kept.id)).user_id == "stays"
    assert (await _conflict_rows(server, project, "gone")) == 0
    assert (await count_rows(server.data_dir, project, "gone"))["memories"] == 0


async def test_delete_user_with_only_a_conflict(
    server: ServerHandle, new_key: NewKey, conflicts, users, memory_stub
) -> None:
    """A user whose memories are gone but whose conflict is not can still be purged."""
    project, key = await new_key()
    old = await extracted(server, project, "only", "User is tall.")
    await open_conflict(server, project, "only", "User is short.", [old])
    await server.app.memories.delete(project, old.id)
    await server.app.store.writer("users").delete(
        str(Where().eq("project_id", project).eq("id", "only"))
    )
    await users.DeleteUser(upb.DeleteUserRequest(id="only"), metadata=md(key))
    assert await _conflict_rows(server, project, "only") == 0


async def _conflict_rows(server: ServerHandle, project: str, user: str) -> int:
    tbl = server.app.store.table("conflicts")
    return int(await tbl.count_rows(str(Where().eq("project_id", project).eq("user_id", user))))


async def test_rename_carries_conflicts(
    server: ServerHandle, new_key: NewKey, conflicts, users, memory_stub
) -> None:
    project, key = await new_key()
    await users.CreateUser(upb.CreateUserRequest(user=upb.User(id="old-name")), metadata=md(key))
    old = await extracted(server, project, "old-name", "User speaks French.")
    c, _ = await open_conflict(server, project, "old-name", "User speaks no French.", [old])
    await users.UpdateUser(
        upb.UpdateUserRequest(user=upb.User(id="old-name"), new_id="new-name"), metadata=md(key)
    )
    moved = await conflicts.ListConflicts(
        pb.ListConflictsRequest(user_id="new-name"), metadata=md(key)
    )
    [got] = moved.conflicts
    assert got.id == c.id and got.user_id == "new-name" and got.new_memory.user_id == "new-name"
    assert got.conflicting_memories[0].memory.user_id == "new-name"
    left = await conflicts.ListConflicts(
        pb.ListConflictsRequest(user_id="old-name"), metadata=md(key)
    )
    assert left.total_size == 0
    done = await conflicts.ResolveConflict(answer(got, BOTH), metadata=md(key))
    assert done.status == pb.CONFLICT_STATUS_RESOLVED
    listed = await memory_stub.ListMemories(
        mpb.ListMemoriesRequest(user_id="new-name"), metadata=md(key)
    )
    assert {m.content for m in listed.memories} == {"User speaks French.", "User speaks no French."}


async def test_a_deleted_conflicting_memory_is_reported_missing(
    server: ServerHandle, new_key: NewKey, conflicts, memory_stub
) -> None:
    project, key = await new_key()
    old = await extracted(server, project, "ma", "User owns a bike.")
    c, _ = await open_conflict(server, project, "ma", "User owns no bike.", [old])
    await memory_stub.DeleteMemory(mpb.DeleteMemoryRequest(id=old.id), metadata=md(key))
    got = await get(conflicts, key, c.id)
    [cm] = got.conflicting_memories
    assert cm.memory.id == old.id and cm.memory.content == "User owns a bike."
    assert "deleted" in cm.reason and cm.memory.version == 0
    done = await conflicts.ResolveConflict(answer(got, "User owns no bike."), metadata=md(key))
    assert done.status == pb.CONFLICT_STATUS_RESOLVED and "new memory" in done.resolution
    listed = await memory_stub.ListMemories(mpb.ListMemoriesRequest(user_id="ma"), metadata=md(key))
    assert [m.content for m in listed.memories] == ["User owns no bike."]


async def test_a_failed_resolution_is_retried(
    server: ServerHandle, new_key: NewKey, conflicts, memory_stub, monkeypatch
) -> None:
    project, key = await new_key()
    old = await extracted(server, project, "ni", "User lives in Kyiv.")
    c, _ = await open_conflict(server, project, "ni", "User lives in Lviv.", [old])
    memories = server.app.memories
    real = memories.update
    calls = {"n": 0}

    async def failing_once(project_id: str, patch: Any, *, internal: bool = False) -> Memory:
        calls["n"] += 1
        if calls["n"] == 1:
            raise DomainError("the store said no", reason="TEST_FAULT")
        return await real(project_id, patch, internal=internal)

    monkeypatch.setattr(memories, "update", failing_once)
    pending = await get(conflicts, key, c.id)
    failed = await conflicts.ResolveConflict(
        answer(pending, "User lives in Lviv."), metadata=md(key)
    )
    assert failed.status == pb.CONFLICT_STATUS_FAILED
    assert "the store said no" in failed.resolution
    assert await flagged(memory_stub, key, old.id)  # still in the conflict
    done = await conflicts.ResolveConflict(answer(pending, "User lives in Lviv."), metadata=md(key))
    assert done.status == pb.CONFLICT_STATUS_RESOLVED
    m = await memory_stub.GetMemory(mpb.GetMemoryRequest(id=old.id), metadata=md(key))
    assert m.content == "User lives in Lviv." and m.version == 2
    assert not m.merge_conflict_in_progress


async def test_open_rejects_bad_input(server: ServerHandle, new_key: NewKey) -> None:
    project, _ = await new_key()
    svc = server.app.conversations.conflicts
    old = await extracted(server, project, "op", "User is calm.")
    with pytest.raises(InvalidArgument) as e:
        await svc.open(
            project, user_id="", session_id="", new_memory=Memory(content=""),
            conflicting=[], key="",
        )  # fmt: skip
    assert {v.field for v in e.value.violations} == {
        "user_id",
        "key",
        "new_memory.content",
        "conflicting",
    }
    with pytest.raises(InvalidArgument) as e:
        await svc.open(
            project, user_id="someone", session_id="", new_memory=Memory(content="x"),
            conflicting=[(old, "r")], key="k",
        )  # fmt: skip
    assert {v.field for v in e.value.violations} == {"conflicting[0].user_id"}
    assert await _conflict_rows(server, project, "someone") == 0


async def _crash_back(server: ServerHandle, project: str, conflict_id: str) -> None:
    """As if the process died after applying the answer, before recording it."""
    where = Where().eq("project_id", project).eq("id", conflict_id)
    await server.app.store.writer("conflicts").update(str(where), {"status": "resolving"})


@pytest.mark.parametrize("choice", ["new", "both"])
async def test_a_resolution_rerun_after_a_crash_writes_nothing_twice(
    server: ServerHandle, new_key: NewKey, conflicts, memory_stub, choice: str
) -> None:
    project, key = await new_key()
    user = f"re-{choice}"
    old = await extracted(server, project, user, "User plays chess.", source_message_ids=["m0"])
    c, _ = await open_conflict(server, project, user, "User plays go.", [old])
    pending = await get(conflicts, key, c.id)
    option = "User plays go." if choice == "new" else BOTH
    await conflicts.ResolveConflict(answer(pending, option), metadata=md(key))
    before = await memory_stub.ListMemories(mpb.ListMemoriesRequest(user_id=user), metadata=md(key))

    await _crash_back(server, project, c.id)
    assert (await get(conflicts, key, c.id)).status == pb.CONFLICT_STATUS_RESOLVING
    done = await conflicts.ResolveConflict(answer(pending, option), metadata=md(key))
    assert done.status == pb.CONFLICT_STATUS_RESOLVED
    after = await memory_stub.ListMemories(mpb.ListMemoriesRequest(user_id=user), metadata=md(key))
    assert sorted((m.id, m.version, tuple(m.source_message_ids)) for m in after.memories) == sorted(
        (m.id, m.version, tuple(m.source_message_ids)) for m in before.memories
    )
    assert len(after.memories) == (1 if choice == "new" else 2)
