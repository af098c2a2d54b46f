"""Tool calls through the OpenAI-compatible provider against the loopback fake: tools go out as
OpenAI function tools, streamed `delta.tool_calls` fragments come back joined, by index."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from memgrpc.llm import ChatMessage, LocalProvider, OpenAIProvider, Tool, ToolCall
from tests.llm.fakellm import TOOL_CALLS, FakeLLM

PROMPT = [ChatMessage("system", "Be brief."), ChatMessage("user", "Weather in Paris?")]
WEATHER = Tool(
    "get_weather",
    "The weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeLLM]:
    server = await FakeLLM().start()
    yield server
    await server.stop()


@pytest.fixture
async def provider(fake: FakeLLM) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(fake.base_url, "sk-test", "fast", timeout_s=0.5)
    yield p
    await p.aclose()


async def test_tools_are_sent_as_functions(provider: OpenAIProvider, fake: FakeLLM) -> None:
    [_ async for _ in provider.stream(PROMPT, "fast", None, None, tools=[WEATHER, Tool("ping")])]
    assert fake.last("fast").body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": dict(WEATHER.parameters),
            },
        },
        {
            "type": "function",
            "function": {
                "name": "ping",
                "description": "",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]
    [_ async for _ in provider.stream(PROMPT, "fast", None, None)]
    assert "tools" not in fake.last("fast").body


async def test_streamed_tool_calls_are_joined_by_index(provider: OpenAIProvider) -> None:
    gen = provider.stream(PROMPT, "tools", None, None, tools=[WEATHER])
    seen: list[ToolCall] = []
    gen.on_tool_call = seen.append
    text = [d async for d in gen]
    assert text == ["Let me check."]  # iterating yields text only
    expected = [ToolCall(*c) for c in TOOL_CALLS]
    assert gen.tool_calls == expected
    assert seen == expected  # handed on as they completed


async def test_local_provider_never_calls_tools() -> None:
    p = LocalProvider()
    gen = p.stream(PROMPT, p.default_model, None, None, tools=[WEATHER])
    assert "".join([d async for d in gen])
    assert gen.tool_calls == []
