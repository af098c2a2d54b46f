"""AgentService's instance RPCs (a mixin of api.agents.AgentServicer): protos <-> core.agents
.instances."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from memgrpc.api import convert
from memgrpc.core.access import principal
from memgrpc.core.agents.instances import Instance, InstanceService
from memgrpc.core.kernel import Idempotency, PageRequest
from memgrpc.v1 import agent_state_pb2 as pb


def instance_to_pb(i: Instance) -> pb.Instance:
    return pb.Instance(
        id=i.id,
        agent_id=i.agent_id,
        display_name=i.display_name,
        metadata=convert.dict_to_struct(i.metadata),
        create_time=convert.to_ts(i.create_time),
        reset_time=convert.to_ts(i.reset_time),
    )


class InstanceRpcs:
    """Needs `self._instances` (InstanceService) and `self._idem` (Idempotency)."""

    _instances: InstanceService
    _idem: Idempotency

    async def CreateInstance(
        self, request: pb.CreateInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Instance:
        project = principal.current().project_id

        async def compute() -> bytes:
            given = Instance(
                display_name=request.instance.display_name,
                metadata=convert.struct_to_dict(request.instance.metadata),
            )
            made = await self._instances.create(project, request.agent_id, given)
            return instance_to_pb(made).SerializeToString()

        return pb.Instance.FromString(
            await self._idem.run(project, "CreateInstance", request.request_id, compute)
        )

    async def ListInstances(
        self, request: pb.ListInstancesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInstancesResponse:
        listing = await self._instances.list(
            principal.current().project_id,
            request.agent_id,
            PageRequest(size=request.page_size, token=request.page_token),
        )
        return pb.ListInstancesResponse(
            instances=[instance_to_pb(i) for i in listing.items],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )

    async def ResetInstance(
        self, request: pb.ResetInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.Instance:
        project = principal.current().project_id

        async def compute() -> bytes:
            done = await self._instances.reset(
                project, request.agent_id, request.instance_id, request.user_id
            )
            return instance_to_pb(done).SerializeToString()

        return pb.Instance.FromString(
            await self._idem.run(project, "ResetInstance", request.request_id, compute)
        )

    async def DeleteInstance(
        self, request: pb.DeleteInstanceRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        project = principal.current().project_id

        async def compute() -> bytes:
            await self._instances.delete(project, request.agent_id, request.instance_id)
            return b""

        await self._idem.run(project, "DeleteInstance", request.request_id, compute)
        return empty_pb2.Empty()
