"""`client.context`: what the next LLM call should know, as one text block plus its parts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memgrpc.client import _convert as cv
from memgrpc.client._channel import Unary, method_path
from memgrpc.client._transport import AsyncCaller, Caller
from memgrpc.v1 import context_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["ContextService"]


class Calls:
    @staticmethod
    def get(data: dict[str, Any]) -> Unary[pb.GetContextResponse, dict[str, Any]]:
        request = cv.build(pb.GetContextRequest, data, "context")
        return Unary(
            method_path(_SERVICE, "GetContext"), request, pb.GetContextResponse, cv.to_dict
        )


class ContextResource:
    """`client.context`."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def get(self, params: Mapping[str, Any] | None = None, /, **fields: Any) -> dict[str, Any]:
        """`get(user_id="u", session_id=..., query="...", strategy="balanced", last_n_messages=10,
        token_budget=800, timezone="Europe/Berlin")` -> `{"context": "...", "memories": [...],
        "recent_messages": [...], "summaries": [...], "token_count": n}`."""
        return self._c.unary(Calls.get(cv.params(params, fields, "context")))


class AsyncContextResource:
    """`client.context` of the async client."""

    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    async def get(
        self, params: Mapping[str, Any] | None = None, /, **fields: Any
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.get(cv.params(params, fields, "context")))
