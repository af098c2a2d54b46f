"""`client.users`: the end users whose memories a project keeps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import empty_pb2

from memgrpc.client import _convert as cv
from memgrpc.client._channel import Unary, method_path, new_request_id
from memgrpc.client._transport import AsyncCaller, Caller
from memgrpc.client.errors import invalid_argument
from memgrpc.v1 import users_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["UserService"]
_USER = pb.User.DESCRIPTOR

Params = Mapping[str, Any] | None


def _path(name: str) -> str:
    return method_path(_SERVICE, name)


def _none(_: empty_pb2.Empty) -> None:
    return None


class Calls:
    @staticmethod
    def create(
        user: Mapping[str, Any] | str | None, fields: dict[str, Any]
    ) -> Unary[pb.User, dict[str, Any]]:
        data = cv.params({"id": user} if isinstance(user, str) else user, fields, "user")
        rid = cv.pop_request_id(data) or new_request_id()
        request = pb.CreateUserRequest(user=cv.build(pb.User, data, "user"), request_id=rid)
        return Unary(_path("CreateUser"), request, pb.User, cv.to_dict, rid)

    @staticmethod
    def get(user_id: str) -> Unary[pb.User, dict[str, Any]]:
        return Unary(_path("GetUser"), pb.GetUserRequest(id=user_id), pb.User, cv.to_dict)

    @staticmethod
    def update(
        user_id: str,
        data: dict[str, Any],
        new_id: str | None,
        update_mask: Sequence[str] | str | None,
        request_id: str | None,
    ) -> Unary[pb.User, dict[str, Any]]:
        rid = request_id or new_request_id()
        fields = cv.canonical(_USER, data, "user")
        if fields.pop("id", user_id) != user_id:
            raise invalid_argument(
                "user.id", "differs from the user id argument (use new_id to rename)"
            )
        user = cv.build(pb.User, fields, "user")
        user.id = user_id
        request = pb.UpdateUserRequest(user=user, new_id=new_id or "", request_id=rid)
        cv.set_update_mask(request, fields, update_mask)
        return Unary(_path("UpdateUser"), request, pb.User, cv.to_dict, rid)

    @staticmethod
    def delete(user_id: str, request_id: str | None) -> Unary[empty_pb2.Empty, None]:
        rid = request_id or new_request_id()
        request = pb.DeleteUserRequest(id=user_id, request_id=rid)
        return Unary(_path("DeleteUser"), request, empty_pb2.Empty, _none, rid)

    @staticmethod
    def list(data: dict[str, Any]) -> Unary[pb.ListUsersResponse, dict[str, Any]]:
        request = cv.build(pb.ListUsersRequest, data, "list")
        return Unary(_path("ListUsers"), request, pb.ListUsersResponse, cv.to_dict)

    @staticmethod
    def recent_messages(
        user_id: str, n: int | None
    ) -> Unary[pb.ListRecentMessagesResponse, dict[str, Any]]:
        request = pb.ListRecentMessagesRequest(user_id=user_id, n=n or 0)
        return Unary(
            _path("ListRecentMessages"), request, pb.ListRecentMessagesResponse, cv.to_dict
        )

    @staticmethod
    def get_profile(user_id: str) -> Unary[pb.Profile, dict[str, Any]]:
        request = pb.GetProfileRequest(user_id=user_id)
        return Unary(_path("GetProfile"), request, pb.Profile, cv.to_dict)

    @staticmethod
    def record_action(data: dict[str, Any]) -> Unary[pb.RecordActionResponse, dict[str, Any]]:
        rid = cv.pop_request_id(data) or new_request_id()
        request = cv.build(pb.RecordActionRequest, data, "action")
        request.request_id = rid
        return Unary(_path("RecordAction"), request, pb.RecordActionResponse, cv.to_dict, rid)


class UsersResource:
    """`client.users`."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def create(
        self, user: Mapping[str, Any] | str | None = None, /, **fields: Any
    ) -> dict[str, Any]:
        """`create("user_123", metadata={"plan": "pro"})` or `create({"id": ..., "metadata": ...})`;
        ConflictError if the id is taken."""
        return self._c.unary(Calls.create(user, fields))

    def get(self, user_id: str) -> dict[str, Any]:
        return self._c.unary(Calls.get(user_id))

    def update(
        self,
        user_id: str,
        changes: Params = None,
        /,
        *,
        new_id: str | None = None,
        update_mask: Sequence[str] | str | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Replace the metadata (`metadata={...}`) and/or rename the user with all its data
        (`new_id=`)."""
        data = cv.params(changes, fields, "user")
        return self._c.unary(Calls.update(user_id, data, new_id, update_mask, request_id))

    def delete(self, user_id: str, *, request_id: str | None = None) -> None:
        """Purge the user: every memory, version, session, message and job of it."""
        self._c.unary(Calls.delete(user_id, request_id))

    def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        """`{"users": [...], "next_page_token", "total_size"}`; page_size, page_token,
        metadata_filter."""
        return self._c.unary(Calls.list(cv.params(params, fields, "list")))

    def recent_messages(self, user_id: str, n: int | None = None) -> dict[str, Any]:
        """`{"messages": [...]}`: the last n (default 10) across the user's sessions, newest last."""
        return self._c.unary(Calls.recent_messages(user_id, n))

    def get_profile(self, user_id: str) -> dict[str, Any]:
        """`{"user_id", "facts": {slot: {"value", "values", "memory_id", "version", ...}}}`
        (client.recall.get_profile_facts gives just the values)."""
        return self._c.unary(Calls.get_profile(user_id))

    def record_action(self, action: Params = None, /, **fields: Any) -> dict[str, Any]:
        """GUMem's `record_action`: `{"memory": {...}, "duplicate": bool}`. Fields as GUMem's
        ActionLogInput (user_id, timestamp as a datetime or ISO string, content, log_id,
        session_id, device_id, app, platform, event_type, page, anchors, metadata, entities);
        a log_id recorded before returns the first action's memory with duplicate=True."""
        return self._c.unary(Calls.record_action(cv.params(action, fields, "action")))


class AsyncUsersResource:
    """`client.users` of the async client."""

    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    async def create(
        self, user: Mapping[str, Any] | str | None = None, /, **fields: Any
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.create(user, fields))

    async def get(self, user_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.get(user_id))

    async def update(
        self,
        user_id: str,
        changes: Params = None,
        /,
        *,
        new_id: str | None = None,
        update_mask: Sequence[str] | str | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        data = cv.params(changes, fields, "user")
        return await self._c.unary(Calls.update(user_id, data, new_id, update_mask, request_id))

    async def delete(self, user_id: str, *, request_id: str | None = None) -> None:
        await self._c.unary(Calls.delete(user_id, request_id))

    async def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.list(cv.params(params, fields, "list")))

    async def recent_messages(self, user_id: str, n: int | None = None) -> dict[str, Any]:
        return await self._c.unary(Calls.recent_messages(user_id, n))

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.get_profile(user_id))

    async def record_action(self, action: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.record_action(cv.params(action, fields, "action")))
