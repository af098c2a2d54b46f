"""`client.admin.projects` and `client.admin.keys`: projects and their API keys.

Creating and listing projects needs the bootstrap admin key; managing the keys of a project
needs a key with the `admin` scope (in that project) or the bootstrap key (any project).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

from memgrpc.client import _convert as cv
from memgrpc.client._channel import Unary, method_path, new_request_id
from memgrpc.client._transport import AsyncCaller, Caller
from memgrpc.client.errors import invalid_argument
from memgrpc.v1 import admin_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["AdminService"]
_API_KEY = pb.ApiKey.DESCRIPTOR

Params = Mapping[str, Any] | None


def _path(name: str) -> str:
    return method_path(_SERVICE, name)


class Calls:
    @staticmethod
    def create_project(data: dict[str, Any]) -> Unary[pb.Project, dict[str, Any]]:
        rid = cv.pop_request_id(data) or new_request_id()
        request = pb.CreateProjectRequest(
            project=cv.build(pb.Project, data, "project"), request_id=rid
        )
        return Unary(_path("CreateProject"), request, pb.Project, cv.to_dict, rid)

    @staticmethod
    def get_project(project_id: str) -> Unary[pb.Project, dict[str, Any]]:
        request = pb.GetProjectRequest(id=project_id)
        return Unary(_path("GetProject"), request, pb.Project, cv.to_dict)

    @staticmethod
    def list_projects(data: dict[str, Any]) -> Unary[pb.ListProjectsResponse, dict[str, Any]]:
        request = cv.build(pb.ListProjectsRequest, data, "list")
        return Unary(_path("ListProjects"), request, pb.ListProjectsResponse, cv.to_dict)

    @staticmethod
    def create_key(
        data: dict[str, Any], project_id: str | None
    ) -> Unary[pb.CreateApiKeyResponse, dict[str, Any]]:
        rid = cv.pop_request_id(data) or new_request_id()
        request = pb.CreateApiKeyRequest(
            project_id=project_id or "",
            api_key=cv.build(pb.ApiKey, data, "api_key"),
            request_id=rid,
        )
        return Unary(_path("CreateApiKey"), request, pb.CreateApiKeyResponse, cv.to_dict, rid)

    @staticmethod
    def list_keys(data: dict[str, Any]) -> Unary[pb.ListApiKeysResponse, dict[str, Any]]:
        request = cv.build(pb.ListApiKeysRequest, data, "list")
        return Unary(_path("ListApiKeys"), request, pb.ListApiKeysResponse, cv.to_dict)

    @staticmethod
    def update_key(
        key_id: str, data: dict[str, Any], update_mask: Sequence[str] | str | None
    ) -> Unary[pb.ApiKey, dict[str, Any]]:
        fields = cv.canonical(_API_KEY, data, "api_key")
        if fields.pop("id", key_id) != key_id:
            raise invalid_argument("api_key.id", "differs from the key id argument")
        key = cv.build(pb.ApiKey, fields, "api_key")
        key.id = key_id
        request = pb.UpdateApiKeyRequest(api_key=key)
        cv.set_update_mask(request, fields, update_mask)
        return Unary(_path("UpdateApiKey"), request, pb.ApiKey, cv.to_dict)

    @staticmethod
    def revoke_key(key_id: str) -> Unary[pb.ApiKey, dict[str, Any]]:
        return Unary(
            _path("RevokeApiKey"), pb.RevokeApiKeyRequest(id=key_id), pb.ApiKey, cv.to_dict
        )

    @staticmethod
    def list_categories(project_id: str | None) -> Unary[pb.ListCategoriesResponse, dict[str, Any]]:
        request = pb.ListCategoriesRequest(project_id=project_id or "")
        return Unary(_path("ListCategories"), request, pb.ListCategoriesResponse, cv.to_dict)

    @staticmethod
    def set_categories(
        categories: Sequence[Mapping[str, Any] | str],
        project_id: str | None,
        request_id: str | None,
    ) -> Unary[pb.ListCategoriesResponse, dict[str, Any]]:
        rid = request_id or new_request_id()
        items = [{"name": c} if isinstance(c, str) else c for c in categories]
        request = cv.build(
            pb.SetCategoriesRequest,
            {"project_id": project_id or "", "categories": items, "request_id": rid},
            "set_categories",
        )
        return Unary(_path("SetCategories"), request, pb.ListCategoriesResponse, cv.to_dict, rid)


class ProjectsResource:
    """`client.admin.projects`."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def create(self, project: Params = None, /, **fields: Any) -> dict[str, Any]:
        """`create(display_name="my app")` -> `{"id": "prj_...", ...}` (bootstrap key only)."""
        return self._c.unary(Calls.create_project(cv.params(project, fields, "project")))

    def get(self, project_id: str) -> dict[str, Any]:
        return self._c.unary(Calls.get_project(project_id))

    def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        """`{"projects": [...], "next_page_token", "total_size"}` (bootstrap key only)."""
        return self._c.unary(Calls.list_projects(cv.params(params, fields, "list")))


class KeysResource:
    """`client.admin.keys`; scopes by name: 'read', 'write', 'admin'."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def create(
        self, api_key: Params = None, /, *, project_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """`create(name="backend", scopes=["read", "write"])` -> `{"api_key": {...}, "secret":
        "..."}`; the secret is shown this once. project_id defaults to the caller's project."""
        return self._c.unary(Calls.create_key(cv.params(api_key, fields, "api_key"), project_id))

    def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        """`{"api_keys": [...], ...}`; project_id, include_revoked, page_size, page_token."""
        return self._c.unary(Calls.list_keys(cv.params(params, fields, "list")))

    def update(
        self,
        key_id: str,
        changes: Params = None,
        /,
        *,
        update_mask: Sequence[str] | str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Rename a key or change its scopes (only the keys given)."""
        data = cv.params(changes, fields, "api_key")
        return self._c.unary(Calls.update_key(key_id, data, update_mask))

    def revoke(self, key_id: str) -> dict[str, Any]:
        """Revoke a key (effective on its next call); returns it with `revoke_time` set."""
        return self._c.unary(Calls.revoke_key(key_id))


class CategoriesResource:
    """`client.admin.categories`: the project's memory categories."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def list(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """`[{"name", "description", "from_memories"}, ...]` (read scope)."""
        got = self._c.unary(Calls.list_categories(project_id))
        return list(got["categories"])

    def set(
        self,
        categories: Sequence[Mapping[str, Any] | str],
        *,
        project_id: str | None = None,
        request_id: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Replace the chosen set (admin scope): names, or `{"name", "description"}` dicts."""
        got = self._c.unary(Calls.set_categories(categories, project_id, request_id))
        return list(got["categories"])


class AdminResource:
    """`client.admin`."""

    def __init__(self, caller: Caller) -> None:
        self.projects = ProjectsResource(caller)
        self.keys = KeysResource(caller)
        self.categories = CategoriesResource(caller)


class AsyncProjectsResource:
    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    async def create(self, project: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.create_project(cv.params(project, fields, "project")))

    async def get(self, project_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.get_project(project_id))

    async def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.list_projects(cv.params(params, fields, "list")))


class AsyncKeysResource:
    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    async def create(
        self, api_key: Params = None, /, *, project_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        data = cv.params(api_key, fields, "api_key")
        return await self._c.unary(Calls.create_key(data, project_id))

    async def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.list_keys(cv.params(params, fields, "list")))

    async def update(
        self,
        key_id: str,
        changes: Params = None,
        /,
        *,
        update_mask: Sequence[str] | str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        data = cv.params(changes, fields, "api_key")
        return await self._c.unary(Calls.update_key(key_id, data, update_mask))

    async def revoke(self, key_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.revoke_key(key_id))


class AsyncCategoriesResource:
    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    async def list(self, project_id: str | None = None) -> list[dict[str, Any]]:
        got = await self._c.unary(Calls.list_categories(project_id))
        return list(got["categories"])

    async def set(
        self,
        categories: Sequence[Mapping[str, Any] | str],
        *,
        project_id: str | None = None,
        request_id: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        got = await self._c.unary(Calls.set_categories(categories, project_id, request_id))
        return list(got["categories"])


class AsyncAdminResource:
    def __init__(self, caller: AsyncCaller) -> None:
        self.projects = AsyncProjectsResource(caller)
        self.keys = AsyncKeysResource(caller)
        self.categories = AsyncCategoriesResource(caller)
