"""The per-turn session loop of the Python client (Sonzai sessions.start / turn / status / end),
sync and async, against the real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from memgrpc.client import AsyncMemgrpcClient, InvalidArgumentError, MemgrpcClient

MakeClient = Callable[..., MemgrpcClient]
TURN = [
    {"role": "user", "content": "I'm a nurse and I live in Bergen."},
    {"role": "assistant", "content": "Nice to meet you!"},
]


async def test_session_loop_sync(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            agent = client.agents.create(display_name="Ava")
            s = client.sessions.start(user_id="u1", agent_id=agent["id"], model="m1")
            assert s["agent_id"] == agent["id"] and s["model"] == "m1"
            assert s.turn_status() is None  # no turn yet
            result = s.turn(TURN, fetch_next_context={"query": "Where do I live?"})
            assert [m["role"] for m in result["messages"]] == ["user", "assistant"]
            assert "Bergen" in result["next_context"]["context"]
            assert result["extraction_job_id"]
            deadline = time.monotonic() + 15
            while (job := s.turn_status()) is not None and job["state"] not in ("done", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert job is not None and job["state"] == "done" and job["kind"] == "extract_turn"
            assert job == s.turn_status(result["extraction_job_id"])
            ctx = s.context("What is my job?")
            assert "nurse" in ctx["context"]
            plain = s.turn([{"role": "user", "content": "ok"}], fetch_next_context=False)
            assert "next_context" not in plain or not plain["next_context"]
            ended = s.end(total_messages=3, duration_seconds=120, wait=True)
            assert ended["job"]["state"] == "done"
            assert s.status == "processed"  # the handle's session fields were refreshed
            assert ended["session"]["metadata"]["session_end"]["duration_seconds"] == 120
            assert s.end()["job"]["id"] == ended["job"]["id"]  # idempotent
            with pytest.raises(InvalidArgumentError):
                s.turn([], fetch_next_context={"bogus": 1})

    await asyncio.to_thread(body)


async def test_session_loop_async(aclient: AsyncMemgrpcClient) -> None:
    agent = await aclient.agents.create(display_name="Bo")
    s = await aclient.sessions.start(user_id="u1", agent_id=agent["id"])
    result = await s.turn(TURN)
    assert result["next_context"]["token_count"] > 0
    job = await s.turn_status()
    assert job is not None and job["id"] == result["extraction_job_id"]
    ended = await s.end(wait=True)
    assert ended["session"]["status"] == "processed"


async def test_agent_chat_with_messages(aclient: AsyncMemgrpcClient) -> None:
    agent = await aclient.agents.create(display_name="Cy")
    reply = await aclient.chat.send(
        user_id="u2",
        agent_id=agent["id"],
        messages=[
            {"role": "user", "content": "My cat is called Miso."},
            {"role": "assistant", "content": "Cute!"},
            {"role": "user", "content": "What is my cat called?"},
        ],
        user_display_name="Kim",
        tool_definitions=[{"name": "lookup", "parameters": {"type": "object"}}],
    )
    assert "Miso" in reply["response"]  # the history reached the (local) model
    assert reply["tool_calls"] == []  # the local provider never calls tools
    session = await aclient.sessions.get(reply["session_id"])
    assert session["agent_id"] == agent["id"] and session["message_count"] == 2
