"""Per-API-key rate limiting: the token bucket (injected clock), the interceptor on every RPC
kind (probe service, frozen clock) and a real server started with a small rps / burst."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from memgrpc.config import ConfigError, ServerConfig
from memgrpc.core.access.principal import Scope
from memgrpc.core.kernel.errors import ResourceExhausted
from memgrpc.embed import Embedder
from memgrpc.server import ratelimit
from memgrpc.server.app import App, start
from memgrpc.server.interceptors import interceptors
from memgrpc.server.ratelimit import RateLimiter, TokenBucket
from memgrpc.v1 import admin_pb2, admin_pb2_grpc
from tests.conftest import ServerHandle, make_config
from tests.helpers import md
from tests.server import probe

RPS = 2.0
BURST = 3
PROBE = f"/{probe.SERVICE}/"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rate_limit_details(err: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, float]:
    """ErrorInfo and RetryInfo delay (seconds) of a RESOURCE_EXHAUSTED call."""
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    info: error_details_pb2.ErrorInfo | None = None
    delay: duration_pb2.Duration | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay
    assert info is not None and delay is not None, status
    return info, delay.ToNanoseconds() / 1e9


# -- the bucket ---------------------------------------------------------------------------------
def test_bucket_burst_then_refill() -> None:
    b = TokenBucket(rate=2.0, capacity=3.0, tokens=3.0, updated=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)  # one token back after 1/rate
    assert b.take(0.2) == pytest.approx(0.3)  # a rejected take costs nothing
    assert b.take(0.5) == 0.0
    assert b.take(0.5) == pytest.approx(0.5)
    assert b.take(100.0) == 0.0  # refills up to capacity, not beyond
    assert b.tokens == pytest.approx(2.0)


def test_bucket_ignores_a_clock_going_backwards() -> None:
    b = TokenBucket(rate=1.0, capacity=1.0, tokens=1.0, updated=10.0)
    assert b.take(10.0) == 0.0
    assert b.take(5.0) == pytest.approx(1.0)
    assert b.take(11.0) == 0.0


def test_limiter_keys_have_separate_buckets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1.0, 2, clock=clock)
    assert [limiter.try_acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.try_acquire("a") == pytest.approx(1.0)
    assert limiter.try_acquire("b") == 0.0
    clock.advance(0.25)
    assert limiter.try_acquire("a") == pytest.approx(0.75)
    clock.advance(0.75)
    assert limiter.try_acquire("a") == 0.0


def test_limiter_check_raises_rate_limited() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4.0, 1, clock=clock)
    limiter.check("k")
    with pytest.raises(ResourceExhausted) as exc:
        limiter.check("k")
    err = exc.value
    assert err.reason == "RATE_LIMITED"
    assert err.retry_after_s == pytest.approx(0.25)
    assert err.metadata == {"rps": "4", "burst": "1"}


def test_limiter_forgets_full_buckets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1000.0, 1, clock=clock)
    for i in range(ratelimit._PRUNE_FLOOR):
        limiter.try_acquire(f"k{i}")
    assert len(limiter) == ratelimit._PRUNE_FLOOR
    clock.advance(1.0)  # all of them full again
    limiter.try_acquire("new")
    assert len(limiter) == 1


def test_limiter_rejects_bad_settings() -> None:
    for rps, burst in ((0.0, 1), (-1.0, 1), (math.inf, 1), (math.nan, 1), (1.0, 0)):
        with pytest.raises(ValueError):
            RateLimiter(rps, burst)


# -- configuration ------------------------------------------------------------------------------
def test_config_off_by_default() -> None:
    config = ServerConfig.load(env={})
    assert config.rate_limit_rps is None and config.rate_limit_burst is None
    assert ratelimit.from_config(config) is None


def test_config_from_env_and_default_burst() -> None:
    config = ServerConfig.load(env={"MEMGRPC_RATE_LIMIT_RPS": "2.5"})
    limiter = ratelimit.from_config(config)
    assert limiter is not None and (limiter.rps, limiter.burst) == (2.5, 5)
    config = ServerConfig.load(env={"MEMGRPC_RATE_LIMIT_RPS": "0.2"})
    limiter = ratelimit.from_config(config)
    assert limiter is not None and limiter.burst == 1
    config = ServerConfig.load(
        {"rate_limit_burst": "7"},
        env={"MEMGRPC_RATE_LIMIT_RPS": "10", "MEMGRPC_RATE_LIMIT_BURST": "1"},
    )
    limiter = ratelimit.from_config(config)
    assert limiter is not None and (limiter.rps, limiter.burst) == (10.0, 7)


@pytest.mark.parametrize(
    ("env", "mentions"),
    [
        ({"MEMGRPC_RATE_LIMIT_RPS": "fast"}, "MEMGRPC_RATE_LIMIT_RPS"),
        ({"MEMGRPC_RATE_LIMIT_RPS": "0"}, "MEMGRPC_RATE_LIMIT_RPS"),
        ({"MEMGRPC_RATE_LIMIT_RPS": "-3"}, "MEMGRPC_RATE_LIMIT_RPS"),
        ({"MEMGRPC_RATE_LIMIT_RPS": "nan"}, "MEMGRPC_RATE_LIMIT_RPS"),
        ({"MEMGRPC_RATE_LIMIT_RPS": "inf"}, "MEMGRPC_RATE_LIMIT_RPS"),
        (
            {"MEMGRPC_RATE_LIMIT_RPS": "5", "MEMGRPC_RATE_LIMIT_BURST": "2.5"},
            "MEMGRPC_RATE_LIMIT_BURST",
        ),
        (
            {"MEMGRPC_RATE_LIMIT_RPS": "5", "MEMGRPC_RATE_LIMIT_BURST": "0"},
            "MEMGRPC_RATE_LIMIT_BURST",
        ),
        ({"MEMGRPC_RATE_LIMIT_BURST": "10"}, "needs MEMGRPC_RATE_LIMIT_RPS"),
    ],
)
def test_config_rejects_bad_values(env: dict[str, str], mentions: str) -> None:
    with pytest.raises(ConfigError, match=mentions):
        ServerConfig.load(env=env)


# -- the interceptor on every RPC kind (probe service, frozen clock) ----------------------------
@pytest.fixture
async def limited_probe(server: ServerHandle) -> AsyncIterator[tuple[grpc.aio.Channel, FakeClock]]:
    clock = FakeClock()
    limiter = RateLimiter(1.0, 2, clock=clock)
    srv = grpc.aio.server(interceptors=interceptors(server.app.authenticator, limiter))
    srv.add_generic_rpc_handlers((probe.handler(),))
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch, clock
    finally:
        await srv.stop(0)


async def test_streams_count_once_per_call(
    limited_probe: tuple[grpc.aio.Channel, FakeClock], admin_key: str
) -> None:
    channel, clock = limited_probe
    stream = channel.unary_stream(PROBE + "ServerStream")
    for _ in range(2):  # 3 messages each, one token each
        assert len([m async for m in stream(b"", metadata=md(admin_key))]) == 3
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in stream(b"", metadata=md(admin_key)):
            pass
    info, delay = rate_limit_details(exc.value)
    assert info.reason == "RATE_LIMITED" and info.domain == "memgrpc"
    assert delay == pytest.approx(1.0)

    clock.advance(1.0)
    bidi = channel.stream_stream(PROBE + "Bidi")(iter([b"", b"", b""]), metadata=md(admin_key))
    assert len([m async for m in bidi]) == 3
    # rejected up front: the request stream stays empty and open (no write races the rejection)
    client_stream = channel.stream_unary(PROBE + "ClientStream")(metadata=md(admin_key))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await client_stream
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_bad_keys_are_rejected_by_auth_first(
    limited_probe: tuple[grpc.aio.Channel, FakeClock],
) -> None:
    channel, _ = limited_probe
    unary = channel.unary_unary(PROBE + "Unary")
    for metadata in [None, md("mgk_" + "x" * 40)] * 3:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await unary(b"", metadata=metadata)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- a real server with a small limit -----------------------------------------------------------
@pytest.fixture(scope="module")
async def limited(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[ServerHandle]:
    data_dir: Path = tmp_path_factory.mktemp("ratelimited")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    config = make_config(data_dir, admin_key, rate_limit_rps=RPS, rate_limit_burst=BURST)
    running = await start(config, embedder=shared_embedder)
    try:
        yield ServerHandle(running.address, data_dir, admin_key, running.app, running)
    finally:
        await running.stop(1.0)


@pytest.fixture(scope="module")
async def limited_channel(limited: ServerHandle) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(limited.address) as ch:
        yield ch


async def fresh_key(app: App, admin_key: str) -> tuple[str, str]:
    """(project id, secret) of a new key, made in-process so no rate-limited call is spent."""
    caller = await app.authenticator.authenticate(admin_key)
    project = await app.admin.create_project(caller, "rate limited")
    created = await app.admin.create_api_key(caller, project.id, "test", (Scope.ADMIN,))
    return project.id, created.secret


async def get_project(stub: admin_pb2_grpc.AdminServiceStub, project: str, key: str) -> None:
    got = await stub.GetProject(admin_pb2.GetProjectRequest(id=project), metadata=md(key))
    assert got.id == project


async def test_burst_then_rate_limited_then_retry(
    limited: ServerHandle, limited_channel: grpc.aio.Channel
) -> None:
    stub = admin_pb2_grpc.AdminServiceStub(limited_channel)
    project, key = await fresh_key(limited.app, limited.admin_key)
    other_project, other_key = await fresh_key(limited.app, limited.admin_key)
    for _ in range(BURST):
        await get_project(stub, project, key)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await get_project(stub, project, key)
    info, delay = rate_limit_details(exc.value)
    assert info.reason == "RATE_LIMITED" and info.domain == "memgrpc"
    assert info.metadata["rps"] == "2" and info.metadata["burst"] == str(BURST)
    assert 0 < delay <= 1 / RPS
    assert any(k == "x-request-id" for k, _ in exc.value.trailing_metadata() or ())

    # another key has its own bucket
    for _ in range(BURST):
        await get_project(stub, other_project, other_key)

    await asyncio.sleep(delay)
    await get_project(stub, project, key)


async def test_health_and_reflection_are_never_limited(
    limited: ServerHandle, limited_channel: grpc.aio.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(limited_channel)
    reflect = reflection_pb2_grpc.ServerReflectionStub(limited_channel)
    _, key = await fresh_key(limited.app, limited.admin_key)
    for metadata in (None, md(key)):
        for _ in range(BURST * 3):
            reply = await health.Check(health_pb2.HealthCheckRequest(), metadata=metadata)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    for _ in range(BURST * 2):
        call = reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=md(key)
        )
        replies = [r async for r in call]
        assert replies[0].list_services_response.service


async def test_off_by_default(
    server: ServerHandle, admin_stub: admin_pb2_grpc.AdminServiceStub
) -> None:
    assert server.app.config.rate_limit_rps is None
    project, key = await fresh_key(server.app, server.admin_key)
    await asyncio.gather(*(get_project(admin_stub, project, key) for _ in range(50)))
