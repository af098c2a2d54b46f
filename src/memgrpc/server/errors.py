"""The one place that turns an exception into a gRPC status with google.rpc.Status details.

Every DomainError becomes the canonical code it names (DomainError.code) with an ErrorInfo
(reason, domain `memgrpc`, metadata); InvalidArgument adds BadRequest field violations;
ResourceExhausted and Unavailable add RetryInfo. Anything else is a bug: the client gets
INTERNAL "internal error" and the traceback goes to the server log only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NoReturn

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from memgrpc.api.errors import code_of
from memgrpc.core.kernel.errors import DomainError, InvalidArgument, ResourceExhausted, Unavailable
from memgrpc.store import errors as store_errors

log = structlog.get_logger(__name__)

DOMAIN = "memgrpc"
STORE_RETRY_AFTER_S = 1.0
Metadata = Sequence[tuple[str, str | bytes]]


def _pack(msg: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


def _retry_delay(seconds: float) -> duration_pb2.Duration:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(math.ceil(max(seconds, 0.0) * 1e9))
    return delay


def as_domain(exc: BaseException) -> BaseException:
    """Storage outages become UNAVAILABLE (retryable); anything else stays what it is."""
    if not isinstance(exc, DomainError) and store_errors.is_unavailable(exc):
        return Unavailable(
            "the store is unreachable; retry later",
            reason="STORE_UNAVAILABLE",
            retry_after_s=STORE_RETRY_AFTER_S,
        )
    return exc


def to_rpc_status(exc: BaseException) -> status_pb2.Status:
    """The google.rpc.Status a client sees for `exc` (domain errors only carry their message)."""
    exc = as_domain(exc)
    if not isinstance(exc, DomainError):
        info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN)
        return status_pb2.Status(
            code=code_pb2.INTERNAL, message="internal error", details=[_pack(info)]
        )
    status = status_pb2.Status(code=code_of(exc), message=exc.message)
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=exc.metadata)
    status.details.append(_pack(info))
    if isinstance(exc, InvalidArgument) and exc.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in exc.violations
            ]
        )
        status.details.append(_pack(bad))
    if isinstance(exc, ResourceExhausted | Unavailable) and exc.retry_after_s is not None:
        retry = error_details_pb2.RetryInfo(retry_delay=_retry_delay(exc.retry_after_s))
        status.details.append(_pack(retry))
    return status


def grpc_code(exc: BaseException) -> grpc.StatusCode:
    """The status code `exc` maps to (for the access log)."""
    code: grpc.StatusCode = rpc_status.to_status(to_rpc_status(exc)).code
    return code


async def abort(
    context: grpc.aio.ServicerContext, exc: BaseException, trailing: Metadata = ()
) -> NoReturn:
    """End the RPC with the status of `exc`; `trailing` (e.g. x-request-id) rides along."""
    if store_errors.is_unavailable(exc):
        log.warning("store_unavailable", error=str(exc)[:500])
    elif not isinstance(exc, DomainError):
        log.error("rpc_internal_error", exc_info=exc)
    status = rpc_status.to_status(to_rpc_status(exc))
    await context.abort(
        status.code, status.details, tuple(status.trailing_metadata) + tuple(trailing)
    )
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises
