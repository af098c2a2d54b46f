"""ContextService servicer: translates between protos and core.chat.context, nothing else."""

from __future__ import annotations

from dataclasses import replace

import grpc

from memgrpc.api import convert
from memgrpc.core.access import principal
from memgrpc.core.chat.context import ContextRequest, ContextService, Strategy
from memgrpc.core.kernel.errors import Violations
from memgrpc.v1 import context_pb2 as pb
from memgrpc.v1 import context_pb2_grpc
from memgrpc.v1 import users_pb2 as upb

_STRATEGIES: dict[int, Strategy] = {
    pb.CONTEXT_STRATEGY_UNSPECIFIED: "balanced",
    pb.CONTEXT_STRATEGY_LOW_LATENCY: "low_latency",
    pb.CONTEXT_STRATEGY_BALANCED: "balanced",
    pb.CONTEXT_STRATEGY_DEEP: "deep",
}


class ContextServicer(context_pb2_grpc.ContextServiceServicer):
    def __init__(self, service: ContextService) -> None:
        self._svc = service

    async def GetContext(
        self, request: pb.GetContextRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetContextResponse:
        v = Violations()
        strategy = _STRATEGIES.get(request.strategy)
        if strategy is None:
            v.add("strategy", f"unknown ContextStrategy value {request.strategy}")
        r = ContextRequest(
            user_id=request.user_id,
            session_id=request.session_id,
            agent_id=request.agent_id,
            instance_id=request.instance_id,
            query=request.query,
            strategy=strategy or "balanced",
            min_top_k=request.min_top_k,
            max_top_k=request.max_top_k,
            memory_threshold=request.memory_threshold,
            summary_threshold=request.summary_threshold,
            last_n_messages=request.last_n_messages,
            last_n_summaries=request.last_n_summaries,
            metadata=convert.struct_to_dict(request.metadata)
            if request.HasField("metadata")
            else {},
            types=convert.memory_types(v, "types", request.types),
            token_budget=request.token_budget,
            timezone=request.timezone,
            include_system_prompt=(
                request.include_system_prompt if request.HasField("include_system_prompt") else True
            ),
            include_profile=(
                request.include_profile if request.HasField("include_profile") else True
            ),
        )
        v.raise_if_any()
        c = await self._svc.get(principal.current().project_id, r)
        return pb.GetContextResponse(
            context=c.text,
            memories=convert.hits_to_pb(c.memories),
            recent_messages=[
                convert.message_to_pb(replace(m.record, content=m.content))
                for m in c.recent_messages
            ],
            summaries=[
                pb.ContextSummary(
                    session_id=h.memory.session_id,
                    content=h.memory.content,
                    create_time=convert.to_ts(h.memory.create_time),
                    score=h.score,
                )
                for h in c.summaries
            ],
            token_count=c.token_count,
            profile=upb.Profile(
                user_id=request.user_id,
                facts={k: convert.profile_fact_to_pb(f) for k, f in c.profile.items()},
            ),
        )
