"""A project's own LLM provider keys (BYOK): set (checked against the provider first), list,
activate, test and delete.

The key is sealed (crypto.Sealer) before it reaches a row and opened only to call the provider;
it is never returned, logged or put in an error. One key per project is active: the first one
set, then whichever SetActive names. Deleting the active key activates none: the project falls
back to the server's provider until one is activated (an explicit choice, not a guess).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import FailedPrecondition, NotFound, Unavailable, Violations
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.providers.crypto import Sealer
from memgrpc.llm import ProviderError
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table

log = structlog.get_logger(__name__)

Health = Literal["healthy", "unhealthy", ""]
MAX_KEY_CHARS = 1024
MAX_URL_CHARS = 2048
MAX_MODEL_CHARS = 256
PREFIX_CHARS = 6
_BAD_KEY_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")

# (provider, base_url, api_key): returns when the provider accepts the key (llm.check_key)
KeyCheck = Callable[[str, str, str], Awaitable[None]]


@dataclass(frozen=True)
class ProviderKey:
    """A stored key as callers see it: everything but the secret."""

    id: str
    provider: str
    key_prefix: str
    is_active: bool
    health: Health
    last_check_time: datetime | None
    last_error: str
    base_url: str
    default_model: str
    create_time: datetime


@dataclass(frozen=True)
class ActiveKey:
    """What a project's chat runs on: the endpoint, the model and the opened secret."""

    key_id: str
    provider: str
    base_url: str
    default_model: str
    api_key: str = field(repr=False)
    update_time: datetime


def prefix_of(api_key: str) -> str:
    """At most PREFIX_CHARS, and at most a quarter of a short key."""
    return api_key[: min(PREFIX_CHARS, len(api_key) // 4)]


def key_from_row(r: Row) -> ProviderKey:
    return ProviderKey(
        id=r["id"],
        provider=r["provider"],
        key_prefix=r["key_prefix"] or "",
        is_active=bool(r["is_active"]),
        health=r["health"] or "",
        last_check_time=r["last_check_time"],
        last_error=r["last_error"] or "",
        base_url=r["base_url"] or "",
        default_model=r["default_model"] or "",
        create_time=r["create_time"],
    )


def _aad(project_id: str, key_id: str) -> str:
    return f"{project_id}/{key_id}"


class ProviderKeys:
    def __init__(
        self,
        store: Store,
        sealer: Sealer,
        check: KeyCheck,
        base_urls: Mapping[str, str],
    ) -> None:
        self._table = Table(store, "provider_keys")
        self._sealer = sealer
        self._check = check
        self._base_urls = dict(base_urls)
        self._locks = KeyedLocks()
        self._listeners: list[Callable[[str], None]] = []

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._base_urls)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """`listener(project_id)` after every Set / SetActive / Delete (caches drop the project)."""
        self._listeners.append(listener)

    def _changed(self, project_id: str) -> None:
        for listener in self._listeners:
            listener(project_id)

    def endpoint(self, provider: str, base_url: str) -> str:
        return base_url or self._base_urls[provider]

    async def _verify(self, provider: str, base_url: str, api_key: str) -> None:
        """FAILED_PRECONDITION when the provider refuses the key, UNAVAILABLE when it could not
        be asked; the key is scrubbed from whatever the provider said."""
        try:
            await self._check(provider, self.endpoint(provider, base_url), api_key)
        except ProviderError as exc:
            reason = exc.message.replace(api_key, "***")[:500]
            if exc.kind == "auth":
                raise FailedPrecondition(
                    f"the {provider} provider refused the key ({reason})",
                    reason="PROVIDER_KEY_INVALID",
                    metadata={"provider": provider},
                ) from None
            raise Unavailable(
                f"could not check the key with the {provider} provider ({reason})",
                reason="PROVIDER_UNREACHABLE",
                metadata={"provider": provider},
            ) from None

    def _validate(
        self, v: Violations, provider: str, api_key: str, base_url: str, model: str
    ) -> None:
        if provider not in self._base_urls:
            v.add("provider", f"must be one of {', '.join(self._base_urls)}")
        if not api_key:
            v.add("api_key", "is required")
        elif len(api_key) > MAX_KEY_CHARS or _BAD_KEY_CHARS.search(api_key):
            v.add("api_key", f"must be at most {MAX_KEY_CHARS} characters without whitespace")
        if base_url and (
            not base_url.startswith(("http://", "https://"))
            or len(base_url) > MAX_URL_CHARS
            or _BAD_KEY_CHARS.search(base_url)
        ):
            v.add("base_url", f"must be an http(s) URL of at most {MAX_URL_CHARS} characters")
        if len(model) > MAX_MODEL_CHARS or _BAD_KEY_CHARS.search(model):
            v.add("default_model", f"must be at most {MAX_MODEL_CHARS} characters, no whitespace")

    async def set(
        self, project_id: str, provider: str, api_key: str, base_url: str, default_model: str
    ) -> ProviderKey:
        """Checked with the provider before anything is written; the project's first key
        becomes its active key."""
        v = Violations()
        self._validate(v, provider, api_key, base_url, default_model)
        v.raise_if_any()
        await self._verify(provider, base_url, api_key)
        now = datetime.now(UTC)
        key_id = new_id("pvk")
        nonce, sealed = self._sealer.seal(api_key, _aad(project_id, key_id))
        async with self._locks.hold(project_id):
            first = await self._table.count(Where().eq("project_id", project_id)) == 0
            row: dict[str, Any] = {
                "id": key_id,
                "project_id": project_id,
                "provider": provider,
                "key_prefix": prefix_of(api_key),
                "nonce": nonce,
                "ciphertext": sealed,
                "base_url": base_url,
                "default_model": default_model,
                "is_active": first,
                "health": "healthy",
                "last_check_time": now,
                "last_error": "",
                "create_time": now,
                "update_time": now,
            }
            await self._table.writer.insert([row])
        log.info("provider_key_set", key_id=key_id, provider=provider, active=first)
        self._changed(project_id)
        return key_from_row(row)

    async def _row(self, project_id: str, key_id: str) -> Row:
        v = Violations()
        validation.check_id(v, "id", key_id, required=True)
        v.raise_if_any()
        row = await self._table.first(Where().eq("project_id", project_id).eq("id", key_id))
        if row is None:
            raise NotFound(
                f"provider key {key_id} not found",
                reason="PROVIDER_KEY_NOT_FOUND",
                metadata={"id": key_id},
            )
        return row

    async def list(self, project_id: str) -> list[ProviderKey]:
        """Oldest first (a project holds a handful)."""
        rows = await self._table.rows(Where().eq("project_id", project_id))
        return [key_from_row(r) for r in sorted(rows, key=lambda r: (r["create_time"], r["id"]))]

    async def activate(self, project_id: str, key_id: str) -> ProviderKey:
        async with self._locks.hold(project_id):
            row = await self._row(project_id, key_id)
            now = datetime.now(UTC)
            others = Where().eq("project_id", project_id).eq("is_active", True)
            await self._table.writer.update(str(others), {"is_active": False, "update_time": now})
            await self._table.writer.patch([{"id": key_id, "is_active": True, "update_time": now}])
        log.info("provider_key_activated", key_id=key_id)
        self._changed(project_id)
        return key_from_row(row | {"is_active": True})

    async def test(self, project_id: str, key_id: str) -> ProviderKey:
        """Runs the check again and records its outcome (a refused or unreachable key is
        reported as unhealthy, not as an error of this call)."""
        row = await self._row(project_id, key_id)
        api_key = self._open(project_id, row)
        try:
            await self._verify(row["provider"], row["base_url"] or "", api_key)
            health, error = "healthy", ""
        except (FailedPrecondition, Unavailable) as exc:
            health, error = "unhealthy", exc.message
        now = datetime.now(UTC)
        change = {"health": health, "last_check_time": now, "last_error": error}
        await self._table.writer.patch([{"id": key_id, **change}])
        log.info("provider_key_tested", key_id=key_id, health=health)
        return key_from_row(row | change)

    async def delete(self, project_id: str, key_id: str) -> None:
        async with self._locks.hold(project_id):
            await self._row(project_id, key_id)
            where = Where().eq("project_id", project_id).eq("id", key_id)
            await self._table.writer.delete(str(where))
        log.info("provider_key_deleted", key_id=key_id)
        self._changed(project_id)

    def _open(self, project_id: str, row: Row) -> str:
        return self._sealer.open(row["nonce"], row["ciphertext"], _aad(project_id, row["id"]))

    async def active(self, project_id: str) -> ActiveKey | None:
        """The project's active key, opened; None when it has none."""
        where = Where().eq("project_id", project_id).eq("is_active", True)
        row = await self._table.first(where)
        if row is None:
            return None
        return ActiveKey(
            key_id=row["id"],
            provider=row["provider"],
            base_url=self.endpoint(row["provider"], row["base_url"] or ""),
            default_model=row["default_model"] or "",
            api_key=self._open(project_id, row),
            update_time=row["update_time"],
        )
