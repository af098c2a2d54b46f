"""ConflictService servicer: translates between protos and core.intelligence.conflicts."""

from __future__ import annotations

import grpc

from memgrpc.api import convert
from memgrpc.core.access import principal
from memgrpc.core.intelligence.conflicts import ConflictService
from memgrpc.core.intelligence.conflicts.rows import CONFLICT_STATUSES, Answer, Conflict
from memgrpc.core.kernel import Idempotency, PageRequest, Violations
from memgrpc.v1 import conflicts_pb2 as pb
from memgrpc.v1 import conflicts_pb2_grpc

# a conflicting memory deleted since the conflict opened: what it said then, marked so
MISSING = " (this memory has since been deleted)"


def status_to_pb(status: str) -> int:
    return CONFLICT_STATUSES.index(status) + 1 if status in CONFLICT_STATUSES else 0  # type: ignore[arg-type]


def conflict_to_pb(c: Conflict) -> pb.Conflict:
    return pb.Conflict(
        id=c.id,
        user_id=c.user_id,
        status=status_to_pb(c.status),  # type: ignore[arg-type]
        new_memory=convert.memory_to_pb(c.new_memory),
        conflicting_memories=[
            pb.ConflictingMemory(
                memory=convert.memory_to_pb(x.memory),
                reason=x.reason + (MISSING if x.missing else ""),
            )
            for x in c.conflicting
        ],
        clarifying_questions=[
            pb.ClarifyingQuestion(question=q.question, options=q.options) for q in c.questions
        ],
        create_time=convert.to_ts(c.create_time),
        resolve_time=convert.to_ts(c.resolve_time),
        resolution=c.resolution,
        session_id=c.session_id,
    )


class ConflictServicer(conflicts_pb2_grpc.ConflictServiceServicer):
    def __init__(self, service: ConflictService, idempotency: Idempotency) -> None:
        self._svc = service
        self._idem = idempotency

    async def ListConflicts(
        self, request: pb.ListConflictsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConflictsResponse:
        v = Violations()
        status = ""
        if request.status:
            if 1 <= request.status <= len(CONFLICT_STATUSES):
                status = CONFLICT_STATUSES[request.status - 1]
            else:
                v.add("status", f"unknown ConflictStatus value {request.status}")
        v.raise_if_any()
        page = await self._svc.list(
            principal.current().project_id,
            request.user_id,
            status,
            PageRequest(size=request.page_size, token=request.page_token),
        )
        return pb.ListConflictsResponse(
            conflicts=[conflict_to_pb(c) for c in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def GetConflict(
        self, request: pb.GetConflictRequest, context: grpc.aio.ServicerContext
    ) -> pb.Conflict:
        return conflict_to_pb(await self._svc.get(principal.current().project_id, request.id))

    async def ResolveConflict(
        self, request: pb.ResolveConflictRequest, context: grpc.aio.ServicerContext
    ) -> pb.Conflict:
        project = principal.current().project_id
        answers = [Answer(a.question, a.answer, a.message) for a in request.answers]

        async def compute() -> tuple[bytes, str]:
            done = conflict_to_pb(await self._svc.resolve(project, request.id, answers))
            return done.SerializeToString(), done.user_id

        return pb.Conflict.FromString(
            await self._idem.run_owned(project, "ResolveConflict", request.request_id, compute)
        )
