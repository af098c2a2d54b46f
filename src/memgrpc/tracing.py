"""Child spans for traced RPCs, with no hard dependency on OpenTelemetry.

The server's telemetry interceptor (server/telemetry.py) binds its tracer to the RPC's context
for the length of the call; `span()` then opens a child of the current span, and is a no-op
(without importing OpenTelemetry) when the call is not traced, which is always the case unless
the server runs with `--otel`.

Work handed to a background task (the store writers, the embedding batcher) runs in that task's
context, which is a copy of whichever RPC first started the task: such code captures the
caller's `Parent` with `capture()` when the work is submitted and opens its span under it with
`span_under()`, never with `span()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

_tracer: ContextVar[Any | None] = ContextVar("memgrpc_tracer", default=None)

Attribute = str | bool | int | float


@dataclass(frozen=True)
class Parent:
    """A tracer and the OpenTelemetry context to open spans under."""

    tracer: Any
    context: Any


def bind(tracer: Any | None) -> Token[Any | None]:
    """Trace the rest of this context (the RPC's task) with `tracer`."""
    return _tracer.set(tracer)


def unbind(token: Token[Any | None]) -> None:
    with contextlib.suppress(ValueError):  # a stream closed from another context
        _tracer.reset(token)


def active() -> bool:
    return _tracer.get() is not None


def capture() -> Parent | None:
    """The current span as a parent for work done elsewhere; None when not tracing."""
    tracer = _tracer.get()
    if tracer is None:
        return None
    from opentelemetry import context as otel_context

    return Parent(tracer, otel_context.get_current())


@contextlib.contextmanager
def span(name: str, **attributes: Attribute | None) -> Iterator[Any | None]:
    """A child span of the current one (None when not tracing); exceptions are recorded."""
    parent = capture()
    if parent is None:
        yield None
        return
    with span_under(parent, name, links=(), **attributes) as s:
        yield s


@contextlib.contextmanager
def span_under(
    parent: Parent | None,
    name: str,
    *,
    links: Sequence[Parent | None] = (),
    **attributes: Attribute | None,
) -> Iterator[Any | None]:
    """A span under an explicit `parent` (None = no span), linked to the spans of `links`."""
    if parent is None:
        yield None
        return
    from opentelemetry import trace

    linked = []
    for other in links:
        if other is None:
            continue
        ctx = trace.get_current_span(other.context).get_span_context()
        if ctx.is_valid:
            linked.append(trace.Link(ctx))
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with parent.tracer.start_as_current_span(
        name, context=parent.context, attributes=attrs, links=linked
    ) as s:
        yield s


def set_attributes(target: Any | None, **attributes: Attribute | None) -> None:
    """Set attributes on a span from `span()` (a no-op for None)."""
    if target is None:
        return
    for key, value in attributes.items():
        if value is not None:
            target.set_attribute(key, value)
