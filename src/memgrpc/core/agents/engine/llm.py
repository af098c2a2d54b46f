"""The context engine's LLM path: one JSON question to the configured OpenAI-compatible model.

Every answer is validated by the caller's `check`; a provider failure or an answer that is not
the promised JSON returns None (and is logged), and the caller keeps its offline (lexicon,
rules, template) result: the engine never writes half an LLM answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from memgrpc.llm import ChatMessage, Provider, ProviderError

log = structlog.get_logger(__name__)
T = TypeVar("T")
_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.S)

SYSTEM = """You are the context engine of an AI agent that talks with many users. You are given
a task as JSON (its "task" field says which) and answer with JSON only, no prose.
- task "mood": the agent's mood towards the user and their relationship after the user's new
  messages. Answer {"mood": {"label": one lowercase word, "valence": -1..1, "arousal": 0..1},
  "relationship": {"affinity": -1..1, "description": one or two sentences}}.
- task "insights": sort the user's statements into habits, goals and interests. Answer
  {"habits": [ITEM], "goals": [ITEM], "interests": [ITEM]}, ITEM = {"text": a short phrase,
  "source_ids": ids of the statements it rests on, "status": for goals "active", "achieved"
  or "abandoned"}.
- task "diary": the agent's diary paragraph, in its own voice (first person), about meeting
  the user that day and what it learned. Answer {"text": ...}.
- task "notification": a short message the agent sends the user on its own for the given
  check. Answer {"message": ...}."""


# a project's own (BYOK) provider, None = it has none
OwnProvider = Callable[[str], Awaitable[Provider | None]]


class EngineLlm:
    """The model a project's engine asks: its own BYOK key's provider when it has one (at that
    key's default model), else the server's when MEMGRPC_EXTRACTOR=llm, else none (offline)."""

    def __init__(
        self,
        provider: Provider | None,
        model: str = "",
        *,
        own: OwnProvider | None = None,
        max_tokens: int = 512,
    ) -> None:
        self._provider = provider
        self._model = model
        self._own = own
        self._max_tokens = max_tokens

    async def ask(
        self, project_id: str, payload: dict[str, Any], check: Callable[[Any], T]
    ) -> T | None:
        """`check(parsed JSON)` returns the validated value or raises ValueError/KeyError/
        TypeError; None when there is no model for the project, or the call or answer failed."""
        provider = await self._own(project_id) if self._own is not None else None
        model = ""
        if provider is None:
            provider, model = self._provider, self._model
        if provider is None:
            return None
        messages = [
            ChatMessage("system", SYSTEM),
            ChatMessage("user", json.dumps(payload, ensure_ascii=False, default=str)),
        ]
        gen = provider.stream(messages, model, 0.0, self._max_tokens)
        try:
            reply = "".join([delta async for delta in gen])
        except ProviderError as exc:
            log.warning("engine_llm_failed", task=payload.get("task"), kind=exc.kind)
            return None
        finally:
            await gen.aclose()
        fenced = _FENCE.match(reply)
        try:
            return check(json.loads(fenced[1] if fenced else reply))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("engine_llm_bad_output", task=payload.get("task"), error=str(exc)[:200])
            return None


def number(v: Any, low: float, high: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
        raise ValueError(f"{v!r} is not a number in [{low}, {high}]")
    return float(v)


def text(v: Any, limit: int) -> str:
    if not isinstance(v, str) or not v.strip() or len(v) > limit:
        raise ValueError(f"not a non-empty string of at most {limit} characters")
    return v.strip()
