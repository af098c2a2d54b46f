"""Server interceptors: the request scope (id, access log, error mapping), authentication and
the rate limit (server/ratelimit.py).

Order matters and is fixed by `interceptors()`: the request scope is outermost, so it sees the
final outcome of auth and handler alike, maps every escaping exception through server/errors.py
and logs exactly one access line per RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc
import structlog

from memgrpc.core.access import Authenticator, Scope
from memgrpc.core.access import principal as principal_ctx
from memgrpc.core.kernel.errors import Unauthenticated
from memgrpc.server import auth, errors
from memgrpc.server.handlers import wrap
from memgrpc.server.ratelimit import RateLimiter, RateLimitInterceptor

log = structlog.get_logger("memgrpc.access")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


def request_id_from(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The caller's x-request-id when it is a sane token, else a fresh one."""
    for key, value in metadata or ():
        if key.lower() == REQUEST_ID_HEADER and isinstance(value, str) and _REQUEST_ID.match(value):
            return value
    return uuid.uuid4().hex


def _final_code(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    """The code the handler set itself (set_code / abort), if any."""
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else default


class RequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Request id (bound to structlog, echoed in trailers), access log, domain error mapping."""

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        request_id = request_id_from(details.invocation_metadata)
        return wrap(handler, lambda context: self._scope(context, method, request_id))

    @contextlib.asynccontextmanager
    async def _scope(
        self, context: grpc.aio.ServicerContext, method: str, request_id: str
    ) -> AsyncIterator[None]:
        structlog.contextvars.clear_contextvars()  # this RPC's task context only
        structlog.contextvars.bind_contextvars(request_id=request_id)
        trailing = ((REQUEST_ID_HEADER, request_id),)
        context.set_trailing_metadata(trailing)
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            yield
        except grpc.aio.AbortError:  # the handler ended the call itself
            code = _final_code(context, grpc.StatusCode.UNKNOWN)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            code = errors.grpc_code(exc)
            await errors.abort(context, exc, trailing)
        else:
            code = _final_code(context, grpc.StatusCode.OK)
        finally:
            bound = structlog.contextvars.get_contextvars()
            log.info(
                "rpc",
                method=method,
                code=code.name,
                ms=round((time.perf_counter() - start) * 1000, 3),
                request_id=request_id,
                project=bound.get("project"),
            )


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Resolves the API key to a Principal, checks the method's scope, binds it for the handler."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        scope = auth.required_scope(details.method)
        if handler is None or scope is None:
            return handler
        secret = auth.credentials(details.invocation_metadata or ())
        return wrap(handler, lambda context: self._scope(secret, scope))

    @contextlib.asynccontextmanager
    async def _scope(self, secret: str | None, scope: Scope) -> AsyncIterator[None]:
        if secret is None:
            raise Unauthenticated(
                "missing API key: send `x-api-key: <key>` or `authorization: Bearer <key>`",
                reason="API_KEY_MISSING",
            )
        caller = await self._auth.authenticate(secret)
        structlog.contextvars.bind_contextvars(project=caller.project_id, key_id=caller.key_id)
        caller.require(scope)
        token = principal_ctx.bind(caller)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):  # a stream closed from another context
                principal_ctx.reset(token)


def interceptors(
    authenticator: Authenticator, limiter: RateLimiter | None = None
) -> list[grpc.aio.ServerInterceptor]:
    """In call order: request scope outermost, then auth, then the per-key rate limit (which
    needs the authenticated key, and whose rejections the request scope maps and logs)."""
    chain: list[grpc.aio.ServerInterceptor] = [RequestInterceptor(), AuthInterceptor(authenticator)]
    if limiter is not None:
        chain.append(RateLimitInterceptor(limiter))
    return chain
