"""SessionService servicer: translates between protos and core (sessions, messages, jobs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import empty_pb2

from memgrpc.api import convert
from memgrpc.api.session_turns import TurnRpcs
from memgrpc.core.access import principal
from memgrpc.core.chat.loop import SessionLoop
from memgrpc.core.conversation.jobs import JobRunner
from memgrpc.core.conversation.messages import MessageService
from memgrpc.core.conversation.records import SessionStatus
from memgrpc.core.conversation.sessions import SessionQuery, SessionService
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.kernel.idempotency import Idempotency
from memgrpc.core.kernel.paging import PageRequest
from memgrpc.v1 import memory_pb2, sessions_pb2_grpc
from memgrpc.v1 import sessions_pb2 as pb


class SessionServicer(TurnRpcs, sessions_pb2_grpc.SessionServiceServicer):
    def __init__(
        self,
        sessions: SessionService,
        messages: MessageService,
        jobs: JobRunner,
        idempotency: Idempotency,
        *,
        loop: SessionLoop,
    ) -> None:
        self._sessions = sessions
        self._messages = messages
        self._jobs = jobs
        self._idem = idempotency
        self._loop = loop

    async def _once(
        self, method: str, request_id: str, compute: Callable[[], Awaitable[tuple[bytes, str]]]
    ) -> bytes:
        project = principal.current().project_id
        return await self._idem.run_owned(project, method, request_id, compute)

    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Session:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            s = convert.session_from_pb(v, request.session)
            v.raise_if_any()
            made = await self._sessions.create(project, s)
            return convert.session_to_pb(made).SerializeToString(), made.user_id

        return pb.Session.FromString(await self._once("CreateSession", request.request_id, compute))

    async def GetSession(
        self, request: pb.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Session:
        s = await self._sessions.get(principal.current().project_id, request.id)
        return convert.session_to_pb(s)

    async def UpdateSession(
        self, request: pb.UpdateSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Session:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            s = convert.session_from_pb(v, request.session)
            if request.HasField("update_mask"):
                fields = frozenset(request.update_mask.paths)
                if not fields:
                    v.add("update_mask", "must name at least one field")
            else:
                fields = convert.session_set_fields(request.session)
                if not fields:
                    v.add("session", "sets no field to update")
            v.raise_if_any()
            updated = await self._sessions.update(project, s, fields)
            return convert.session_to_pb(updated).SerializeToString(), updated.user_id

        return pb.Session.FromString(await self._once("UpdateSession", request.request_id, compute))

    async def DeleteSession(
        self, request: pb.DeleteSessionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            await self._sessions.delete(project, request.id)
            return b"", ""

        await self._once("DeleteSession", request.request_id, compute)
        return empty_pb2.Empty()

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSessionsResponse:
        v = Violations()
        statuses: list[SessionStatus] = []
        for i, value in enumerate(request.statuses):
            status = convert.session_status(v, f"statuses[{i}]", value)
            if status is not None:
                statuses.append(status)
        v.raise_if_any()
        q = SessionQuery(
            user_id=request.user_id,
            metadata=convert.struct_to_dict(request.metadata_filter),
            user_metadata=convert.struct_to_dict(request.user_metadata_filter),
            statuses=tuple(statuses),
        )
        listing = await self._sessions.list(
            principal.current().project_id,
            q,
            PageRequest(size=request.page_size, token=request.page_token),
        )
        return pb.ListSessionsResponse(
            sessions=[convert.session_to_pb(s) for s in listing.items],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )

    async def AddMessages(
        self, request: pb.AddMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddMessagesResponse:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            msgs = [
                convert.message_from_pb(v, m, f"messages[{i}]")
                for i, m in enumerate(request.messages)
            ]
            v.raise_if_any()
            added = await self._messages.add(project, request.session_id, msgs)
            resp = pb.AddMessagesResponse(messages=[convert.message_to_pb(m) for m in added])
            return resp.SerializeToString(), added[0].user_id

        return pb.AddMessagesResponse.FromString(
            await self._once("AddMessages", request.request_id, compute)
        )

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMessagesResponse:
        listing = await self._messages.list(
            principal.current().project_id,
            request.session_id,
            PageRequest(size=request.page_size, token=request.page_token),
        )
        return pb.ListMessagesResponse(
            messages=[convert.message_to_pb(m) for m in listing.items],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )

    async def ProcessSession(
        self, request: pb.ProcessSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Job:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            job = await self._jobs.process(
                project, request.session_id, wait=request.wait, force=request.force
            )
            return convert.job_to_pb(job).SerializeToString(), job.user_id

        return pb.Job.FromString(await self._once("ProcessSession", request.request_id, compute))

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.Job:
        job = await self._jobs.get(principal.current().project_id, request.id)
        return convert.job_to_pb(job)

    async def LinkMemory(
        self, request: pb.LinkMemoryRequest, context: grpc.aio.ServicerContext
    ) -> memory_pb2.Memory:
        m = await self._sessions.link_memory(
            principal.current().project_id, request.session_id, request.memory_id
        )
        return convert.memory_to_pb(m)
