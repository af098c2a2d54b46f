"""What a chat turn reports, in stream order: started, context, delta... (and tool calls), then
done or failed; phases and side effects go to observers only (background turns)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from memgrpc.core.agents.turns import Mood
from memgrpc.core.kernel.errors import DomainError
from memgrpc.core.memory.model import SearchHit
from memgrpc.llm import ToolCall, Usage


@dataclass(frozen=True)
class Started:
    user_message_id: str
    session_id: str


@dataclass(frozen=True)
class ContextUsed:
    memories: list[SearchHit]


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    assistant_message_id: str
    usage: Usage
    latency: timedelta


@dataclass(frozen=True)
class Failed:
    error: DomainError


@dataclass(frozen=True)
class ToolCalled:
    """The model asked to call one of the request's tools."""

    call: ToolCall


@dataclass(frozen=True)
class Phase:
    """What the turn is doing now: recall, generating, storing, side_effects (observers only:
    not part of the stream)."""

    name: str


@dataclass(frozen=True)
class SideEffects:
    """What a background turn changed besides the reply (observers only)."""

    facts_extracted: int = 0
    memory_ids: tuple[str, ...] = ()
    mood_before: Mood | None = None
    mood_after: Mood | None = None


EventBody = Started | ContextUsed | Delta | ToolCalled | Done | Failed | Phase | SideEffects
Emit = Callable[[EventBody], None]
_OBSERVED_ONLY = (Phase, SideEffects)


@dataclass(frozen=True)
class ChatEvent:
    sequence: int
    create_time: datetime
    body: EventBody


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    models: tuple[str, ...]
    default_model: str
    is_default: bool
    available: bool
