"""The MCP server and its two transports: stdio (one key, from the environment) and Streamable
HTTP (each request's bearer token is the memgrpc API key its tool calls use)."""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from memgrpc import __version__
from memgrpc.client import AsyncMemgrpcClient
from memgrpc.client.errors import AuthenticationError, MemgrpcError
from memgrpc.mcp import tools

NAME = "memgrpc"
INSTRUCTIONS = (
    "Long-term memory of the people you talk to. Before answering, call get_context (or recall) "
    "with the user's id; when the user tells you something lasting, call remember; call forget "
    "when asked to. Always pass the same user_id for the same person."
)
API_KEY_HEADER = "x-api-key"
# how long a bearer key that memgrpc accepted is let in without asking again; each tool call
# still carries the key to memgrpc, which checks it (a revoked key's calls fail at once)
KEY_CACHE_S = 30.0
KEY_CACHE_MAX = 1024


def build(client_for: tools.ClientFor, **options: Any) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(
        NAME, instructions=INSTRUCTIONS, version=__version__, log_level="WARNING", **options
    )
    tools.register(server, client_for)
    return server


async def run_stdio(client: AsyncMemgrpcClient) -> None:
    """Serve one agent over stdin/stdout with `client` (and its key) for every call."""
    async with client:
        await build(lambda: client).run_stdio_async()


def key_id(key: str) -> str:
    """Who a key is, for the SDK's session binding and logs, without the secret itself."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]


class KeyVerifier:
    """The SDK's TokenVerifier for memgrpc API keys: a key is good when memgrpc does not answer
    UNAUTHENTICATED to it (PERMISSION_DENIED is a good key without that scope)."""

    def __init__(self, client: AsyncMemgrpcClient) -> None:
        self._client = client
        self._good: dict[str, float] = {}  # key_id -> when it was last confirmed

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token:
            return None
        kid = key_id(token)
        confirmed = self._good.get(kid)
        if confirmed is None or time.monotonic() - confirmed > KEY_CACHE_S:
            if not await self._accepted(token):
                self._good.pop(kid, None)
                return None
            if len(self._good) >= KEY_CACHE_MAX:
                self._good.clear()
            self._good[kid] = time.monotonic()
        return AccessToken(token=token, client_id=kid, scopes=[])

    async def _accepted(self, key: str) -> bool:
        # GetMemory without an id: authenticated first, then refused as INVALID_ARGUMENT
        # without touching the store
        try:
            await self._client.with_options(metadata={API_KEY_HEADER: key}).memory.get("")
        except AuthenticationError:
            return False
        except MemgrpcError as exc:
            if exc.status.name == "UNAVAILABLE":
                print(f"memgrpc mcp: cannot check a key: {exc}", file=sys.stderr)
                return False
        return True


def _bearer_client(base: AsyncMemgrpcClient) -> tools.ClientFor:
    def client_for() -> AsyncMemgrpcClient:
        token = get_access_token()
        if token is None:  # the SDK's middleware let nothing unauthenticated through
            raise ToolError("UNAUTHENTICATED: no bearer token")
        return base.with_options(metadata={API_KEY_HEADER: token.token})

    return client_for


async def run_http(base: AsyncMemgrpcClient, host: str, port: int) -> None:
    """Serve Streamable HTTP on host:port at /mcp; every request needs `Authorization: Bearer
    <memgrpc API key>` (401 otherwise, before any tool runs). `base` must carry no key."""
    url = f"http://{host}:{port}"
    server = build(
        _bearer_client(base),
        token_verifier=KeyVerifier(base),
        # the SDK's bearer middleware wants these; with no resource_server_url it publishes no
        # OAuth metadata (there is no authorization server: keys come from memgrpc's admin API)
        auth=AuthSettings(issuer_url=url, resource_server_url=None),  # type: ignore[arg-type]
    )
    async with base:
        await server.run_streamable_http_async(host=host, port=port)
