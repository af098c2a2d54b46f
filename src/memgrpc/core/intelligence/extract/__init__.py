"""Fact extractors: turn a session's messages into candidate facts about its user.

`RulesExtractor` (offline, deterministic) is the default; `LlmExtractor` asks any
OpenAI-compatible model; `FallbackExtractor` tries one and falls back to the other.
`extract_profile` and `canonical_value` read and spell one profile value (SaveProfileFact).
"""

from memgrpc.core.intelligence.extract.fallback import FallbackExtractor
from memgrpc.core.intelligence.extract.llm import BAD_OUTPUT, LlmExtractor, parse_reply
from memgrpc.core.intelligence.extract.rules import RulesExtractor, extract_profile
from memgrpc.core.intelligence.extract.slots import canonical_value

__all__ = [
    "BAD_OUTPUT",
    "FallbackExtractor",
    "LlmExtractor",
    "RulesExtractor",
    "canonical_value",
    "extract_profile",
    "parse_reply",
]
