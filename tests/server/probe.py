"""A throwaway `memgrpc.v1.Probe` service of all four RPC kinds, served behind the real
interceptors, so auth / request id / error mapping can be tested on streaming calls too
(MemoryService and AdminService are unary only)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from memgrpc.core.access import principal
from memgrpc.core.kernel.errors import InvalidArgument, NotFound

SERVICE = "memgrpc.v1.Probe"


def _act(request: bytes) -> bytes:
    if request == b"invalid":
        raise InvalidArgument.field("probe.value", "is bad")
    if request == b"boom":
        raise RuntimeError("secret internal detail")
    return principal.current().project_id.encode()


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return _act(request)


async def server_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(3):
        if i == 1 and request == b"fail-mid":
            raise NotFound("gone mid-stream", reason="PROBE_GONE")
        yield _act(b"") + f":{i}".encode()


async def client_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    parts = [_act(r) for r in [r async for r in requests]]
    return b",".join(parts)


async def bidi(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    async for r in requests:
        yield _act(r)


def handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )
