"""Request ids: a retried mutation with the same request_id returns the first result.

Results are kept as opaque bytes (the serialized response), so this module stays transport-free.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from memgrpc.core.locks import KeyedLocks
from memgrpc.store.db import Store
from memgrpc.store.filters import Where

_CACHE_SIZE = 4096


class Idempotency:
    def __init__(self, store: Store) -> None:
        self._tbl = store.table("requests")
        self._writer = store.writer("requests")
        self._locks = KeyedLocks()
        self._recent: OrderedDict[str, bytes] = OrderedDict()

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
        if not request_id:
            return await compute()
        pk = self._pk(project_id, method, request_id)
        async with self._locks.hold(pk):
            found = await self._lookup(pk)
            if found is not None:
                return found
            result = await compute()
            await self._writer.insert_absent(
                [
                    {
                        "pk": pk,
                        "project_id": project_id,
                        "method": method,
                        "response": result,
                        "create_time": datetime.now(UTC),
                    }
                ]
            )
            self._remember(pk, result)
            return result

    async def _lookup(self, pk: str) -> bytes | None:
        if pk in self._recent:
            return self._recent[pk]
        rows = (
            await self._tbl.query().where(str(Where().eq("pk", pk))).select(["response"]).to_arrow()
        ).to_pylist()
        if not rows:
            return None
        data: bytes = rows[0]["response"]
        self._remember(pk, data)
        return data

    def _remember(self, pk: str, data: bytes) -> None:
        self._recent[pk] = data
        self._recent.move_to_end(pk)
        while len(self._recent) > _CACHE_SIZE:
            self._recent.popitem(last=False)
