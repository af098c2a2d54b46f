"""An extractor that falls back to another when the first fails (MEMGRPC_EXTRACTOR_FALLBACK):
the LLM for quality, the rules so that a provider outage does not fail every ProcessSession."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from memgrpc.core.conversation.records import Message
from memgrpc.core.intelligence.facts import Extractor, Fact, KnownFact
from memgrpc.core.kernel.errors import DomainError

log = structlog.get_logger(__name__)


class FallbackExtractor:
    """Tries `primary`; on a DomainError (a provider failure, or an answer it could not read)
    logs a warning and returns what `fallback` extracts. Other exceptions are bugs: they pass."""

    def __init__(self, primary: Extractor, fallback: Extractor) -> None:
        self.primary = primary
        self.fallback = fallback

    @property
    def name(self) -> str:
        return f"{self.primary.name}+{self.fallback.name}"

    async def extract(self, messages: Sequence[Message], known: Sequence[KnownFact]) -> list[Fact]:
        facts, _ = await extract_named(self.primary, self.fallback, messages, known)
        return facts


async def extract_named(
    primary: Extractor,
    fallback: Extractor | None,
    messages: Sequence[Message],
    known: Sequence[KnownFact],
) -> tuple[list[Fact], str]:
    """The facts, and the name of the extractor that gave them (a job's stats say it)."""
    try:
        return await primary.extract(messages, known), primary.name
    except DomainError as exc:
        if fallback is None:
            raise
        log.warning(
            "extractor_fallback",
            extractor=primary.name,
            fallback=fallback.name,
            reason=exc.reason,
            error=exc.message,
        )
        return await fallback.extract(messages, known), fallback.name
