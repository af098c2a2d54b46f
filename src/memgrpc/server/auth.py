"""Which scope each RPC needs, and where a call carries its API key.

Reads need `read`, mutations `write`, the rest of AdminService `admin`. A memgrpc method missing
from the table needs `admin`: a newly added RPC is locked down until someone classifies it.
Health and reflection are open so probes and `grpcurl list` work without a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from memgrpc.core.access.principal import Scope

EXEMPT_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

_MEMORY = "/memgrpc.v1.MemoryService/"
_ADMIN = "/memgrpc.v1.AdminService/"
_USERS = "/memgrpc.v1.UserService/"
_SESSIONS = "/memgrpc.v1.SessionService/"
_CHAT = "/memgrpc.v1.ChatService/"
_CONFLICTS = "/memgrpc.v1.ConflictService/"
_AGENTS = "/memgrpc.v1.AgentService/"
_SIM = "/memgrpc.v1.SimulationService/"

METHOD_SCOPES: Mapping[str, Scope] = {
    # MemoryService
    _MEMORY + "GetMemory": Scope.READ,
    _MEMORY + "ListMemories": Scope.READ,
    _MEMORY + "SearchMemories": Scope.READ,
    _MEMORY + "ListMemoryVersions": Scope.READ,
    _MEMORY + "ExportMemories": Scope.READ,
    _MEMORY + "WatchMemories": Scope.READ,
    _MEMORY + "CreateMemory": Scope.WRITE,
    _MEMORY + "UpdateMemory": Scope.WRITE,
    _MEMORY + "ReplaceMemory": Scope.WRITE,
    _MEMORY + "DeleteMemory": Scope.WRITE,
    _MEMORY + "BatchMemories": Scope.WRITE,
    _MEMORY + "ImportMemories": Scope.WRITE,
    # UserService
    _USERS + "GetUser": Scope.READ,
    _USERS + "ListUsers": Scope.READ,
    _USERS + "ListRecentMessages": Scope.READ,
    "/memgrpc.v1.ContextService/GetContext": Scope.READ,
    _USERS + "CreateUser": Scope.WRITE,
    _USERS + "UpdateUser": Scope.WRITE,
    _USERS + "DeleteUser": Scope.WRITE,
    _USERS + "RecordAction": Scope.WRITE,
    _USERS + "GetProfile": Scope.READ,
    _USERS + "ExtractProfile": Scope.READ,  # writes nothing
    _USERS + "SaveProfileFact": Scope.WRITE,
    # SessionService
    _SESSIONS + "GetSession": Scope.READ,
    _SESSIONS + "ListSessions": Scope.READ,
    _SESSIONS + "ListMessages": Scope.READ,
    _SESSIONS + "GetJob": Scope.READ,
    _SESSIONS + "CreateSession": Scope.WRITE,
    _SESSIONS + "UpdateSession": Scope.WRITE,
    _SESSIONS + "DeleteSession": Scope.WRITE,
    _SESSIONS + "AddMessages": Scope.WRITE,
    _SESSIONS + "ProcessSession": Scope.WRITE,
    _SESSIONS + "LinkMemory": Scope.WRITE,
    _SESSIONS + "SubmitTurn": Scope.WRITE,
    _SESSIONS + "EndSession": Scope.WRITE,
    # ChatService
    _CHAT + "Chat": Scope.WRITE,
    _CHAT + "ChatAsync": Scope.WRITE,
    _CHAT + "GetChatResult": Scope.READ,
    _CHAT + "ListProviders": Scope.READ,
    # ConflictService
    _CONFLICTS + "ListConflicts": Scope.READ,
    _CONFLICTS + "GetConflict": Scope.READ,
    _CONFLICTS + "ResolveConflict": Scope.WRITE,
    # AgentService
    _AGENTS + "GetAgent": Scope.READ,
    _AGENTS + "ListAgents": Scope.READ,
    _AGENTS + "GetPersonality": Scope.READ,
    _AGENTS + "GetCapabilities": Scope.READ,
    _AGENTS + "CreateAgent": Scope.WRITE,
    _AGENTS + "UpdateAgent": Scope.WRITE,
    _AGENTS + "DeleteAgent": Scope.WRITE,
    _AGENTS + "UpdateCapabilities": Scope.WRITE,
    _AGENTS + "ListInstances": Scope.READ,
    _AGENTS + "GetState": Scope.READ,
    _AGENTS + "ListStates": Scope.READ,
    _AGENTS + "GetMood": Scope.READ,
    _AGENTS + "GetRelationship": Scope.READ,
    _AGENTS + "ListHabits": Scope.READ,
    _AGENTS + "ListGoals": Scope.READ,
    _AGENTS + "ListInterests": Scope.READ,
    _AGENTS + "ListDiaryEntries": Scope.READ,
    _AGENTS + "ListNotifications": Scope.READ,
    _AGENTS + "GetMemoryTree": Scope.READ,
    _AGENTS + "GetTimeline": Scope.READ,
    _AGENTS + "CreateInstance": Scope.WRITE,
    _AGENTS + "ResetInstance": Scope.WRITE,
    _AGENTS + "DeleteInstance": Scope.WRITE,
    _AGENTS + "CreateState": Scope.WRITE,
    _AGENTS + "UpsertState": Scope.WRITE,
    _AGENTS + "DeleteState": Scope.WRITE,
    _AGENTS + "ConsumeNotification": Scope.WRITE,
    _AGENTS + "RunNotificationChecks": Scope.WRITE,
    _AGENTS + "AddFacts": Scope.WRITE,
    # SimulationService (a run or an evaluation drives real chat turns: write)
    _SIM + "GetEvalTemplate": Scope.READ,
    _SIM + "ListEvalTemplates": Scope.READ,
    _SIM + "GetRun": Scope.READ,
    _SIM + "ListRuns": Scope.READ,
    _SIM + "StreamRunEvents": Scope.READ,
    _SIM + "CreateEvalTemplate": Scope.WRITE,
    _SIM + "UpdateEvalTemplate": Scope.WRITE,
    _SIM + "DeleteEvalTemplate": Scope.WRITE,
    _SIM + "Evaluate": Scope.WRITE,
    _SIM + "StartRun": Scope.WRITE,
    _SIM + "CancelRun": Scope.WRITE,
    _SIM + "DeleteRun": Scope.WRITE,
    _SIM + "Simulate": Scope.WRITE,
    _SIM + "RunEval": Scope.WRITE,
    _SIM + "EvalOnly": Scope.WRITE,
    # AdminService (project and key rules beyond the scope live in core.access.keys)
    _ADMIN + "GetProject": Scope.READ,
    _ADMIN + "CreateProject": Scope.ADMIN,
    _ADMIN + "ListProjects": Scope.ADMIN,
    _ADMIN + "CreateApiKey": Scope.ADMIN,
    _ADMIN + "ListApiKeys": Scope.ADMIN,
    _ADMIN + "UpdateApiKey": Scope.ADMIN,
    _ADMIN + "RevokeApiKey": Scope.ADMIN,
    _ADMIN + "ListCategories": Scope.READ,
    _ADMIN + "SetProviderKey": Scope.BYOK_WRITE,
    _ADMIN + "ListProviderKeys": Scope.BYOK_READ,
    _ADMIN + "SetActiveProviderKey": Scope.BYOK_WRITE,
    _ADMIN + "TestProviderKey": Scope.BYOK_READ,  # writes only the key's health
    _ADMIN + "DeleteProviderKey": Scope.BYOK_WRITE,
    _ADMIN + "SetCategories": Scope.ADMIN,
}

API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"
_BEARER = "bearer "


def service_of(method: str) -> str:
    """`/pkg.Service/Method` -> `pkg.Service`."""
    return method.lstrip("/").split("/", 1)[0]


def required_scope(method: str) -> Scope | None:
    """The scope `method` needs; None for exempt services (no key needed)."""
    if service_of(method) in EXEMPT_SERVICES:
        return None
    return METHOD_SCOPES.get(method, Scope.ADMIN)


def credentials(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The API key of a call: a non-empty `x-api-key` (even if invalid), else a Bearer token.

    None means no credential at all; "" means an `authorization` of another scheme.
    """
    api_key: str | None = None
    bearer: str | None = None
    for key, value in metadata:
        if isinstance(value, bytes):
            continue
        name = key.lower()
        if name == API_KEY_HEADER and api_key is None and value.strip():
            api_key = value.strip()
        elif name == AUTHORIZATION_HEADER and bearer is None:
            # another scheme ("" = a credential, but not one we accept)
            is_bearer = value[: len(_BEARER)].lower() == _BEARER
            bearer = value[len(_BEARER) :].strip() if is_bearer else ""
    if api_key is not None:
        return api_key
    return bearer
