"""`memgrpc mcp` over stdio, spawned by the `mcp` SDK's client as a desktop agent would."""

from __future__ import annotations

from collections.abc import Callable

from mcp import Client

from memgrpc.client import AsyncMemgrpcClient
from tests.mcp.flows import failure, walk


async def test_the_tools_over_stdio(
    stdio: Callable[[str], Client], key: str, memgrpc: AsyncMemgrpcClient
) -> None:
    async with stdio(key) as client:
        assert client.server_info is not None and client.server_info.name == "memgrpc"
        await walk(client, memgrpc)


async def test_a_wrong_key_is_refused_by_memgrpc(stdio: Callable[[str], Client]) -> None:
    async with stdio("mgk_not_a_real_key") as client:
        message = await failure(client, "recall", query="anything", user_id="alice")
        assert message.startswith("UNAUTHENTICATED"), message
        message = await failure(client, "remember", content="x", user_id="alice")
        assert message.startswith("UNAUTHENTICATED"), message
