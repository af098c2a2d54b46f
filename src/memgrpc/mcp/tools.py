"""The MCP tools: six small calls an agent needs to keep and use a user's memory.

Descriptions are written for the model that picks the tools: when to call each one and what
comes back. Results are compact (no empty fields, no embeddings) because every byte of them
lands in the model's context window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs it for schemas on Python < 3.12

from memgrpc.client import AsyncMemgrpcClient
from memgrpc.client.errors import MemgrpcError
from memgrpc.mcp.errors import tool_error

# the client for the current request: the one client (stdio) or one with the bearer's key (HTTP)
ClientFor = Callable[[], AsyncMemgrpcClient]
T = TypeVar("T")

MemoryType = Literal["fact", "preference", "observation", "task", "insight", "journal"]
DEFAULT_RECALL = 5
MAX_RECALL = 50
DEFAULT_TOKEN_BUDGET = 1000

UserId = Annotated[
    str,
    Field(
        min_length=1,
        description="Stable id of the person the memory is about (your app's user id). Use the "
        "same id every time for the same person.",
    ),
]


class Message(TypedDict):
    role: Annotated[str, Field(description="user, assistant, system or tool")]
    content: str


class Memory(TypedDict, total=False):
    id: str
    content: str
    type: str
    tags: list[str]
    session_id: str
    create_time: str
    score: float


class RecallResult(TypedDict):
    memories: list[Memory]


class Forgotten(TypedDict):
    deleted: str


class AddedMessages(TypedDict):
    session_id: str
    added: int


class Profile(TypedDict):
    user_id: str
    facts: dict[str, Any]


async def _call(make: Awaitable[T]) -> T:
    try:
        return await make
    except MemgrpcError as exc:
        raise tool_error(exc) from None


def _memory(data: dict[str, Any], score: float | None = None) -> Memory:
    out: Memory = {"id": data["id"], "content": data["content"], "type": data.get("type") or ""}
    if data.get("tags"):
        out["tags"] = list(data["tags"])
    if data.get("session_id"):
        out["session_id"] = data["session_id"]
    if data.get("create_time"):
        out["create_time"] = data["create_time"]
    if score is not None:
        out["score"] = round(score, 4)
    return out


def register(server: MCPServer[Any], client_for: ClientFor) -> None:
    """Add the tools to `server`; each call takes its client from `client_for()`."""

    @server.tool(
        description="Store one durable memory about a user: a fact, preference, task or "
        'observation worth knowing in a later conversation ("prefers dark mode", "is '
        'allergic to peanuts"). Write it as a short self-contained statement in the third '
        "person. Call it when the user tells you something lasting; don't store small talk or "
        "what is already remembered (recall first if unsure). Returns the stored memory with "
        "its id (needed to forget it).",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False),
    )
    async def remember(
        content: Annotated[str, Field(min_length=1, description="The memory, one statement.")],
        user_id: UserId,
        type: Annotated[
            MemoryType | None,
            Field(description="Kind of memory (default observation)."),
        ] = None,
        tags: Annotated[
            list[str] | None, Field(description='Optional short labels, e.g. ["diet"].')
        ] = None,
        session_id: Annotated[
            str | None, Field(description="Conversation (ses_...) it came from, if any.")
        ] = None,
    ) -> Memory:
        fields: dict[str, Any] = {"user_id": user_id, "content": content}
        if type:
            fields["type"] = type
        if tags:
            fields["tags"] = tags
        if session_id:
            fields["session_id"] = session_id
        return _memory(await _call(client_for().memory.create(fields)))

    @server.tool(
        description="Search a user's memories by meaning (and keywords). Call it before "
        "answering anything that may depend on what you know about the user (their "
        "preferences, history, people, plans), or to find a memory's id before forgetting it. "
        "Returns the best matches, best first, each with its id, content, type and a relevance "
        "score in [0, 1]; an empty list means nothing relevant is stored.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    async def recall(
        query: Annotated[str, Field(min_length=1, description="What you want to know.")],
        user_id: UserId,
        limit: Annotated[
            int, Field(ge=1, le=MAX_RECALL, description="Most results to return.")
        ] = DEFAULT_RECALL,
    ) -> RecallResult:
        found = await _call(client_for().memory.search(query, user_id=user_id, limit=limit))
        return {"memories": [_memory(r["memory"], r["score"]) for r in found["results"]]}

    @server.tool(
        description="Get one ready-to-read block of what matters for the next reply: the "
        "user's profile, the memories relevant to `query` and, with a session_id, the "
        "conversation's recent messages and summaries, trimmed to token_budget. Call it at "
        "the start of a turn instead of several recalls. Returns the context text.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    async def get_context(
        user_id: UserId,
        query: Annotated[
            str, Field(description="What the next turn is about; empty = recent context only.")
        ] = "",
        session_id: Annotated[
            str | None, Field(description="Conversation (ses_...) to include messages from.")
        ] = None,
        token_budget: Annotated[
            int, Field(ge=0, description="Most tokens of context to return (0 = no limit).")
        ] = DEFAULT_TOKEN_BUDGET,
    ) -> str:
        params: dict[str, Any] = {"user_id": user_id, "token_budget": token_budget}
        if query:
            params["query"] = query
        if session_id:
            params["session_id"] = session_id
        context = await _call(client_for().context.get(params))
        return str(context["context"])

    @server.tool(
        description="Delete one memory for good, by its id (mem_...; recall finds ids). Call "
        "it when the user asks you to forget something or a memory is wrong and you won't "
        "restate it. Returns the deleted id; NOT_FOUND means there is no such memory.",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True
        ),
    )
    async def forget(
        memory_id: Annotated[str, Field(min_length=1, description="The memory's id, mem_...")],
    ) -> Forgotten:
        await _call(client_for().memory.delete(memory_id))
        return {"deleted": memory_id}

    @server.tool(
        description="Append conversation messages to a session so memgrpc can learn from the "
        "conversation (facts are extracted from it in the background) and get_context can "
        "show recent turns. Pass session_id to continue a session, or user_id alone to start "
        "a new one. Returns the session_id (reuse it for the rest of the conversation) and "
        "how many messages were added.",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False),
    )
    async def add_messages(
        messages: Annotated[
            list[Message], Field(min_length=1, description="The messages, oldest first.")
        ],
        session_id: Annotated[
            str | None, Field(description="Session (ses_...) to append to.")
        ] = None,
        user_id: Annotated[
            str | None, Field(description="With no session_id: whose new session to start.")
        ] = None,
    ) -> AddedMessages:
        client = client_for()
        if not session_id:
            if not user_id:
                raise ToolError(
                    "INVALID_ARGUMENT: give session_id (to continue a session) or user_id "
                    "(to start one)"
                )
            session = await _call(client.sessions.create(user_id=user_id))
            session_id = session.id
        rows = [{"role": m["role"], "content": m["content"]} for m in messages]
        added = await _call(client.sessions.add_messages(session_id, rows))
        return {"session_id": session_id, "added": len(added["messages"])}

    @server.tool(
        description="Get what is known about a user as profile facts (name, location, "
        "occupation, diet, pets, ...), learned from their conversations and memories. Call it "
        "to personalise a reply or greet the user. Returns {user_id, facts: {slot: value}}; "
        "empty facts means nothing is known yet.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    async def get_profile(user_id: UserId) -> Profile:
        facts = await _call(client_for().recall.get_profile_facts(user_id))
        return {"user_id": user_id, "facts": facts}
