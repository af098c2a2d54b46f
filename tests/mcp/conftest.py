"""MCP fixtures: `memgrpc mcp` as a real subprocess against the module's in-process server,
reached through the `mcp` SDK's own client (stdio, or Streamable HTTP on a loopback port)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from memgrpc.client import AsyncMemgrpcClient
from tests.conftest import NewKey, ServerHandle
from tests.procs import free_port

FAST = {"initial_backoff": 0.01, "max_backoff": 0.05, "timeout": 10.0}


@pytest.fixture
async def key(new_key: NewKey) -> str:
    """A key with every scope, in a project of its own."""
    return (await new_key())[1]


@pytest.fixture
async def memgrpc(server: ServerHandle, key: str) -> AsyncIterator[AsyncMemgrpcClient]:
    """memgrpc's own client with the same key, to check what the tools did."""
    async with AsyncMemgrpcClient(server.address, api_key=key, **FAST) as client:
        yield client


@pytest.fixture
def stdio(server: ServerHandle) -> Callable[[str], Client]:
    """`stdio(key)`: an MCP client that spawns `python -m memgrpc mcp` with that key."""

    def make(key: str) -> Client:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "memgrpc", "mcp", "--addr", server.address, "--timeout", "10"],
            env={"MEMGRPC_API_KEY": key},
        )
        return Client(params, read_timeout_seconds=60)

    return make


def _spawn_http(addr: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """No MEMGRPC_API_KEY in its environment: over HTTP the key is each request's bearer."""
    env = {k: v for k, v in os.environ.items() if k != "MEMGRPC_API_KEY"}
    argv = ["-m", "memgrpc", "mcp", "--addr", addr, "--http", f"127.0.0.1:{port}"]
    out = log.open("ab")
    return subprocess.Popen([sys.executable, *argv], env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
async def http_url(
    server: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """`memgrpc mcp --http 127.0.0.1:PORT` running; its URL (…/mcp) once it answers."""
    port = free_port()
    log = Path(tmp_path_factory.mktemp("mcp")) / "mcp.log"
    proc = _spawn_http(server.address, port, log)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as http:
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    await http.get(url, timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "memgrpc mcp --http did not start"
                    await asyncio.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
