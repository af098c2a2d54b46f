"""`memgrpc mcp --http`: Streamable HTTP, where each request's bearer token is the memgrpc API
key; the `mcp` SDK's own streamable HTTP client against the real subprocess."""

from __future__ import annotations

import secrets

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from memgrpc.client import AsyncMemgrpcClient
from tests.conftest import NewKey
from tests.mcp.flows import data, walk

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
CALL = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "remember", "arguments": {"content": "x", "user_id": "intruder"}},
}
ACCEPT = "application/json, text/event-stream"


def connect(url: str, key: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
    return Client(streamable_http_client(url, http_client=http), read_timeout_seconds=60)


async def test_the_tools_over_http(http_url: str, key: str, memgrpc: AsyncMemgrpcClient) -> None:
    async with connect(http_url, key) as client:
        await walk(client, memgrpc)


async def test_no_or_a_wrong_key_gets_401_before_any_tool_runs(
    http_url: str, memgrpc: AsyncMemgrpcClient
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        for headers in (
            {},
            {"Authorization": "Bearer mgk_not_a_real_key"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ):
            for body in (INITIALIZE, CALL):
                response = await http.post(
                    http_url, json=body, headers={**headers, "Accept": ACCEPT}
                )
                assert response.status_code == 401, (headers, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
    # the tool call never ran: no memory was made for anyone
    assert (await memgrpc.memory.list(user_id="intruder"))["memories"] == []
    # the SDK's own client is refused too (its initialize gets the 401)
    with pytest.raises(ExceptionGroup) as refused:
        async with connect(http_url, "mgk_not_a_real_key"):
            raise AssertionError("a wrong key got an MCP session")
    assert refused.group_contains(MCPError, depth=None), refused.value


async def test_each_request_uses_its_own_bearer_key(http_url: str, new_key: NewKey) -> None:
    """Two keys of two projects through the same MCP server: each sees only its own project."""
    user = "shared_" + secrets.token_hex(4)
    memories = {}
    for _ in range(2):
        _, key = await new_key()
        async with connect(http_url, key) as client:
            made = await data(client, "remember", content=f"key {key[-6:]} was here", user_id=user)
            found = await data(client, "recall", query="who was here", user_id=user, limit=10)
            memories[key] = made["id"]
            assert [m["id"] for m in found["memories"]] == [made["id"]]
    assert len(set(memories.values())) == 2
