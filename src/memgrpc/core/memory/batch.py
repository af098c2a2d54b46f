"""Batches of memory operations: creates share one embedding batch and one commit, updates and
deletes run concurrently; each operation reports its own error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from memgrpc.core.kernel.errors import DomainError, InvalidArgument, Violations
from memgrpc.core.memory.model import Memory, Patch

if TYPE_CHECKING:
    from memgrpc.core.memory.service import MemoryService

MAX_BATCH = 1000


@dataclass
class BatchResult:
    index: int
    id: str = ""
    memory: Memory | None = None
    error: DomainError | None = None


BatchOp = (
    tuple[Literal["create"], Memory]
    | tuple[Literal["update"], Patch]
    | tuple[Literal["delete"], str]
)


async def run(svc: MemoryService, project_id: str, ops: Sequence[BatchOp]) -> list[BatchResult]:
    if not ops:
        raise InvalidArgument.field("operations", "must not be empty")
    if len(ops) > MAX_BATCH:
        raise InvalidArgument.field("operations", f"at most {MAX_BATCH} operations")
    results = [BatchResult(index=i) for i in range(len(ops))]
    creates: list[tuple[int, Memory]] = []
    others: list[asyncio.Task[None]] = []
    for i, op in enumerate(ops):
        if op[0] == "create":
            v = Violations()
            ready = svc.prepare(op[1], v, prefix=f"operations[{i}].create.memory")
            try:
                v.raise_if_any()
                await svc.check_scopes(project_id, [ready])
                creates.append((i, ready))
            except DomainError as exc:
                results[i].error = exc
        else:
            others.append(asyncio.create_task(_one(svc, project_id, op, results[i])))
    if creates:
        try:
            await svc.insert_prepared(project_id, [m for _, m in creates])
            for i, m in creates:
                results[i].memory, results[i].id = m, m.id
        except DomainError as exc:
            for i, _ in creates:
                results[i].error = exc
    await asyncio.gather(*others)
    return results


async def _one(svc: MemoryService, project_id: str, op: BatchOp, out: BatchResult) -> None:
    try:
        if op[0] == "update":
            out.id = op[1].memory.id
            out.memory = await svc.update(project_id, op[1])
        elif op[0] == "delete":
            out.id = op[1]
            await svc.delete(project_id, op[1])
    except DomainError as exc:
        out.error = exc
