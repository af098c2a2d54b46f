"""Who may call: projects, API keys (stored hashed), the bootstrap key, and the principal an
authenticated key binds to each RPC."""

from memgrpc.core.access.authenticator import Authenticator
from memgrpc.core.access.keys import AdminService
from memgrpc.core.access.principal import Principal, Scope
from memgrpc.core.access.records import DEFAULT_PROJECT, ApiKey, CreatedApiKey, Project, hash_secret

__all__ = [
    "DEFAULT_PROJECT",
    "AdminService",
    "ApiKey",
    "Authenticator",
    "CreatedApiKey",
    "Principal",
    "Project",
    "Scope",
    "hash_secret",
]
