"""Per-RPC metrics and traces: the outermost interceptor, and the OpenTelemetry set-up.

Both are opt-in. Metrics (`--metrics-addr`) are owned by server/metrics.py; tracing (`--otel`,
MEMGRPC_OTEL=1) needs the `otel` extra (`pip install 'memgrpc[otel]'`) and exports over OTLP,
configured by the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME,
OTEL_TRACES_SAMPLER, ...). With neither, no interceptor is installed at all.

The interceptor sits outside the request scope (server/interceptors.py), so it sees the final
status of every call, auth and rate-limit rejections included, and times a streaming call from
its start to its end. Each traced call gets a SERVER span named `pkg.Service/Method`, a child
of the caller's W3C `traceparent` when the call carries one, with the rpc.* attributes, the
status code, the request id and the project; code under it adds child spans through
memgrpc.tracing (embedding, the store's search legs, writer commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from memgrpc import __version__, tracing
from memgrpc.config import ENV, ConfigError, ServerConfig
from memgrpc.core.memory.recall_cache import IndexCache
from memgrpc.embed import BatchingEmbedder
from memgrpc.server import errors
from memgrpc.server.handlers import wrap
from memgrpc.server.metrics import Metrics
from memgrpc.store.db import Store
from memgrpc.store.maintenance import Maintainer

log = structlog.get_logger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

# server-side codes that mark a span as failed (OpenTelemetry's RPC conventions)
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def rpc_type(handler: grpc.RpcMethodHandler) -> str:
    """unary, client_stream, server_stream or bidi_stream (go-grpc-prometheus's names)."""
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def split_method(method: str) -> tuple[str, str]:
    """`/pkg.Service/Method` -> (`pkg.Service`, `Method`)."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _final_code(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else default


class TelemetryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every call (metrics) and wraps it in a server span (tracing)."""

    def __init__(self, metrics: Metrics | None, tracer: Any | None) -> None:
        self._metrics = metrics
        self._tracer = tracer

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:  # unknown method: gRPC answers UNIMPLEMENTED, nothing is recorded
            return None
        service, name = split_method(details.method)
        kind = rpc_type(handler)
        metadata = details.invocation_metadata or ()
        return wrap(handler, lambda context: self._scope(context, service, name, kind, metadata))

    @contextlib.asynccontextmanager
    async def _scope(
        self,
        context: grpc.aio.ServicerContext,
        service: str,
        name: str,
        kind: str,
        metadata: Sequence[tuple[str, str | bytes]],
    ) -> AsyncIterator[None]:
        if self._metrics is not None:
            self._metrics.rpc_start(service, name, kind)
        span = _Span.start(self._tracer, service, name, kind, metadata)
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            yield
        except grpc.aio.AbortError:
            code = _final_code(context, grpc.StatusCode.UNKNOWN)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # the request scope maps everything; just in case
            code = errors.grpc_code(exc)
            raise
        else:
            code = _final_code(context, grpc.StatusCode.OK)
        finally:
            if self._metrics is not None:
                self._metrics.rpc_done(service, name, kind, code.name, time.perf_counter() - start)
            if span is not None:
                span.end(code)


@dataclass
class _Span:
    """A server span made current (and the tracer bound) for the length of one call."""

    span: Any
    tokens: tuple[Any, Any]

    @classmethod
    def start(
        cls,
        tracer: Any | None,
        service: str,
        name: str,
        kind: str,
        metadata: Sequence[tuple[str, str | bytes]],
    ) -> _Span | None:
        if tracer is None:
            return None
        from opentelemetry import context as otel_context
        from opentelemetry import propagate, trace

        carrier = {k.lower(): v for k, v in metadata if isinstance(v, str)}
        parent = propagate.extract(carrier)
        span = tracer.start_span(
            f"{service}/{name}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "memgrpc.rpc_type": kind,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return cls(span, (token, tracing.bind(tracer)))

    def end(self, code: grpc.StatusCode) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry.trace import Status, StatusCode

        bound = structlog.contextvars.get_contextvars()  # set by the request scope inside
        self.span.set_attribute("rpc.grpc.status_code", code.value[0])
        for attr, key in (
            ("memgrpc.request_id", "request_id"),
            ("memgrpc.project_id", "project"),
            ("memgrpc.key_id", "key_id"),
        ):
            if bound.get(key):
                self.span.set_attribute(attr, str(bound[key]))
        if code in SERVER_ERRORS:
            self.span.set_status(Status(StatusCode.ERROR, code.name))
        self.span.end()
        otel_token, tracer_token = self.tokens
        tracing.unbind(tracer_token)
        with contextlib.suppress(Exception):
            otel_context.detach(otel_token)


def require_sdk(config: ServerConfig) -> None:
    """With tracing on, fail at once (ConfigError) when the `otel` extra is not installed."""
    if not config.otel:
        return
    try:
        import opentelemetry.exporter.otlp.proto.grpc.trace_exporter
        import opentelemetry.sdk.resources
        import opentelemetry.sdk.trace
        import opentelemetry.sdk.trace.export  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"{ENV['otel']} / --otel: the OpenTelemetry SDK and OTLP exporter are not installed "
            f"({exc.name} is missing); install them with: pip install 'memgrpc[otel]'"
        ) from None


def otlp_tracer_provider() -> Any:
    """An SDK TracerProvider exporting in batches over OTLP/gRPC (configured by OTEL_* env)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "memgrpc"
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


@dataclass
class Telemetry:
    """What one server runs for observability: metrics, a tracer, or neither."""

    config: ServerConfig
    metrics: Metrics | None = None
    tracer: Any | None = None
    # the provider this server made (and so flushes and shuts down at close)
    owned_provider: Any | None = field(default=None, repr=False)

    @classmethod
    def create(
        cls,
        config: ServerConfig,
        store: Store,
        embedder: BatchingEmbedder,
        maintainer: Maintainer,
        recall: IndexCache | None = None,
        *,
        tracer_provider: Any | None = None,
    ) -> Telemetry:
        """`tracer_provider` (tests) replaces the OTLP one when tracing is on."""
        out = cls(config)
        if config.metrics_addr is not None:
            out.metrics = Metrics(store, embedder, maintainer, recall)
        if config.otel:
            if tracer_provider is None:
                tracer_provider = out.owned_provider = otlp_tracer_provider()
            out.tracer = tracer_provider.get_tracer("memgrpc", __version__)
        return out

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        if self.metrics is None and self.tracer is None:
            return []
        return [TelemetryInterceptor(self.metrics, self.tracer)]

    async def start(self) -> None:
        if self.metrics is not None and self.config.metrics_addr is not None:
            await self.metrics.start(self.config.metrics_addr)
        if self.tracer is not None:
            log.info("tracing_started", exporter="otlp" if self.owned_provider else "custom")

    async def aclose(self) -> None:
        if self.metrics is not None:
            await self.metrics.stop()
        provider, self.owned_provider = self.owned_provider, None
        if provider is not None:  # flushes the spans still batched; bounded by its timeouts
            await asyncio.to_thread(provider.shutdown)
