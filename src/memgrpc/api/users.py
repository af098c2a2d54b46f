"""UserService servicer: translates between protos and core.conversation.users, nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import empty_pb2

from memgrpc.api import convert
from memgrpc.core.access import principal
from memgrpc.core.conversation.users import UserService
from memgrpc.core.intelligence.actions import Action, Actions
from memgrpc.core.intelligence.profiles import Profiles
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.kernel.idempotency import Idempotency
from memgrpc.core.kernel.paging import PageRequest
from memgrpc.v1 import users_pb2 as pb
from memgrpc.v1 import users_pb2_grpc


class UserServicer(users_pb2_grpc.UserServiceServicer):
    def __init__(
        self,
        service: UserService,
        idempotency: Idempotency,
        *,
        actions: Actions | None = None,
        profiles: Profiles | None = None,
    ) -> None:
        self._svc = service
        self._idem = idempotency
        self._actions = actions
        self._profiles = profiles

    @property
    def profiles(self) -> Profiles:
        if self._profiles is None:
            raise RuntimeError("UserServicer was built without profiles")
        return self._profiles

    async def _once(
        self, method: str, request_id: str, compute: Callable[[], Awaitable[tuple[bytes, str]]]
    ) -> bytes:
        project = principal.current().project_id
        return await self._idem.run_owned(project, method, request_id, compute)

    async def CreateUser(
        self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.User:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            user = await self._svc.create(project, convert.user_from_pb(request.user))
            return convert.user_to_pb(user).SerializeToString(), user.id

        return pb.User.FromString(await self._once("CreateUser", request.request_id, compute))

    async def GetUser(
        self, request: pb.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.User:
        user = await self._svc.get(principal.current().project_id, request.id)
        return convert.user_to_pb(user)

    async def UpdateUser(
        self, request: pb.UpdateUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.User:
        project = principal.current().project_id
        if request.HasField("update_mask"):
            fields = frozenset(request.update_mask.paths)
        else:
            fields = frozenset({"metadata"} if request.user.HasField("metadata") else ())

        async def compute() -> tuple[bytes, str]:
            user = await self._svc.update(
                project, convert.user_from_pb(request.user), fields, request.new_id
            )
            return convert.user_to_pb(user).SerializeToString(), user.id

        return pb.User.FromString(await self._once("UpdateUser", request.request_id, compute))

    async def DeleteUser(
        self, request: pb.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            await self._svc.delete(project, request.id)
            return b"", ""  # owned by nobody: it must outlive the purge it records

        await self._once("DeleteUser", request.request_id, compute)
        return empty_pb2.Empty()

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        listing = await self._svc.list(
            principal.current().project_id,
            convert.struct_to_dict(request.metadata_filter),
            PageRequest(size=request.page_size, token=request.page_token),
            agent_id=request.agent_id,
        )
        return pb.ListUsersResponse(
            users=[convert.user_to_pb(u) for u in listing.items],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )

    async def ListRecentMessages(
        self, request: pb.ListRecentMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRecentMessagesResponse:
        messages = await self._svc.recent_messages(
            principal.current().project_id, request.user_id, request.n
        )
        return pb.ListRecentMessagesResponse(messages=[convert.message_to_pb(m) for m in messages])

    async def RecordAction(
        self, request: pb.RecordActionRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordActionResponse:
        if self._actions is None:
            raise RuntimeError("UserServicer was built without actions")
        actions = self._actions
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            action = Action(
                user_id=request.user_id,
                content=request.content,
                timestamp=convert.opt_timestamp(v, "timestamp", request, "timestamp"),
                log_id=request.log_id,
                session_id=request.session_id,
                device_id=request.device_id,
                app=request.app,
                platform=request.platform,
                event_type=request.event_type,
                page=request.page,
                anchors=dict(request.anchors),
                metadata=convert.struct_to_dict(request.metadata)
                if request.HasField("metadata")
                else {},
                entities=tuple(request.entities),
            )
            v.raise_if_any()
            done = await actions.record(project, action)
            reply = pb.RecordActionResponse(
                memory=convert.memory_to_pb(done.memory), duplicate=done.duplicate
            )
            return reply.SerializeToString(), done.memory.user_id

        return pb.RecordActionResponse.FromString(
            await self._once("RecordAction", request.request_id, compute)
        )

    # -- profiles (Sovant's recall helpers) ----------------------------------------------------
    async def GetProfile(
        self, request: pb.GetProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.Profile:
        facts = await self.profiles.get(principal.current().project_id, request.user_id)
        return pb.Profile(
            user_id=request.user_id,
            facts={k: convert.profile_fact_to_pb(f) for k, f in facts.items()},
        )

    async def ExtractProfile(
        self, request: pb.ExtractProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtractProfileResponse:
        found = self.profiles.extract(request.text)
        if found is None:
            return pb.ExtractProfileResponse(found=False)
        return pb.ExtractProfileResponse(found=True, slot=found[0], value=found[1])

    async def SaveProfileFact(
        self, request: pb.SaveProfileFactRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProfileFact:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            fact = await self.profiles.save(project, request.user_id, request.slot, request.value)
            return convert.profile_fact_to_pb(fact).SerializeToString(), request.user_id

        return pb.ProfileFact.FromString(
            await self._once("SaveProfileFact", request.request_id, compute)
        )
