"""The context engine (Sonzai's): per agent and user, the mood and relationship each turn moves,
the habits, goals and interests derived from what the user said, the agent's diary, and the
proactive notifications. Offline everything is derived deterministically (a sentiment lexicon,
fixed rules and templates, documented in each module); with an LLM configured the model writes
them as validated JSON, falling back to the offline result on a bad answer."""

from memgrpc.core.agents.engine.diary import Diary, DiaryEntry
from memgrpc.core.agents.engine.insights import Found
from memgrpc.core.agents.engine.llm import EngineLlm
from memgrpc.core.agents.engine.notifications import (
    STATUSES,
    Notification,
    Notifications,
    NotificationSweeper,
)
from memgrpc.core.agents.engine.relations import ContextEngine, Relationship

__all__ = [
    "STATUSES",
    "ContextEngine",
    "Diary",
    "DiaryEntry",
    "EngineLlm",
    "Found",
    "Notification",
    "NotificationSweeper",
    "Notifications",
    "Relationship",
]
