"""`client.conflicts`: merge conflicts between a newly extracted fact and current memories
(RecallrAI's `list_merge_conflicts` / `get_merge_conflict` / `conflict.resolve`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from memgrpc.client import _convert as cv
from memgrpc.client._channel import Unary, method_path, new_request_id
from memgrpc.client._transport import AsyncCaller, Caller
from memgrpc.v1 import conflicts_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["ConflictService"]

Params = Mapping[str, Any] | None
Answers = Sequence[Mapping[str, Any]]


def _path(name: str) -> str:
    return method_path(_SERVICE, name)


class Calls:
    @staticmethod
    def list(data: dict[str, Any]) -> Unary[pb.ListConflictsResponse, dict[str, Any]]:
        request = cv.build(pb.ListConflictsRequest, data, "list")
        return Unary(_path("ListConflicts"), request, pb.ListConflictsResponse, cv.to_dict)

    @staticmethod
    def get(conflict_id: str) -> Unary[pb.Conflict, dict[str, Any]]:
        request = pb.GetConflictRequest(id=conflict_id)
        return Unary(_path("GetConflict"), request, pb.Conflict, cv.to_dict)

    @staticmethod
    def resolve(
        conflict_id: str, answers: Answers, request_id: str | None
    ) -> Unary[pb.Conflict, dict[str, Any]]:
        rid = request_id or new_request_id()
        request = cv.build(
            pb.ResolveConflictRequest,
            {"id": conflict_id, "answers": list(answers), "request_id": rid},
            "resolve",
        )
        return Unary(_path("ResolveConflict"), request, pb.Conflict, cv.to_dict, rid)


class ConflictsResource:
    """`client.conflicts`."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        """`list(user_id="u", status="pending", page_size=10)` -> `{"conflicts": [...],
        "next_page_token", "total_size"}`, newest first."""
        return self._c.unary(Calls.list(cv.params(params, fields, "list")))

    def get(self, conflict_id: str) -> dict[str, Any]:
        """One conflict: `new_memory`, `conflicting_memories` ([{memory, reason}]),
        `clarifying_questions` ([{question, options}]), `status`, `resolution`...;
        ConflictNotFoundError if there is none."""
        return self._c.unary(Calls.get(conflict_id))

    def resolve(
        self, conflict_id: str, answers: Answers, *, request_id: str | None = None
    ) -> dict[str, Any]:
        """Answer every clarifying question (`[{"question", "answer", "message"}]`, the answer
        one of the question's options, verbatim) and apply it; returns the conflict after."""
        return self._c.unary(Calls.resolve(conflict_id, answers, request_id))


class AsyncConflictsResource:
    """`client.conflicts` of the async client."""

    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    async def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.list(cv.params(params, fields, "list")))

    async def get(self, conflict_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.get(conflict_id))

    async def resolve(
        self, conflict_id: str, answers: Answers, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.resolve(conflict_id, answers, request_id))
