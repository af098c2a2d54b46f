"""client.conflicts (sync and async) and its typed errors (RecallrAI's MergeConflict* names)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from memgrpc.client import (
    AsyncMemgrpcClient,
    ConflictAlreadyResolvedError,
    ConflictInvalidAnswerError,
    ConflictInvalidQuestionsError,
    ConflictMissingAnswersError,
    ConflictNotFoundError,
    FailedPreconditionError,
    InvalidArgumentError,
    MemgrpcClient,
    MergeConflictAlreadyResolvedError,
    MergeConflictError,
    MergeConflictInvalidAnswerError,
    MergeConflictNotFoundError,
    NotFoundError,
)
from memgrpc.core.intelligence.conflicts.answers import BOTH
from memgrpc.core.memory.model import Memory
from tests.client.conftest import FAST
from tests.conftest import NewKey, ServerHandle

MakeClient = Callable[..., MemgrpcClient]


async def _open(server: ServerHandle, project: str, user: str, old: str, new: str) -> str:
    memories = server.app.memories
    m = await memories.create(
        project, Memory(user_id=user, content=old, type="fact", origin="extracted")
    )
    conflict, _ = await server.app.conversations.conflicts.open(
        project,
        user_id=user,
        session_id="",
        new_memory=Memory(user_id=user, content=new, source_message_ids=["msg_1"]),
        conflicting=[(m, "says otherwise")],
        key=f"{user}:{new}",
    )
    return conflict.id


async def test_conflicts_sync(
    server: ServerHandle, new_key: NewKey, make_client: MakeClient
) -> None:
    project, key = await new_key()
    cid = await _open(server, project, "ana", "User is vegetarian.", "User had a steak.")

    def body() -> None:
        with make_client(key) as client:
            listed = client.conflicts.list(user_id="ana", status="pending")
            assert listed["total_size"] == 1
            [c] = listed["conflicts"]
            assert c["id"] == cid and c["status"] == "pending"
            assert c["new_memory"]["content"] == "User had a steak."
            [cm] = c["conflicting_memories"]
            assert cm["reason"] == "says otherwise" and cm["memory"]["merge_conflict_in_progress"]
            [q] = c["clarifying_questions"]
            assert q["options"] == ["User had a steak.", "User is vegetarian.", BOTH]
            assert client.conflicts.get(cid)["id"] == cid

            with pytest.raises(ConflictNotFoundError) as nf:
                client.conflicts.get("cfl_missing")
            assert isinstance(nf.value, NotFoundError) and isinstance(nf.value, MergeConflictError)
            assert nf.value.reason == "CONFLICT_NOT_FOUND"
            with pytest.raises(ConflictInvalidQuestionsError) as iq:
                client.conflicts.resolve(cid, [{"question": "Who?", "answer": "me"}])
            assert iq.value.invalid_questions == ["Who?"]
            assert isinstance(iq.value, InvalidArgumentError)
            with pytest.raises(ConflictMissingAnswersError) as ma:
                client.conflicts.resolve(cid, [])
            assert ma.value.missing_questions == [q["question"]]
            with pytest.raises(MergeConflictInvalidAnswerError) as ia:
                client.conflicts.resolve(cid, [{"question": q["question"], "answer": "Maybe"}])
            assert ia.value.question == q["question"] and ia.value.valid_options == q["options"]
            assert ia.value.field_violations[0]["field"] == "answers[0].answer"
            assert isinstance(ia.value, ConflictInvalidAnswerError)

            done = client.conflicts.resolve(
                cid,
                [{"question": q["question"], "answer": q["options"][0], "message": "new diet"}],
            )
            assert done["status"] == "resolved" and done["resolve_time"]
            assert "new diet" in done["resolution"]
            with pytest.raises(MergeConflictAlreadyResolvedError) as ar:
                client.conflicts.resolve(cid, [{"question": q["question"], "answer": BOTH}])
            assert isinstance(ar.value, FailedPreconditionError)
            assert isinstance(ar.value, ConflictAlreadyResolvedError)
            assert client.conflicts.list(user_id="ana", status="pending")["total_size"] == 0
            assert MergeConflictNotFoundError is ConflictNotFoundError

    await asyncio.to_thread(body)


async def test_conflicts_async(server: ServerHandle, new_key: NewKey) -> None:
    project, key = await new_key()
    cid = await _open(server, project, "bo", "User has a cat.", "User has no pets.")
    async with AsyncMemgrpcClient(server.address, api_key=key, **FAST) as client:
        c = await client.conflicts.get(cid)
        q = c["clarifying_questions"][0]
        done = await client.conflicts.resolve(
            cid, [{"question": q["question"], "answer": BOTH}], request_id="r-1"
        )
        again = await client.conflicts.resolve(
            cid, [{"question": q["question"], "answer": BOTH}], request_id="r-1"
        )
        assert done == again and done["status"] == "resolved"
        listed = await client.conflicts.list({"user_id": "bo", "status": "resolved"})
        assert [x["id"] for x in listed["conflicts"]] == [cid]
        with pytest.raises(InvalidArgumentError) as bad:
            await client.conflicts.list(user_id="")
        assert bad.value.field_violations == [{"field": "user_id", "description": "is required"}]
