"""Input the client rejects before sending fails like input the server rejects.

Both are InvalidArgumentError (a MemgrpcError and, for existing `except ValueError` code, a
ValueError) with status INVALID_ARGUMENT, reason INVALID_ARGUMENT, domain memgrpc and the
field violations under the request's field paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from memgrpc.client import InvalidArgumentError, MemgrpcClient, MemgrpcError

MakeClient = Callable[..., MemgrpcClient]


def _shape(e: InvalidArgumentError) -> tuple[Any, ...]:
    return (
        e.status,
        e.reason,
        e.domain,
        sorted(d["@type"] for d in e.details),
    )


async def test_client_checks_raise_the_servers_error(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            # the server's answer to bad input: empty content
            with pytest.raises(InvalidArgumentError) as server_side:
                client.memory.create(user_id="alice", content="")
            assert server_side.value.field_violations[0]["field"] == "memory.content"

            # the client's own checks, made before anything is sent
            cases: list[tuple[Callable[[], object], str]] = [
                (lambda: client.memory.create(user_id="a", content="x", type="opinion"), "memory.type"),
                (lambda: client.memory.create(user_id="a", contnet="x"), "memory"),
                (lambda: client.memory.create(user_id="a", content="x", event_time="soon"), "memory.event_time"),
                (lambda: client.memory.search("tea", user_id="a", mode="fuzzy"), "search.mode"),
                (lambda: client.memory.update("mem_1", {"id": "mem_2"}), "memory.id"),
                (lambda: client.memory.batch([{"op": "upsert"}]), "operations[0]"),
                (lambda: client.sessions.from_id(""), "session_id"),
            ]  # fmt: skip
            for call, field in cases:
                with pytest.raises(InvalidArgumentError) as client_side:
                    call()
                e = client_side.value
                assert isinstance(e, MemgrpcError) and isinstance(e, ValueError)
                assert e.status == grpc.StatusCode.INVALID_ARGUMENT and e.code == 3
                assert e.field_violations[0]["field"] == field, e.field_violations
                assert e.field_violations[0]["description"] in e.message
                assert _shape(e) == _shape(server_side.value)
                assert e.details[1]["field_violations"] == e.field_violations
            # nothing reached the server: the project holds no memory
            assert client.memory.list(user_id="a")["memories"] == []

    await asyncio.to_thread(body)


def test_wrong_python_type_is_still_a_type_error() -> None:
    with MemgrpcClient("127.0.0.1:1", api_key="k", max_retries=0) as client:
        with pytest.raises(InvalidArgumentError) as caught:
            client.memory.create(user_id="a", content="x", tags=5)
        assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)
        assert caught.value.field_violations[0]["field"] == "memory.tags"
        with pytest.raises(TypeError):
            client.memory.create(user_id="a", content="x", metadata=["not", "a", "dict"])
