"""Helpers for user/session tests: request builders and row counts straight from LanceDB."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import lancedb

from memgrpc.store.filters import Where
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import users_pb2 as upb
from tests.memhelpers import struct

# every table store/owned.py purges (test_purge checks the two lists agree)
USER_TABLES = (
    "memories",
    "memory_versions",
    "messages",
    "sessions",
    "jobs",
    "requests",
    "chat_results",
    "conflicts",
    "agent_states",
    "agent_relations",
    "agent_diary",
    "notifications",
)


def msg(content: str, **kw: Any) -> spb.Message:
    if "metadata" in kw:
        kw["metadata"] = struct(kw["metadata"])
    return spb.Message(content=content, **kw)


def new_session(user_id: str, **kw: Any) -> spb.CreateSessionRequest:
    request_id = kw.pop("request_id", "")
    if "metadata" in kw:
        kw["metadata"] = struct(kw["metadata"])
    return spb.CreateSessionRequest(
        session=spb.Session(user_id=user_id, **kw), request_id=request_id
    )


def new_user(
    user_id: str, metadata: dict[str, Any] | None = None, request_id: str = ""
) -> upb.CreateUserRequest:
    user = upb.User(id=user_id)
    if metadata is not None:
        user.metadata.CopyFrom(struct(metadata))
    return upb.CreateUserRequest(user=user, request_id=request_id)


def add(session_id: str, *messages: spb.Message, request_id: str = "") -> spb.AddMessagesRequest:
    return spb.AddMessagesRequest(
        session_id=session_id, messages=list(messages), request_id=request_id
    )


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0, every_s: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(every_s)


async def count_rows(data_dir: Path, project_id: str, user_id: str) -> dict[str, int]:
    """Rows of the user per table, read by a fresh LanceDB connection (what is on disk)."""
    db = await lancedb.connect_async(str(data_dir))
    out: dict[str, int] = {}
    for name in USER_TABLES:
        tbl = await db.open_table(name)
        where = Where().eq("project_id", project_id).eq("user_id", user_id)
        out[name] = int(await tbl.count_rows(str(where)))
    users = await db.open_table("users")
    where = Where().eq("project_id", project_id).eq("id", user_id)
    out["users"] = int(await users.count_rows(str(where)))
    return out
