"""The OpenAI-compatible provider against a real loopback SSE server (tests/llm/fakellm.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pytest

from memgrpc.llm import (
    ChatMessage,
    LLMConfig,
    OpenAIProvider,
    ProviderError,
    Usage,
    build_providers,
)
from memgrpc.llm.openai import completions_url, retry_after
from tests.llm.fakellm import FAST_TEXT, FakeLLM

PROMPT = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeLLM]:
    server = await FakeLLM(slow_interval_s=0.05).start()
    yield server
    await server.stop()


@pytest.fixture
async def provider(fake: FakeLLM) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(fake.base_url, "sk-test", "fast", timeout_s=0.5)
    yield p
    await p.aclose()


async def test_streams_deltas_and_usage(provider: OpenAIProvider, fake: FakeLLM) -> None:
    gen = provider.stream(PROMPT, "", None, None)
    assert [d async for d in gen] == FAST_TEXT
    assert gen.usage == Usage(11, 5)
    seen = fake.last("fast")
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.body["stream"] is True
    assert seen.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    gen = provider.stream(PROMPT, "nousage", None, None)
    assert "".join([d async for d in gen]) == "two words" and gen.usage is None


async def test_temperature_and_max_tokens_only_when_set(
    provider: OpenAIProvider, fake: FakeLLM
) -> None:
    [_ async for _ in provider.stream(PROMPT, "fast", None, None)]
    assert "temperature" not in fake.last("fast").body
    assert "max_tokens" not in fake.last("fast").body
    [_ async for _ in provider.stream(PROMPT, "fast", 0.0, 64)]
    body = fake.last("fast").body
    assert body["temperature"] == 0.0 and body["max_tokens"] == 64
    # a float32 from the wire is sent as the decimal the caller meant
    [_ async for _ in provider.stream(PROMPT, "fast", float(np.float32(0.7)), None)]
    assert fake.last("fast").body["temperature"] == 0.7


@pytest.mark.parametrize(
    ("model", "kind", "status"),
    [
        ("auth", "auth", 401),
        ("ratelimit", "rate_limited", 429),
        ("broken", "unavailable", 500),
        ("stall", "timeout", None),
        ("garbage", "bad_response", None),
        ("inband", "unavailable", None),
    ],
)
async def test_errors_have_a_kind(
    provider: OpenAIProvider, model: str, kind: str, status: int | None
) -> None:
    with pytest.raises(ProviderError) as err:
        [_ async for _ in provider.stream(PROMPT, model, None, None)]
    assert err.value.kind == kind and err.value.status == status
    assert err.value.provider == "openai"
    if model == "auth":
        assert "Incorrect API key" in err.value.message
    if model == "ratelimit":
        assert err.value.retry_after_s == 7.0


async def test_unreachable_and_unconfigured() -> None:
    p = OpenAIProvider("http://127.0.0.1:9/v1", timeout_s=1)  # discard port: refused
    with pytest.raises(ProviderError) as err:
        [_ async for _ in p.stream(PROMPT, "", None, None)]
    assert err.value.kind == "unavailable"
    await p.aclose()
    none = OpenAIProvider(None)
    assert not none.available
    with pytest.raises(ProviderError) as err:
        [_ async for _ in none.stream(PROMPT, "", None, None)]
    assert err.value.kind == "not_configured"
    await none.aclose()


async def test_closing_the_generation_closes_the_connection(
    provider: OpenAIProvider, fake: FakeLLM
) -> None:
    gen = provider.stream(PROMPT, "slow", None, None)
    got = [await gen.__anext__() for _ in range(3)]
    assert got == ["w0 ", "w1 ", "w2 "]
    closed = time.monotonic()
    await gen.aclose()
    seen = fake.last("slow")
    for _ in range(50):
        if seen.closed_at is not None:
            break
        await asyncio.sleep(0.02)
    assert seen.closed_at is not None and seen.closed_at - closed < 1.0
    assert not seen.finished


async def test_cancelling_the_consumer_closes_the_connection(
    provider: OpenAIProvider, fake: FakeLLM
) -> None:
    async def consume() -> None:
        async for _ in provider.stream(PROMPT, "slow", None, None):
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.2)
    cancelled = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    seen = fake.last("slow")
    for _ in range(50):
        if seen.closed_at is not None:
            break
        await asyncio.sleep(0.02)
    # well before the 2 s the whole reply takes (a tighter bound raced a busy machine's stalls)
    assert seen.closed_at is not None and seen.closed_at - cancelled < 1.0
    assert 0 < seen.chunks_sent < 40 and not seen.finished


async def test_a_second_cancel_during_clean_up_still_closes(
    provider: OpenAIProvider, fake: FakeLLM
) -> None:
    """Callers may cancel twice (client cancel + call-done callback); the close must survive."""

    async def consume() -> None:
        try:
            async for _ in provider.stream(PROMPT, "slow", None, None):
                pass
        finally:
            await asyncio.sleep(0.5)  # clean-up of the caller, interrupted by the second cancel

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    seen = fake.last("slow")
    for _ in range(50):
        if seen.closed_at is not None:
            break
        await asyncio.sleep(0.02)
    assert seen.closed_at is not None and not seen.finished


def test_helpers() -> None:
    assert (
        completions_url("https://api.openai.com/v1/")
        == "https://api.openai.com/v1/chat/completions"
    )
    assert completions_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({}) is None and retry_after({"retry-after": "soon"}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after({"retry-after": later}) or 0) <= 30


async def test_registry() -> None:
    providers = build_providers(LLMConfig())
    assert providers.default == "local"
    assert [p.name for p in providers.all()] == ["local", "openai"]
    assert providers.get("") is providers.get("local")
    assert providers.get("nope") is None
    assert providers.get("openai") is not None and not providers.get("openai").available  # type: ignore[union-attr]
    keyed = build_providers(LLMConfig(default="openai", openai_api_key="sk-x"))
    assert keyed.get("").available and keyed.get("").name == "openai"  # type: ignore[union-attr]
    await providers.aclose()
    await keyed.aclose()
    with pytest.raises(ValueError):
        build_providers(LLMConfig(default="claude"))
