"""What every transport must do, as one walk through the tools (the same for stdio and HTTP)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from mcp import Client
from mcp_types import CallToolResult, TextContent

from memgrpc.client import AsyncMemgrpcClient

TOOLS = {"remember", "recall", "get_context", "forget", "add_messages", "get_profile"}


def text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def ok(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool}: {text(result)}"
    return result


async def data(client: Client, tool: str, **arguments: Any) -> Any:
    """The tool's structured result (and its text form says the same)."""
    result = await ok(client, tool, **arguments)
    assert result.structured_content is not None, tool
    assert json.loads(text(result)) == result.structured_content
    return result.structured_content


async def failure(client: Client, tool: str, **arguments: Any) -> str:
    """The error a tool call ended with, after the SDK's `Error executing tool NAME: `."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} succeeded: {text(result)}"
    message = text(result)
    assert "Traceback" not in message and 'File "' not in message, message
    prefix = f"Error executing tool {tool}: "
    assert message.startswith(prefix), message
    return message.removeprefix(prefix)


async def walk(client: Client, memgrpc: AsyncMemgrpcClient) -> None:
    """list tools; remember -> recall finds it -> get_context shows it -> forget -> recall no
    longer does; add_messages (new session, then the same one); get_profile; errors carry the
    gRPC status and reason."""
    listed = (await client.list_tools()).tools
    assert {t.name for t in listed} == TOOLS
    for tool in listed:
        assert tool.description and len(tool.description) > 80, tool.name
    hints = {t.name: t.annotations for t in listed}
    assert all(
        hints[n] and hints[n].read_only_hint for n in ("recall", "get_context", "get_profile")
    )
    assert hints["forget"] and hints["forget"].destructive_hint
    schemas = {t.name: t.input_schema for t in listed}
    assert set(schemas["remember"]["required"]) == {"content", "user_id"}
    assert set(schemas["recall"]["required"]) == {"query", "user_id"}

    user = "mcp_" + secrets.token_hex(4)
    fact = "Maya is allergic to peanuts and carries an EpiPen"
    noise = "Maya's favourite colour is teal"
    made = await data(client, "remember", content=fact, user_id=user, type="fact", tags=["health"])
    assert made["id"].startswith("mem_") and made["content"] == fact
    assert made["type"] == "fact" and made["tags"] == ["health"]
    await data(client, "remember", content=noise, user_id=user)
    stored = await memgrpc.memory.get(made["id"])  # it is really in memgrpc, under this key
    assert stored["user_id"] == user and stored["content"] == fact

    found = (await data(client, "recall", query="food allergy", user_id=user, limit=2))["memories"]
    assert found[0]["id"] == made["id"] and found[0]["content"] == fact
    assert 0 < found[0]["score"] <= 1
    assert len(found) <= 2

    context = text(
        await ok(client, "get_context", user_id=user, query="what can Maya eat?", token_budget=400)
    )
    assert fact in context

    assert await data(client, "forget", memory_id=made["id"]) == {"deleted": made["id"]}
    after = (await data(client, "recall", query="food allergy", user_id=user))["memories"]
    assert made["id"] not in {m["id"] for m in after}
    assert fact not in text(await ok(client, "get_context", user_id=user, query="peanuts"))
    gone = await failure(client, "forget", memory_id=made["id"])
    assert gone.startswith("NOT_FOUND (MEMORY_NOT_FOUND): "), gone

    turns = [
        {"role": "user", "content": "I just moved to Lisbon with my dog Rex"},
        {"role": "assistant", "content": "Welcome to Lisbon! How is Rex settling in?"},
    ]
    added = await data(client, "add_messages", user_id=user, messages=turns)
    assert added["added"] == 2 and added["session_id"].startswith("ses_")
    more = [{"role": "user", "content": "He loves the beach"}]
    again = await data(client, "add_messages", session_id=added["session_id"], messages=more)
    assert again == {"session_id": added["session_id"], "added": 1}
    listed_messages = (await memgrpc.sessions.messages(added["session_id"]))["messages"]
    assert [(m["role"], m["content"]) for m in listed_messages] == [
        (t["role"], t["content"]) for t in [*turns, *more]
    ]
    assert "Rex" in text(
        await ok(client, "get_context", user_id=user, session_id=added["session_id"])
    )
    neither = await failure(client, "add_messages", messages=more)
    assert neither.startswith("INVALID_ARGUMENT"), neither

    assert await data(client, "get_profile", user_id=user) == {"user_id": user, "facts": {}}
    await memgrpc.recall.save_profile_fact(user, "location", "Lisbon")
    profile = await data(client, "get_profile", user_id=user)
    assert profile["user_id"] == user and profile["facts"]["location"] == "Lisbon"

    too_long = await failure(client, "remember", content="x" * 40_000, user_id=user)
    assert too_long.startswith("INVALID_ARGUMENT (INVALID_ARGUMENT): "), too_long
    assert "content" in too_long, too_long
    # the input schema is checked before memgrpc is called
    assert "limit" in await failure(client, "recall", query="x", user_id=user, limit=0)
