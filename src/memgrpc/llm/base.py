"""The LLM provider contract: a reply streams as text deltas while the provider produces them.

Providers know nothing of gRPC, sessions or storage: they get the prompt as chat messages and
stream text. Their failures are `ProviderError`s with a transport-neutral `kind`;
core/kernel/provider_errors.py maps each kind to one domain error (and so to one gRPC status).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant"]
ErrorKind = Literal[
    "auth",  # the provider refused memgrpc's credentials (401/403)
    "rate_limited",  # 429
    "timeout",  # no answer (or no next chunk) in time
    "unavailable",  # connection failed, 5xx
    "rejected",  # the provider called the request invalid (400/422)
    "not_found",  # unknown model or endpoint (404)
    "not_configured",  # e.g. no base URL
    "bad_response",  # not the SSE / JSON shape the API promises
]


@dataclass(frozen=True)
class Fact:
    """One thing the prompt's prose was rendered from (a recalled memory, a summary).

    The local provider cannot read prose, so it answers from these; HTTP providers ignore them.
    """

    text: str
    # who said it ("user", a name, ...); "" for a stated fact
    speaker: str = ""
    # recall score in [0, 1]; ranks facts that match a question equally well
    score: float = 0.0


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    grounding: tuple[Fact, ...] = ()


@dataclass(frozen=True)
class Tool:
    """A function the model may call (OpenAI function tools); `parameters` is a JSON Schema
    object. Only HTTP providers pass tools on: the built-in responder never calls one."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for; `arguments` is the JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ProviderError(Exception):
    """A provider call failed; `kind` says how, `retry_after_s` when it said when to retry."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.provider = provider
        self.status = status
        self.retry_after_s = retry_after_s


class Generation:
    """One reply in flight: iterate it for text deltas; `aclose()` stops it early.

    Providers write it as an async generator of `str` deltas and, at any point, one `Usage`
    (when the API reports token counts) and the `ToolCall`s the model made: those are kept in
    `tool_calls` and handed to `on_tool_call` (when set) as they complete, so iterating still
    yields text only. Closing it closes that generator, which for HTTP
    providers closes the connection: the upstream stops generating (and billing).
    `first_token_s` is the provider's own time from the first pull to the first delta, so
    callers can tell their own overhead from the model's.
    """

    def __init__(self, items: AsyncGenerator[str | Usage | ToolCall, None]) -> None:
        self._items = items
        self.usage: Usage | None = None
        self.tool_calls: list[ToolCall] = []
        self.on_tool_call: Callable[[ToolCall], None] | None = None
        self.first_token_s: float | None = None
        self._started: float | None = None

    def __aiter__(self) -> Generation:
        return self

    async def __anext__(self) -> str:
        if self._started is None:
            self._started = time.perf_counter()
        while True:
            item = await self._items.__anext__()
            if isinstance(item, Usage):
                self.usage = item
                continue
            if isinstance(item, ToolCall):
                self.tool_calls.append(item)
                if self.on_tool_call is not None:
                    self.on_tool_call(item)
                continue
            if not item:
                continue
            if self.first_token_s is None:
                self.first_token_s = time.perf_counter() - self._started
            return item

    async def aclose(self) -> None:
        await self._items.aclose()


class Provider(Protocol):
    """An LLM that streams replies; `available` is False when it lacks configuration."""

    @property
    def name(self) -> str: ...

    @property
    def models(self) -> tuple[str, ...]: ...

    @property
    def default_model(self) -> str: ...

    @property
    def available(self) -> bool: ...

    @property
    def indexes_replies(self) -> bool:
        """Whether chat indexes its replies for recall: False for a provider whose replies hold
        nothing new (the built-in responder restates what recall found)."""
        ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
        tools: Sequence[Tool] = (),
    ) -> Generation:
        """Start generating (lazily: nothing happens until the first pull); `tools`: what the
        model may call (providers that cannot call tools ignore them)."""
        ...

    async def aclose(self) -> None:
        """Release long-lived resources (connection pools)."""
        ...
