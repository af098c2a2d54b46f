"""Wrap any kind of grpc.aio method handler in a per-call async context manager.

Interceptors only get to replace the handler, so each concern (request scope, auth) is written
once as an `Around` and this helper applies it to unary and streaming handlers alike.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

Around = Callable[[grpc.aio.ServicerContext], AbstractAsyncContextManager[None]]
Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


def _unary_response(behavior: Behavior, around: Around) -> Behavior:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with around(context):
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result

    return call


def _stream_response(behavior: Behavior, around: Around) -> Behavior:
    if not inspect.isasyncgenfunction(behavior):
        # a coroutine that streams with `await context.write(...)` (e.g. health Watch)
        return _unary_response(behavior, around)

    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with around(context):
            async for response in behavior(request, context):
                yield response

    return call


def wrap(handler: grpc.RpcMethodHandler, around: Around) -> grpc.RpcMethodHandler:
    """The same handler with every call of it running inside `around(context)`."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary_response(handler.unary_unary, around), **kwargs
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _unary_response(handler.stream_unary, around), **kwargs
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _stream_response(handler.unary_stream, around), **kwargs
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _stream_response(handler.stream_stream, around), **kwargs
        )
    return handler
