"""client.users, client.sessions (Session handles), client.jobs, client.context: sync and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from memgrpc.client import (
    AsyncMemgrpcClient,
    AsyncSession,
    ConflictError,
    MemgrpcClient,
    NotFoundError,
    Session,
)

MakeClient = Callable[..., MemgrpcClient]

TURNS = [
    {
        "role": "user",
        "name": "Dana",
        "content": "For team scheduling, use Berlin when I mention Europe.",
    },
    {"role": "assistant", "content": "Got it: Berlin for Europe scheduling."},
]


async def test_users_sync(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            user = client.users.create("user_1", metadata={"plan": "pro", "seats": 3})
            assert user["id"] == "user_1" and user["metadata"] == {"plan": "pro", "seats": 3}
            assert user["create_time"].endswith("Z")
            with pytest.raises(ConflictError) as info:
                client.users.create({"user_id": "user_1"})
            assert info.value.request_id
            assert client.users.get("user_1")["metadata"]["plan"] == "pro"
            upd = client.users.update("user_1", {"metadata": {"plan": "team"}})
            assert upd["metadata"] == {"plan": "team"}
            client.users.create({"id": "user_2", "metadata": {"plan": "team"}})
            listed = client.users.list(metadata_filter={"plan": "team"})
            assert {u["id"] for u in listed["users"]} == {"user_1", "user_2"}
            assert listed["total_size"] == 2

            session = client.sessions.create(user_id="user_1", title="t")
            session.add_messages(TURNS)
            recent = client.users.recent_messages("user_1", n=1)["messages"]
            assert [m["role"] for m in recent] == ["assistant"]

            renamed = client.users.update("user_1", new_id="user_1b")
            assert renamed["id"] == "user_1b" and renamed["metadata"] == {"plan": "team"}
            assert len(client.users.recent_messages("user_1b")["messages"]) == 2
            with pytest.raises(NotFoundError):
                client.users.get("user_1")
            client.users.delete("user_1b")
            with pytest.raises(NotFoundError):
                client.users.get("user_1b")
            with pytest.raises(NotFoundError):
                session.refresh()

    await asyncio.to_thread(body)


async def test_session_handle_sync(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            session = client.sessions.create(
                {"user_id": "user_123", "title": "Team scheduling", "metadata": {"src": "web"}}
            )
            assert isinstance(session, Session) and session.id.startswith("ses_")
            assert session["title"] == "Team scheduling" and session.status == "active"
            assert session.user_id == "user_123" and session.metadata == {"src": "web"}
            assert dict(session) == session.data

            stored = session.add_messages(TURNS)["messages"]
            assert [m["role"] for m in stored] == ["user", "assistant"]
            assert all(m["memory_id"].startswith("mem_") for m in stored)
            one = session.add_message(role="user", content="And Toronto for the Americas.")
            assert one["session_id"] == session.id and one["content"].startswith("And Toronto")
            page = session.messages(page_size=2)
            assert len(page["messages"]) == 2 and page["total_size"] == 3
            assert page["messages"][0]["name"] == "Dana"

            # a handle from an id only: no network until used; context learns the user once
            again = client.sessions.from_id(session.id)
            assert again.data == {"id": session.id} and again.user_id is None
            ctx = again.context("which city for Europe scheduling?", last_n_messages=10)
            assert "Berlin" in ctx["context"] and ctx["token_count"] > 0
            assert again.user_id == "user_123"
            assert [m["role"] for m in ctx["recent_messages"]][-1] == "user"
            low = session.context(
                "Europe city", strategy="low_latency", include_system_prompt=False
            )
            assert "Berlin" in low["context"]

            assert again.refresh()["message_count"] == 3
            upd = session.update(title="Scheduling", auto_process_after=1800)
            assert upd is session and session.title == "Scheduling"
            assert session["auto_process_after"] == 1800.0
            via_resource = client.sessions.update(session.id, {"metadata": {"src": "app"}})
            assert via_resource.metadata == {"src": "app"} and via_resource.title == "Scheduling"
            assert client.sessions.get(session.id).metadata == {"src": "app"}

            mem = client.memory.create(user_id="user_123", content="Prefers morning meetings")
            linked = session.link_memory(mem["id"])
            assert linked["session_id"] == session.id

            listed = client.sessions.list(user_id="user_123", statuses=["active"])
            assert [s["id"] for s in listed["sessions"]] == [session.id]

            job = session.process(wait=True)
            assert job["state"] == "done" and job["session_id"] == session.id
            assert client.jobs.get(job["id"])["state"] == "done"
            assert session.refresh().status == "processed"
            assert client.sessions.list(user_id="user_123", status="active")["sessions"] == []

            session.delete()
            with pytest.raises(NotFoundError):
                client.sessions.get(session.id)

    await asyncio.to_thread(body)


async def test_context_resource_sync(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            client.memory.create(user_id="eve", content="Eve's dog is named Biscuit", type="fact")
            ctx = client.context.get(
                user_id="eve", query="what is the dog called?", strategy="deep", token_budget=400
            )
            assert "Biscuit" in ctx["context"] and ctx["token_count"] <= 400
            assert ctx["memories"][0]["memory"]["type"] == "fact"

    await asyncio.to_thread(body)


async def test_conversations_async(aclient: AsyncMemgrpcClient) -> None:
    user = await aclient.users.create({"id": "amy", "metadata": {"tier": "gold"}})
    assert user["metadata"] == {"tier": "gold"}
    assert (await aclient.users.get("amy"))["id"] == "amy"
    assert (await aclient.users.update("amy", metadata={"tier": "silver"}))["metadata"] == {
        "tier": "silver"
    }
    assert (await aclient.users.list())["total_size"] == 1

    session = await aclient.sessions.create(user_id="amy", title="Async support session")
    assert isinstance(session, AsyncSession)
    await session.add_message(
        {"role": "user", "content": "For Europe planning, keep Berlin as the default city."}
    )
    await session.add_messages({"messages": [{"role": "assistant", "content": "Noted."}]})
    assert (await session.messages())["total_size"] == 2
    assert len((await aclient.sessions.messages(session.id))["messages"]) == 2
    await aclient.sessions.add_messages(session.id, [{"role": "user", "content": "Thanks"}])
    assert len((await aclient.users.recent_messages("amy", n=5))["messages"]) == 3

    handle = aclient.sessions.from_id(session.id)
    ctx = await handle.context(query="default city for Europe planning")
    assert "Berlin" in ctx["context"] and handle.user_id == "amy"
    ctx2 = await aclient.context.get({"user_id": "amy", "query": "Europe", "last_n_messages": 1})
    assert len(ctx2["recent_messages"]) == 1

    await session.update({"title": "Renamed"})
    assert (await aclient.sessions.get(session.id)).title == "Renamed"
    assert (await aclient.sessions.update(session.id, title="Again")).title == "Again"
    assert (await aclient.sessions.list(user_id="amy"))["total_size"] == 1
    mem = await aclient.memory.create(user_id="amy", content="Likes trains")
    assert (await aclient.sessions.link_memory(session.id, mem["id"]))["session_id"] == session.id

    job = await aclient.sessions.process(session.id, wait=False)
    assert job["state"] in {"queued", "running", "done"}
    deadline = time.monotonic() + 15
    while job["state"] != "done" and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        job = await aclient.jobs.get(job["id"])
    assert job["state"] == "done"
    assert (await session.refresh()).status == "processed"

    await aclient.sessions.delete(session.id)
    with pytest.raises(NotFoundError):
        await handle.refresh()
    await aclient.users.delete("amy")
    with pytest.raises(NotFoundError):
        await aclient.users.get("amy")
