"""Retries against a real gRPC server with scripted failures (tests/client/fake_server.py):
which codes are retried, how long the client waits, request ids reused, streams retried only
before their first event, abandoned streams cancelled."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from memgrpc.client import (
    AsyncMemgrpcClient,
    InvalidArgumentError,
    MemgrpcClient,
    NotFoundError,
    RateLimitError,
    UnavailableError,
)
from memgrpc.client._retry import RetryPolicy
from memgrpc.client.errors import MemgrpcError
from tests.client.fake_server import Failure, Script, start

UNAVAILABLE = Failure(grpc.StatusCode.UNAVAILABLE)
FAST = {"initial_backoff": 0.01, "max_backoff": 0.02, "timeout": 10.0}


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    server, address = await start(script)
    try:
        yield address, script
    finally:
        await server.stop(0)


@pytest.fixture
def script(fake: tuple[str, Script]) -> Script:
    fake[1].reset()
    return fake[1]


@pytest.fixture
def address(fake: tuple[str, Script]) -> str:
    return fake[0]


def test_backoff_policy() -> None:
    ceiling = RetryPolicy(max_retries=5, initial_backoff=0.25, max_backoff=1.0, jitter=lambda: 1.0)
    unavailable = UnavailableError("down", status=grpc.StatusCode.UNAVAILABLE)
    assert [ceiling.delay(unavailable, n) for n in range(6)] == [0.25, 0.5, 1.0, 1.0, 1.0, None]
    floor = RetryPolicy(jitter=lambda: 0.0)
    assert floor.delay(unavailable, 0) == 0.0  # full jitter: anywhere from 0
    limited = RateLimitError("slow down", retry_after=0.3)
    assert floor.delay(limited, 0) == 0.3
    assert floor.delay(RateLimitError("later", retry_after=3600), 0) is None
    for error in (
        InvalidArgumentError("bad"),
        NotFoundError("gone"),
        MemgrpcError("cancelled", status=grpc.StatusCode.CANCELLED),
    ):
        assert floor.delay(error, 0) is None
    assert RetryPolicy(max_retries=0).delay(unavailable, 0) is None


async def test_unavailable_is_retried_with_one_request_id_sync(
    address: str, script: Script
) -> None:
    script.reset(UNAVAILABLE, UNAVAILABLE)

    def body() -> dict[str, object]:
        with MemgrpcClient(address, api_key="k", **FAST) as client:
            return client.memory.create(user_id="u", content="hello")

    mem = await asyncio.to_thread(body)
    assert mem["id"] == "mem_fake" and mem["content"] == "hello"
    assert len(script.attempts) == 3
    ids = {a.request_id for a in script.attempts}
    assert len(ids) == 1 and ids != {""}
    assert {a.header_request_id for a in script.attempts} == ids  # the same id in the header


async def test_rate_limit_waits_retry_after_async(address: str, script: Script) -> None:
    script.reset(Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=0.3))
    async with AsyncMemgrpcClient(address, api_key="k", **FAST) as client:
        mem = await client.memory.create(user_id="u", content="hello", request_id="mine-1")
    assert mem["id"] == "mem_fake"
    assert [a.request_id for a in script.attempts] == ["mine-1", "mine-1"]
    assert script.gaps()[0] >= 0.28  # waited for the server's delay, not the 10 ms backoff


async def test_reads_are_retried_too(address: str, script: Script) -> None:
    script.reset(UNAVAILABLE)
    async with AsyncMemgrpcClient(address, api_key="k", **FAST) as client:
        assert (await client.memory.get("mem_1"))["content"] == "found"
    headers = [a.header_request_id for a in script.attempts]
    assert len(headers) == 2 and headers[0] == headers[1] and headers[0]


async def test_other_codes_are_not_retried(address: str, script: Script) -> None:
    async with AsyncMemgrpcClient(address, api_key="k", **FAST) as client:
        for code, cls in (
            (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
            (grpc.StatusCode.NOT_FOUND, NotFoundError),
            (grpc.StatusCode.INTERNAL, MemgrpcError),
            (grpc.StatusCode.DEADLINE_EXCEEDED, MemgrpcError),
        ):
            script.reset(Failure(code), Failure(code))
            with pytest.raises(cls) as info:
                await client.memory.create(user_id="u", content="x")
            assert info.value.status == code and info.value.reason == "SCRIPTED"
            assert len(script.attempts) == 1
            assert info.value.request_id == script.attempts[0].header_request_id


async def test_gives_up_after_max_retries(address: str, script: Script) -> None:
    script.reset(*[UNAVAILABLE] * 5)

    def body() -> None:
        with (
            MemgrpcClient(address, api_key="k", max_retries=2, **FAST) as client,
            pytest.raises(UnavailableError),
        ):
            client.memory.create(user_id="u", content="x")

    await asyncio.to_thread(body)
    assert len(script.attempts) == 3


async def test_a_long_retry_after_is_the_callers(address: str, script: Script) -> None:
    script.reset(Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=120.0))
    async with AsyncMemgrpcClient(address, api_key="k", **FAST) as client:
        with pytest.raises(RateLimitError) as info:
            await client.memory.create(user_id="u", content="x")
    assert info.value.retry_after == 120.0 and len(script.attempts) == 1


async def test_each_logical_call_has_its_own_request_id(address: str, script: Script) -> None:
    async with AsyncMemgrpcClient(address, api_key="k", **FAST) as client:
        await client.memory.create(user_id="u", content="a")
        await client.memory.create(user_id="u", content="b")
    assert script.attempts[0].request_id != script.attempts[1].request_id


async def test_stream_retried_before_first_event(address: str, script: Script) -> None:
    script.reset(UNAVAILABLE)
    async with AsyncMemgrpcClient(address, api_key="k", **FAST) as client:
        events = [ev async for ev in client.chat.stream("hi", session_id="ses_fake")]
    assert [e["type"] for e in events] == ["started", "delta", "delta", "delta", "done"]
    assert "".join(e["data"] for e in events if e["type"] == "delta") == "You said: hi"
    assert len(script.attempts) == 2
    assert script.attempts[0].request_id == script.attempts[1].request_id != ""

    script.reset(Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=0.05))

    def body() -> dict[str, object]:
        with MemgrpcClient(address, api_key="k", **FAST) as client:
            return client.chat.send("hello", session_id="ses_fake")

    result = await asyncio.to_thread(body)
    assert result["response"] == "You said: hello" and result["assistant_message_id"] == "msg_a"
    assert len(script.attempts) == 2


async def test_stream_not_retried_after_first_event(address: str, script: Script) -> None:
    script.reset()
    script.fail_after_first = UNAVAILABLE
    seen: list[str] = []
    async with AsyncMemgrpcClient(address, api_key="k", **FAST) as client:
        with pytest.raises(UnavailableError):
            async for event in client.chat.stream("hi", session_id="ses_fake"):
                seen.append(event["type"])
    assert seen == ["started"] and len(script.attempts) == 1

    script.reset()
    script.fail_after_first = UNAVAILABLE

    def body() -> list[str]:
        types: list[str] = []
        with (
            MemgrpcClient(address, api_key="k", **FAST) as client,
            pytest.raises(UnavailableError),
        ):
            for event in client.sessions.from_id("ses_fake").chat("hi"):
                types.append(event["type"])
        return types

    assert await asyncio.to_thread(body) == ["started"]
    assert len(script.attempts) == 1


async def test_leaving_a_stream_cancels_the_call(address: str, script: Script) -> None:
    script.reset()
    script.stall = True
    async with AsyncMemgrpcClient(address, api_key="k", **FAST) as client:
        session = client.sessions.from_id("ses_fake")
        async for event in session.chat("hi"):
            if event["type"] == "delta":
                break
        await asyncio.wait_for(script.cancelled.wait(), 2.0)

    script.reset()
    script.stall = True

    def body() -> None:
        with MemgrpcClient(address, api_key="k", **FAST) as client:
            for event in client.chat.stream("hi", session_id="ses_fake"):
                if event["type"] == "delta":
                    break

    await asyncio.to_thread(body)
    await asyncio.wait_for(script.cancelled.wait(), 2.0)


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """(cert, key) for 127.0.0.1, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_with_root_certificates(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    script = Script()
    server, address = await start(script, creds)
    try:
        async with AsyncMemgrpcClient(
            address, api_key="k", root_certificates=cert.read_bytes(), **FAST
        ) as client:
            assert (await client.memory.get("mem_1"))["content"] == "found"
        async with AsyncMemgrpcClient(address, api_key="k", max_retries=0) as plain:
            with pytest.raises(UnavailableError):  # a plaintext client cannot talk to it
                await plain.memory.get("mem_1")
    finally:
        await server.stop(0)
    assert script.attempts[0].header_request_id
