"""AgentService servicer: translates between protos and core.agents."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import empty_pb2

from memgrpc.api import convert
from memgrpc.api.agent_engine import EngineRpcs
from memgrpc.api.agent_instances import InstanceRpcs
from memgrpc.api.agent_memory import MemoryRpcs
from memgrpc.api.agent_notifications import NotificationRpcs
from memgrpc.api.agent_states import StateRpcs
from memgrpc.core.access import principal
from memgrpc.core.agents import (
    BIG_FIVE,
    FLAGS,
    MEMORY_MODES,
    Agent,
    AgentService,
    Capabilities,
    CapabilitiesPatch,
    MemoryMode,
    Personality,
)
from memgrpc.core.agents.engine import ContextEngine, Diary, Notifications
from memgrpc.core.agents.instances import InstanceService
from memgrpc.core.agents.memory import AgentMemory
from memgrpc.core.agents.states import StateService
from memgrpc.core.kernel import Idempotency, PageRequest, Violations
from memgrpc.v1 import agents_pb2 as pb
from memgrpc.v1 import agents_pb2_grpc


def memory_mode(v: Violations, name: str, value: int) -> MemoryMode | None:
    """None for UNSPECIFIED (the default, or unchanged on update)."""
    if value == 0:
        return None
    if 1 <= value <= len(MEMORY_MODES):
        return MEMORY_MODES[value - 1]
    v.add(name, f"unknown MemoryMode value {value}")
    return None


def personality_from_pb(p: pb.Personality) -> Personality:
    """Traits left unset keep the default (0.5)."""
    given = {t: float(getattr(p.big_five, t)) for t in BIG_FIVE if p.big_five.HasField(t)}  # type: ignore[arg-type]
    return Personality(
        big_five=Personality().big_five | given,
        dimensions={k: float(x) for k, x in p.dimensions.items()},
    )


def personality_to_pb(p: Personality) -> pb.Personality:
    return pb.Personality(big_five=pb.BigFive(**p.big_five), dimensions=p.dimensions)


def patch_from_pb(v: Violations, name: str, c: pb.Capabilities) -> CapabilitiesPatch:
    flags = {f: getattr(c, f) for f in FLAGS if c.HasField(f)}  # type: ignore[arg-type]
    return CapabilitiesPatch(
        memory_mode=memory_mode(v, f"{name}.memory_mode", c.memory_mode), **flags
    )


def capabilities_to_pb(c: Capabilities) -> pb.Capabilities:
    mode = MEMORY_MODES.index(c.memory_mode) + 1
    return pb.Capabilities(memory_mode=mode, **{f: getattr(c, f) for f in FLAGS})  # type: ignore[arg-type]


def agent_from_pb(v: Violations, a: pb.Agent) -> Agent:
    caps = patch_from_pb(v, "agent.capabilities", a.capabilities).apply(Capabilities())
    return Agent(
        id=a.id,
        display_name=a.display_name,
        system_prompt=a.system_prompt,
        personality=personality_from_pb(a.personality),
        capabilities=caps,
        metadata=convert.struct_to_dict(a.metadata),
    )


def agent_to_pb(a: Agent) -> pb.Agent:
    return pb.Agent(
        id=a.id,
        display_name=a.display_name,
        system_prompt=a.system_prompt,
        personality=personality_to_pb(a.personality),
        capabilities=capabilities_to_pb(a.capabilities),
        metadata=convert.dict_to_struct(a.metadata),
        create_time=convert.to_ts(a.create_time),
        update_time=convert.to_ts(a.update_time),
    )


def set_fields(a: pb.Agent) -> frozenset[str]:
    """What an update without a mask changes: the fields the request sets."""
    out = {f for f in ("display_name", "system_prompt") if getattr(a, f)}
    out |= {f for f in ("personality", "capabilities", "metadata") if a.HasField(f)}
    return frozenset(out)


class AgentServicer(
    StateRpcs,
    EngineRpcs,
    NotificationRpcs,
    InstanceRpcs,
    MemoryRpcs,
    agents_pb2_grpc.AgentServiceServicer,
):
    def __init__(
        self,
        agents: AgentService,
        idempotency: Idempotency,
        *,
        states: StateService,
        engine: ContextEngine,
        diary: Diary,
        notifications: Notifications,
        instances: InstanceService,
        agent_memory: AgentMemory,
    ) -> None:
        self._agents = agents
        self._idem = idempotency
        self._states = states
        self._engine = engine
        self._diary = diary
        self._notifications = notifications
        self._instances = instances
        self._agent_memory = agent_memory

    async def _once(
        self, method: str, request_id: str, compute: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        project = principal.current().project_id
        return await self._idem.run(project, method, request_id, compute)

    async def CreateAgent(
        self, request: pb.CreateAgentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Agent:
        project = principal.current().project_id

        async def compute() -> bytes:
            v = Violations()
            a = agent_from_pb(v, request.agent)
            v.raise_if_any()
            return agent_to_pb(await self._agents.create(project, a)).SerializeToString()

        return pb.Agent.FromString(await self._once("CreateAgent", request.request_id, compute))

    async def GetAgent(
        self, request: pb.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Agent:
        return agent_to_pb(await self._agents.get(principal.current().project_id, request.id))

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        listing = await self._agents.list(
            principal.current().project_id,
            PageRequest(size=request.page_size, token=request.page_token),
        )
        return pb.ListAgentsResponse(
            agents=[agent_to_pb(a) for a in listing.items],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )

    async def UpdateAgent(
        self, request: pb.UpdateAgentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Agent:
        project = principal.current().project_id

        async def compute() -> bytes:
            v = Violations()
            a = agent_from_pb(v, request.agent)
            if request.HasField("update_mask"):
                fields = frozenset(request.update_mask.paths)
                if not fields:
                    v.add("update_mask", "must name at least one field")
            else:
                fields = set_fields(request.agent)
                if not fields:
                    v.add("agent", "sets no field to update")
            v.raise_if_any()
            return agent_to_pb(await self._agents.update(project, a, fields)).SerializeToString()

        return pb.Agent.FromString(await self._once("UpdateAgent", request.request_id, compute))

    async def DeleteAgent(
        self, request: pb.DeleteAgentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        project = principal.current().project_id

        async def compute() -> bytes:
            await self._agents.delete(project, request.id)
            return b""

        await self._once("DeleteAgent", request.request_id, compute)
        return empty_pb2.Empty()

    async def GetPersonality(
        self, request: pb.GetPersonalityRequest, context: grpc.aio.ServicerContext
    ) -> pb.Personality:
        p = await self._agents.personality(principal.current().project_id, request.agent_id)
        return personality_to_pb(p)

    async def GetCapabilities(
        self, request: pb.GetCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> pb.Capabilities:
        c = await self._agents.capabilities(principal.current().project_id, request.agent_id)
        return capabilities_to_pb(c)

    async def UpdateCapabilities(
        self, request: pb.UpdateCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> pb.Capabilities:
        project = principal.current().project_id

        async def compute() -> bytes:
            v = Violations()
            patch = patch_from_pb(v, "capabilities", request.capabilities)
            v.raise_if_any()
            caps = await self._agents.update_capabilities(project, request.agent_id, patch)
            return capabilities_to_pb(caps).SerializeToString()

        return pb.Capabilities.FromString(
            await self._once("UpdateCapabilities", request.request_id, compute)
        )
