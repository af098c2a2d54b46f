"""Authentication and scopes, on unary and streaming calls; health and reflection are open."""

from __future__ import annotations

import contextlib
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from memgrpc.server import auth
from memgrpc.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agents_pb2,
    chat_pb2,
    conflicts_pb2,
    context_pb2,
    memory_pb2,
    memory_pb2_grpc,
    sessions_pb2,
    users_pb2,
)
from tests.conftest import NewKey
from tests.helpers import md
from tests.server import probe


def reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "memgrpc"
            return str(info.reason)
    raise AssertionError("no ErrorInfo")


def get_default(stub: admin_pb2_grpc.AdminServiceStub, metadata: Any = None) -> Any:
    return stub.GetProject(admin_pb2.GetProjectRequest(id="default"), metadata=metadata)


async def get_own(stub: admin_pb2_grpc.AdminServiceStub, project: str, metadata: object) -> None:
    got = await stub.GetProject(admin_pb2.GetProjectRequest(id=project), metadata=metadata)
    assert got.id == project


async def test_no_key(admin_stub: admin_pb2_grpc.AdminServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await get_default(admin_stub)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason(exc.value) == "API_KEY_MISSING"


@pytest.mark.parametrize(
    "metadata",
    [
        md("mgk_" + "x" * 40),
        md("not a key at all"),
        (("authorization", "Bearer mgk_nope"),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
    ],
)
async def test_wrong_key(admin_stub: admin_pb2_grpc.AdminServiceStub, metadata: object) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await get_default(admin_stub, metadata)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason(exc.value) == "API_KEY_INVALID"


async def test_revoked_key_fails_on_next_call(
    admin_stub: admin_pb2_grpc.AdminServiceStub, admin_key: str, new_key: NewKey
) -> None:
    project, key = await new_key(scopes=("read",))
    await get_own(admin_stub, project, md(key))  # now cached by the authenticator
    listed = await admin_stub.ListApiKeys(
        admin_pb2.ListApiKeysRequest(project_id=project), metadata=md(admin_key)
    )
    (key_id,) = [k.id for k in listed.api_keys]
    await admin_stub.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(id=key_id), metadata=md(admin_key))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await get_own(admin_stub, project, md(key))
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason(exc.value) == "API_KEY_REVOKED"


async def test_x_api_key_wins_over_bearer(
    admin_stub: admin_pb2_grpc.AdminServiceStub, new_key: NewKey
) -> None:
    project, key = await new_key()
    both_good_first = (("x-api-key", key), ("authorization", "Bearer mgk_wrong"))
    await get_own(admin_stub, project, both_good_first)
    both_bad_first = (("x-api-key", "mgk_wrong"), ("authorization", f"Bearer {key}"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await get_own(admin_stub, project, both_bad_first)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_bearer_alone(
    admin_stub: admin_pb2_grpc.AdminServiceStub, new_key: NewKey, scheme: str
) -> None:
    project, key = await new_key(scopes=("read",))
    await get_own(admin_stub, project, (("authorization", f"{scheme} {key}"),))


async def _denied(call: object) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call  # type: ignore[misc]
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(exc.value) == "SCOPE_MISSING"


async def test_scopes(
    memory_stub: memory_pb2_grpc.MemoryServiceStub,
    admin_stub: admin_pb2_grpc.AdminServiceStub,
    new_key: NewKey,
) -> None:
    project, _ = await new_key(scopes=("admin",))
    _, reader = await new_key(scopes=("read",), project_id=project)
    _, writer = await new_key(scopes=("write",), project_id=project)
    _, admin = await new_key(scopes=("admin",), project_id=project)
    create = memory_pb2.CreateMemoryRequest(
        memory=memory_pb2.Memory(user_id="u1", content="likes green tea")
    )
    listing = memory_pb2.ListMemoriesRequest(user_id="u1")
    keys = admin_pb2.ListApiKeysRequest()

    # read: get/list/search only
    await memory_stub.ListMemories(listing, metadata=md(reader))
    await get_own(admin_stub, project, md(reader))
    await _denied(memory_stub.CreateMemory(create, metadata=md(reader)))
    await _denied(admin_stub.ListApiKeys(keys, metadata=md(reader)))

    # write: mutations only
    created = await memory_stub.CreateMemory(create, metadata=md(writer))
    await _denied(memory_stub.ListMemories(listing, metadata=md(writer)))
    await _denied(admin_stub.ListApiKeys(keys, metadata=md(writer)))

    # admin: implies read and write
    await memory_stub.GetMemory(memory_pb2.GetMemoryRequest(id=created.id), metadata=md(admin))
    await memory_stub.CreateMemory(create, metadata=md(admin))
    listed = await admin_stub.ListApiKeys(keys, metadata=md(admin))
    assert listed.total_size == 4


def test_every_rpc_has_a_scope() -> None:
    """Every RPC of every memgrpc service names its scope (a forgotten one would need admin)."""
    modules = (
        admin_pb2, agents_pb2, chat_pb2, conflicts_pb2, context_pb2, memory_pb2, sessions_pb2,
        users_pb2,
    )  # fmt: skip
    services = [s for m in modules for s in m.DESCRIPTOR.services_by_name.values()]
    assert len(services) == 8
    for service in services:
        for method in service.methods:
            assert f"/{service.full_name}/{method.name}" in auth.METHOD_SCOPES, method.full_name
    assert auth.required_scope("/memgrpc.v1.MemoryService/SomethingNew") == "admin"
    assert auth.required_scope("/grpc.health.v1.Health/Check") is None


async def test_health_and_reflection_need_no_key(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    checked = await health.Check(health_pb2.HealthCheckRequest())
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    checked = await health.Check(health_pb2.HealthCheckRequest(service="memgrpc.v1.MemoryService"))
    assert checked.status == health_pb2.HealthCheckResponse.SERVING

    watch = health.Watch(health_pb2.HealthCheckRequest())  # streaming, exempt too
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()

    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    names: set[str] = set()
    async for resp in refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    ):
        names |= {s.name for s in resp.list_services_response.service}
    assert {"memgrpc.v1.MemoryService", "memgrpc.v1.AdminService", "grpc.health.v1.Health"} <= names


# -- streaming calls, through the Probe service behind the same interceptors ------------------
KINDS = ["unary", "server_stream", "client_stream", "bidi"]


async def _run(
    ch: grpc.aio.Channel, kind: str, metadata: Any, *, send: bool = True
) -> tuple[grpc.StatusCode, list[bytes], str]:
    """(final code, responses, ErrorInfo reason) of one Probe call of the given kind.

    With `send=False` a request stream stays empty and open: a call the server rejects up front
    is then observed without racing a client-side write against the rejection (which grpc may
    report as INTERNAL on the client).
    """
    req = b""
    path = f"/{probe.SERVICE}/"
    call: Any
    if kind == "unary":
        call = ch.unary_unary(path + "Unary")(req, metadata=metadata)
    elif kind == "server_stream":
        call = ch.unary_stream(path + "ServerStream")(req, metadata=metadata)
    else:
        method = ch.stream_unary if kind == "client_stream" else ch.stream_stream
        call = method(path + ("ClientStream" if kind == "client_stream" else "Bidi"))(
            metadata=metadata
        )
        if send:
            for r in (req, req):
                await call.write(r)
            await call.done_writing()
    responses: list[bytes] = []
    with contextlib.suppress(grpc.aio.AioRpcError):
        if kind in ("unary", "client_stream"):
            responses.append(await call)
        else:
            responses += [r async for r in call]
    trailers = await call.trailing_metadata()
    return await call.code(), responses, reason_in(trailers)


def reason_in(trailers: Any) -> str:
    for key, value in trailers or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


@pytest.mark.parametrize("kind", KINDS)
async def test_streaming_calls_need_a_key(probe_channel: grpc.aio.Channel, kind: str) -> None:
    code, responses, why = await _run(probe_channel, kind, None, send=False)
    assert (code, responses, why) == (grpc.StatusCode.UNAUTHENTICATED, [], "API_KEY_MISSING")


@pytest.mark.parametrize("kind", KINDS)
async def test_streaming_calls_bind_the_principal(
    probe_channel: grpc.aio.Channel, new_key: NewKey, kind: str
) -> None:
    project, key = await new_key(scopes=("admin",))
    code, got, _ = await _run(probe_channel, kind, md(key))
    assert code == grpc.StatusCode.OK
    assert got and all(r.startswith(project.encode()) for r in got)
    # an unclassified memgrpc method needs admin
    _, reader = await new_key(scopes=("read", "write"), project_id=project)
    code, got, why = await _run(probe_channel, kind, md(reader), send=False)
    assert (code, got, why) == (grpc.StatusCode.PERMISSION_DENIED, [], "SCOPE_MISSING")
