"""A module-scoped variant of `new_key`, for fixtures that build a corpus once per module."""

from __future__ import annotations

import pytest

from memgrpc.v1 import admin_pb2_grpc
from tests.conftest import NewKey, new_key


@pytest.fixture(scope="module")
def new_key_module(admin_stub: admin_pb2_grpc.AdminServiceStub, admin_key: str) -> NewKey:
    return new_key.__wrapped__(admin_stub, admin_key)  # type: ignore[attr-defined,no-any-return]
