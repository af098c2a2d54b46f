"""Fixtures of the API tests: a module-scoped `new_key`, a fresh project's conversation stubs."""

from __future__ import annotations

import grpc
import pytest

from memgrpc.v1 import admin_pb2_grpc
from tests.conftest import NewKey, new_key
from tests.intelhelpers import Conv


@pytest.fixture(scope="module")
def new_key_module(admin_stub: admin_pb2_grpc.AdminServiceStub, admin_key: str) -> NewKey:
    return new_key.__wrapped__(admin_stub, admin_key)  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
async def conv(channel: grpc.aio.Channel, new_key: NewKey) -> Conv:
    """A fresh project's key and stubs (extraction, profile and context tests)."""
    _, key = await new_key()
    return Conv(channel, key)
