"""AgentService's memory RPCs (a mixin of api.agents.AgentServicer): the memory tree, the
timeline and bulk facts, protos <-> core.agents.memory. Search is MemoryService.SearchMemories
with agent_id (and instance_id): the same agent-scoped recall."""

from __future__ import annotations

import grpc

from memgrpc.api import convert
from memgrpc.core.access import principal
from memgrpc.core.agents.memory import AgentMemory, AgentUser, FactInput
from memgrpc.core.kernel import Idempotency, PageRequest, Violations
from memgrpc.v1 import agent_state_pb2 as pb


def fact_from_pb(v: Violations, f: pb.FactInput, prefix: str) -> FactInput:
    return FactInput(
        content=f.content,
        categories=tuple(f.categories),
        importance=f.importance if f.HasField("importance") else None,
        metadata=convert.struct_to_dict(f.metadata) if f.HasField("metadata") else {},
        create_time=convert.opt_timestamp(v, f"{prefix}.create_time", f, "create_time"),
    )


class MemoryRpcs:
    """Needs `self._agent_memory` (AgentMemory) and `self._idem` (Idempotency)."""

    _agent_memory: AgentMemory
    _idem: Idempotency

    async def GetMemoryTree(
        self, request: pb.GetMemoryTreeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemoryTreeResponse:
        tree = await self._agent_memory.tree(
            principal.current().project_id,
            AgentUser(request.agent_id, request.user_id, request.instance_id),
            request.limit_per_category,
        )
        return pb.GetMemoryTreeResponse(
            categories=[
                pb.MemoryTreeNode(category=name, facts=[convert.memory_to_pb(m) for m in facts])
                for name, facts in tree.categories
            ],
            total_facts=tree.total_facts,
        )

    async def GetTimeline(
        self, request: pb.GetTimelineRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTimelineResponse:
        v = Violations()
        start = convert.opt_timestamp(v, "start_time", request, "start_time")
        end = convert.opt_timestamp(v, "end_time", request, "end_time")
        v.raise_if_any()
        page = await self._agent_memory.timeline(
            principal.current().project_id,
            AgentUser(request.agent_id, request.user_id, request.instance_id),
            start,
            end,
            PageRequest(size=request.page_size, token=request.page_token),
        )
        return pb.GetTimelineResponse(
            memories=[convert.memory_to_pb(m) for m in page.items],
            next_page_token=page.next_page_token,
        )

    async def AddFacts(
        self, request: pb.AddFactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddFactsResponse:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            facts = [fact_from_pb(v, f, f"facts[{i}]") for i, f in enumerate(request.facts)]
            v.raise_if_any()
            made = await self._agent_memory.add_facts(
                project, AgentUser(request.agent_id, request.user_id, request.instance_id), facts
            )
            reply = pb.AddFactsResponse(memories=[convert.memory_to_pb(m) for m in made])
            return reply.SerializeToString(), request.user_id

        return pb.AddFactsResponse.FromString(
            await self._idem.run_owned(project, "AddFacts", request.request_id, compute)
        )
