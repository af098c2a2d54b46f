"""The Prometheus endpoint: a server with --metrics-addr on loopback, RPCs of every outcome
(a health Watch stream included), then /metrics scraped over HTTP."""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from memgrpc.config import ConfigError, ServerConfig
from memgrpc.embed import Embedder
from memgrpc.server.app import RunningServer, start
from memgrpc.server.interceptors import interceptors
from memgrpc.server.metrics import Metrics
from memgrpc.server.telemetry import TelemetryInterceptor
from memgrpc.v1 import memory_pb2, memory_pb2_grpc
from tests.conftest import ServerHandle, make_config
from tests.helpers import md
from tests.server import probe

MEMORY = "memgrpc.v1.MemoryService"
HEALTH = "grpc.health.v1.Health"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class MetricsServer:
    running: RunningServer
    admin_key: str
    metrics_address: str

    @property
    def store_stats(self) -> Any:
        telemetry = self.running.app.telemetry
        assert telemetry is not None and telemetry.metrics is not None
        return telemetry.metrics.store_stats


@pytest.fixture(scope="module")
async def metrics_server(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[MetricsServer]:
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    config = make_config(tmp_path_factory.mktemp("metrics"), admin_key, metrics_addr="127.0.0.1:0")
    running = await start(config, embedder=shared_embedder)
    try:
        telemetry = running.app.telemetry
        assert telemetry is not None and telemetry.metrics is not None
        assert telemetry.metrics.address is not None
        yield MetricsServer(running, admin_key, telemetry.metrics.address)
    finally:
        await running.stop(1.0)


@pytest.fixture(scope="module")
async def metrics_channel(metrics_server: MetricsServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(metrics_server.running.address) as ch:
        yield ch


async def scrape(address: str) -> Samples:
    """GET /metrics from a thread: the store collector needs this event loop to be free."""

    def get() -> str:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            body: bytes = resp.read()
            return body.decode()

    text = await asyncio.to_thread(get)
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def rpc(service: str, method: str, kind: str = "unary", **more: str) -> dict[str, str]:
    return {"grpc_service": service, "grpc_method": method, "grpc_type": kind, **more}


async def wait_for(address: str, name: str, labels: dict[str, str], at_least: float) -> Samples:
    """Scrape until a sample reaches `at_least` (a cancelled stream ends on the server a moment
    after the client gave up)."""
    deadline = time.monotonic() + 10
    while True:
        samples = await scrape(address)
        got = value(samples, name, **labels)
        if (got is not None and got >= at_least) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def test_rpcs_are_counted_and_timed(
    metrics_server: MetricsServer, metrics_channel: grpc.aio.Channel
) -> None:
    key = metrics_server.admin_key
    stub = memory_pb2_grpc.MemoryServiceStub(metrics_channel)
    created = await stub.CreateMemory(
        memory_pb2.CreateMemoryRequest(
            memory=memory_pb2.Memory(user_id="m", content="Carol drinks oolong every morning")
        ),
        metadata=md(key),
    )
    await stub.GetMemory(memory_pb2.GetMemoryRequest(id=created.id), metadata=md(key))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetMemory(memory_pb2.GetMemoryRequest(id="mem_doesnotexist"), metadata=md(key))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stub.ListMemories(memory_pb2.ListMemoriesRequest(user_id="m"))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    found = await stub.SearchMemories(
        memory_pb2.SearchMemoriesRequest(
            user_id="m", query="what tea?", mode=memory_pb2.SEARCH_MODE_SEMANTIC
        ),
        metadata=md(key),
    )
    assert found.results[0].memory.id == created.id

    # a server stream, held open for a while, then cancelled by the client
    watch = health_pb2_grpc.HealthStub(metrics_channel).Watch(health_pb2.HealthCheckRequest())
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    held = 0.3
    await asyncio.sleep(held)
    watch.cancel()

    watch_labels = rpc(HEALTH, "Watch", "server_stream", grpc_code="CANCELLED")
    s = await wait_for(metrics_server.metrics_address, "grpc_server_handled_total", watch_labels, 1)
    handled = "grpc_server_handled_total"
    assert value(s, handled, **rpc(MEMORY, "CreateMemory", grpc_code="OK")) == 1
    assert value(s, handled, **rpc(MEMORY, "GetMemory", grpc_code="OK")) == 1
    assert value(s, handled, **rpc(MEMORY, "GetMemory", grpc_code="NOT_FOUND")) == 1
    assert value(s, handled, **rpc(MEMORY, "ListMemories", grpc_code="UNAUTHENTICATED")) == 1
    assert value(s, handled, **rpc(MEMORY, "SearchMemories", grpc_code="OK")) == 1
    assert value(s, handled, **watch_labels) == 1
    assert value(s, "grpc_server_started_total", **rpc(MEMORY, "GetMemory")) == 2
    assert value(s, "grpc_server_started_total", **rpc(HEALTH, "Watch", "server_stream")) == 1

    # latency histograms: one observation per call, the stream timed as a whole
    seconds = "grpc_server_handling_seconds"
    assert value(s, f"{seconds}_count", **rpc(MEMORY, "GetMemory")) == 2
    assert value(s, f"{seconds}_bucket", **rpc(MEMORY, "GetMemory", le="+Inf")) == 2
    assert value(s, f"{seconds}_count", **rpc(HEALTH, "Watch", "server_stream")) == 1
    watch_sum = value(s, f"{seconds}_sum", **rpc(HEALTH, "Watch", "server_stream"))
    assert watch_sum is not None and watch_sum >= held
    create_sum = value(s, f"{seconds}_sum", **rpc(MEMORY, "CreateMemory"))
    assert create_sum is not None and 0 < create_sum < held + 10


async def test_writer_embedder_and_store_metrics(
    metrics_server: MetricsServer, metrics_channel: grpc.aio.Channel
) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(metrics_channel)
    metrics_server.store_stats.refresh_s = 0.0  # every scrape reads the tables afresh
    before = await scrape(metrics_server.metrics_address)
    batch = memory_pb2.BatchMemoriesRequest(
        operations=[
            memory_pb2.BatchOperation(
                create=memory_pb2.CreateMemoryRequest(
                    memory=memory_pb2.Memory(user_id="w", content=f"fact number {i} about Dan")
                )
            )
            for i in range(7)
        ]
    )
    reply = await stub.BatchMemories(batch, metadata=md(metrics_server.admin_key))
    assert reply.summary.succeeded == 7
    s = await scrape(metrics_server.metrics_address)

    def moved(name: str, **labels: str) -> float:
        return (value(s, name, **labels) or 0.0) - (value(before, name, **labels) or 0.0)

    # the 7 new memories went into the memories table in commits of several rows
    inserted = {"table": "memories", "kind": "insert"}
    assert moved("memgrpc_writer_commit_rows_sum", **inserted) == 7
    commits = moved("memgrpc_writer_commit_rows_count", **inserted)
    assert 1 <= commits <= 7
    assert moved("memgrpc_writer_commit_seconds_count", **inserted) == commits
    assert value(s, "memgrpc_writer_queue_depth", table="memories") == 0
    assert value(s, "memgrpc_writer_queue_depth", table="memory_versions") is not None

    # embedder: at least one batch, 7 texts in all
    assert moved("memgrpc_embed_batch_texts_sum") == 7
    assert moved("memgrpc_embed_batch_texts_count") >= 1
    assert moved("memgrpc_embed_batch_seconds_count") >= 1
    assert value(s, "memgrpc_embed_queue_depth") == 0
    assert value(s, "memgrpc_embed_batch_failures_total") == 0

    # store tables, read on the server's loop at scrape time (cached for a few seconds)
    for table in ("memories", "memory_versions", "projects", "api_keys"):
        version = value(s, "memgrpc_store_table_version", table=table)
        assert version is not None and version >= 1
        assert (value(s, "memgrpc_store_table_versions", table=table) or 0) >= 1
        assert value(s, "memgrpc_store_table_fragments", table=table) is not None
        assert value(s, "memgrpc_store_table_small_fragments", table=table) is not None
    assert (value(s, "memgrpc_store_table_rows", table="memories") or 0) >= 7
    assert (value(s, "memgrpc_store_table_fragments", table="memories") or 0) >= 1
    age = value(s, "memgrpc_store_stats_age_seconds")
    assert age is not None and 0 <= age < 60
    assert value(s, "memgrpc_maintenance_runs_total") == 0
    cache = value(s, "memgrpc_store_cache_bytes")
    assert cache is not None and 0 < cache <= (1024 + 16) * 2**20
    assert (value(s, "process_resident_memory_bytes") or 0) > 0


async def test_recall_cache_metrics(
    metrics_server: MetricsServer, metrics_channel: grpc.aio.Channel
) -> None:
    """The recall cache's users and memories, the part of the RSS that grows with the data."""
    stub = memory_pb2_grpc.MemoryServiceStub(metrics_channel)
    key = md(metrics_server.admin_key)
    user = f"recall-{secrets.token_hex(4)}"  # a user of its own: the module shares the server
    for i in range(3):
        await stub.CreateMemory(
            memory_pb2.CreateMemoryRequest(
                memory=memory_pb2.Memory(user_id=user, content=f"{user} likes sport {i}")
            ),
            metadata=key,
        )
    before = await scrape(metrics_server.metrics_address)
    await stub.SearchMemories(
        memory_pb2.SearchMemoriesRequest(user_id=user, query="sport"), metadata=key
    )  # loads the user into the cache
    after = await scrape(metrics_server.metrics_address)
    users = value(after, "memgrpc_recall_cache_users")
    assert users is not None and users - (value(before, "memgrpc_recall_cache_users") or 0) == 1
    rows = value(after, "memgrpc_recall_cache_rows")
    assert rows is not None and rows - (value(before, "memgrpc_recall_cache_rows") or 0) == 3


async def test_store_stats_are_cached_between_scrapes(metrics_server: MetricsServer) -> None:
    metrics_server.store_stats.refresh_s = 60.0
    first = await scrape(metrics_server.metrics_address)
    await asyncio.sleep(0.05)
    second = await scrape(metrics_server.metrics_address)
    age1 = value(first, "memgrpc_store_stats_age_seconds")
    age2 = value(second, "memgrpc_store_stats_age_seconds")
    assert age1 is not None and age2 is not None and age2 > age1


async def test_unknown_methods_add_no_labels(
    metrics_server: MetricsServer, metrics_channel: grpc.aio.Channel
) -> None:
    call = metrics_channel.unary_unary("/memgrpc.v1.MemoryService/NoSuchMethod")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call(b"")
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
    s = await scrape(metrics_server.metrics_address)
    assert not any(dict(labels).get("grpc_method") == "NoSuchMethod" for _, labels in s)


def test_metrics_are_off_by_default(server: ServerHandle) -> None:
    telemetry = server.app.telemetry
    assert telemetry is not None
    assert telemetry.metrics is None and telemetry.tracer is None
    assert telemetry.interceptors() == []
    assert not any(isinstance(i, TelemetryInterceptor) for i in telemetry.interceptors())


def test_metrics_addr_config() -> None:
    c = ServerConfig.load({"metrics_addr": "127.0.0.1:9464"}, env={})
    assert c.metrics_addr == "127.0.0.1:9464"
    assert ServerConfig.load(env={"MEMGRPC_METRICS_ADDR": "[::1]:0"}).metrics_addr == "[::1]:0"
    assert ServerConfig.load(env={}).metrics_addr is None
    with pytest.raises(ConfigError, match="MEMGRPC_METRICS_ADDR / --metrics-addr"):
        ServerConfig.load(env={"MEMGRPC_METRICS_ADDR": "9464"})


async def test_metrics_port_in_use_fails_startup(
    metrics_server: MetricsServer, tmp_path_factory: pytest.TempPathFactory,
    shared_embedder: Embedder,
) -> None:  # fmt: skip
    config = make_config(
        tmp_path_factory.mktemp("busy"), None, metrics_addr=metrics_server.metrics_address
    )
    with pytest.raises(OSError, match="could not bind the metrics endpoint"):
        await start(config, embedder=shared_embedder)


async def test_every_rpc_kind_is_recorded(server: ServerHandle) -> None:
    """The Probe service (tests/server/probe.py) has all four kinds; a failure mid-stream
    counts with the code the client got."""
    metrics = Metrics(server.app.store, server.app.embedder, server.app.maintainer)
    srv = grpc.aio.server(
        interceptors=[TelemetryInterceptor(metrics, None), *interceptors(server.app.authenticator)]
    )
    srv.add_generic_rpc_handlers((probe.handler(),))
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    key = md(server.admin_key)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            base = f"/{probe.SERVICE}/"
            await ch.unary_unary(base + "Unary")(b"", metadata=key)
            assert (
                len([r async for r in ch.unary_stream(base + "ServerStream")(b"", metadata=key)])
                == 3
            )
            with pytest.raises(grpc.aio.AioRpcError) as mid:
                async for _ in ch.unary_stream(base + "ServerStream")(b"fail-mid", metadata=key):
                    pass
            assert mid.value.code() == grpc.StatusCode.NOT_FOUND
            await ch.stream_unary(base + "ClientStream")(iter([b"", b""]), metadata=key)
            bidi = ch.stream_stream(base + "Bidi")(iter([b"", b"invalid"]), metadata=key)
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                async for _ in bidi:
                    pass
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await srv.stop(0)
        await metrics.stop()
    text = generate_latest(metrics.registry).decode()
    s: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            s[(sample.name, frozenset(sample.labels.items()))] = sample.value
    handled = "grpc_server_handled_total"
    assert value(s, handled, **rpc(probe.SERVICE, "Unary", grpc_code="OK")) == 1
    assert (
        value(s, handled, **rpc(probe.SERVICE, "ServerStream", "server_stream", grpc_code="OK"))
        == 1
    )
    assert (
        value(
            s, handled, **rpc(probe.SERVICE, "ServerStream", "server_stream", grpc_code="NOT_FOUND")
        )
        == 1
    )
    assert (
        value(s, handled, **rpc(probe.SERVICE, "ClientStream", "client_stream", grpc_code="OK"))
        == 1
    )
    assert (
        value(s, handled, **rpc(probe.SERVICE, "Bidi", "bidi_stream", grpc_code="INVALID_ARGUMENT"))
        == 1
    )
    assert (
        value(s, "grpc_server_handling_seconds_count", **rpc(probe.SERVICE, "Bidi", "bidi_stream"))
        == 1
    )
    # the hooks are gone again: the shared module server records nothing into this registry
    assert all(w.on_commit is None for w in server.app.store.writers().values())
    assert server.app.embedder.on_batch is None
