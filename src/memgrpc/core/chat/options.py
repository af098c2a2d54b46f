"""Sonzai's chat options (agent, messages, user details, tools): their input rules, and the
turn's message taken from `messages` when the request gives none."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import Violations
from memgrpc.llm import Tool

if TYPE_CHECKING:
    from memgrpc.core.chat.turn import ChatRequest

MAX_CHAT_MESSAGES = 100
CHAT_ROLES = ("user", "assistant", "system", "tool")
MAX_NAME_CHARS = 200
MAX_TOOLS = 64
MAX_TOOL_DESCRIPTION_CHARS = 1024
MAX_CAPABILITIES = 32
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CAPABILITY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}$")


@dataclass(frozen=True)
class PriorMessage:
    """A message of the conversation as the client sends it (Sonzai `messages`)."""

    role: str
    content: str
    name: str = ""


def zone_of(name: str) -> tzinfo | None:
    """The IANA zone called `name`; None for "" or an unknown name."""
    try:
        return ZoneInfo(name) if name and len(name) <= 64 else None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def check_options(v: Violations, r: ChatRequest) -> ChatRequest:
    """Check the Sonzai chat options; the request with its message taken from `messages`
    (the last, a user's) when `message` is empty."""
    validation.check_id(v, "agent_id", r.agent_id, required=False)
    validation.check_id(v, "instance_id", r.instance_id, required=False)
    if r.instance_id and not r.agent_id and not r.session_id:
        v.add("instance_id", "requires agent_id")
    if len(r.messages) > MAX_CHAT_MESSAGES:
        v.add("messages", f"at most {MAX_CHAT_MESSAGES} messages")
    for i, m in enumerate(r.messages):
        if m.role not in CHAT_ROLES:
            v.add(f"messages[{i}].role", f"must be one of {', '.join(CHAT_ROLES)}")
        validation.check_content(v, f"messages[{i}].content", m.content)
        if len(m.name) > MAX_NAME_CHARS or not m.name.isprintable():
            v.add(f"messages[{i}].name", f"must be at most {MAX_NAME_CHARS} printable characters")
    if not r.message and r.messages:
        last = r.messages[-1]
        if last.role != "user":
            v.add("messages", "with no `message`, the last message must be the user's")
        else:
            r = replace(r, message=last.content, messages=r.messages[:-1])
    name = r.user_display_name
    if len(name) > MAX_NAME_CHARS or not name.isprintable():
        v.add("user_display_name", f"must be at most {MAX_NAME_CHARS} printable characters")
    if r.language and not _LANGUAGE.match(r.language):
        v.add("language", "must be a BCP 47 language tag, e.g. `de` or `pt-BR`")
    if r.timezone and zone_of(r.timezone) is None:
        v.add("timezone", f"unknown IANA time zone {r.timezone[:64]!r}")
    if len(r.tool_capabilities) > MAX_CAPABILITIES:
        v.add("tool_capabilities", f"at most {MAX_CAPABILITIES} capabilities")
    for i, cap in enumerate(r.tool_capabilities):
        if not _CAPABILITY.match(cap):
            v.add(f"tool_capabilities[{i}]", "must be 1-64 letters, digits, `_`, `.`, `:`, `-`")
    _check_tools(v, r.tools)
    return r


def _check_tools(v: Violations, tools: Sequence[Tool]) -> None:
    if len(tools) > MAX_TOOLS:
        v.add("tool_definitions", f"at most {MAX_TOOLS} tools")
    seen: dict[str, int] = {}
    for i, t in enumerate(tools):
        at = f"tool_definitions[{i}]"
        if not _TOOL_NAME.match(t.name):
            v.add(f"{at}.name", "must be 1-64 letters, digits, `_` or `-`")
        elif t.name in seen:
            v.add(f"{at}.name", f"duplicates tool_definitions[{seen[t.name]}].name")
        seen.setdefault(t.name, i)
        if len(t.description) > MAX_TOOL_DESCRIPTION_CHARS:
            v.add(f"{at}.description", f"must be at most {MAX_TOOL_DESCRIPTION_CHARS} characters")
        params = t.parameters
        if params and params.get("type") != "object":
            v.add(f"{at}.parameters", 'must be a JSON Schema object: {"type": "object", ...}')
        elif params and not isinstance(params.get("properties", {}), dict):
            v.add(f"{at}.parameters", "`properties` must be an object")
        elif len(json.dumps(params)) > validation.MAX_CONTENT_BYTES:
            v.add(f"{at}.parameters", f"must be at most {validation.MAX_CONTENT_BYTES} bytes")
