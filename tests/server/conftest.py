"""A Probe server (see probe.py) behind the same interceptors as the real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from memgrpc.server.interceptors import interceptors
from tests.conftest import ServerHandle
from tests.server import probe


@pytest.fixture(scope="module")
async def probe_channel(server: ServerHandle) -> AsyncIterator[grpc.aio.Channel]:
    srv = grpc.aio.server(interceptors=interceptors(server.app.authenticator))
    srv.add_generic_rpc_handlers((probe.handler(),))
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch
    finally:
        await srv.stop(0)
