"""The bootstrap key: project `default` and exactly one key that manages every project."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

import structlog

from memgrpc.core.access.records import (
    ALL_SCOPES,
    DEFAULT_PROJECT,
    hash_secret,
    key_row,
    new_secret,
    now,
)
from memgrpc.core.kernel.ids import new_id
from memgrpc.store.keys import KeyStore

log = structlog.get_logger(__name__)


async def ensure(keys: KeyStore, admin_key: str | None, key_file: Path) -> None:
    """Make sure project `default` and exactly the intended bootstrap key exist.

    With `admin_key` (MEMGRPC_ADMIN_KEY) that secret is the bootstrap key and any other
    bootstrap key is revoked (the env var is the source of truth). Without it, an existing
    bootstrap key is kept; on first start one is generated, logged once and written to
    `key_file` (mode 0600).
    """
    await keys.ensure_project(
        {"id": DEFAULT_PROJECT, "display_name": "Default", "create_time": now()}
    )
    active = await keys.active_bootstrap_keys()
    if admin_key is not None:
        keep = await _install_configured(keys, admin_key)
        for row in active:
            if row["id"] != keep:
                await keys.upsert_key(dict(row, revoke_time=now()))
                log.info("bootstrap_key_replaced", key_id=row["id"])
        return
    if active:
        log.info("bootstrap_key_kept", key_id=active[0]["id"], prefix=active[0]["prefix"])
        return
    secret = new_secret()
    row = key_row(new_id("key"), DEFAULT_PROJECT, "bootstrap", secret, ALL_SCOPES, True)
    await keys.insert_key(row)
    await asyncio.to_thread(write_secret_file, key_file, secret)
    log.warning(
        "bootstrap_key_generated",
        key_id=row["id"],
        secret=secret,
        path=str(key_file),
        hint="shown once; it is also in the file above (mode 0600)",
    )


async def _install_configured(keys: KeyStore, admin_key: str) -> str:
    row = await keys.find_by_hash(hash_secret(admin_key))
    if row is None:
        row = key_row(new_id("key"), DEFAULT_PROJECT, "bootstrap", admin_key, ALL_SCOPES, True)
        await keys.insert_key(row)
        log.info("bootstrap_key_installed", key_id=row["id"])
    elif not row["bootstrap"]:
        raise RuntimeError(
            "MEMGRPC_ADMIN_KEY equals the secret of an ordinary API key; choose another secret"
        )
    elif row["revoke_time"] is not None:
        await keys.upsert_key(dict(row, revoke_time=None))
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
