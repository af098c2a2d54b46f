"""client.chat and Session.chat against the real server (the built-in `local` provider)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from memgrpc.client import (
    AsyncMemgrpcClient,
    FailedPreconditionError,
    InvalidArgumentError,
    MemgrpcClient,
    NotFoundError,
)
from memgrpc.server import app
from tests.conftest import ServerHandle

pytestmark = pytest.mark.skipif(
    "memgrpc.v1.ChatService" not in app.SERVICE_NAMES, reason="ChatService is not served yet"
)

MakeClient = Callable[..., MemgrpcClient]
DOG = "The user's dog is named Biscuit"
QUESTION = "What is my dog's name?"


async def test_session_chat_stream_sync(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            dog = client.memory.create(user_id="u1", content=DOG, type="fact")
            session = client.sessions.create(user_id="u1", title="Pets")
            events = list(session.chat(QUESTION))
            types = [e["type"] for e in events]
            assert types[0] == "started" and types[1] == "context" and types[-1] == "done"
            assert set(types[2:-1]) == {"delta"}
            assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
            assert all(e["create_time"].endswith("Z") for e in events)
            started, context, done = events[0]["data"], events[1]["data"], events[-1]["data"]
            assert started["session_id"] == session.id
            assert dog["id"] in {hit["memory"]["id"] for hit in context["memories"]}
            text = "".join(e["data"] for e in events if e["type"] == "delta")
            assert "Biscuit" in text
            assert done["latency"] > 0 and done["usage"]["completion_tokens"] > 0

            stored = session.messages()["messages"]
            assert [m["id"] for m in stored] == [
                started["user_message_id"],
                done["assistant_message_id"],
            ]
            assert stored[0]["content"] == QUESTION and stored[1]["content"] == text

            reply = session.chat("And what is the dog called again?", stream=False)
            assert "Biscuit" in reply["response"] and reply["session_id"] == session.id
            assert reply["user_message_id"] and reply["assistant_message_id"]
            assert reply["memories"] and reply["latency"] > 0

    await asyncio.to_thread(body)


async def test_chat_resource_sync(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            providers = client.chat.providers()["providers"]
            local = next(p for p in providers if p["name"] == "local")
            assert local["is_default"] and local["available"]

            # no session: one is created for the user
            reply = client.chat.send("Hello there", user_id="u2", use_memory=False)
            assert reply["session_id"].startswith("ses_") and reply["response"]
            assert client.sessions.get(reply["session_id"]).user_id == "u2"

            client.memory.create(user_id="u2", content=DOG, type="fact")
            events = list(
                client.chat.stream(
                    {"message": QUESTION, "session_id": reply["session_id"]}, temperature=0.0
                )
            )
            assert "Biscuit" in "".join(e["data"] for e in events if e["type"] == "delta")

            queued = client.chat.send_async(QUESTION, user_id="u2")
            assert queued["processing_id"].startswith("chat_")
            for _ in range(300):
                result = client.chat.result(queued["processing_id"])
                if result["status"] in ("complete", "failed"):
                    break
                assert result["status"] in ("queued", "running")
                time.sleep(0.02)
            assert result["status"] == "complete" and result["error"] is None
            assert "Biscuit" in result["response"] and result["assistant_message_id"]

            with pytest.raises(NotFoundError):
                client.chat.result("chat_doesnotexist")
            with pytest.raises(InvalidArgumentError) as bad:
                client.chat.send("", user_id="u2")
            assert bad.value.field_violations and bad.value.request_id
            with pytest.raises((FailedPreconditionError, InvalidArgumentError)) as unknown:
                client.chat.send("hi", user_id="u2", provider="nonesuch")
            assert unknown.value.reason

    await asyncio.to_thread(body)


async def test_chat_async_client(aclient: AsyncMemgrpcClient) -> None:
    await aclient.memory.create(user_id="u3", content=DOG, type="fact")
    session = await aclient.sessions.create(user_id="u3")
    events = [e async for e in session.chat(QUESTION)]
    assert events[0]["type"] == "started" and events[-1]["type"] == "done"
    assert "Biscuit" in "".join(e["data"] for e in events if e["type"] == "delta")

    reply = await session.chat(message=QUESTION, stream=False)
    assert "Biscuit" in reply["response"]
    sent = await aclient.chat.send(QUESTION, session_id=session.id)
    assert "Biscuit" in sent["response"]
    streamed = [e async for e in aclient.chat.stream(QUESTION, session_id=session.id)]
    assert streamed[-1]["type"] == "done"

    queued = await aclient.chat.send_async(QUESTION, session_id=session.id)
    for _ in range(300):
        result = await aclient.chat.result(queued["processing_id"])
        if result["status"] == "complete":
            break
        await asyncio.sleep(0.02)
    assert "Biscuit" in result["response"]
    assert (await aclient.chat.providers())["providers"]
    assert (await session.messages())["total_size"] == 10  # 5 turns, 2 messages each


async def test_leaving_the_stream_after_the_last_delta_stores_the_reply(
    aclient: AsyncMemgrpcClient, server: ServerHandle
) -> None:
    """The client leaves after the last delta, while the complete reply is being written: the
    write still lands. The reply's insert (into the real table) is held until the cancel has
    reached the server, so the race the local provider used to win or lose by chance is forced."""
    writer = server.app.store.writer("messages")
    insert = writer.insert
    reply_pending, release = asyncio.Event(), asyncio.Event()

    async def held(rows: Sequence[dict[str, Any]]) -> None:
        if any(r["role"] == "assistant" for r in rows):
            reply_pending.set()
            await release.wait()
        await insert(rows)

    writer.insert = held  # type: ignore[method-assign]
    try:
        session = await aclient.sessions.create(user_id="u4")
        events = session.chat("Tell me everything you know, at length.")
        async for event in events:
            if event["type"] == "delta":
                await asyncio.wait_for(reply_pending.wait(), 5)  # generation is over
                break
        await events.aclose()  # type: ignore[attr-defined]  # cancels the call
        await asyncio.sleep(0.2)  # the cancel reaches the turn while its reply write waits
        release.set()
        for _ in range(200):
            messages = (await session.messages())["messages"]
            if len(messages) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        release.set()
        del writer.insert
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert not messages[1].get("interrupted")  # generation had finished: the whole reply
