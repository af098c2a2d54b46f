"""AdminService servicer: translates between protos and core.access.keys, nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import grpc

from memgrpc.api.convert import to_ts
from memgrpc.api.provider_keys import ProviderKeyRpcs
from memgrpc.core.access import AdminService, ApiKey, Project, Scope, principal
from memgrpc.core.kernel.errors import AlreadyExists, Violations
from memgrpc.core.kernel.idempotency import Idempotency
from memgrpc.core.memory.categories import Category
from memgrpc.core.providers import ProviderKeys
from memgrpc.v1 import admin_pb2 as pb
from memgrpc.v1 import admin_pb2_grpc

_SCOPES: dict[pb.ApiKeyScope.ValueType, Scope] = {
    pb.API_KEY_SCOPE_READ: Scope.READ,
    pb.API_KEY_SCOPE_WRITE: Scope.WRITE,
    pb.API_KEY_SCOPE_ADMIN: Scope.ADMIN,
    pb.API_KEY_SCOPE_BYOK_READ: Scope.BYOK_READ,
    pb.API_KEY_SCOPE_BYOK_WRITE: Scope.BYOK_WRITE,
}
_SCOPE_PB = {scope: number for number, scope in _SCOPES.items()}
_KEY_FIELDS = frozenset({"name", "scopes"})


def _scopes(v: Violations, field: str, values: Iterable[int]) -> tuple[Scope, ...]:
    out: list[Scope] = []
    for i, value in enumerate(values):
        scope = _SCOPES.get(pb.ApiKeyScope.ValueType(value))
        if scope is None:
            v.add(f"{field}[{i}]", f"unknown or unspecified ApiKeyScope value {value}")
        else:
            out.append(scope)
    return tuple(out)


def project_to_pb(p: Project) -> pb.Project:
    return pb.Project(id=p.id, display_name=p.display_name, create_time=to_ts(p.create_time))


def api_key_to_pb(k: ApiKey) -> pb.ApiKey:
    return pb.ApiKey(
        id=k.id,
        project_id=k.project_id,
        name=k.name,
        prefix=k.prefix,
        scopes=[_SCOPE_PB[s] for s in k.scopes],
        create_time=to_ts(k.create_time),
        revoke_time=to_ts(k.revoke_time),
    )


def categories_to_pb(categories: Iterable[Category]) -> pb.ListCategoriesResponse:
    return pb.ListCategoriesResponse(
        categories=[
            pb.Category(name=c.name, description=c.description, from_memories=c.from_memories)
            for c in categories
        ]
    )


def _update_fields(v: Violations, request: pb.UpdateApiKeyRequest) -> frozenset[str]:
    """AIP-134: an absent mask means the fields that are set; `*` means all of them."""
    if not request.HasField("update_mask"):
        fields = {"name"} if request.api_key.name else set()
        if request.api_key.scopes:
            fields.add("scopes")
        if not fields:
            v.add("api_key", "sets no field to update (name, scopes)")
        return frozenset(fields)
    paths = list(request.update_mask.paths)
    if not paths:
        v.add("update_mask", "must name at least one field")
    if "*" in paths:
        return _KEY_FIELDS
    for i, path in enumerate(paths):
        if path not in _KEY_FIELDS:
            v.add(f"update_mask.paths[{i}]", f"{path!r} cannot be updated; use name or scopes")
    return frozenset(paths) & _KEY_FIELDS


class AdminServicer(ProviderKeyRpcs, admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self, service: AdminService, idempotency: Idempotency, *, provider_keys: ProviderKeys
    ) -> None:
        self._svc = service
        self._idem = idempotency
        self._provider_keys = provider_keys

    async def _once(
        self, method: str, request_id: str, compute: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        return await self._idem.run(principal.current().project_id, method, request_id, compute)

    async def CreateProject(
        self, request: pb.CreateProjectRequest, context: grpc.aio.ServicerContext
    ) -> pb.Project:
        caller = principal.current()

        async def compute() -> bytes:
            project = await self._svc.create_project(caller, request.project.display_name)
            return project_to_pb(project).SerializeToString()

        return pb.Project.FromString(await self._once("CreateProject", request.request_id, compute))

    async def GetProject(
        self, request: pb.GetProjectRequest, context: grpc.aio.ServicerContext
    ) -> pb.Project:
        return project_to_pb(await self._svc.get_project(principal.current(), request.id))

    async def ListProjects(
        self, request: pb.ListProjectsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProjectsResponse:
        page = await self._svc.list_projects(
            principal.current(), request.page_size, request.page_token
        )
        return pb.ListProjectsResponse(
            projects=[project_to_pb(p) for p in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateApiKeyResponse:
        caller = principal.current()

        async def compute() -> bytes:
            v = Violations()
            scopes = _scopes(v, "api_key.scopes", request.api_key.scopes)
            v.raise_if_any()
            created = await self._svc.create_api_key(
                caller, request.project_id, request.api_key.name, scopes
            )
            # what is remembered for retries never holds the secret (it is stored hashed only)
            return api_key_to_pb(created.api_key).SerializeToString()

        key = pb.ApiKey.FromString(await self._once("CreateApiKey", request.request_id, compute))
        secret = self._svc.secret_for_retry(key.id)
        if secret is None:
            raise AlreadyExists(
                f"request_id {request.request_id!r} already created API key {key.id}; its secret "
                "is shown only once: revoke that key and create a new one",
                reason="REQUEST_ALREADY_PROCESSED",
                metadata={"key_id": key.id},
            )
        return pb.CreateApiKeyResponse(api_key=key, secret=secret)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApiKeysResponse:
        page = await self._svc.list_api_keys(
            principal.current(),
            request.project_id,
            request.page_size,
            request.page_token,
            request.include_revoked,
        )
        return pb.ListApiKeysResponse(
            api_keys=[api_key_to_pb(k) for k in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def UpdateApiKey(
        self, request: pb.UpdateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApiKey:
        v = Violations()
        fields = _update_fields(v, request)
        scopes = _scopes(v, "api_key.scopes", request.api_key.scopes)
        v.raise_if_any()
        key = await self._svc.update_api_key(
            principal.current(),
            request.api_key.id,
            name=request.api_key.name if "name" in fields else None,
            scopes=scopes if "scopes" in fields else None,
        )
        return api_key_to_pb(key)

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApiKey:
        return api_key_to_pb(await self._svc.revoke_api_key(principal.current(), request.id))

    async def ListCategories(
        self, request: pb.ListCategoriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCategoriesResponse:
        found = await self._svc.list_categories(principal.current(), request.project_id)
        return categories_to_pb(found)

    async def SetCategories(
        self, request: pb.SetCategoriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCategoriesResponse:
        caller = principal.current()
        # from_memories is output only: ignored on input
        chosen = [Category(c.name, c.description) for c in request.categories]

        async def compute() -> bytes:
            found = await self._svc.set_categories(caller, request.project_id, chosen)
            return categories_to_pb(found).SerializeToString()

        return pb.ListCategoriesResponse.FromString(
            await self._once("SetCategories", request.request_id, compute)
        )
