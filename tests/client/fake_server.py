"""A small real gRPC server with scripted failures, for the client's retry tests.

It serves MemoryService.CreateMemory / GetMemory and ChatService.Chat. Each call is recorded
(time, body request_id, x-request-id header); the first calls fail as the script says
(a status code, optionally with RetryInfo), later ones succeed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from memgrpc.v1 import chat_pb2, chat_pb2_grpc, memory_pb2, memory_pb2_grpc


@dataclass
class Attempt:
    at: float
    request_id: str
    header_request_id: str | None


@dataclass
class Failure:
    code: grpc.StatusCode
    retry_after: float | None = None


@dataclass
class Script:
    failures: list[Failure] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    # chat: fail with this after the first event (no retry expected), or stall until cancelled
    fail_after_first: Failure | None = None
    stall: bool = False
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self, *failures: Failure) -> None:
        self.failures = list(failures)
        self.attempts = []
        self.fail_after_first = None
        self.stall = False
        self.cancelled = asyncio.Event()

    def record(self, request_id: str, context: grpc.aio.ServicerContext) -> Failure | None:
        header = dict(context.invocation_metadata() or ()).get("x-request-id")
        self.attempts.append(Attempt(time.monotonic(), request_id, header))
        return self.failures.pop(0) if self.failures else None

    def gaps(self) -> list[float]:
        return [b.at - a.at for a, b in zip(self.attempts, self.attempts[1:], strict=False)]


async def abort(context: grpc.aio.ServicerContext, failure: Failure) -> None:
    status = status_pb2.Status(code=failure.code.value[0], message=f"scripted {failure.code.name}")
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="SCRIPTED", domain="memgrpc"))
    status.details.append(info)
    if failure.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(failure.retry_after * 1e9))
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(retry)
    rich = rpc_status.to_status(status)
    await context.abort(rich.code, rich.details, rich.trailing_metadata)


class FakeMemory(memory_pb2_grpc.MemoryServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    async def CreateMemory(
        self, request: memory_pb2.CreateMemoryRequest, context: grpc.aio.ServicerContext
    ) -> memory_pb2.Memory:
        failure = self.script.record(request.request_id, context)
        if failure is not None:
            await abort(context, failure)
        return memory_pb2.Memory(
            id="mem_fake", user_id=request.memory.user_id, content=request.memory.content
        )

    async def GetMemory(
        self, request: memory_pb2.GetMemoryRequest, context: grpc.aio.ServicerContext
    ) -> memory_pb2.Memory:
        failure = self.script.record("", context)
        if failure is not None:
            await abort(context, failure)
        return memory_pb2.Memory(id=request.id, content="found")


class FakeChat(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    async def Chat(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        failure = self.script.record(request.request_id, context)
        if failure is not None:
            await abort(context, failure)
        try:
            yield chat_pb2.ChatEvent(
                sequence=1,
                started=chat_pb2.ChatStarted(user_message_id="msg_u", session_id="ses_fake"),
            )
            if self.script.fail_after_first is not None:
                await abort(context, self.script.fail_after_first)
            seq = 2
            for word in ("You ", "said: ", request.message):
                yield chat_pb2.ChatEvent(sequence=seq, delta=chat_pb2.ChatDelta(text=word))
                seq += 1
                if self.script.stall:
                    await asyncio.sleep(3600)  # until the client cancels
            yield chat_pb2.ChatEvent(
                sequence=seq, done=chat_pb2.ChatDone(assistant_message_id="msg_a")
            )
        except asyncio.CancelledError:
            self.script.cancelled.set()
            raise


async def start(
    script: Script, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    memory_pb2_grpc.add_MemoryServiceServicer_to_server(FakeMemory(script), server)
    chat_pb2_grpc.add_ChatServiceServicer_to_server(FakeChat(script), server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, f"127.0.0.1:{port}"
