"""The seam between a conversation turn and an agent's per-user state: chat and SubmitTurn tell
the context engine about each turn through `TurnHook`, and read the mood it keeps, without
depending on how the engine derives it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from memgrpc.core.conversation.records import Message, Session


@dataclass(frozen=True)
class Scope:
    """Whose state: an agent's (in one instance, or its default state) towards one user."""

    agent_id: str
    user_id: str
    instance_id: str = ""


@dataclass(frozen=True)
class Mood:
    label: str = "neutral"
    # [-1, 1] unpleasant .. pleasant
    valence: float = 0.0
    # [0, 1] calm .. excited
    arousal: float = 0.3
    turns: int = 0
    update_time: datetime | None = None
    # lexicon | llm
    source: str = "lexicon"


class TurnHook(Protocol):
    async def observe_turn(
        self, project_id: str, session: Session, messages: Sequence[Message]
    ) -> Mood | None:
        """Record a turn of an agent session (mood, relationship, activity); the mood after
        it, or None when the session has no agent."""
        ...

    async def mood(self, project_id: str, scope: Scope) -> Mood:
        """The current mood (the neutral default before any turn)."""
        ...
