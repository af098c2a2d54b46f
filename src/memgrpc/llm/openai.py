"""Any OpenAI-compatible `POST /chat/completions` with `stream: true` (OpenAI, Ollama, vLLM,
llama.cpp server, LiteLLM...), read as server-sent events.

Deltas are handed on as each SSE chunk arrives. Tools go out as `tools` (type function); the
model's streamed tool calls (`delta.tool_calls`, whose id, name and argument fragments arrive
spread over chunks, keyed by index) are put together and handed on when the choice finishes.
Closing the Generation closes the streamed response, and httpcore closes a connection whose
response was not read to the end, so the upstream sees the disconnect and stops generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Final

import httpx

from memgrpc.llm.base import (
    ChatMessage,
    ErrorKind,
    Generation,
    ProviderError,
    Tool,
    ToolCall,
    Usage,
)

DEFAULT_MODEL: Final = "gpt-4o-mini"
_MAX_ERROR_BODY: Final = 2000
# how long a connection may take, whatever the read timeout
_CONNECT_TIMEOUT_S: Final = 10.0


def completions_url(base_url: str) -> str:
    """`https://host/v1` (as the OpenAI SDKs take it) -> `https://host/v1/chat/completions`."""
    base = base_url.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _kind(status: int) -> ErrorKind:
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if status in (408, 504):
        return "timeout"
    if status in (400, 413, 422):
        return "rejected"
    if status == 404:
        return "not_found"
    return "unavailable"


def _error_text(body: bytes) -> str:
    """The API's own error message when the body is the usual `{"error": {"message": ...}}`."""
    try:
        parsed = json.loads(body)
        err = parsed.get("error") if isinstance(parsed, dict) else None
        message = err.get("message") if isinstance(err, dict) else err
        if isinstance(message, str) and message:
            return message[:_MAX_ERROR_BODY]
    except (ValueError, UnicodeDecodeError):
        pass
    return body[:_MAX_ERROR_BODY].decode("utf-8", "replace").strip()


class _ToolCalls:
    """Tool calls being streamed: fragments by index, joined once the choice finishes."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, str]] = {}

    def add(self, part: Any) -> None:
        if not isinstance(part, dict):
            return
        index = part.get("index", 0)
        slot = self._parts.setdefault(index if isinstance(index, int) else 0, {})
        fn = part.get("function") or {}
        for key, value in (("id", part.get("id")), ("name", fn.get("name"))):
            if isinstance(value, str) and value:
                slot[key] = value
        args = fn.get("arguments")
        if isinstance(args, str):
            slot["arguments"] = slot.get("arguments", "") + args

    def finish(self) -> list[ToolCall]:
        done = [
            ToolCall(p.get("id") or f"call_{i}", p.get("name", ""), p.get("arguments", ""))
            for i, p in sorted(self._parts.items())
        ]
        self._parts.clear()
        return done


class OpenAIProvider:
    """The `openai` provider; `available` once a base URL is configured."""

    name: str = "openai"
    indexes_replies: bool = True  # a model's reply can hold what the user will ask about later

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 60.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str = "openai",
    ) -> None:
        self.name = name  # a project's own key (BYOK) names its provider: gemini, xai, ...
        self.available = bool(base_url)
        self.default_model = model or DEFAULT_MODEL
        self.models: tuple[str, ...] = (self.default_model,)
        self._url = completions_url(base_url) if base_url else ""
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S)),
            transport=transport,
        )

    def body(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
        tools: Sequence[Tool] = (),
    ) -> dict[str, Any]:
        """The request JSON; temperature, max_tokens and tools only when the caller set them."""
        body: dict[str, Any] = {
            "model": model or self.default_model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if temperature is not None:
            # the wire value came through a float32: 0.7 would otherwise be 0.699999988
            body["temperature"] = round(temperature, 6)
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters) or {"type": "object", "properties": {}},
                    },
                }
                for t in tools
            ]
        return body

    def stream(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        temperature: float | None,
        max_tokens: int | None,
        tools: Sequence[Tool] = (),
    ) -> Generation:
        return Generation(self._events(self.body(messages, model, temperature, max_tokens, tools)))

    def _error(self, kind: ErrorKind, message: str, **kw: Any) -> ProviderError:
        return ProviderError(kind, message, provider=self.name, **kw)

    async def _events(self, body: dict[str, Any]) -> AsyncGenerator[str | Usage | ToolCall, None]:
        if not self.available:
            raise self._error(
                "not_configured", "the openai provider has no base URL (MEMGRPC_OPENAI_BASE_URL)"
            )
        # The HTTP exchange runs in a task of its own that only this generator cancels, once.
        # A caller may be cancelled twice in a row (a client cancel, then the call's done
        # callback); were the exchange in the caller's task, the second cancellation could
        # interrupt httpcore's clean-up and leave the connection (and the generation) running.
        queue: asyncio.Queue[str | Usage | ToolCall | ProviderError | None] = asyncio.Queue()
        pump = asyncio.ensure_future(self._pump(body, queue))
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, ProviderError):
                    raise item
                yield item
        finally:
            pump.cancel()  # a no-op once it has finished
            with contextlib.suppress(BaseException):  # its outcome is moot now
                await asyncio.shield(pump)

    async def _pump(
        self,
        body: dict[str, Any],
        queue: asyncio.Queue[str | Usage | ToolCall | ProviderError | None],
    ) -> None:
        try:
            async with self._client.stream("POST", self._url, json=body) as resp:
                async for item in self._read(resp):
                    queue.put_nowait(item)
            queue.put_nowait(None)
        except ProviderError as exc:
            queue.put_nowait(exc)
        except httpx.TimeoutException as exc:
            queue.put_nowait(self._error("timeout", f"no response in time ({type(exc).__name__})"))
        except httpx.HTTPError as exc:
            queue.put_nowait(self._error("unavailable", f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # e.g. a chunk of the wrong shape: never leave the reader waiting
            queue.put_nowait(self._error("bad_response", f"{type(exc).__name__}: {exc}"))

    async def _read(self, resp: httpx.Response) -> AsyncGenerator[str | Usage | ToolCall, None]:
        if resp.status_code != 200:
            text = _error_text(await resp.aread())
            raise self._error(
                _kind(resp.status_code),
                f"HTTP {resp.status_code}: {text}" if text else f"HTTP {resp.status_code}",
                status=resp.status_code,
                retry_after_s=retry_after(resp.headers),
            )
        calls = _ToolCalls()
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue  # comments, event names, blank separators
            data = line[5:].strip()
            if data == "[DONE]":
                break
            for item in self._parse(data, calls):
                yield item
        for call in calls.finish():  # a stream that ended without a finish_reason
            yield call

    def _parse(self, data: str, calls: _ToolCalls) -> list[str | Usage | ToolCall]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._error(
                "bad_response", f"not JSON in the event stream: {data[:200]!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise self._error("bad_response", "an event is not a JSON object")
        if "error" in chunk:  # some servers report mid-stream failures in-band
            raise self._error("unavailable", f"error in the stream: {_error_text(data.encode())}")
        out: list[str | Usage | ToolCall] = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                out.append(text)
            for part in delta.get("tool_calls") or []:
                calls.add(part)
            if choice.get("finish_reason"):
                out.extend(calls.finish())
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            out.append(
                Usage(
                    prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or 0),
                )
            )
        return out

    async def aclose(self) -> None:
        await self._client.aclose()


async def check_key(
    base_url: str,
    api_key: str,
    *,
    provider: str,
    timeout_s: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """Ask `GET {base_url}/models` with the key: returns when the provider accepts it, raises
    a ProviderError (kind `auth` when it refuses the key) otherwise. The key is never part of
    the error's message."""
    url = base_url.rstrip("/") + "/models"
    try:
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S)),
            transport=transport,
        ) as client:
            resp = await client.get(url, headers={"Authorization": f"Bearer {api_key}"})
    except httpx.TimeoutException as exc:
        raise ProviderError(
            "timeout", f"no response in time ({type(exc).__name__})", provider=provider
        ) from None
    except httpx.HTTPError as exc:
        raise ProviderError(
            "unavailable", f"{type(exc).__name__}: {exc}".replace(api_key, "***"), provider=provider
        ) from None
    if resp.status_code == 200:
        return
    text = _error_text(resp.content).replace(api_key, "***")
    raise ProviderError(
        _kind(resp.status_code),
        f"HTTP {resp.status_code}: {text}" if text else f"HTTP {resp.status_code}",
        provider=provider,
        status=resp.status_code,
    )
