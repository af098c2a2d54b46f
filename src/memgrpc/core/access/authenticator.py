"""Authentication: an API key's secret -> the Principal it binds to the RPC."""

from __future__ import annotations

import asyncio
import time

from memgrpc.core.access.principal import Principal, Scope
from memgrpc.core.access.records import MAX_SECRET_CHARS, hash_secret
from memgrpc.core.kernel.errors import Unauthenticated
from memgrpc.store.keys import KeyStore, Row


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
