"""`client.memory`: create, get, update (PATCH), replace (PUT), delete, list, search, batch,
versions. Dicts in, dicts out (see _convert for the accepted values)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import empty_pb2

from memgrpc.client import _convert as cv
from memgrpc.client._channel import Stream, Unary, method_path, new_request_id
from memgrpc.client._transport import AsyncCaller, Caller
from memgrpc.client.errors import MemgrpcError, invalid_argument
from memgrpc.v1 import memory_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["MemoryService"]
_MEMORY = pb.Memory.DESCRIPTOR


def _path(name: str) -> str:
    return method_path(_SERVICE, name)


def _none(_: empty_pb2.Empty) -> None:
    return None


def memory_message(data: Mapping[str, Any] | None, where: str = "memory") -> pb.Memory:
    return cv.build(pb.Memory, data, where)


def _patch(
    memory_id: str,
    data: Mapping[str, Any] | None,
    update_mask: Sequence[str] | str | None,
    reason: str | None,
    request_id: str | None,
    where: str,
) -> pb.UpdateMemoryRequest:
    fields = cv.canonical(_MEMORY, data or {}, where)
    if fields.pop("id", memory_id) != memory_id:
        raise invalid_argument(f"{where}.id", "differs from the memory id argument")
    memory = memory_message(fields, where)
    memory.id = memory_id
    request = pb.UpdateMemoryRequest(
        memory=memory, request_id=request_id or "", reason=reason or ""
    )
    cv.set_update_mask(request, fields, update_mask)
    return request


def _batch_op(op: Mapping[str, Any], where: str) -> pb.BatchOperation:
    """Sovant style {"op": "create"|"update"|"delete", "id", "data", "update_mask", "reason"}
    or the proto's own {"create": {"memory": ...}} / {"update": ...} / {"delete": {"id": ...}}."""
    if not isinstance(op, Mapping):
        raise invalid_argument(where, f"expected a dict, got {type(op).__name__}", wrong_type=True)
    if "op" not in op:
        return cv.build(pb.BatchOperation, op, where)
    kind = op["op"]
    extra = set(op) - {"op", "id", "data", "update_mask", "reason", "request_id"}
    if extra:
        raise invalid_argument(where, f"unknown keys {sorted(extra)} for op {kind!r}")
    rid = str(op.get("request_id") or "")
    if kind == "create":
        return pb.BatchOperation(
            create=pb.CreateMemoryRequest(
                memory=memory_message(op.get("data"), where), request_id=rid
            )
        )
    if kind == "update":
        patch = _patch(
            str(op.get("id") or ""),
            op.get("data"),
            op.get("update_mask"),
            op.get("reason"),
            rid,
            where,
        )
        return pb.BatchOperation(update=patch)
    if kind == "delete":
        return pb.BatchOperation(
            delete=pb.DeleteMemoryRequest(id=str(op.get("id") or ""), request_id=rid)
        )
    raise invalid_argument(where, f"op must be 'create', 'update' or 'delete', not {kind!r}")


class Calls:
    """The calls, shared by the sync and async resources."""

    @staticmethod
    def create(data: dict[str, Any]) -> Unary[pb.Memory, dict[str, Any]]:
        rid = cv.pop_request_id(data) or new_request_id()
        request = pb.CreateMemoryRequest(memory=memory_message(data), request_id=rid)
        return Unary(_path("CreateMemory"), request, pb.Memory, cv.to_dict, rid)

    @staticmethod
    def get(memory_id: str) -> Unary[pb.Memory, dict[str, Any]]:
        return Unary(_path("GetMemory"), pb.GetMemoryRequest(id=memory_id), pb.Memory, cv.to_dict)

    @staticmethod
    def update(
        memory_id: str,
        data: dict[str, Any],
        update_mask: Sequence[str] | str | None,
        reason: str | None,
        request_id: str | None,
    ) -> Unary[pb.Memory, dict[str, Any]]:
        rid = request_id or new_request_id()
        request = _patch(memory_id, data, update_mask, reason, rid, "memory")
        return Unary(_path("UpdateMemory"), request, pb.Memory, cv.to_dict, rid)

    @staticmethod
    def replace(
        memory_id: str, data: dict[str, Any], request_id: str | None
    ) -> Unary[pb.Memory, dict[str, Any]]:
        rid = request_id or new_request_id()
        fields = cv.canonical(_MEMORY, data, "memory")
        if fields.pop("id", memory_id) != memory_id:
            raise invalid_argument("memory.id", "differs from the memory id argument")
        memory = memory_message(fields)
        memory.id = memory_id
        request = pb.ReplaceMemoryRequest(memory=memory, request_id=rid)
        return Unary(_path("ReplaceMemory"), request, pb.Memory, cv.to_dict, rid)

    @staticmethod
    def delete(memory_id: str, request_id: str | None) -> Unary[empty_pb2.Empty, None]:
        rid = request_id or new_request_id()
        request = pb.DeleteMemoryRequest(id=memory_id, request_id=rid)
        return Unary(_path("DeleteMemory"), request, empty_pb2.Empty, _none, rid)

    @staticmethod
    def list(data: dict[str, Any]) -> Unary[pb.ListMemoriesResponse, dict[str, Any]]:
        request = cv.build(pb.ListMemoriesRequest, data, "list")
        return Unary(_path("ListMemories"), request, pb.ListMemoriesResponse, cv.to_dict)

    @staticmethod
    def search(
        query: Mapping[str, Any] | str | None, fields: dict[str, Any]
    ) -> Unary[pb.SearchMemoriesResponse, dict[str, Any]]:
        if isinstance(query, str):
            fields = cv.params({"query": query}, fields, "search")
            query = None
        request = cv.build(pb.SearchMemoriesRequest, cv.params(query, fields, "search"), "search")
        return Unary(_path("SearchMemories"), request, pb.SearchMemoriesResponse, cv.to_dict)

    @staticmethod
    def batch(
        operations: Mapping[str, Any] | Iterable[Mapping[str, Any]], request_id: str | None
    ) -> Unary[pb.BatchMemoriesResponse, dict[str, Any]]:
        if isinstance(operations, Mapping):
            extra = set(operations) - {"operations", "request_id"}
            if extra:
                raise invalid_argument("batch", f"unknown keys {sorted(extra)}")
            request_id = request_id or operations.get("request_id")
            operations = operations.get("operations") or []
        rid = request_id or new_request_id()
        request = pb.BatchMemoriesRequest(
            operations=[_batch_op(op, f"operations[{i}]") for i, op in enumerate(operations)],
            request_id=rid,
        )
        return Unary(_path("BatchMemories"), request, pb.BatchMemoriesResponse, cv.to_dict, rid)

    @staticmethod
    def versions(memory_id: str) -> Unary[pb.ListMemoryVersionsResponse, dict[str, Any]]:
        request = pb.ListMemoryVersionsRequest(id=memory_id)
        return Unary(
            _path("ListMemoryVersions"), request, pb.ListMemoryVersionsResponse, cv.to_dict
        )

    @staticmethod
    def watch(user_id: str | None, after_sequence: int) -> Stream[pb.MemoryChange]:
        request = pb.WatchMemoriesRequest(user_id=user_id or "", after_sequence=after_sequence)
        return Stream(_path("WatchMemories"), request, pb.MemoryChange)


# a watch resumes by itself after these (the stream broke, or the server ended it early)
_RESUMABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED}
)


class _Resume:
    """Where a watch is, and whether (and after how long) to resume it after an error: up to
    `max_retries` resumes in a row without a change in between, backing off."""

    def __init__(self, after_sequence: int, max_retries: int) -> None:
        self.cursor = after_sequence
        self.max_retries = max_retries
        self.failures = 0

    def seen(self, change: pb.MemoryChange) -> None:
        self.cursor = max(self.cursor, int(change.sequence))
        self.failures = 0

    def delay(self, error: MemgrpcError | None) -> float | None:
        """Seconds to wait before resuming, or None: give up (raise `error`)."""
        if error is not None and error.status not in _RESUMABLE:
            return None
        if self.failures >= self.max_retries:
            return None
        self.failures += 1
        return float(min(8.0, 0.1 * 2**self.failures) * (0.5 + random.random() / 2))


def _change(change: pb.MemoryChange) -> dict[str, Any]:
    return cv.to_dict(change)


Mask = Sequence[str] | str | None
Params = Mapping[str, Any] | None


class MemoryResource:
    """`client.memory`."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def create(self, memory: Params = None, /, **fields: Any) -> dict[str, Any]:
        """Store a memory: `create({"user_id": "alice", "content": "...", "type": "preference",
        "tags": [...], "metadata": {...}})`. `request_id=` sets the idempotency key."""
        return self._c.unary(Calls.create(cv.params(memory, fields, "memory")))

    def get(self, memory_id: str) -> dict[str, Any]:
        return self._c.unary(Calls.get(memory_id))

    def update(
        self,
        memory_id: str,
        changes: Params = None,
        /,
        *,
        update_mask: Mask = None,
        reason: str | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """PATCH: only the keys given change (a key set to None is cleared); `update_mask`
        overrides that. A content change makes a new version (`reason` is kept with the old)."""
        data = cv.params(changes, fields, "memory")
        return self._c.unary(Calls.update(memory_id, data, update_mask, reason, request_id))

    def replace(
        self,
        memory_id: str,
        memory: Params = None,
        /,
        *,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """PUT: content is required; every field not given is cleared to its default."""
        return self._c.unary(
            Calls.replace(memory_id, cv.params(memory, fields, "memory"), request_id)
        )

    def delete(self, memory_id: str, *, request_id: str | None = None) -> None:
        self._c.unary(Calls.delete(memory_id, request_id))

    def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        """`{"memories": [...], "next_page_token": "...", "total_size": n}`; filters: user_id,
        types, tags (+ tag_match 'any'/'all'), session_id, categories, metadata, start_time,
        end_time, origins, include_archived, order_by; page_size and page_token page;
        include_previous_versions / include_connected_memories fill each memory's
        previous_versions / connected_memories."""
        return self._c.unary(Calls.list(cv.params(params, fields, "list")))

    def search(
        self, query: Mapping[str, Any] | str | None = None, /, **fields: Any
    ) -> dict[str, Any]:
        """`{"results": [{"memory": {...}, "score": 0.83}, ...]}`: `search("dark mode",
        user_id="alice", limit=5, mode="hybrid")` or `search({"query": ..., ...})`."""
        return self._c.unary(Calls.search(query, fields))

    def batch(
        self,
        operations: Mapping[str, Any] | Iterable[Mapping[str, Any]],
        /,
        *,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Up to 1000 ops, `[{"op": "create", "data": {...}}, {"op": "update", "id": ...,
        "data": {...}}, {"op": "delete", "id": ...}]` (or `{"operations": [...]}`); returns
        `{"results": [...], "summary": {"succeeded": n, "failed": m}}`."""
        return self._c.unary(Calls.batch(operations, request_id))

    def versions(self, memory_id: str) -> dict[str, Any]:
        """`{"versions": [...]}`, newest first; the current one has `expire_time` None."""
        return self._c.unary(Calls.versions(memory_id))

    def watch(
        self,
        user_id: str | None = None,
        after_sequence: int = 0,
        *,
        heartbeats: bool = False,
        max_retries: int = 5,
    ) -> Iterator[dict[str, Any]]:
        """The project's memory changes after `after_sequence`, then new ones as they happen,
        forever: `{"sequence", "kind": "created"|"updated"|"versioned"|"deleted"|
        "conflict_opened"|"conflict_resolved"|"user_deleted", "memory", "memory_id",
        "user_id", "time", "conflict_id"}`. Resumes by itself from the last sequence seen when
        the connection drops or the server ends the stream early (at most `max_retries` times
        in a row); keep the last `sequence` to resume across restarts. `heartbeats`: also yield
        the idle heartbeats (kind "heartbeat", sequence = how far the feed was read)."""
        state = _Resume(after_sequence, max_retries)
        while True:
            error: MemgrpcError | None = None
            try:
                with contextlib.closing(self._c.stream(Calls.watch(user_id, state.cursor))) as s:
                    for change in s:
                        state.seen(change)
                        if heartbeats or change.kind != pb.MEMORY_CHANGE_KIND_HEARTBEAT:
                            yield _change(change)
            except MemgrpcError as exc:
                error = exc
            delay = state.delay(error)
            if delay is None:
                if error is not None:
                    raise error
                return
            time.sleep(delay)


class AsyncMemoryResource:
    """`client.memory` of the async client."""

    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    async def create(self, memory: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.create(cv.params(memory, fields, "memory")))

    async def get(self, memory_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.get(memory_id))

    async def update(
        self,
        memory_id: str,
        changes: Params = None,
        /,
        *,
        update_mask: Mask = None,
        reason: str | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        data = cv.params(changes, fields, "memory")
        return await self._c.unary(Calls.update(memory_id, data, update_mask, reason, request_id))

    async def replace(
        self,
        memory_id: str,
        memory: Params = None,
        /,
        *,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        return await self._c.unary(
            Calls.replace(memory_id, cv.params(memory, fields, "memory"), request_id)
        )

    async def delete(self, memory_id: str, *, request_id: str | None = None) -> None:
        await self._c.unary(Calls.delete(memory_id, request_id))

    async def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.list(cv.params(params, fields, "list")))

    async def search(
        self, query: Mapping[str, Any] | str | None = None, /, **fields: Any
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.search(query, fields))

    async def batch(
        self,
        operations: Mapping[str, Any] | Iterable[Mapping[str, Any]],
        /,
        *,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.batch(operations, request_id))

    async def versions(self, memory_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.versions(memory_id))

    async def watch(
        self,
        user_id: str | None = None,
        after_sequence: int = 0,
        *,
        heartbeats: bool = False,
        max_retries: int = 5,
    ) -> AsyncIterator[dict[str, Any]]:
        """See MemoryResource.watch."""
        state = _Resume(after_sequence, max_retries)
        while True:
            error: MemgrpcError | None = None
            try:
                stream = self._c.stream(Calls.watch(user_id, state.cursor))
                async with contextlib.aclosing(stream) as s:
                    async for change in s:
                        state.seen(change)
                        if heartbeats or change.kind != pb.MEMORY_CHANGE_KIND_HEARTBEAT:
                            yield _change(change)
            except MemgrpcError as exc:
                error = exc
            delay = state.delay(error)
            if delay is None:
                if error is not None:
                    raise error
                return
            await asyncio.sleep(delay)
