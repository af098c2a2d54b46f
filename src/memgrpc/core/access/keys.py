"""Projects, API keys, the bootstrap key and authentication of a secret.

A key's secret is random (`mgk_` + 40 base62 chars, ~238 bits), so a plain sha256 is a safe
at-rest form: only the hash and a short display prefix are stored, the secret is returned once.
Another project's ids answer NOT_FOUND, never PERMISSION_DENIED, so ids reveal nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import string
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from memgrpc.core.access.principal import Principal, Scope
from memgrpc.core.kernel import paging
from memgrpc.core.kernel.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Violations,
)
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.paging import Cursor, Page
from memgrpc.store.keys import KeyStore, Row

log = structlog.get_logger(__name__)

DEFAULT_PROJECT = "default"
SECRET_PREFIX = "mgk_"
SECRET_CHARS = 40
DISPLAY_PREFIX_CHARS = 12
MAX_NAME_CHARS = 200
MAX_ID_CHARS = 128
MAX_SECRET_CHARS = 512
# a retried CreateApiKey may get its secret again from this process for this long
SECRET_REPLAY_S = 600.0
_ALPHABET = string.ascii_letters + string.digits
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ALL_SCOPES = (Scope.READ, Scope.WRITE, Scope.ADMIN)


@dataclass(frozen=True)
class Project:
    id: str
    display_name: str
    create_time: datetime


@dataclass(frozen=True)
class ApiKey:
    id: str
    project_id: str
    name: str
    prefix: str
    scopes: tuple[Scope, ...]
    create_time: datetime
    revoke_time: datetime | None = None
    bootstrap: bool = False


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    secret: str


def new_secret() -> str:
    return SECRET_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_CHARS))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


# -- conversions and checks ---------------------------------------------------------------------
def _project(row: Row) -> Project:
    return Project(row["id"], row["display_name"] or "", row["create_time"])


def _key(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"] or "",
        prefix=row["prefix"] or "",
        scopes=tuple(Scope(s) for s in row["scopes"] or ()),
        create_time=row["create_time"],
        revoke_time=row["revoke_time"],
        bootstrap=bool(row["bootstrap"]),
    )


def _key_row(
    key_id: str, project_id: str, name: str, secret: str, scopes: Iterable[Scope], bootstrap: bool
) -> Row:
    return {
        "id": key_id,
        "project_id": project_id,
        "name": name,
        "prefix": secret[:DISPLAY_PREFIX_CHARS],
        "secret_hash": hash_secret(secret),
        "scopes": [s.value for s in scopes],
        "bootstrap": bootstrap,
        "create_time": _now(),
        "revoke_time": None,
    }


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
        v.add(field, "must name at least one scope (read, write, admin)")
    return tuple(s for s in _ALL_SCOPES if s in scopes)  # canonical order, no duplicates


def _project_not_found(project_id: str) -> NotFound:
    return NotFound(f"project {project_id!r} not found", reason="PROJECT_NOT_FOUND")


def _key_not_found(key_id: str) -> NotFound:
    return NotFound(f"API key {key_id!r} not found", reason="API_KEY_NOT_FOUND")


def _bootstrap_only(what: str) -> PermissionDenied:
    return PermissionDenied(f"only the bootstrap key may {what}", reason="BOOTSTRAP_KEY_REQUIRED")


# -- authentication -----------------------------------------------------------------------------
class Authenticator:
    """Secret -> Principal, with a short cache so a key costs one table read per TTL.

    The TTL equals the store's read-consistency interval: another replica's revocation is
    seen within about two intervals; a revocation on this process clears the cache at once.
    Unknown secrets are never cached (a key created a moment ago must work on its next call).
    """

    MAX_ENTRIES = 10_000

    def __init__(self, keys: KeyStore, ttl_s: float) -> None:
        self._keys = keys
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        # one store read per secret at a time: when an entry expires under load, every request
        # in flight would otherwise read the same row
        self._reads: dict[str, asyncio.Future[Row | None]] = {}
        self._generation = 0  # bumped by invalidate: reads begun before it are not cached

    async def authenticate(self, secret: str) -> Principal:
        if not secret or len(secret) > MAX_SECRET_CHARS or not secret.isprintable():
            raise Unauthenticated("invalid API key", reason="API_KEY_INVALID")
        digest = hash_secret(secret)
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return self._accept(hit[1])
        generation = self._generation
        row = await self._read(digest)
        if row is None:
            raise Unauthenticated("invalid API key", reason="API_KEY_INVALID")
        found: Principal | None = None
        if row["revoke_time"] is None:
            found = Principal(
                project_id=row["project_id"],
                key_id=row["id"],
                scopes=frozenset(Scope(s) for s in row["scopes"] or ()),
                bootstrap=bool(row["bootstrap"]),
            )
        if self._ttl > 0 and generation == self._generation:
            if len(self._cache) >= self.MAX_ENTRIES:
                self._cache.clear()
            self._cache[digest] = (time.monotonic() + self._ttl, found)
        return self._accept(found)

    async def _read(self, digest: str) -> Row | None:
        read = self._reads.get(digest)
        if read is None:
            read = asyncio.ensure_future(self._keys.find_by_hash(digest))
            self._reads[digest] = read
            read.add_done_callback(lambda f: self._read_done(digest, f))
        # shielded: a caller that goes away must not cancel the read the others wait for
        return await asyncio.shield(read)

    def _read_done(self, digest: str, read: asyncio.Future[Row | None]) -> None:
        if self._reads.get(digest) is read:
            del self._reads[digest]
        if not read.cancelled():
            read.exception()  # retrieved here, in case every waiter went away

    @staticmethod
    def _accept(found: Principal | None) -> Principal:
        if found is None:  # cached as revoked
            raise Unauthenticated("this API key was revoked", reason="API_KEY_REVOKED")
        return found

    def invalidate(self) -> None:
        """Forget every cached key (after a revocation or a scope change on this process)."""
        self._cache.clear()
        self._reads.clear()
        self._generation += 1


# -- the admin service --------------------------------------------------------------------------
class AdminService:
    """Projects and keys. `admin` manages its own project's keys; bootstrap manages everything."""

    def __init__(self, keys: KeyStore, authenticator: Authenticator) -> None:
        self._keys = keys
        self._auth = authenticator
        self._recent_secrets: dict[str, tuple[float, str]] = {}

    # projects ---------------------------------------------------------------------------------
    async def create_project(self, caller: Principal, display_name: str) -> Project:
        if not caller.bootstrap:
            raise _bootstrap_only("create projects")
        v = Violations()
        _check_name(v, "project.display_name", display_name)
        v.raise_if_any()
        row = {"id": new_id("prj"), "display_name": display_name, "create_time": _now()}
        await self._keys.insert_project(row)
        log.info("project_created", project_id=row["id"])
        return _project(row)

    async def get_project(self, caller: Principal, project_id: str) -> Project:
        v = Violations()
        _check_id(v, "id", project_id)
        v.raise_if_any()
        if project_id != caller.project_id and not caller.bootstrap:
            raise _project_not_found(project_id)
        row = await self._keys.get_project(project_id)
        if row is None:
            raise _project_not_found(project_id)
        return _project(row)

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
            size, token, fp, read, order=("id", "id"), kind=str, item=_project
        )

    # keys -------------------------------------------------------------------------------------
    async def _target_project(self, caller: Principal, project_id: str, field: str) -> str:
        """The project a key operation acts on: the caller's own unless bootstrap says another."""
        caller.require(Scope.ADMIN)
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
        row = _key_row(new_id("key"), target, name, secret, scopes, bootstrap=False)
        await self._keys.insert_key(row)
        self._remember_secret(row["id"], secret)
        log.info("api_key_created", key_id=row["id"], key_project=target, scopes=row["scopes"])
        return CreatedApiKey(_key(row), secret)

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
        return await paging.fetch(size, token, fp, read, order=("id", "id"), kind=str, item=_key)

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
        return _key(row)

    async def revoke_api_key(self, caller: Principal, key_id: str) -> ApiKey:
        """Idempotent: revoking a revoked key returns it unchanged."""
        row = await self._own_key(caller, key_id, "id")
        if row["bootstrap"]:
            raise FailedPrecondition(
                "the bootstrap key cannot be revoked; set MEMGRPC_ADMIN_KEY to rotate it",
                reason="BOOTSTRAP_KEY_PROTECTED",
            )
        if row["revoke_time"] is None:
            row = dict(row, revoke_time=_now())
            await self._keys.upsert_key(row)
            log.info("api_key_revoked", key_id=key_id, key_project=row["project_id"])
        self._auth.invalidate()
        return _key(row)

    # bootstrap --------------------------------------------------------------------------------
    async def bootstrap(self, admin_key: str | None, key_file: Path) -> None:
        """Make sure project `default` and exactly the intended bootstrap key exist.

        With `admin_key` (MEMGRPC_ADMIN_KEY) that secret is the bootstrap key and any other
        bootstrap key is revoked (the env var is the source of truth). Without it, an existing
        bootstrap key is kept; on first start one is generated, logged once and written to
        `key_file` (mode 0600).
        """
        await self._keys.ensure_project(
            {"id": DEFAULT_PROJECT, "display_name": "Default", "create_time": _now()}
        )
        active = await self._keys.active_bootstrap_keys()
        if admin_key is not None:
            keep = await self._install_configured(admin_key)
            for row in active:
                if row["id"] != keep:
                    await self._keys.upsert_key(dict(row, revoke_time=_now()))
                    log.info("bootstrap_key_replaced", key_id=row["id"])
            return
        if active:
            log.info("bootstrap_key_kept", key_id=active[0]["id"], prefix=active[0]["prefix"])
            return
        secret = new_secret()
        row = _key_row(new_id("key"), DEFAULT_PROJECT, "bootstrap", secret, _ALL_SCOPES, True)
        await self._keys.insert_key(row)
        await asyncio.to_thread(write_secret_file, key_file, secret)
        log.warning(
            "bootstrap_key_generated",
            key_id=row["id"],
            secret=secret,
            path=str(key_file),
            hint="shown once; it is also in the file above (mode 0600)",
        )

    async def _install_configured(self, admin_key: str) -> str:
        row = await self._keys.find_by_hash(hash_secret(admin_key))
        if row is None:
            row = _key_row(
                new_id("key"), DEFAULT_PROJECT, "bootstrap", admin_key, _ALL_SCOPES, True
            )
            await self._keys.insert_key(row)
            log.info("bootstrap_key_installed", key_id=row["id"])
        elif not row["bootstrap"]:
            raise RuntimeError(
                "MEMGRPC_ADMIN_KEY equals the secret of an ordinary API key; choose another secret"
            )
        elif row["revoke_time"] is not None:
            await self._keys.upsert_key(dict(row, revoke_time=None))
            log.info("bootstrap_key_reinstated", key_id=row["id"])
        key_id: str = row["id"]
        return key_id


def write_secret_file(path: Path, secret: str) -> None:
    """Atomically write `secret` to `path`, readable by the owner only (0600 from creation on)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".admin-key-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
