"""BYOK: a project's own LLM provider keys, sealed at rest (crypto), managed through
AdminService (keys) and used by its chat, extraction and context engine (resolver)."""

from memgrpc.core.providers.crypto import MASTER_KEY_FILE, Sealer, load_or_create
from memgrpc.core.providers.keys import ActiveKey, ProviderKey, ProviderKeys
from memgrpc.core.providers.resolver import ProjectProviders

__all__ = [
    "MASTER_KEY_FILE",
    "ActiveKey",
    "ProjectProviders",
    "ProviderKey",
    "ProviderKeys",
    "Sealer",
    "load_or_create",
]
