"""Domain errors. Each class names the canonical status it is reported with (`code`, a
google.rpc.Code name): the one mapping; api/errors.py and server/errors.py only read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class DomainError(Exception):
    """Base of every error a caller is meant to see; `reason` is UPPER_SNAKE (ErrorInfo.reason)."""

    # the canonical status (google.rpc.Code name) this error is reported with; a bare
    # DomainError (a stored failure of no domain class) is an internal error
    code: ClassVar[str] = "INTERNAL"
    message: str
    reason: str = "ERROR"
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


@dataclass
class InvalidArgument(DomainError):
    code: ClassVar[str] = "INVALID_ARGUMENT"
    reason: str = "INVALID_ARGUMENT"
    violations: list[FieldViolation] = field(default_factory=list)

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        return cls(f"{name}: {description}", violations=[FieldViolation(name, description)])


@dataclass
class NotFound(DomainError):
    code: ClassVar[str] = "NOT_FOUND"
    reason: str = "NOT_FOUND"


@dataclass
class AlreadyExists(DomainError):
    code: ClassVar[str] = "ALREADY_EXISTS"
    reason: str = "ALREADY_EXISTS"


@dataclass
class FailedPrecondition(DomainError):
    code: ClassVar[str] = "FAILED_PRECONDITION"
    reason: str = "FAILED_PRECONDITION"


@dataclass
class Unauthenticated(DomainError):
    code: ClassVar[str] = "UNAUTHENTICATED"
    reason: str = "UNAUTHENTICATED"


@dataclass
class PermissionDenied(DomainError):
    code: ClassVar[str] = "PERMISSION_DENIED"
    reason: str = "PERMISSION_DENIED"


@dataclass
class ResourceExhausted(DomainError):
    code: ClassVar[str] = "RESOURCE_EXHAUSTED"
    reason: str = "RESOURCE_EXHAUSTED"
    retry_after_s: float | None = None


@dataclass
class Aborted(DomainError):
    """The call ended early and may be resumed (metadata says from where)."""

    code: ClassVar[str] = "ABORTED"
    reason: str = "ABORTED"


@dataclass
class Unavailable(DomainError):
    code: ClassVar[str] = "UNAVAILABLE"
    reason: str = "UNAVAILABLE"
    retry_after_s: float | None = None


@dataclass
class OutOfRange(DomainError):
    """A position outside what exists or is kept (a finished run's events, a change-feed cursor
    older than the retention)."""

    code: ClassVar[str] = "OUT_OF_RANGE"
    reason: str = "OUT_OF_RANGE"


@dataclass
class DeadlineExceeded(DomainError):
    """Something memgrpc waited on (e.g. an LLM provider) did not answer in time."""

    code: ClassVar[str] = "DEADLINE_EXCEEDED"
    reason: str = "DEADLINE_EXCEEDED"


def error_for(code: str, message: str, reason: str) -> DomainError:
    """The error of a status name (a failure stored earlier, raised again)."""
    by_code = {cls.code: cls for cls in DomainError.__subclasses__()}
    return by_code.get(code, DomainError)(message, reason=reason)


class Violations:
    """Collects field violations so one response names every bad field at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, name: str, description: str) -> None:
        self.items.append(FieldViolation(name, description))

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            more = f" (and {len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise InvalidArgument(
                f"{first.field}: {first.description}{more}", violations=self.items
            )
