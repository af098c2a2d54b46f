"""memgrpc failures as MCP tool errors: what a model can act on, never a traceback."""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ToolError

from memgrpc.client.errors import InvalidArgumentError, MemgrpcError


def tool_error(exc: MemgrpcError) -> ToolError:
    """`NOT_FOUND (MEMORY_NOT_FOUND): memory mem_x not found`, plus which fields were wrong.

    Status and reason lead so a model (and a person reading its transcript) can tell "fix the
    arguments" from "the key is wrong" from "try again later" without parsing prose."""
    head = exc.status.name + (f" ({exc.reason})" if exc.reason else "")
    text = f"{head}: {exc.message}"
    if isinstance(exc, InvalidArgumentError):
        fields = [
            f"{v.get('field', '')}: {v.get('description', '')}"
            for v in exc.field_violations
            if f"{v.get('field', '')}: {v.get('description', '')}" not in exc.message
        ]
        if fields:
            text += " [" + "; ".join(fields) + "]"
    if exc.request_id:
        text += f" (request_id {exc.request_id})"
    return ToolError(text)
