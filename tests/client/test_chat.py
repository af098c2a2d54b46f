"""client.chat and Session.chat against the real server (the built-in `local` provider)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from memgrpc.client import (
    AsyncMemgrpcClient,
    FailedPreconditionError,
    InvalidArgumentError,
    MemgrpcClient,
    NotFoundError,
)
from memgrpc.server import app

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


@pytest.mark.xfail(
    strict=False,
    reason="server race (core/chat.py): the local provider finishes generating before the "
    "cancel arrives, and the cancel then kills the pending write of the complete reply, so no "
    "assistant message is stored at all",
)
async def test_leaving_the_stream_stores_the_reply(aclient: AsyncMemgrpcClient) -> None:
    session = await aclient.sessions.create(user_id="u4")
    async for event in session.chat("Tell me everything you know, at length."):
        if event["type"] == "delta":
            break
    for _ in range(200):
        messages = (await session.messages())["messages"]
        if len(messages) == 2:
            break
        await asyncio.sleep(0.02)
    # interrupted, or complete when generation beat the cancel: either way it is stored
    assert [m["role"] for m in messages] == ["user", "assistant"]
