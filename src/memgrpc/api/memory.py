"""MemoryService servicer: translates between protos and core.memory.service, nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2

from memgrpc.api import convert, errors, transfer
from memgrpc.core.access import principal
from memgrpc.core.kernel import (
    Idempotency,
    InvalidArgument,
    PageRequest,
    Violations,
    validation,
)
from memgrpc.core.memory import BatchOp, MemoryService, Patch, SearchMode, Transfer
from memgrpc.core.memory.changes import Change, ChangeKind
from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import memory_pb2_grpc

_MODES: dict[int, SearchMode] = {
    pb.SEARCH_MODE_UNSPECIFIED: "hybrid",
    pb.SEARCH_MODE_HYBRID: "hybrid",
    pb.SEARCH_MODE_SEMANTIC: "semantic",
    pb.SEARCH_MODE_KEYWORD: "keyword",
}


def _patch(v: Violations, r: pb.UpdateMemoryRequest, prefix: str = "memory") -> Patch:
    memory = convert.memory_from_pb(v, r.memory, prefix)
    if r.HasField("update_mask"):
        paths = frozenset(r.update_mask.paths)
        if not paths:
            v.add("update_mask", "must name at least one field")
    else:
        paths = convert.set_fields(r.memory)
        if not paths:
            v.add("memory", "sets no field to update")
    return Patch(memory=memory, fields=paths, reason=r.reason)


_KINDS: dict[ChangeKind, pb.MemoryChangeKind.ValueType] = {
    ChangeKind.CREATED: pb.MEMORY_CHANGE_KIND_CREATED,
    ChangeKind.UPDATED: pb.MEMORY_CHANGE_KIND_UPDATED,
    ChangeKind.DELETED: pb.MEMORY_CHANGE_KIND_DELETED,
    ChangeKind.VERSIONED: pb.MEMORY_CHANGE_KIND_VERSIONED,
    ChangeKind.CONFLICT_OPENED: pb.MEMORY_CHANGE_KIND_CONFLICT_OPENED,
    ChangeKind.CONFLICT_RESOLVED: pb.MEMORY_CHANGE_KIND_CONFLICT_RESOLVED,
    ChangeKind.USER_DELETED: pb.MEMORY_CHANGE_KIND_USER_DELETED,
    ChangeKind.HEARTBEAT: pb.MEMORY_CHANGE_KIND_HEARTBEAT,
}


def _change_to_pb(c: Change) -> pb.MemoryChange:
    out = pb.MemoryChange(
        sequence=c.sequence,
        kind=_KINDS[c.kind],
        memory_id=c.memory_id,
        user_id=c.user_id,
        conflict_id=c.conflict_id,
        time=convert.to_ts(c.time),
    )
    if c.memory is not None:
        out.memory.CopyFrom(convert.memory_to_pb(c.memory))
    return out


class MemoryServicer(memory_pb2_grpc.MemoryServiceServicer):
    def __init__(self, service: MemoryService, idempotency: Idempotency | None = None) -> None:
        self._svc = service
        # shared with the user service, so a purge also forgets replies that hold the user's data
        self._idem = idempotency or Idempotency(service.store)
        self._transfer = Transfer(service)

    async def _once(
        self, method: str, request_id: str, compute: Callable[[], Awaitable[tuple[bytes, str]]]
    ) -> bytes:
        """Run a mutation once per request id; `compute` returns (reply, the user it is about)."""
        project = principal.current().project_id
        return await self._idem.run_owned(project, method, request_id, compute)

    async def CreateMemory(
        self, request: pb.CreateMemoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.Memory:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            m = convert.memory_from_pb(v, request.memory)
            v.raise_if_any()
            return _owned(convert.memory_to_pb(await self._svc.create(project, m)))

        return pb.Memory.FromString(await self._once("CreateMemory", request.request_id, compute))

    async def GetMemory(
        self, request: pb.GetMemoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.Memory:
        return convert.memory_to_pb(await self._svc.get(principal.current().project_id, request.id))

    async def UpdateMemory(
        self, request: pb.UpdateMemoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.Memory:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            patch = _patch(v, request)
            v.raise_if_any()
            return _owned(convert.memory_to_pb(await self._svc.update(project, patch)))

        return pb.Memory.FromString(await self._once("UpdateMemory", request.request_id, compute))

    async def ReplaceMemory(
        self, request: pb.ReplaceMemoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.Memory:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            m = convert.memory_from_pb(v, request.memory)
            v.raise_if_any()
            return _owned(convert.memory_to_pb(await self._svc.replace(project, m)))

        return pb.Memory.FromString(await self._once("ReplaceMemory", request.request_id, compute))

    async def DeleteMemory(
        self, request: pb.DeleteMemoryRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            await self._svc.delete(project, request.id)
            return b"", ""

        await self._once("DeleteMemory", request.request_id, compute)
        return empty_pb2.Empty()

    async def ListMemories(
        self, request: pb.ListMemoriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMemoriesResponse:
        v = Violations()
        q = convert.query_from_pb(v, request)
        v.raise_if_any()
        project = principal.current().project_id
        page = await self._svc.list(
            project,
            q,
            PageRequest(
                size=request.page_size, token=request.page_token, order_by=request.order_by
            ),
        )
        previous, connected = await asyncio.gather(
            self._svc.previous_versions(project, page.items)
            if request.include_previous_versions
            else _nothing(),
            self._svc.connected(project, page.items, scope=q)
            if request.include_connected_memories
            else _nothing(),
        )
        out = []
        for m in page.items:
            one = convert.memory_to_pb(m)
            one.previous_versions.extend(convert.version_to_pb(x) for x in previous.get(m.id, ()))
            one.connected_memories.extend(convert.memory_to_pb(c) for c in connected.get(m.id, ()))
            out.append(one)
        return pb.ListMemoriesResponse(
            memories=out, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def SearchMemories(
        self, request: pb.SearchMemoriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchMemoriesResponse:
        v = Violations()
        q = convert.query_from_pb(v, request)
        mode = _MODES.get(request.mode)
        if mode is None:
            v.add("mode", f"unknown SearchMode value {request.mode}")
        v.raise_if_any()
        hits = await self._svc.search(
            principal.current().project_id,
            q,
            request.query,
            limit=request.limit,
            mode=mode or "hybrid",
            min_score=request.min_score,
        )
        return pb.SearchMemoriesResponse(results=convert.hits_to_pb(hits))

    async def BatchMemories(
        self, request: pb.BatchMemoriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchMemoriesResponse:
        project = principal.current().project_id

        if not request.operations:
            raise InvalidArgument.field("operations", "must not be empty")

        async def compute() -> tuple[bytes, str]:
            ops: list[BatchOp | None] = []
            pre: dict[int, InvalidArgument] = {}
            for i, op in enumerate(request.operations):
                v = Violations()
                kind = op.WhichOneof("operation")
                prefix = f"operations[{i}]"
                if kind == "create":
                    ops.append(
                        (
                            "create",
                            convert.memory_from_pb(v, op.create.memory, f"{prefix}.create.memory"),
                        )
                    )
                elif kind == "update":
                    ops.append(("update", _patch(v, op.update, f"{prefix}.update.memory")))
                elif kind == "delete":
                    ops.append(("delete", op.delete.id))
                else:
                    v.add(prefix, "sets no operation (create, update or delete)")
                    ops.append(None)
                try:
                    v.raise_if_any()
                except InvalidArgument as exc:
                    pre[i] = exc
            valid = [(i, op) for i, op in enumerate(ops) if op is not None and i not in pre]
            results = await self._svc.batch(project, [op for _, op in valid]) if valid else []
            out = [pb.BatchOperationResult(index=i) for i in range(len(ops))]
            for (i, _), res in zip(valid, results, strict=True):
                out[i].id = res.id
                if res.memory is not None:
                    out[i].memory.CopyFrom(convert.memory_to_pb(res.memory))
                if res.error is not None:
                    out[i].code, out[i].message, out[i].reason = (
                        errors.code_of(res.error),
                        res.error.message,
                        res.error.reason,
                    )
            for i, err in pre.items():
                out[i].code, out[i].message, out[i].reason = (
                    errors.code_of(err),
                    err.message,
                    err.reason,
                )
            failed = sum(1 for r in out if r.code != 0)
            resp = pb.BatchMemoriesResponse(
                results=out, summary=pb.BatchSummary(succeeded=len(out) - failed, failed=failed)
            )
            users = {r.memory.user_id for r in out if r.memory.user_id}
            return resp.SerializeToString(), users.pop() if len(users) == 1 else ""

        return pb.BatchMemoriesResponse.FromString(
            await self._once("BatchMemories", request.request_id, compute)
        )

    async def ListMemoryVersions(
        self, request: pb.ListMemoryVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMemoryVersionsResponse:
        versions = await self._svc.versions(principal.current().project_id, request.id)
        return pb.ListMemoryVersionsResponse(versions=[convert.version_to_pb(x) for x in versions])

    async def ExportMemories(
        self, request: pb.ExportMemoriesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportMemoriesResponse]:
        v = Violations()
        q = convert.query_from_pb(v, request)
        v.raise_if_any()
        batches = self._transfer.export(
            principal.current().project_id,
            q,
            vectors=request.include_vectors,
            versions=request.include_versions,
            batch_size=request.batch_size,
        )
        async for response in transfer.export_responses(batches):
            yield response

    async def WatchMemories(
        self, request: pb.WatchMemoriesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.MemoryChange]:
        v = Violations()
        validation.check_id(v, "user_id", request.user_id, required=False)
        v.raise_if_any()
        changes = self._svc.changes.watch(
            principal.current().project_id,
            request.user_id,
            request.after_sequence,
            from_now=request.from_now,
        )
        async for change in changes:
            yield _change_to_pb(change)

    async def ImportMemories(
        self,
        request_iterator: AsyncIterator[pb.ImportMemoriesRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.ImportMemoriesResponse:
        importer = self._transfer.importer(principal.current().project_id)
        async for request in request_iterator:
            for record in request.records:
                v = Violations()
                decoded = transfer.record_from_pb(v, record)
                try:
                    v.raise_if_any()
                except InvalidArgument as exc:
                    importer.reject(record.memory.id, exc)
                    continue
                await importer.add(decoded)
        return transfer.summary_to_pb(await importer.finish())


async def _nothing() -> dict[str, Any]:
    return {}


def _owned(m: pb.Memory) -> tuple[bytes, str]:
    return m.SerializeToString(), m.user_id
