"""Request ids: a retried mutation with the same request_id returns the first result.

Results are kept as opaque bytes (the serialized response), so this module stays transport-free.
A record may name the end user it belongs to, so purging that user removes it too (a replayed
response must not bring a purged user's data back).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Table

_CACHE_SIZE = 4096


class Idempotency:
    def __init__(self, store: Store) -> None:
        self._requests = Table(store, "requests")
        self._writer = store.writer("requests")
        self._locks = KeyedLocks()
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self._owners: dict[str, tuple[str, str]] = {}  # pk -> (project_id, user_id)

    @staticmethod
    def _pk(project_id: str, method: str, request_id: str) -> str:
        raw = f"{project_id}\x1f{method}\x1f{request_id}".encode()
        return hashlib.sha256(raw).hexdigest()

    async def run(
        self,
        project_id: str,
        method: str,
        request_id: str,
        compute: Callable[[], Awaitable[bytes]],
    ) -> bytes:
        """Run `compute` once per (project, method, request_id); failures are not remembered."""

        async def unowned() -> tuple[bytes, str]:
            return await compute(), ""

        return await self.run_owned(project_id, method, request_id, unowned)

    async def run_owned(
        self,
        project_id: str,
        method: str,
        request_id: str,
        compute: Callable[[], Awaitable[tuple[bytes, str]]],
    ) -> bytes:
        """As `run`; `compute` also returns the user id the result belongs to ("" = none)."""
        if not request_id:
            return (await compute())[0]
        pk = self._pk(project_id, method, request_id)
        async with self._locks.hold(pk):
            found = await self._lookup(pk)
            if found is not None:
                return found
            result, user_id = await compute()
            await self._writer.insert_absent(
                [
                    {
                        "pk": pk,
                        "project_id": project_id,
                        "method": method,
                        "response": result,
                        "create_time": datetime.now(UTC),
                        "user_id": user_id or None,
                    }
                ]
            )
            self._remember(pk, result)
            if user_id:
                self._owners[pk] = (project_id, user_id)
            return result

    def forget_user(self, project_id: str, user_id: str) -> None:
        """Drop this replica's cached results of the user (its stored records are purged)."""
        for pk in [pk for pk, owner in self._owners.items() if owner == (project_id, user_id)]:
            self._owners.pop(pk, None)
            self._recent.pop(pk, None)

    async def _lookup(self, pk: str) -> bytes | None:
        if pk in self._recent:
            return self._recent[pk]
        where = Where().eq("pk", pk)
        rows = await self._requests.rows(where, ["response", "project_id", "user_id"])
        if not rows:
            return None
        data: bytes = rows[0]["response"]
        self._remember(pk, data)
        if rows[0]["user_id"]:
            self._owners[pk] = (rows[0]["project_id"], rows[0]["user_id"])
        return data

    def _remember(self, pk: str, data: bytes) -> None:
        self._recent[pk] = data
        self._recent.move_to_end(pk)
        while len(self._recent) > _CACHE_SIZE:
            old, _ = self._recent.popitem(last=False)
            self._owners.pop(old, None)
