"""LLM providers: the local built-in responder (default) and OpenAI-compatible HTTP streaming.

`Providers` is the set a server runs with, built from config once at startup; a chat request
picks one by name (or gets the default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from memgrpc.llm.base import (
    ChatMessage,
    Fact,
    Generation,
    Provider,
    ProviderError,
    Tool,
    ToolCall,
    Usage,
)
from memgrpc.llm.local import LocalProvider
from memgrpc.llm.openai import OpenAIProvider, check_key

__all__ = [
    "ChatMessage",
    "Fact",
    "Generation",
    "LLMConfig",
    "LocalProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "Providers",
    "Tool",
    "ToolCall",
    "Usage",
    "build_providers",
    "check_key",
]

PROVIDER_NAMES = ("local", "openai")
OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class LLMConfig:
    default: str = "local"
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str | None = None
    openai_timeout_s: float = 60.0


class Providers:
    """The configured providers by name, and which one a request without a name gets."""

    def __init__(self, providers: Sequence[Provider], default: str) -> None:
        self._by_name = {p.name: p for p in providers}
        if default not in self._by_name:
            raise ValueError(f"default provider {default!r} is not one of {sorted(self._by_name)}")
        self.default = default

    def get(self, name: str) -> Provider | None:
        """The provider called `name` ("" = the default); None when there is none."""
        return self._by_name.get(name or self.default)

    def all(self) -> list[Provider]:
        return list(self._by_name.values())

    async def aclose(self) -> None:
        for p in self._by_name.values():
            await p.aclose()


def build_providers(config: LLMConfig) -> Providers:
    return Providers(
        [
            LocalProvider(),
            OpenAIProvider(
                # an API key alone means OpenAI itself
                config.openai_base_url or (OPENAI_BASE_URL if config.openai_api_key else None),
                config.openai_api_key,
                config.openai_model,
                config.openai_timeout_s,
            ),
        ],
        config.default,
    )
