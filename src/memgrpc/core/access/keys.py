"""The admin service: projects, API keys and memory categories, with the rules of who may
manage which.

Another project's ids answer NOT_FOUND, never PERMISSION_DENIED, so ids reveal nothing.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import structlog

from memgrpc.core.access import bootstrap
from memgrpc.core.access.authenticator import Authenticator
from memgrpc.core.access.principal import Principal, Scope
from memgrpc.core.access.records import (
    ApiKey,
    CreatedApiKey,
    Project,
    key_from_row,
    key_row,
    new_secret,
    now,
    project_from_row,
)
from memgrpc.core.kernel import paging
from memgrpc.core.kernel.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Violations,
)
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.paging import Cursor, Page
from memgrpc.core.memory.categories import Categories, Category
from memgrpc.store.keys import KeyStore, Row

log = structlog.get_logger(__name__)

MAX_NAME_CHARS = 200
MAX_ID_CHARS = 128
# a retried CreateApiKey may get its secret again from this process for this long
SECRET_REPLAY_S = 600.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_name(v: Violations, field: str, value: str) -> None:
    if len(value) > MAX_NAME_CHARS:
        v.add(field, f"must be at most {MAX_NAME_CHARS} characters")
    elif _CONTROL.search(value):
        v.add(field, "must not contain control characters")


def _check_id(v: Violations, field: str, value: str, *, required: bool = True) -> None:
    if not value:
        if required:
            v.add(field, "is required")
    elif len(value) > MAX_ID_CHARS or _CONTROL.search(value):
        v.add(field, f"must be at most {MAX_ID_CHARS} characters without control characters")


def _check_scopes(v: Violations, field: str, scopes: tuple[Scope, ...]) -> tuple[Scope, ...]:
    if not scopes:
        v.add(field, "must name at least one scope (read, write, admin, byok_read, byok_write)")
    return tuple(s for s in Scope if s in scopes)  # canonical order, no duplicates


def _project_not_found(project_id: str) -> NotFound:
    return NotFound(f"project {project_id!r} not found", reason="PROJECT_NOT_FOUND")


def _key_not_found(key_id: str) -> NotFound:
    return NotFound(f"API key {key_id!r} not found", reason="API_KEY_NOT_FOUND")


def _bootstrap_only(what: str) -> PermissionDenied:
    return PermissionDenied(f"only the bootstrap key may {what}", reason="BOOTSTRAP_KEY_REQUIRED")


# -- the admin service --------------------------------------------------------------------------
class AdminService:
    """Projects and keys. `admin` manages its own project's keys; bootstrap manages everything."""

    def __init__(
        self, keys: KeyStore, authenticator: Authenticator, categories: Categories | None = None
    ) -> None:
        self._keys = keys
        self._auth = authenticator
        self._categories = categories
        self._recent_secrets: dict[str, tuple[float, str]] = {}

    # projects ---------------------------------------------------------------------------------
    async def create_project(self, caller: Principal, display_name: str) -> Project:
        if not caller.bootstrap:
            raise _bootstrap_only("create projects")
        v = Violations()
        _check_name(v, "project.display_name", display_name)
        v.raise_if_any()
        row = {"id": new_id("prj"), "display_name": display_name, "create_time": now()}
        await self._keys.insert_project(row)
        log.info("project_created", project_id=row["id"])
        return project_from_row(row)

    async def get_project(self, caller: Principal, project_id: str) -> Project:
        v = Violations()
        _check_id(v, "id", project_id)
        v.raise_if_any()
        if project_id != caller.project_id and not caller.bootstrap:
            raise _project_not_found(project_id)
        row = await self._keys.get_project(project_id)
        if row is None:
            raise _project_not_found(project_id)
        return project_from_row(row)

    async def list_projects(self, caller: Principal, page_size: int, token: str) -> Page[Project]:
        if not caller.bootstrap:
            raise _bootstrap_only("list projects")
        v = Violations()
        size = paging.page_size(v, page_size)
        v.raise_if_any()

        async def read(after: Cursor[str] | None, limit: int) -> tuple[list[Row], int]:
            return await self._keys.list_projects(after[1] if after else "", limit)

        fp = paging.fingerprint("projects")
        return await paging.fetch(
            size, token, fp, read, order=("id", "id"), kind=str, item=project_from_row
        )

    # keys -------------------------------------------------------------------------------------
    async def _target_project(
        self, caller: Principal, project_id: str, field: str, scope: Scope = Scope.ADMIN
    ) -> str:
        """The project an operation acts on: the caller's own unless bootstrap says another."""
        caller.require(scope)
        v = Violations()
        _check_id(v, field, project_id, required=False)
        v.raise_if_any()
        target = project_id or caller.project_id
        if target != caller.project_id:
            if not caller.bootstrap:
                raise _project_not_found(target)
            if await self._keys.get_project(target) is None:
                raise _project_not_found(target)
        return target

    async def _own_key(self, caller: Principal, key_id: str, field: str) -> Row:
        caller.require(Scope.ADMIN)
        v = Violations()
        _check_id(v, field, key_id)
        v.raise_if_any()
        row = await self._keys.get_key(key_id, None if caller.bootstrap else caller.project_id)
        if row is None:
            raise _key_not_found(key_id)
        return row

    async def create_api_key(
        self, caller: Principal, project_id: str, name: str, scopes: tuple[Scope, ...]
    ) -> CreatedApiKey:
        target = await self._target_project(caller, project_id, "project_id")
        v = Violations()
        _check_name(v, "api_key.name", name)
        scopes = _check_scopes(v, "api_key.scopes", scopes)
        v.raise_if_any()
        secret = new_secret()
        row = key_row(new_id("key"), target, name, secret, scopes, bootstrap=False)
        await self._keys.insert_key(row)
        self._remember_secret(row["id"], secret)
        log.info("api_key_created", key_id=row["id"], key_project=target, scopes=row["scopes"])
        return CreatedApiKey(key_from_row(row), secret)

    def secret_for_retry(self, key_id: str) -> str | None:
        """The secret of a key created by this process in the last few minutes (for retries).

        Only the hash is ever stored, so a retried CreateApiKey served by another process, or
        later, cannot be given the secret again.
        """
        hit = self._recent_secrets.get(key_id)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def _remember_secret(self, key_id: str, secret: str) -> None:
        now = time.monotonic()
        for stale in [k for k, (exp, _) in self._recent_secrets.items() if exp <= now]:
            del self._recent_secrets[stale]
        self._recent_secrets[key_id] = (now + SECRET_REPLAY_S, secret)

    async def list_api_keys(
        self,
        caller: Principal,
        project_id: str,
        page_size: int,
        token: str,
        include_revoked: bool,
    ) -> Page[ApiKey]:
        target = await self._target_project(caller, project_id, "project_id")
        v = Violations()
        size = paging.page_size(v, page_size)
        v.raise_if_any()

        async def read(after: Cursor[str] | None, limit: int) -> tuple[list[Row], int]:
            after_id = after[1] if after else ""
            return await self._keys.list_keys(
                target, include_revoked=include_revoked, after_id=after_id, limit=limit
            )

        fp = paging.fingerprint("api_keys", target, include_revoked)
        return await paging.fetch(
            size, token, fp, read, order=("id", "id"), kind=str, item=key_from_row
        )

    async def update_api_key(
        self,
        caller: Principal,
        key_id: str,
        name: str | None,
        scopes: tuple[Scope, ...] | None,
    ) -> ApiKey:
        """Rename and/or re-scope; None leaves a field as it is."""
        row = await self._own_key(caller, key_id, "api_key.id")
        v = Violations()
        if name is not None:
            _check_name(v, "api_key.name", name)
        if scopes is not None:
            scopes = _check_scopes(v, "api_key.scopes", scopes)
        v.raise_if_any()
        if row["revoke_time"] is not None:
            raise FailedPrecondition(f"API key {key_id!r} is revoked", reason="API_KEY_REVOKED")
        if scopes is not None and row["bootstrap"]:
            raise FailedPrecondition(
                "the bootstrap key's scopes cannot change", reason="BOOTSTRAP_KEY_PROTECTED"
            )
        row = dict(row)
        if name is not None:
            row["name"] = name
        if scopes is not None:
            row["scopes"] = [s.value for s in scopes]
        await self._keys.upsert_key(row)
        self._auth.invalidate()
        return key_from_row(row)

    async def revoke_api_key(self, caller: Principal, key_id: str) -> ApiKey:
        """Idempotent: revoking a revoked key returns it unchanged."""
        row = await self._own_key(caller, key_id, "id")
        if row["bootstrap"]:
            raise FailedPrecondition(
                "the bootstrap key cannot be revoked; set MEMGRPC_ADMIN_KEY to rotate it",
                reason="BOOTSTRAP_KEY_PROTECTED",
            )
        if row["revoke_time"] is None:
            row = dict(row, revoke_time=now())
            await self._keys.upsert_key(row)
            log.info("api_key_revoked", key_id=key_id, key_project=row["project_id"])
        self._auth.invalidate()
        return key_from_row(row)

    # categories -------------------------------------------------------------------------------
    def _category_store(self) -> Categories:
        if self._categories is None:
            raise RuntimeError("AdminService was built without categories")
        return self._categories

    async def list_categories(self, caller: Principal, project_id: str) -> list[Category]:
        target = await self._target_project(caller, project_id, "project_id", Scope.READ)
        return await self._category_store().list(target)

    async def set_categories(
        self, caller: Principal, project_id: str, categories: list[Category]
    ) -> list[Category]:
        target = await self._target_project(caller, project_id, "project_id")
        chosen = await self._category_store().set(target, categories)
        log.info("categories_set", key_project=target, count=len(categories))
        return chosen

    # bootstrap --------------------------------------------------------------------------------
    async def bootstrap(self, admin_key: str | None, key_file: Path) -> None:
        """See core.access.bootstrap.ensure."""
        await bootstrap.ensure(self._keys, admin_key, key_file)
