"""The API key cache: one store read per secret at a time, and no stale entry after a revoke."""

from __future__ import annotations

import asyncio
from pathlib import Path

from memgrpc.core.access import AdminService, Authenticator
from memgrpc.core.kernel import Unauthenticated
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.keys import KeyStore, Row

SECRET = "mgk_authenticator_test_secret_0123456789"


class CountingKeys(KeyStore):
    """The real key store, counting its lookups by secret."""

    reads = 0

    async def find_by_hash(self, secret_hash: str) -> Row | None:
        self.reads += 1
        return await super().find_by_hash(secret_hash)


async def test_concurrent_requests_share_one_read(tmp_path: Path) -> None:
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=8, read_consistency_s=0.0))
    await store.open()
    try:
        keys = CountingKeys(store)
        auth = Authenticator(keys, ttl_s=60.0)
        admin = AdminService(keys, auth)
        await admin.bootstrap(SECRET, tmp_path / "key")
        keys.reads = 0
        found = await asyncio.gather(*(auth.authenticate(SECRET) for _ in range(32)))
        assert {p.project_id for p in found} == {"default"}
        assert keys.reads == 1
        await auth.authenticate(SECRET)
        assert keys.reads == 1  # cached
        # a caller that goes away does not cancel the read the others share
        auth.invalidate()
        first = asyncio.ensure_future(auth.authenticate(SECRET))
        second = asyncio.ensure_future(auth.authenticate(SECRET))
        await asyncio.sleep(0)
        first.cancel()
        assert (await second).project_id == "default"
        assert keys.reads == 2
        # unknown secrets are read every time (a new key must work on its next call)
        for _ in range(2):
            try:
                await auth.authenticate("mgk_unknown_secret_0123456789abcdef")
            except Unauthenticated as exc:
                assert exc.reason == "API_KEY_INVALID"
            else:
                raise AssertionError("an unknown key was accepted")
        assert keys.reads == 4
    finally:
        await store.close()
