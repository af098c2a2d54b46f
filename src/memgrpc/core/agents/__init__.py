"""Agents: the personas a project's users talk to (Sonzai agents), each with a system prompt,
a personality (Big Five scores and named dimensions) and capabilities. This package owns their
rows and input rules; per-user state (instances, moods, custom states) will hang off them."""

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
    "Personality",
]
