"""ChatService servicer: translates between protos and core.chat.turn / core.chat.background, nothing else.

A failure after `started` reaches the client twice, on purpose: as an `error` event (for
callers that only read events) and as the call's status with ErrorInfo (and RetryInfo), which
is what gRPC clients raise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import duration_pb2

from memgrpc.api import convert, errors
from memgrpc.api.moods import mood_to_pb
from memgrpc.core.access import principal
from memgrpc.core.chat.background import BackgroundChats, ChatResult
from memgrpc.core.chat.events import (
    ChatEvent,
    ContextUsed,
    Delta,
    Done,
    Failed,
    SideEffects,
    Started,
    ToolCalled,
)
from memgrpc.core.chat.options import PriorMessage
from memgrpc.core.chat.replay import ChatReplays
from memgrpc.core.chat.turn import ChatRequest, ChatService
from memgrpc.core.kernel.idempotency import Idempotency
from memgrpc.llm import Tool, ToolCall, Usage
from memgrpc.v1 import chat_pb2 as pb
from memgrpc.v1 import chat_pb2_grpc

_STATUSES = {
    "queued": pb.CHAT_STATUS_QUEUED,
    "running": pb.CHAT_STATUS_RUNNING,
    "complete": pb.CHAT_STATUS_COMPLETE,
    "failed": pb.CHAT_STATUS_FAILED,
}


def _request(r: pb.ChatRequest) -> ChatRequest:
    return ChatRequest(
        message=r.message,
        session_id=r.session_id,
        user_id=r.user_id,
        use_memory=r.use_memory if r.HasField("use_memory") else True,
        provider=r.provider,
        model=r.model,
        temperature=r.temperature if r.HasField("temperature") else None,
        system_prompt=r.system_prompt,
        max_tokens=r.max_tokens if r.HasField("max_tokens") else None,
        agent_id=r.agent_id,
        instance_id=r.instance_id,
        messages=tuple(PriorMessage(m.role, m.content, m.name) for m in r.messages),
        user_display_name=r.user_display_name,
        language=r.language,
        timezone=r.timezone,
        tool_capabilities=tuple(r.tool_capabilities),
        tools=tuple(
            Tool(t.name, t.description, convert.struct_to_dict(t.parameters))
            for t in r.tool_definitions
        ),
    )


def _call(c: ToolCall) -> pb.ChatToolCall:
    return pb.ChatToolCall(id=c.id, name=c.name, arguments=c.arguments)


def _effects(e: SideEffects) -> pb.ChatSideEffects:
    out = pb.ChatSideEffects(facts_extracted=e.facts_extracted, memory_ids=e.memory_ids)
    if e.mood_before is not None:
        out.mood_before.CopyFrom(mood_to_pb(e.mood_before))
    if e.mood_after is not None:
        out.mood_after.CopyFrom(mood_to_pb(e.mood_after))
    return out


def _usage(u: Usage | None) -> pb.ChatUsage | None:
    if u is None:
        return None
    return pb.ChatUsage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens)


def _event(ev: ChatEvent) -> pb.ChatEvent:
    out = pb.ChatEvent(sequence=ev.sequence, create_time=convert.to_ts(ev.create_time))
    body = ev.body
    match body:
        case Started():
            out.started.CopyFrom(
                pb.ChatStarted(user_message_id=body.user_message_id, session_id=body.session_id)
            )
        case ContextUsed():
            out.context.CopyFrom(pb.ChatContext(memories=convert.hits_to_pb(body.memories)))
        case Delta():
            out.delta.text = body.text
        case ToolCalled():
            out.tool_call.CopyFrom(_call(body.call))
        case Done():
            latency = duration_pb2.Duration()
            latency.FromTimedelta(body.latency)
            out.done.CopyFrom(
                pb.ChatDone(
                    assistant_message_id=body.assistant_message_id,
                    usage=_usage(body.usage),
                    latency=latency,
                )
            )
        case Failed():
            err = body.error
            out.error.CopyFrom(
                pb.ChatError(code=errors.code_of(err), message=err.message, reason=err.reason)
            )
    return out


def _result(r: ChatResult) -> pb.ChatResult:
    out = pb.ChatResult(
        processing_id=r.id,
        status=_STATUSES[r.status],
        response=r.response,
        session_id=r.session_id,
        user_message_id=r.user_message_id,
        assistant_message_id=r.assistant_message_id,
        usage=_usage(r.usage),
        memories=convert.hits_to_pb(r.memories),
        phase=r.phase,
        tool_calls=[_call(c) for c in r.tool_calls],
    )
    if r.side_effects is not None:
        out.side_effects.CopyFrom(_effects(r.side_effects))
    if r.error is not None:
        out.error.CopyFrom(
            pb.ChatError(
                code=errors.code(r.error.code),
                message=r.error.message,
                reason=r.error.reason,
            )
        )
    return out


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    def __init__(
        self,
        chat: ChatService,
        background: BackgroundChats,
        replays: ChatReplays,
        idempotency: Idempotency,
    ) -> None:
        self._chat = chat
        self._background = background
        self._replays = replays
        self._idem = idempotency

    async def Chat(
        self, request: pb.ChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatEvent]:
        project = principal.current().project_id
        # a retried request_id replays the first attempt (core/chat/replay.py)
        turn = await self._replays.stream(project, _request(request), request.request_id)
        # the call ending any way (cancel, deadline) stops the turn, wherever this generator is
        context.add_done_callback(lambda _: turn.cancel())
        try:
            async for ev in turn.events():
                yield _event(ev)
        finally:
            turn.cancel()

    async def ChatAsync(
        self, request: pb.ChatRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChatAsyncResponse:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            queued = await self._background.submit(project, _request(request))
            resp = pb.ChatAsyncResponse(processing_id=queued.id)
            return resp.SerializeToString(), queued.user_id

        return pb.ChatAsyncResponse.FromString(
            await self._idem.run_owned(project, "ChatAsync", request.request_id, compute)
        )

    async def GetChatResult(
        self, request: pb.GetChatResultRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChatResult:
        found = await self._background.get(principal.current().project_id, request.processing_id)
        return _result(found)

    async def ListProviders(
        self, request: pb.ListProvidersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProvidersResponse:
        return pb.ListProvidersResponse(
            providers=[
                pb.Provider(
                    name=p.name,
                    models=p.models,
                    default_model=p.default_model,
                    is_default=p.is_default,
                    available=p.available,
                )
                for p in self._chat.providers()
            ]
        )
