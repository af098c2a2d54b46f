"""Agents: the personas a project's users talk to (Sonzai agents), each with a system prompt,
a personality (Big Five scores and named dimensions) and capabilities. This package owns their
rows and input rules, and the per-user state that hangs off them (instances, custom states,
the context engine's mood and relationship, notifications)."""

from memgrpc.core.agents.model import (
    BIG_FIVE,
    FLAGS,
    MEMORY_MODES,
    Agent,
    Capabilities,
    CapabilitiesPatch,
    MemoryMode,
    Personality,
)
from memgrpc.core.agents.service import UPDATABLE, AgentService
from memgrpc.core.agents.turns import Mood, Scope, TurnHook

__all__ = [
    "BIG_FIVE",
    "FLAGS",
    "MEMORY_MODES",
    "UPDATABLE",
    "Agent",
    "AgentService",
    "Capabilities",
    "CapabilitiesPatch",
    "MemoryMode",
    "Mood",
    "Personality",
    "Scope",
    "TurnHook",
]
