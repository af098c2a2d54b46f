"""Which LLM provider a project's chat, extraction and context engine run on: its active BYOK
key when it has one, else the server's own (callers fall back when this says None).

Answers are cached per project for a short time (other replicas' changes show up within it);
this process's Set / SetActive / Delete drop the project's entry at once. A provider whose key
changed is not closed while a turn may still stream through it: replaced ones are closed when
the server stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from memgrpc.core.providers.keys import ActiveKey, ProviderKeys
from memgrpc.llm import Provider

# (active key) -> a provider speaking to its endpoint with its key
ProviderFactory = Callable[[ActiveKey], Provider]
DEFAULT_TTL_S = 30.0


@dataclass
class _Entry:
    expires: float
    key: ActiveKey | None
    provider: Provider | None


class ProjectProviders:
    def __init__(
        self, keys: ProviderKeys, factory: ProviderFactory, ttl_s: float = DEFAULT_TTL_S
    ) -> None:
        self._keys = keys
        self._factory = factory
        self._ttl_s = ttl_s
        self._cache: dict[str, _Entry] = {}
        self._retired: list[Provider] = []
        keys.on_change(self.invalidate)

    def invalidate(self, project_id: str) -> None:
        entry = self._cache.pop(project_id, None)
        if entry is not None and entry.provider is not None:
            self._retired.append(entry.provider)

    async def provider_for(self, project_id: str) -> Provider | None:
        """The project's own provider; None = use the server's."""
        now = time.monotonic()
        entry = self._cache.get(project_id)
        if entry is not None and entry.expires > now:
            return entry.provider
        key = await self._keys.active(project_id)
        if entry is not None and entry.key == key:  # unchanged: keep its connection pool
            entry.expires = now + self._ttl_s
            return entry.provider
        if entry is not None and entry.provider is not None:
            self._retired.append(entry.provider)
        provider = self._factory(key) if key is not None else None
        self._cache[project_id] = _Entry(now + self._ttl_s, key, provider)
        return provider

    async def aclose(self) -> None:
        for entry in self._cache.values():
            if entry.provider is not None:
                await entry.provider.aclose()
        for p in self._retired:
            await p.aclose()
        self._cache.clear()
        self._retired.clear()
