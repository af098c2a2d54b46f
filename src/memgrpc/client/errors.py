"""Typed exceptions of the memgrpc client, decoded from the server's google.rpc.Status.

    MemgrpcError                    every failure of a call (status, reason, message, request_id)
    ├── AuthenticationError         UNAUTHENTICATED: missing, unknown or revoked API key
    ├── PermissionDeniedError       PERMISSION_DENIED: the key lacks the scope
    ├── NotFoundError               NOT_FOUND
    ├── InvalidArgumentError        INVALID_ARGUMENT / OUT_OF_RANGE (field_violations); also a
    │                               ValueError, and raised before sending for input the client
    │                               rejects itself (then also a TypeError for a wrong type)
    ├── ConflictError               ALREADY_EXISTS / ABORTED
    ├── FailedPreconditionError     FAILED_PRECONDITION: valid, but not in the current state
    ├── RateLimitError              RESOURCE_EXHAUSTED (retry_after)
    ├── UnavailableError            UNAVAILABLE: server down, restarting or unreachable
    ├── TimeoutError                DEADLINE_EXCEEDED (not the builtin TimeoutError)
    └── InternalError               INTERNAL / UNKNOWN / DATA_LOSS

Other codes (CANCELLED, UNIMPLEMENTED, ...) raise a plain MemgrpcError. Some reasons have a
class of their own, under their status's class: the merge conflict errors (each also a
MergeConflictError, with RecallrAI's MergeConflict* names as aliases):

    ConflictNotFoundError           NotFoundError, CONFLICT_NOT_FOUND
    ConflictAlreadyResolvedError    FailedPreconditionError, CONFLICT_ALREADY_RESOLVED
    ConflictInvalidQuestionsError   InvalidArgumentError, CONFLICT_INVALID_QUESTIONS
    ConflictMissingAnswersError     InvalidArgumentError, CONFLICT_MISSING_ANSWERS
    ConflictInvalidAnswerError      InvalidArgumentError, CONFLICT_INVALID_ANSWER
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "AuthenticationError",
    "ConflictAlreadyResolvedError",
    "ConflictError",
    "ConflictInvalidAnswerError",
    "ConflictInvalidQuestionsError",
    "ConflictMissingAnswersError",
    "ConflictNotFoundError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "MemgrpcError",
    "MergeConflictAlreadyResolvedError",
    "MergeConflictError",
    "MergeConflictInvalidAnswerError",
    "MergeConflictInvalidQuestionsError",
    "MergeConflictMissingAnswersError",
    "MergeConflictNotFoundError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "TimeoutError",
    "UnavailableError",
    "error_from_event",
    "error_from_rpc",
    "invalid_argument",
]

REQUEST_ID_HEADER = "x-request-id"
# what the server's ErrorInfo says for malformed input (server/errors.py, core/kernel/errors.py)
_INVALID_REASON = "INVALID_ARGUMENT"
_DOMAIN = "memgrpc"


class MemgrpcError(Exception):
    """A failed call. `status` is the grpc.StatusCode, `reason` the server's UPPER_SNAKE
    ErrorInfo reason (e.g. MEMORY_NOT_FOUND), `request_id` the x-request-id of the call (quote
    it when reporting a problem), `details` every google.rpc detail as a dict."""

    def __init__(
        self,
        message: str,
        *,
        status: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str | None = None,
        domain: str | None = None,
        request_id: str | None = None,
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.domain = domain
        self.request_id = request_id
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after = retry_after
        self.details: list[dict[str, Any]] = list(details or [])

    @property
    def code(self) -> int:
        """The numeric gRPC status code (e.g. 5 for NOT_FOUND)."""
        value: int = self.status.value[0]
        return value

    def __str__(self) -> str:
        extra = [f"reason={self.reason}"] if self.reason else []
        if self.request_id:
            extra.append(f"request_id={self.request_id}")
        suffix = f" ({', '.join(extra)})" if extra else ""
        return f"{self.status.name}: {self.message}{suffix}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status.name}, reason={self.reason!r})"


class AuthenticationError(MemgrpcError):
    """UNAUTHENTICATED: the API key is missing, unknown or revoked."""


class PermissionDeniedError(MemgrpcError):
    """PERMISSION_DENIED: the API key lacks the scope (read / write / admin) the call needs."""


class NotFoundError(MemgrpcError):
    """NOT_FOUND: no such memory, user, session, job, key... in the key's project."""


class InvalidArgumentError(MemgrpcError, ValueError):
    """INVALID_ARGUMENT: the request is malformed; `field_violations` says where and why.

    Also a ValueError, so `except ValueError` (what the client raised for its own checks before)
    still catches it."""

    def __init__(
        self,
        message: str,
        *,
        field_violations: list[dict[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.field_violations: list[dict[str, str]] = list(field_violations or [])


class _InvalidArgumentTypeError(InvalidArgumentError, TypeError):
    """A value of the wrong Python type (a list where a dict goes): still a TypeError, as before."""


def invalid_argument(
    field: str, description: str, *, wrong_type: bool = False
) -> InvalidArgumentError:
    """The error the server gives for bad input, for input the client rejects before sending:
    INVALID_ARGUMENT, reason INVALID_ARGUMENT (domain memgrpc), one field violation."""
    violation = {"field": field, "description": description}
    cls = _InvalidArgumentTypeError if wrong_type else InvalidArgumentError
    return cls(
        f"{field}: {description}" if field else description,
        status=grpc.StatusCode.INVALID_ARGUMENT,
        reason=_INVALID_REASON,
        domain=_DOMAIN,
        field_violations=[violation],
        details=[
            {
                "@type": _type_url(error_details_pb2.ErrorInfo),
                "reason": _INVALID_REASON,
                "domain": _DOMAIN,
            },
            {"@type": _type_url(error_details_pb2.BadRequest), "field_violations": [violation]},
        ],
    )


def _type_url(cls: Any) -> str:
    return f"type.googleapis.com/{cls.DESCRIPTOR.full_name}"


class ConflictError(MemgrpcError):
    """ALREADY_EXISTS (e.g. a user id that is taken) or ABORTED (a concurrent change)."""


class FailedPreconditionError(MemgrpcError):
    """FAILED_PRECONDITION: a valid request the current state does not allow (e.g. adding
    messages to a processed session, a provider that is not configured)."""


class RateLimitError(MemgrpcError):
    """RESOURCE_EXHAUSTED: rate limited; `retry_after` (seconds) says when to try again."""


class UnavailableError(MemgrpcError):
    """UNAVAILABLE: the server is down, restarting, overloaded or unreachable."""


class TimeoutError(MemgrpcError):  # shadows the builtin in this module only: never used here
    """DEADLINE_EXCEEDED: the call did not finish within its timeout."""


class InternalError(MemgrpcError):
    """INTERNAL / UNKNOWN / DATA_LOSS: a server bug; the request_id finds it in the server log."""


_BY_STATUS: dict[grpc.StatusCode, type[MemgrpcError]] = {
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.ALREADY_EXISTS: ConflictError,
    grpc.StatusCode.ABORTED: ConflictError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: TimeoutError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
    grpc.StatusCode.DATA_LOSS: InternalError,
}
_BY_NUMBER = {s.value[0]: s for s in grpc.StatusCode}


# -- merge conflicts (ConflictService) -----------------------------------------------------------
def _listed(metadata: dict[str, str], key: str) -> list[str]:
    """A list the server put in ErrorInfo metadata as JSON."""
    try:
        value = json.loads(metadata.get(key) or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


class MergeConflictError(MemgrpcError):
    """Base of the merge conflict errors (RecallrAI's MergeConflictError)."""


class ConflictNotFoundError(NotFoundError, MergeConflictError):
    """NOT_FOUND, reason CONFLICT_NOT_FOUND: no such conflict in the key's project."""


class ConflictAlreadyResolvedError(FailedPreconditionError, MergeConflictError):
    """FAILED_PRECONDITION, reason CONFLICT_ALREADY_RESOLVED."""


class ConflictInvalidQuestionsError(InvalidArgumentError, MergeConflictError):
    """INVALID_ARGUMENT, reason CONFLICT_INVALID_QUESTIONS: answers name questions the conflict
    does not ask (`invalid_questions`)."""

    @property
    def invalid_questions(self) -> list[str]:
        return _listed(self.metadata, "invalid_questions")


class ConflictMissingAnswersError(InvalidArgumentError, MergeConflictError):
    """INVALID_ARGUMENT, reason CONFLICT_MISSING_ANSWERS: questions without an answer
    (`missing_questions`)."""

    @property
    def missing_questions(self) -> list[str]:
        return _listed(self.metadata, "missing_questions")


class ConflictInvalidAnswerError(InvalidArgumentError, MergeConflictError):
    """INVALID_ARGUMENT, reason CONFLICT_INVALID_ANSWER: an answer outside its question's
    options (`question`, `valid_options`)."""

    @property
    def question(self) -> str | None:
        return self.metadata.get("question")

    @property
    def valid_options(self) -> list[str]:
        return _listed(self.metadata, "valid_options")


# RecallrAI's names
MergeConflictNotFoundError = ConflictNotFoundError
MergeConflictAlreadyResolvedError = ConflictAlreadyResolvedError
MergeConflictInvalidQuestionsError = ConflictInvalidQuestionsError
MergeConflictMissingAnswersError = ConflictMissingAnswersError
MergeConflictInvalidAnswerError = ConflictInvalidAnswerError

# reasons with a class of their own (a subclass of their status's class)
_BY_REASON: dict[str, type[MemgrpcError]] = {
    "CONFLICT_NOT_FOUND": ConflictNotFoundError,
    "CONFLICT_ALREADY_RESOLVED": ConflictAlreadyResolvedError,
    "CONFLICT_INVALID_QUESTIONS": ConflictInvalidQuestionsError,
    "CONFLICT_MISSING_ANSWERS": ConflictMissingAnswersError,
    "CONFLICT_INVALID_ANSWER": ConflictInvalidAnswerError,
}


def status_code(code: int | grpc.StatusCode) -> grpc.StatusCode:
    """A google.rpc.Code number (or a StatusCode) as a grpc.StatusCode."""
    if isinstance(code, grpc.StatusCode):
        return code
    return _BY_NUMBER.get(int(code), grpc.StatusCode.UNKNOWN)


def _detail_dict(detail: any_pb2.Any) -> dict[str, Any]:
    try:
        out: dict[str, Any] = json_format.MessageToDict(detail, preserving_proto_field_name=True)
    except (json_format.Error, TypeError, KeyError):  # a detail type this process does not know
        out = {"@type": detail.type_url}
    return out


def _duration_s(d: Any) -> float:
    return float(d.seconds) + float(d.nanos) / 1e9


def _build(
    status: grpc.StatusCode,
    message: str,
    *,
    request_id: str | None,
    rich: status_pb2.Status | None,
    reason: str | None = None,
) -> MemgrpcError:
    domain: str | None = None
    metadata: dict[str, str] = {}
    retry_after: float | None = None
    violations: list[dict[str, str]] = []
    details: list[dict[str, Any]] = []
    for detail in rich.details if rich is not None else ():
        details.append(_detail_dict(detail))
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason or reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(
                {"field": v.field, "description": v.description} for v in bad.field_violations
            )
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = _duration_s(retry.retry_delay)
    common: dict[str, Any] = {
        "status": status,
        "reason": reason or None,
        "domain": domain,
        "request_id": request_id,
        "metadata": metadata,
        "retry_after": retry_after,
        "details": details,
    }
    cls = _BY_STATUS.get(status, MemgrpcError)
    special = _BY_REASON.get(reason or "")
    if special is not None and issubclass(special, cls):
        cls = special
    if issubclass(cls, InvalidArgumentError):
        return cls(message, field_violations=violations, **common)
    return cls(message, **common)


def _trailing_request_id(exc: grpc.RpcError) -> str | None:
    try:
        trailing = exc.trailing_metadata()
    except Exception:  # not a grpc.Call (e.g. a bare RpcError)
        return None
    for key, value in trailing or ():
        if key == REQUEST_ID_HEADER:
            return value if isinstance(value, str) else value.decode()
    return None


def error_from_rpc(exc: grpc.RpcError, *, request_id: str | None = None) -> MemgrpcError:
    """The typed error for a failed call (sync grpc.RpcError or grpc.aio.AioRpcError).

    `request_id` is the x-request-id the client sent; the server's echo in the trailing
    metadata wins when present.
    """
    status = status_code(exc.code()) if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    try:
        rich = rpc_status.from_call(exc)
    except (ValueError, AttributeError, TypeError):  # inconsistent or absent rich status
        rich = None
    return _build(status, message, request_id=_trailing_request_id(exc) or request_id, rich=rich)


def error_from_event(
    code: int, message: str, reason: str, *, request_id: str | None = None
) -> MemgrpcError:
    """The typed error for a ChatError event (a failure after a chat stream started)."""
    return _build(status_code(code), message, request_id=request_id, rich=None, reason=reason)
