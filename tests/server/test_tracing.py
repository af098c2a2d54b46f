"""OpenTelemetry tracing: a server with otel on, spans caught by the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from memgrpc import tracing
from memgrpc.config import ConfigError, ServerConfig
from memgrpc.embed import Embedder
from memgrpc.server.app import RunningServer, start
from memgrpc.server.telemetry import require_sdk
from memgrpc.v1 import memory_pb2, memory_pb2_grpc
from tests.conftest import make_config
from tests.helpers import md

MEMORY = "memgrpc.v1.MemoryService"


@dataclass
class Traced:
    running: RunningServer
    admin_key: str
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture(scope="module")
async def traced(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    config = make_config(tmp_path_factory.mktemp("traced"), admin_key, otel=True)
    running = await start(config, embedder=shared_embedder, tracer_provider=provider)
    try:
        yield Traced(running, admin_key, exporter)
    finally:
        await running.stop(1.0)
        provider.shutdown()


@pytest.fixture(scope="module")
async def stub(traced: Traced) -> AsyncIterator[memory_pb2_grpc.MemoryServiceStub]:
    async with grpc.aio.insecure_channel(traced.running.address) as ch:
        yield memory_pb2_grpc.MemoryServiceStub(ch)


def server_span(spans: list[ReadableSpan], method: str) -> ReadableSpan:
    found = [s for s in spans if s.name == f"{MEMORY}/{method}"]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def children(spans: list[ReadableSpan], parent: ReadableSpan, name: str) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        s
        for s in spans
        if s.name == name and s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


async def test_create_memory_span_tree(
    traced: Traced, stub: memory_pb2_grpc.MemoryServiceStub
) -> None:
    traced.exporter.clear()
    await stub.CreateMemory(
        memory_pb2.CreateMemoryRequest(
            memory=memory_pb2.Memory(user_id="t", content="Erin plays the cello on Sundays")
        ),
        metadata=md(traced.admin_key, x_request_id="req-trace-1"),
    )
    spans = traced.spans()
    rpc = server_span(spans, "CreateMemory")
    assert rpc.kind == SpanKind.SERVER
    assert rpc.parent is None
    attrs = dict(rpc.attributes or {})
    assert attrs["rpc.system"] == "grpc"
    assert attrs["rpc.service"] == MEMORY and attrs["rpc.method"] == "CreateMemory"
    assert attrs["rpc.grpc.status_code"] == 0
    assert attrs["memgrpc.request_id"] == "req-trace-1"
    assert attrs["memgrpc.project_id"] == "default"
    assert rpc.status.status_code == StatusCode.UNSET

    assert rpc.context is not None
    trace_id = rpc.context.trace_id
    assert all(s.context is not None and s.context.trace_id == trace_id for s in spans)
    (embed,) = children(spans, rpc, "embed")
    assert dict(embed.attributes or {})["texts"] == 1
    (batch,) = children(spans, embed, "embed.batch")
    assert dict(batch.attributes or {})["texts"] >= 1
    writes = children(spans, rpc, "store.write")
    tables = {dict(w.attributes or {})["table"] for w in writes}
    assert "memories" in tables
    memories_write = next(w for w in writes if dict(w.attributes or {})["table"] == "memories")
    (commit,) = children(spans, memories_write, "store.commit")
    commit_attrs = dict(commit.attributes or {})
    assert commit_attrs["table"] == "memories" and commit_attrs["rows"] == 1
    # children end before their parent
    assert rpc.end_time is not None and embed.end_time is not None
    assert embed.end_time <= rpc.end_time


async def test_search_legs_are_spans(
    traced: Traced, stub: memory_pb2_grpc.MemoryServiceStub
) -> None:
    traced.exporter.clear()
    await stub.SearchMemories(
        memory_pb2.SearchMemoriesRequest(
            query="who plays music?", mode=memory_pb2.SEARCH_MODE_HYBRID
        ),  # no user_id: the store's two legs, not a user's cached index
        metadata=md(traced.admin_key),
    )
    spans = traced.spans()
    rpc = server_span(spans, "SearchMemories")
    assert len(children(spans, rpc, "embed")) == 1
    assert len(children(spans, rpc, "store.vector_search")) == 1
    (text,) = children(spans, rpc, "store.text_search")
    assert dict(text.attributes or {})["table"] == "memories"


async def test_failed_call_records_its_code(
    traced: Traced, stub: memory_pb2_grpc.MemoryServiceStub
) -> None:
    traced.exporter.clear()
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetMemory(
            memory_pb2.GetMemoryRequest(id="mem_missing"), metadata=md(traced.admin_key)
        )
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetMemory(memory_pb2.GetMemoryRequest(id="mem_missing"))  # no key
    spans = [s for s in traced.spans() if s.name == f"{MEMORY}/GetMemory"]
    codes = sorted(dict(s.attributes or {})["rpc.grpc.status_code"] for s in spans)
    assert codes == [grpc.StatusCode.NOT_FOUND.value[0], grpc.StatusCode.UNAUTHENTICATED.value[0]]
    # client errors leave the status unset (OpenTelemetry's RPC conventions)
    assert all(s.status.status_code == StatusCode.UNSET for s in spans)


async def test_incoming_traceparent_is_the_parent(
    traced: Traced, stub: memory_pb2_grpc.MemoryServiceStub
) -> None:
    traced.exporter.clear()
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    await stub.ListMemories(
        memory_pb2.ListMemoriesRequest(user_id="t"),
        metadata=md(traced.admin_key, traceparent=f"00-{trace_id}-{span_id}-01"),
    )
    rpc = server_span(traced.spans(), "ListMemories")
    assert rpc.context is not None and rpc.parent is not None
    assert rpc.context.trace_id == int(trace_id, 16)
    assert rpc.parent.span_id == int(span_id, 16) and rpc.parent.is_remote


async def test_streams_are_spans(traced: Traced) -> None:
    traced.exporter.clear()
    async with grpc.aio.insecure_channel(traced.running.address) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        for _ in range(200):
            if any(s.name == "grpc.health.v1.Health/Watch" for s in traced.spans()):
                break
            await asyncio.sleep(0.05)
    (span,) = [s for s in traced.spans() if s.name == "grpc.health.v1.Health/Watch"]
    attrs = dict(span.attributes or {})
    assert attrs["memgrpc.rpc_type"] == "server_stream"
    assert attrs["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]


def test_no_spans_outside_traced_calls() -> None:
    assert not tracing.active()
    with tracing.span("nothing", a=1) as s:
        assert s is None
    assert tracing.capture() is None


def test_otel_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServerConfig.load(env={}).otel is False
    assert ServerConfig.load(env={"MEMGRPC_OTEL": "1"}).otel is True
    assert ServerConfig.load(env={"MEMGRPC_OTEL": "false"}).otel is False
    assert ServerConfig.load({"otel": True}, env={}).otel is True
    with pytest.raises(ConfigError, match="MEMGRPC_OTEL / --otel"):
        ServerConfig.load(env={"MEMGRPC_OTEL": "maybe"})


def test_missing_sdk_is_a_clear_startup_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError, match=r"pip install 'memgrpc\[otel\]'"):
        require_sdk(ServerConfig(otel=True))
    require_sdk(ServerConfig(otel=False))  # tracing off: nothing is needed

    from memgrpc.cli import main

    assert main(["serve", "--otel", "--addr", "127.0.0.1:0", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "memgrpc[otel]" in err
    assert not (tmp_path / "memories.lance").exists()  # failed before opening the store
