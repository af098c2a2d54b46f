"""`client.chat`: a chat turn with memory, streamed as event dicts or collected into one reply.

Events (Sovant style), in order:

    {"type": "started", "data": {"user_message_id": ..., "session_id": ...}, ...}
    {"type": "context", "data": {"memories": [{"memory": {...}, "score": 0.8}, ...]}, ...}
    {"type": "delta",   "data": "text as the model produces it", ...}
    {"type": "done",    "data": {"assistant_message_id": ..., "usage": {...}, "latency": 0.42}, ...}
    {"type": "error",   "data": {"code": 14, "status": "UNAVAILABLE", "message": ..., "reason": ...}, ...}

Every event also has `sequence` (1, 2, ...) and `create_time`. An `error` event ends the turn;
the call's failure that follows it is raised as a typed MemgrpcError (so is any failure before the
first event). Leaving the loop early cancels the turn on the server (the partial reply is stored
marked interrupted); `contextlib.closing` / `aclosing` make that immediate and explicit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from typing import Any

import grpc

from memgrpc.client import _convert as cv
from memgrpc.client._channel import Stream, Unary, method_path, new_request_id
from memgrpc.client._transport import AsyncCaller, Caller
from memgrpc.client.errors import MemgrpcError, error_from_event, status_code
from memgrpc.v1 import chat_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["ChatService"]

Event = dict[str, Any]
Message = str | Mapping[str, Any] | None


def _path(name: str) -> str:
    return method_path(_SERVICE, name)


def chat_request(message: Message, fields: Mapping[str, Any]) -> pb.ChatRequest:
    """`message` is the user's text (or a whole ChatRequest dict); `fields` the options."""
    first = {"message": message} if isinstance(message, str) else message
    data = cv.params(first, fields, "chat")
    request = cv.build(pb.ChatRequest, data, "chat")
    if not request.request_id:
        request.request_id = new_request_id()
    return request


def error_dict(err: pb.ChatError) -> dict[str, Any]:
    return {
        "code": err.code,
        "status": status_code(err.code).name,
        "message": err.message,
        "reason": err.reason or None,
    }


def event_dict(event: pb.ChatEvent) -> Event:
    kind: str | None = event.WhichOneof("event")
    data: Any
    if kind == "delta":
        data = event.delta.text
    elif kind == "error":
        data = error_dict(event.error)
    elif kind is not None:
        data = cv.to_dict(getattr(event, kind))
    else:
        kind, data = "unknown", None  # an event type newer than this client
    return {
        "type": kind,
        "data": data,
        "sequence": event.sequence,
        "create_time": event.create_time.ToJsonString() if event.HasField("create_time") else None,
    }


class Collector:
    """Folds a turn's events into `{"response": text, "session_id", "user_message_id",
    "assistant_message_id", "usage", "memories", "latency", "tool_calls"}`; an error event
    raises."""

    def __init__(self, request_id: str) -> None:
        self._request_id = request_id
        self._parts: list[str] = []
        self._out: dict[str, Any] = {
            "response": "",
            "session_id": None,
            "user_message_id": None,
            "assistant_message_id": None,
            "usage": None,
            "memories": [],
            "latency": None,
            "tool_calls": [],
        }
        self._done = False
        self._error: MemgrpcError | None = None

    def feed(self, event: Event) -> None:
        kind, data = event["type"], event["data"]
        if kind == "started":
            self._out["session_id"] = data["session_id"]
            self._out["user_message_id"] = data["user_message_id"]
        elif kind == "context":
            self._out["memories"] = data["memories"]
        elif kind == "delta":
            self._parts.append(data)
        elif kind == "tool_call":
            self._out["tool_calls"].append(data)
        elif kind == "done":
            self._done = True
            self._out["assistant_message_id"] = data["assistant_message_id"]
            self._out["usage"] = data["usage"]
            self._out["latency"] = data["latency"]
        elif kind == "error":
            self._error = error_from_event(
                data["code"], data["message"], data["reason"] or "", request_id=self._request_id
            )

    def result(self) -> dict[str, Any]:
        if self._error is not None:
            raise self._error
        if not self._done:
            raise MemgrpcError(
                "the chat stream ended without a done event",
                status=grpc.StatusCode.UNKNOWN,
                request_id=self._request_id,
            )
        return {**self._out, "response": "".join(self._parts)}


class Calls:
    @staticmethod
    def chat(request: pb.ChatRequest) -> Stream[pb.ChatEvent]:
        return Stream(_path("Chat"), request, pb.ChatEvent, request.request_id)

    @staticmethod
    def chat_async(request: pb.ChatRequest) -> Unary[pb.ChatAsyncResponse, dict[str, Any]]:
        return Unary(
            _path("ChatAsync"), request, pb.ChatAsyncResponse, cv.to_dict, request.request_id
        )

    @staticmethod
    def result(processing_id: str) -> Unary[pb.ChatResult, dict[str, Any]]:
        request = pb.GetChatResultRequest(processing_id=processing_id)
        return Unary(_path("GetChatResult"), request, pb.ChatResult, cv.to_dict)

    @staticmethod
    def providers() -> Unary[pb.ListProvidersResponse, dict[str, Any]]:
        request = pb.ListProvidersRequest()
        return Unary(_path("ListProviders"), request, pb.ListProvidersResponse, cv.to_dict)


def stream_events(caller: Caller, request: pb.ChatRequest) -> Generator[Event, None, None]:
    with contextlib.closing(caller.stream(Calls.chat(request))) as events:
        for event in events:
            yield event_dict(event)


def collect(caller: Caller, request: pb.ChatRequest) -> dict[str, Any]:
    collector = Collector(request.request_id)
    for event in stream_events(caller, request):
        collector.feed(event)
    return collector.result()


async def astream_events(
    caller: AsyncCaller, request: pb.ChatRequest
) -> AsyncGenerator[Event, None]:
    async with contextlib.aclosing(caller.stream(Calls.chat(request))) as events:
        async for event in events:
            yield event_dict(event)


async def acollect(caller: AsyncCaller, request: pb.ChatRequest) -> dict[str, Any]:
    collector = Collector(request.request_id)
    async for event in astream_events(caller, request):
        collector.feed(event)
    return collector.result()


class ChatResource:
    """`client.chat`. Options for every turn: session_id (or user_id: a session is created),
    use_memory (default True), provider, model, temperature, system_prompt, max_tokens,
    request_id; Sonzai's: agent_id, instance_id, messages (a list of {role, content, name}:
    the last user message is the turn's when no message is given), user_display_name,
    language, timezone, tool_capabilities, tool_definitions ({name, description, parameters}
    with a JSON Schema dict; the model's calls arrive as `tool_call` events)."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def stream(self, message: Message = None, /, **options: Any) -> Iterator[Event]:
        """The turn's events as they happen (see the module docstring)."""
        return stream_events(self._c, chat_request(message, options))

    def send(self, message: Message = None, /, **options: Any) -> dict[str, Any]:
        """The whole turn: `{"response": "...", "session_id", "user_message_id",
        "assistant_message_id", "usage", "memories", "latency", "tool_calls"}`."""
        return collect(self._c, chat_request(message, options))

    def send_async(self, message: Message = None, /, **options: Any) -> dict[str, Any]:
        """Run the turn in the background: `{"processing_id": "chat_..."}` for `result()`."""
        return self._c.unary(Calls.chat_async(chat_request(message, options)))

    def result(self, processing_id: str) -> dict[str, Any]:
        """`{"status": "queued"|"running"|"complete"|"failed", "response": ..., "error": ...,
        ...}` (the partial reply while running)."""
        return self._c.unary(Calls.result(processing_id))

    def providers(self) -> dict[str, Any]:
        """`{"providers": [{"name", "models", "default_model", "is_default", "available"}]}`."""
        return self._c.unary(Calls.providers())


class AsyncChatResource:
    """`client.chat` of the async client (`async for ev in client.chat.stream(...)`)."""

    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    def stream(self, message: Message = None, /, **options: Any) -> AsyncIterator[Event]:
        return astream_events(self._c, chat_request(message, options))

    async def send(self, message: Message = None, /, **options: Any) -> dict[str, Any]:
        return await acollect(self._c, chat_request(message, options))

    async def send_async(self, message: Message = None, /, **options: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.chat_async(chat_request(message, options)))

    async def result(self, processing_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.result(processing_id))

    async def providers(self) -> dict[str, Any]:
        return await self._c.unary(Calls.providers())
