"""Fact extractors: turn a session's messages into candidate facts about its user.

`RulesExtractor` (offline, deterministic) is the default; `LlmExtractor` asks any
OpenAI-compatible model; `FallbackExtractor` tries one and falls back to the other.
"""

from memgrpc.core.intelligence.extract.rules import RulesExtractor, extract_profile
from memgrpc.core.intelligence.extract.slots import canonical_value

__all__ = ["RulesExtractor", "canonical_value", "extract_profile"]
