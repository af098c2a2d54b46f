"""AgentService's custom-state RPCs (a mixin of AgentServicer): protos <-> core.agents.states.

Uses `self._states` (a StateService) and `self._idem` (Idempotency) of the servicer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format

from memgrpc.api import convert
from memgrpc.core.access import principal
from memgrpc.core.agents.states import (
    CustomState,
    StateFilter,
    StateKey,
    StateScope,
    StateService,
)
from memgrpc.core.kernel import Idempotency, PageRequest, Violations
from memgrpc.v1 import agent_state_pb2 as spb

_SCOPES: dict[int, StateScope] = {
    spb.STATE_SCOPE_GLOBAL: "global",
    spb.STATE_SCOPE_USER: "user",
}
_SCOPE_PB: dict[StateScope, spb.StateScope.ValueType] = {
    "global": spb.STATE_SCOPE_GLOBAL,
    "user": spb.STATE_SCOPE_USER,
}


def scope_from_pb(v: Violations, name: str, value: int) -> StateScope | None:
    """None for UNSPECIFIED (each caller says whether that is allowed)."""
    if value == spb.STATE_SCOPE_UNSPECIFIED:
        return None
    if value not in _SCOPES:
        v.add(name, f"unknown StateScope value {value}")
        return None
    return _SCOPES[value]


def key_from_pb(v: Violations, name: str, k: spb.StateKey | spb.CustomState) -> StateKey:
    return StateKey(
        agent_id=k.agent_id,
        instance_id=k.instance_id,
        scope=scope_from_pb(v, f"{name}.scope", k.scope),
        user_id=k.user_id,
        key=k.key,
    )


def state_from_pb(v: Violations, s: spb.CustomState) -> CustomState:
    has_value = s.HasField("value")
    value: Any = None
    if has_value:
        if s.value.WhichOneof("kind") is None:
            v.add("state.value", "is set but holds no JSON value")
        else:
            value = json_format.MessageToDict(s.value)
    return CustomState(
        key=key_from_pb(v, "state", s),
        content_type=s.content_type,
        value=value,
        has_value=has_value,
        text=s.text,
    )


def state_to_pb(s: CustomState) -> spb.CustomState:
    k = s.key
    out = spb.CustomState(
        agent_id=k.agent_id,
        instance_id=k.instance_id,
        scope=_SCOPE_PB[k.scope] if k.scope else spb.STATE_SCOPE_UNSPECIFIED,
        user_id=k.user_id,
        key=k.key,
        content_type=s.content_type,
        text=s.text,
        create_time=convert.to_ts(s.create_time),
        update_time=convert.to_ts(s.update_time),
    )
    if s.has_value:
        json_format.ParseDict(s.value, out.value)
    return out


class StateRpcs:
    _states: StateService
    _idem: Idempotency

    async def _write(
        self,
        method: str,
        request: spb.CreateStateRequest | spb.UpsertStateRequest,
        write: Callable[[str, CustomState], Awaitable[CustomState]],
    ) -> spb.CustomState:
        """Create / Upsert under request_id; a USER-scoped result is owned by its user, so
        DeleteUser's purge removes the recorded response too."""
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            s = state_from_pb(v, request.state)
            v.raise_if_any()
            made = await write(project, s)
            return state_to_pb(made).SerializeToString(), made.key.user_id

        raw = await self._idem.run_owned(project, method, request.request_id, compute)
        return spb.CustomState.FromString(raw)

    async def CreateState(
        self, request: spb.CreateStateRequest, context: grpc.aio.ServicerContext
    ) -> spb.CustomState:
        return await self._write("CreateState", request, self._states.create)

    async def UpsertState(
        self, request: spb.UpsertStateRequest, context: grpc.aio.ServicerContext
    ) -> spb.CustomState:
        return await self._write("UpsertState", request, self._states.upsert)

    async def GetState(
        self, request: spb.GetStateRequest, context: grpc.aio.ServicerContext
    ) -> spb.CustomState:
        v = Violations()
        k = key_from_pb(v, "key", request.key)
        v.raise_if_any()
        return state_to_pb(await self._states.get(principal.current().project_id, k))

    async def DeleteState(
        self, request: spb.DeleteStateRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        project = principal.current().project_id

        async def compute() -> tuple[bytes, str]:
            v = Violations()
            k = key_from_pb(v, "key", request.key)
            v.raise_if_any()
            await self._states.delete(project, k)
            return b"", k.user_id

        await self._idem.run_owned(project, "DeleteState", request.request_id, compute)
        return empty_pb2.Empty()

    async def ListStates(
        self, request: spb.ListStatesRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListStatesResponse:
        v = Violations()
        f = StateFilter(
            agent_id=request.agent_id,
            instance_id=request.instance_id,
            scope=scope_from_pb(v, "scope", request.scope),
            user_id=request.user_id,
        )
        v.raise_if_any()
        listing = await self._states.list(
            principal.current().project_id,
            f,
            PageRequest(size=request.page_size, token=request.page_token),
        )
        return spb.ListStatesResponse(
            states=[state_to_pb(s) for s in listing.items],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )
