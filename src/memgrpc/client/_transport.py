"""Making calls: typed errors, retries with backoff, cancellation of abandoned streams.

A unary call is retried (see _retry) with the same request and headers, so its request_id is
the same on every attempt. A streaming call is retried only until its first message arrives:
after that a failure is the caller's, since part of the reply has been seen.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from memgrpc.client._channel import CallOptions, Settings, Stream, Unary, serialize
from memgrpc.client.errors import MemgrpcError, error_from_rpc

Resp = TypeVar("Resp", bound=Message)
Out = TypeVar("Out")


class SyncTransport:
    """Owns a grpc.Channel; thread-safe (one client may serve many threads)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channel: grpc.Channel | None = settings.sync_channel()
        self._callables: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _callable(self, kind: str, method: str, response: type[Message]) -> Any:
        key = (kind, method)
        found = self._callables.get(key)
        if found is not None:
            return found
        with self._lock:
            if self._channel is None:
                raise RuntimeError("the client is closed")
            make = self._channel.unary_unary if kind == "unary" else self._channel.unary_stream
            found = make(
                method, request_serializer=serialize, response_deserializer=response.FromString
            )
            self._callables[key] = found
            return found

    def _error(self, exc: grpc.RpcError, options: CallOptions, request_id: str) -> MemgrpcError:
        return error_from_rpc(exc, request_id=options.sent_request_id(request_id))

    def unary(self, call: Unary[Resp, Out], options: CallOptions) -> Out:
        invoke = self._callable("unary", call.method, call.response)
        metadata = options.metadata(self.settings, call.request_id)
        attempt = 0
        while True:
            try:
                reply = invoke(call.request, timeout=options.timeout, metadata=metadata)
            except grpc.RpcError as exc:
                error = self._error(exc, options, call.request_id)
                delay = self.settings.retry.delay(error, attempt)
                if delay is None:
                    raise error from exc
            else:
                return call.convert(reply)
            time.sleep(delay)
            attempt += 1

    def stream(self, call: Stream[Resp], options: CallOptions) -> Generator[Resp, None, None]:
        """The replies as they arrive; closing the iterator cancels the call."""
        invoke = self._callable("stream", call.method, call.response)
        metadata = options.metadata(self.settings, call.request_id)
        attempt = 0
        while True:
            replies = invoke(call.request, timeout=options.timeout, metadata=metadata)
            try:
                first = next(replies)
            except StopIteration:
                return
            except grpc.RpcError as exc:
                error = self._error(exc, options, call.request_id)
                delay = self.settings.retry.delay(error, attempt)
                if delay is None:
                    raise error from exc
                time.sleep(delay)
                attempt += 1
                continue
            except BaseException:
                replies.cancel()
                raise
            break
        try:
            yield first
            yield from replies
        except grpc.RpcError as exc:
            raise self._error(exc, options, call.request_id) from exc
        finally:
            replies.cancel()

    def close(self) -> None:
        with self._lock:
            channel, self._channel = self._channel, None
            self._callables.clear()
        if channel is not None:
            channel.close()


class AsyncTransport:
    """Owns a grpc.aio.Channel, created on first use inside the running event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channel: grpc.aio.Channel | None = None
        self._closed = False
        self._callables: dict[tuple[str, str], Any] = {}

    def _callable(self, kind: str, method: str, response: type[Message]) -> Any:
        key = (kind, method)
        found = self._callables.get(key)
        if found is not None:
            return found
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._channel is None:
            self._channel = self.settings.aio_channel()
        make: Callable[..., Any] = (
            self._channel.unary_unary if kind == "unary" else self._channel.unary_stream
        )
        found = make(
            method, request_serializer=serialize, response_deserializer=response.FromString
        )
        self._callables[key] = found
        return found

    def _error(self, exc: grpc.RpcError, options: CallOptions, request_id: str) -> MemgrpcError:
        return error_from_rpc(exc, request_id=options.sent_request_id(request_id))

    async def unary(self, call: Unary[Resp, Out], options: CallOptions) -> Out:
        invoke = self._callable("unary", call.method, call.response)
        metadata = options.metadata(self.settings, call.request_id)
        attempt = 0
        while True:
            try:
                reply = await invoke(call.request, timeout=options.timeout, metadata=metadata)
            except grpc.RpcError as exc:
                error = self._error(exc, options, call.request_id)
                delay = self.settings.retry.delay(error, attempt)
                if delay is None:
                    raise error from exc
            else:
                return call.convert(reply)
            await asyncio.sleep(delay)
            attempt += 1

    async def stream(self, call: Stream[Resp], options: CallOptions) -> AsyncGenerator[Resp, None]:
        """The replies as they arrive; closing the iterator (or cancelling) cancels the call."""
        invoke = self._callable("stream", call.method, call.response)
        metadata = options.metadata(self.settings, call.request_id)
        attempt = 0
        while True:
            replies = invoke(call.request, timeout=options.timeout, metadata=metadata)
            try:
                first = await replies.read()
            except grpc.RpcError as exc:
                error = self._error(exc, options, call.request_id)
                delay = self.settings.retry.delay(error, attempt)
                if delay is None:
                    raise error from exc
                await asyncio.sleep(delay)
                attempt += 1
                continue
            except BaseException:
                replies.cancel()
                raise
            break
        try:
            reply = first
            while reply is not grpc.aio.EOF:
                yield reply
                reply = await replies.read()
        except grpc.RpcError as exc:
            raise self._error(exc, options, call.request_id) from exc
        finally:
            replies.cancel()

    async def close(self) -> None:
        self._closed = True
        channel, self._channel = self._channel, None
        self._callables.clear()
        if channel is not None:
            await channel.close()


class Caller:
    """A transport plus the call options of one client view (see `with_options`)."""

    def __init__(self, transport: SyncTransport, options: CallOptions) -> None:
        self.transport = transport
        self.options = options

    def unary(self, call: Unary[Resp, Out]) -> Out:
        return self.transport.unary(call, self.options)

    def stream(self, call: Stream[Resp]) -> Generator[Resp, None, None]:
        return self.transport.stream(call, self.options)


class AsyncCaller:
    """The async twin of Caller."""

    def __init__(self, transport: AsyncTransport, options: CallOptions) -> None:
        self.transport = transport
        self.options = options

    async def unary(self, call: Unary[Resp, Out]) -> Out:
        return await self.transport.unary(call, self.options)

    def stream(self, call: Stream[Resp]) -> AsyncGenerator[Resp, None]:
        return self.transport.stream(call, self.options)
