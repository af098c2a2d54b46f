"""SubmitTurn and EndSession (Sonzai sessions.turn / sessions.end): the SessionServicer's part
that translates to core.chat.loop. A mixin: it uses `self._loop` (SessionLoop) and `self._once`
(request_id replay) of the servicer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from memgrpc.api import convert
from memgrpc.api.moods import mood_to_pb
from memgrpc.core.access import principal
from memgrpc.core.chat.loop import EndRequest, SessionLoop, TurnRequest
from memgrpc.core.kernel.errors import Violations
from memgrpc.v1 import sessions_pb2 as pb


class TurnRpcs:
    _loop: SessionLoop
    _once: Callable[[str, str, Callable[[], Awaitable[tuple[bytes, str]]]], Awaitable[bytes]]

    async def SubmitTurn(
        self, request: pb.SubmitTurnRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitTurnResponse:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            msgs = [
                convert.message_from_pb(v, m, f"messages[{i}]")
                for i, m in enumerate(request.messages)
            ]
            v.raise_if_any()
            done = await self._loop.submit_turn(
                project,
                TurnRequest(
                    session_id=request.session_id,
                    messages=msgs,
                    fetch_next_context=request.fetch_next_context,
                    next_context_query=request.next_context_query,
                    token_budget=request.token_budget,
                ),
            )
            out = pb.SubmitTurnResponse(
                messages=[convert.message_to_pb(m) for m in done.messages],
                extraction_job_id=done.extraction_job.id if done.extraction_job else "",
            )
            if done.mood is not None:
                out.mood.CopyFrom(mood_to_pb(done.mood))
            if (c := done.next_context) is not None:
                out.next_context.CopyFrom(
                    pb.NextContext(
                        context=c.text,
                        memories=convert.hits_to_pb(c.memories),
                        token_count=c.token_count,
                    )
                )
            return out.SerializeToString(), done.messages[0].user_id

        return pb.SubmitTurnResponse.FromString(
            await self._once("SubmitTurn", request.request_id, compute)
        )

    async def EndSession(
        self, request: pb.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.EndSessionResponse:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            duration = (
                convert.duration(v, "duration", request.duration)
                if request.HasField("duration")
                else None
            )
            v.raise_if_any()
            session, job = await self._loop.end_session(
                project,
                EndRequest(
                    session_id=request.session_id,
                    total_messages=request.total_messages,
                    duration=duration,
                    wait=request.wait,
                ),
            )
            out = pb.EndSessionResponse(
                session=convert.session_to_pb(session), job=convert.job_to_pb(job)
            )
            return out.SerializeToString(), session.user_id

        return pb.EndSessionResponse.FromString(
            await self._once("EndSession", request.request_id, compute)
        )
