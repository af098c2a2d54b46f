"""Who is calling: the project and scopes an API key grants, bound per RPC in a contextvar."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from enum import StrEnum

from memgrpc.core.kernel.errors import PermissionDenied, Unauthenticated


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    # provider keys (BYOK): list and test / set, activate and delete; admin implies both
    BYOK_READ = "byok_read"
    BYOK_WRITE = "byok_write"


@dataclass(frozen=True)
class Principal:
    project_id: str
    key_id: str
    scopes: frozenset[Scope]
    bootstrap: bool = False

    def allows(self, scope: Scope) -> bool:
        return self.bootstrap or Scope.ADMIN in self.scopes or scope in self.scopes

    def require(self, scope: Scope) -> None:
        if not self.allows(scope):
            raise PermissionDenied(
                f"this API key lacks the '{scope.value}' scope",
                reason="SCOPE_MISSING",
                metadata={"scope": scope.value},
            )


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "memgrpc_principal", default=None
)


def bind(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(principal)


def reset(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)


def current() -> Principal:
    """The authenticated caller of the running RPC (set by the auth interceptor)."""
    p = _current.get()
    if p is None:
        raise Unauthenticated("no API key on this call", reason="API_KEY_MISSING")
    return p
