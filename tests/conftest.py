"""Shared fixtures: a real server per test module (loopback, LanceDB in a tmp dir), stubs, keys.

The embedding model is loaded once per session and shared by every server (each wraps it in its
own BatchingEmbedder), so a module's server starts in well under a second.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from memgrpc.config import ServerConfig
from memgrpc.embed import Embedder, load_embedder
from memgrpc.server.app import App, RunningServer, start
from memgrpc.server.logging import configure_logging
from memgrpc.v1 import admin_pb2, admin_pb2_grpc, memory_pb2_grpc
from tests.helpers import md

configure_logging("info")

NewKey = Callable[..., Awaitable[tuple[str, str]]]
ALL_SCOPES = ("read", "write", "admin")
_SCOPE_PB = {
    "read": admin_pb2.API_KEY_SCOPE_READ,
    "write": admin_pb2.API_KEY_SCOPE_WRITE,
    "admin": admin_pb2.API_KEY_SCOPE_ADMIN,
}


@dataclass
class ServerHandle:
    address: str
    data_dir: Path
    admin_key: str
    app: App
    running: RunningServer


@pytest.fixture(scope="session")
def shared_embedder() -> Embedder:
    return load_embedder("local")


def make_config(data_dir: Path, admin_key: str | None, **overrides: object) -> ServerConfig:
    """A loopback config on a free port; short grace so module teardown is quick."""
    settings: dict[str, object] = {
        "addr": "127.0.0.1:0",
        "data": str(data_dir),
        "admin_key": admin_key,
        "grace_period_s": 2.0,
        "read_consistency_s": 0.5,
        "maintenance_interval_s": 3600.0,
    }
    settings.update(overrides)
    return ServerConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[ServerHandle]:
    data_dir = tmp_path_factory.mktemp("data")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    running = await start(make_config(data_dir, admin_key), embedder=shared_embedder)
    try:
        yield ServerHandle(running.address, data_dir, admin_key, running.app, running)
    finally:
        await running.stop(1.0)


@pytest.fixture(scope="module")
async def channel(server: ServerHandle) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def admin_key(server: ServerHandle) -> str:
    return server.admin_key


@pytest.fixture(scope="module")
def memory_stub(channel: grpc.aio.Channel) -> memory_pb2_grpc.MemoryServiceStub:
    return memory_pb2_grpc.MemoryServiceStub(channel)


@pytest.fixture(scope="module")
def admin_stub(channel: grpc.aio.Channel) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(channel)


@pytest.fixture
def new_key(admin_stub: admin_pb2_grpc.AdminServiceStub, admin_key: str) -> NewKey:
    """`await new_key(scopes=(...), project_id=None)` -> (project_id, secret).

    Without `project_id` a fresh project is created first (with the bootstrap key), so every
    call gives an isolated tenant.
    """

    async def make(
        scopes: Sequence[str] = ALL_SCOPES, project_id: str | None = None
    ) -> tuple[str, str]:
        if project_id is None:
            project = await admin_stub.CreateProject(
                admin_pb2.CreateProjectRequest(project=admin_pb2.Project(display_name="test")),
                metadata=md(admin_key),
            )
            project_id = project.id
        created = await admin_stub.CreateApiKey(
            admin_pb2.CreateApiKeyRequest(
                project_id=project_id,
                api_key=admin_pb2.ApiKey(name="test", scopes=[_SCOPE_PB[s] for s in scopes]),
            ),
            metadata=md(admin_key),
        )
        return project_id, created.secret

    return make
