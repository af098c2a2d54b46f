"""The records of access control: projects, API keys and their secrets, and their rows.

A key's secret is random (`mgk_` + 40 base62 chars, ~238 bits), so a plain sha256 is a safe
at-rest form: only the hash and a short display prefix are stored, the secret is returned once.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from memgrpc.core.access.principal import Scope
from memgrpc.store.keys import Row

DEFAULT_PROJECT = "default"
SECRET_PREFIX = "mgk_"
SECRET_CHARS = 40
DISPLAY_PREFIX_CHARS = 12
MAX_SECRET_CHARS = 512
ALL_SCOPES = (Scope.READ, Scope.WRITE, Scope.ADMIN)
_ALPHABET = string.ascii_letters + string.digits


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


def now() -> datetime:
    return datetime.now(UTC)


def project_from_row(row: Row) -> Project:
    return Project(row["id"], row["display_name"] or "", row["create_time"])


def key_from_row(row: Row) -> ApiKey:
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


def key_row(
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
        "create_time": now(),
        "revoke_time": None,
    }
