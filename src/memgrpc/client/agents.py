"""`client.agents`: the personas a project's users talk to (Sonzai's `agents.*`): create, get,
list, update, delete, and an agent's personality and capabilities.

Agents are plain dicts: `{"id": "agt_...", "display_name", "system_prompt", "personality":
{"big_five": {...}, "dimensions": {...}}, "capabilities": {"memory_mode": "sync", ...},
"metadata", "create_time", "update_time"}`. Enum values are their short names ("sync",
"async").
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from google.protobuf import empty_pb2

from memgrpc.client import _convert as cv
from memgrpc.client._channel import Unary, method_path, new_request_id
from memgrpc.client._transport import AsyncCaller, Caller
from memgrpc.client.agent_state import (
    AgentMemory,
    CustomStates,
    EngineReads,
    Instances,
    Notifications,
)
from memgrpc.client.errors import invalid_argument
from memgrpc.v1 import agents_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["AgentService"]
_AGENT = pb.Agent.DESCRIPTOR

Params = Mapping[str, Any] | None
Mask = Sequence[str] | str | None


def _path(name: str) -> str:
    return method_path(_SERVICE, name)


def _none(_: empty_pb2.Empty) -> None:
    return None


class Calls:
    @staticmethod
    def create(data: dict[str, Any]) -> Unary[pb.Agent, dict[str, Any]]:
        rid = cv.pop_request_id(data) or new_request_id()
        request = pb.CreateAgentRequest(agent=cv.build(pb.Agent, data, "agent"), request_id=rid)
        return Unary(_path("CreateAgent"), request, pb.Agent, cv.to_dict, rid)

    @staticmethod
    def get(agent_id: str) -> Unary[pb.Agent, dict[str, Any]]:
        return Unary(_path("GetAgent"), pb.GetAgentRequest(id=agent_id), pb.Agent, cv.to_dict)

    @staticmethod
    def list(data: dict[str, Any]) -> Unary[pb.ListAgentsResponse, dict[str, Any]]:
        request = cv.build(pb.ListAgentsRequest, data, "list")
        return Unary(_path("ListAgents"), request, pb.ListAgentsResponse, cv.to_dict)

    @staticmethod
    def update(
        agent_id: str, data: dict[str, Any], update_mask: Mask, request_id: str | None
    ) -> Unary[pb.Agent, dict[str, Any]]:
        rid = request_id or new_request_id()
        fields = cv.canonical(_AGENT, data, "agent")
        if fields.pop("id", agent_id) != agent_id:
            raise invalid_argument("agent.id", "differs from the agent id argument")
        agent = cv.build(pb.Agent, fields, "agent")
        agent.id = agent_id
        request = pb.UpdateAgentRequest(agent=agent, request_id=rid)
        cv.set_update_mask(request, fields, update_mask)
        return Unary(_path("UpdateAgent"), request, pb.Agent, cv.to_dict, rid)

    @staticmethod
    def delete(agent_id: str, request_id: str | None) -> Unary[empty_pb2.Empty, None]:
        rid = request_id or new_request_id()
        request = pb.DeleteAgentRequest(id=agent_id, request_id=rid)
        return Unary(_path("DeleteAgent"), request, empty_pb2.Empty, _none, rid)

    @staticmethod
    def personality(agent_id: str) -> Unary[pb.Personality, dict[str, Any]]:
        request = pb.GetPersonalityRequest(agent_id=agent_id)
        return Unary(_path("GetPersonality"), request, pb.Personality, cv.to_dict)

    @staticmethod
    def capabilities(agent_id: str) -> Unary[pb.Capabilities, dict[str, Any]]:
        request = pb.GetCapabilitiesRequest(agent_id=agent_id)
        return Unary(_path("GetCapabilities"), request, pb.Capabilities, cv.to_dict)

    @staticmethod
    def update_capabilities(
        agent_id: str, data: dict[str, Any], request_id: str | None
    ) -> Unary[pb.Capabilities, dict[str, Any]]:
        rid = request_id or new_request_id()
        request = pb.UpdateCapabilitiesRequest(
            agent_id=agent_id,
            capabilities=cv.build(pb.Capabilities, data, "capabilities"),
            request_id=rid,
        )
        return Unary(_path("UpdateCapabilities"), request, pb.Capabilities, cv.to_dict, rid)


class AgentsResource(EngineReads[dict[str, Any]]):
    """`client.agents`, with `instances`, `custom_states`, `notifications` and `memory`."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller
        self._run = caller.unary
        self.instances = Instances(caller.unary)
        self.custom_states = CustomStates(caller.unary)
        self.notifications = Notifications(caller.unary)
        self.memory = AgentMemory(caller.unary)

    def create(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        """`create(display_name="Ava", system_prompt=..., personality={"big_five": {...},
        "dimensions": {"warmth": 8}}, capabilities={"memory_mode": "async"})` -> the agent."""
        return self._c.unary(Calls.create(cv.params(params, fields, "agent")))

    def get(self, agent_id: str) -> dict[str, Any]:
        """The agent; NotFoundError (reason AGENT_NOT_FOUND) if the project has none."""
        return self._c.unary(Calls.get(agent_id))

    def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        """`list(page_size=10, page_token=...)` -> `{"agents": [...], "next_page_token",
        "total_size"}`, newest first."""
        return self._c.unary(Calls.list(cv.params(params, fields, "list")))

    def update(
        self,
        agent_id: str,
        params: Params = None,
        /,
        *,
        update_mask: Mask = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Overwrite the fields given (or those `update_mask` names); returns the agent."""
        data = cv.params(params, fields, "agent")
        return self._c.unary(Calls.update(agent_id, data, update_mask, request_id))

    def delete(self, agent_id: str, *, request_id: str | None = None) -> None:
        self._c.unary(Calls.delete(agent_id, request_id))

    def personality(self, agent_id: str) -> dict[str, Any]:
        """`{"big_five": {"openness": ...}, "dimensions": {...}}`."""
        return self._c.unary(Calls.personality(agent_id))

    def capabilities(self, agent_id: str) -> dict[str, Any]:
        return self._c.unary(Calls.capabilities(agent_id))

    def update_capabilities(
        self,
        agent_id: str,
        params: Params = None,
        /,
        *,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A PATCH: `update_capabilities(id, web_search=True)` changes web_search only."""
        data = cv.params(params, fields, "capabilities")
        return self._c.unary(Calls.update_capabilities(agent_id, data, request_id))


class AsyncAgentsResource(EngineReads[Awaitable[dict[str, Any]]]):
    """`client.agents` of the async client."""

    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller
        self._run = caller.unary
        self.instances = Instances(caller.unary)
        self.custom_states = CustomStates(caller.unary)
        self.notifications = Notifications(caller.unary)
        self.memory = AgentMemory(caller.unary)

    async def create(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.create(cv.params(params, fields, "agent")))

    async def get(self, agent_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.get(agent_id))

    async def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.list(cv.params(params, fields, "list")))

    async def update(
        self,
        agent_id: str,
        params: Params = None,
        /,
        *,
        update_mask: Mask = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        data = cv.params(params, fields, "agent")
        return await self._c.unary(Calls.update(agent_id, data, update_mask, request_id))

    async def delete(self, agent_id: str, *, request_id: str | None = None) -> None:
        await self._c.unary(Calls.delete(agent_id, request_id))

    async def personality(self, agent_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.personality(agent_id))

    async def capabilities(self, agent_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.capabilities(agent_id))

    async def update_capabilities(
        self,
        agent_id: str,
        params: Params = None,
        /,
        *,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        data = cv.params(params, fields, "capabilities")
        return await self._c.unary(Calls.update_capabilities(agent_id, data, request_id))
