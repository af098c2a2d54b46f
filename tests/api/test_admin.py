"""AdminService: projects, the key lifecycle, secrets shown once and hashed at rest, isolation,
and the bootstrap key (configured, or generated into <data>/admin.key)."""

from __future__ import annotations

import asyncio
import io
import json
import stat
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_status import rpc_status

from memgrpc.core.access import hash_secret
from memgrpc.embed import Embedder
from memgrpc.server.app import start
from memgrpc.server.logging import set_stream
from memgrpc.v1 import admin_pb2 as pb
from memgrpc.v1 import admin_pb2_grpc
from tests.conftest import NewKey, ServerHandle, make_config
from tests.helpers import md

Stub = admin_pb2_grpc.AdminServiceStub
READ, WRITE, ADMIN = pb.API_KEY_SCOPE_READ, pb.API_KEY_SCOPE_WRITE, pb.API_KEY_SCOPE_ADMIN
ScopeValue: TypeAlias = pb.ApiKeyScope.ValueType


async def fails(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call  # type: ignore[misc]
    assert exc.value.code() == code, exc.value.details()
    return exc.value


def violations(err: grpc.aio.AioRpcError) -> set[str]:
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(err)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    for d in status.details:
        if d.Is(bad.DESCRIPTOR):
            d.Unpack(bad)
    return {v.field for v in bad.field_violations}


async def create_key(
    stub: Stub,
    key: str,
    project_id: str = "",
    name: str = "k",
    scopes: tuple[ScopeValue, ...] = (READ,),
) -> pb.CreateApiKeyResponse:
    request = pb.CreateApiKeyRequest(
        project_id=project_id, api_key=pb.ApiKey(name=name, scopes=list(scopes))
    )
    resp: pb.CreateApiKeyResponse = await stub.CreateApiKey(request, metadata=md(key))
    return resp


# -- projects -----------------------------------------------------------------------------------
async def test_default_project_exists(admin_stub: Stub, admin_key: str) -> None:
    got = await admin_stub.GetProject(pb.GetProjectRequest(id="default"), metadata=md(admin_key))
    assert got.id == "default" and got.HasField("create_time")


async def test_create_get_list_projects(admin_stub: Stub, admin_key: str) -> None:
    made = [
        await admin_stub.CreateProject(
            pb.CreateProjectRequest(project=pb.Project(display_name=f"p{i}")),
            metadata=md(admin_key),
        )
        for i in range(3)
    ]
    assert all(p.id.startswith("prj_") for p in made)
    got = await admin_stub.GetProject(pb.GetProjectRequest(id=made[1].id), metadata=md(admin_key))
    assert got == made[1]

    seen: list[str] = []
    token = ""
    while True:
        page = await admin_stub.ListProjects(
            pb.ListProjectsRequest(page_size=2, page_token=token), metadata=md(admin_key)
        )
        assert len(page.projects) <= 2
        seen += [p.id for p in page.projects]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == page.total_size
    assert {"default", *(p.id for p in made)} <= set(seen)


async def test_project_idempotent_create(admin_stub: Stub, admin_key: str) -> None:
    request = pb.CreateProjectRequest(project=pb.Project(display_name="once"), request_id="r-1")
    first = await admin_stub.CreateProject(request, metadata=md(admin_key))
    again = await admin_stub.CreateProject(request, metadata=md(admin_key))
    assert first == again


async def test_project_paging_bad_input(admin_stub: Stub, admin_key: str) -> None:
    err = await fails(
        admin_stub.ListProjects(pb.ListProjectsRequest(page_size=-1), metadata=md(admin_key)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert violations(err) == {"page_size"}
    err = await fails(
        admin_stub.ListProjects(
            pb.ListProjectsRequest(page_token="garbage!"), metadata=md(admin_key)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert violations(err) == {"page_token"}


async def test_only_bootstrap_manages_projects(admin_stub: Stub, new_key: NewKey) -> None:
    project, key = await new_key(scopes=("admin",))
    await fails(
        admin_stub.CreateProject(pb.CreateProjectRequest(), metadata=md(key)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await fails(
        admin_stub.ListProjects(pb.ListProjectsRequest(), metadata=md(key)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    own = await admin_stub.GetProject(pb.GetProjectRequest(id=project), metadata=md(key))
    assert own.id == project
    for other in ("default", "prj_doesnotexist"):
        await fails(
            admin_stub.GetProject(pb.GetProjectRequest(id=other), metadata=md(key)),
            grpc.StatusCode.NOT_FOUND,
        )


# -- keys ---------------------------------------------------------------------------------------
async def test_key_lifecycle(admin_stub: Stub, new_key: NewKey) -> None:
    project, admin = await new_key(scopes=("admin",))
    created = await create_key(admin_stub, admin, name="ingest", scopes=(WRITE, READ, WRITE))
    secret, key = created.secret, created.api_key
    assert secret.startswith("mgk_") and len(secret) >= 36
    assert key.id.startswith("key_") and key.project_id == project
    assert key.prefix == secret[:12]
    assert list(key.scopes) == [READ, WRITE]  # canonical order, deduplicated
    assert not key.HasField("revoke_time")

    # the new key works at once
    got = await admin_stub.GetProject(pb.GetProjectRequest(id=project), metadata=md(secret))
    assert got.id == project

    listed = await admin_stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=md(admin))
    assert {k.id for k in listed.api_keys} >= {key.id}
    assert secret.encode() not in listed.SerializeToString()  # never shown again

    renamed = await admin_stub.UpdateApiKey(
        pb.UpdateApiKeyRequest(
            api_key=pb.ApiKey(id=key.id, name="ingest-2"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
        metadata=md(admin),
    )
    assert renamed.name == "ingest-2" and list(renamed.scopes) == [READ, WRITE]
    rescoped = await admin_stub.UpdateApiKey(
        pb.UpdateApiKeyRequest(api_key=pb.ApiKey(id=key.id, scopes=[READ])), metadata=md(admin)
    )
    assert rescoped.name == "ingest-2" and list(rescoped.scopes) == [READ]

    err = await fails(
        admin_stub.UpdateApiKey(
            pb.UpdateApiKeyRequest(
                api_key=pb.ApiKey(id=key.id, prefix="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["prefix"]),
            ),
            metadata=md(admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert violations(err) == {"update_mask.paths[0]"}

    revoked = await admin_stub.RevokeApiKey(pb.RevokeApiKeyRequest(id=key.id), metadata=md(admin))
    assert revoked.HasField("revoke_time")
    again = await admin_stub.RevokeApiKey(pb.RevokeApiKeyRequest(id=key.id), metadata=md(admin))
    assert again.revoke_time == revoked.revoke_time
    await fails(
        admin_stub.GetProject(pb.GetProjectRequest(id=project), metadata=md(secret)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await fails(
        admin_stub.UpdateApiKey(
            pb.UpdateApiKeyRequest(api_key=pb.ApiKey(id=key.id, name="zombie")), metadata=md(admin)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    active = await admin_stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=md(admin))
    assert key.id not in {k.id for k in active.api_keys}
    every = await admin_stub.ListApiKeys(
        pb.ListApiKeysRequest(include_revoked=True), metadata=md(admin)
    )
    assert key.id in {k.id for k in every.api_keys}
    assert every.total_size == active.total_size + 1


async def test_key_paging(admin_stub: Stub, new_key: NewKey) -> None:
    _, admin = await new_key(scopes=("admin",))
    made = {(await create_key(admin_stub, admin, name=f"k{i}")).api_key.id for i in range(5)}
    seen: list[str] = []
    token = ""
    while True:
        page = await admin_stub.ListApiKeys(
            pb.ListApiKeysRequest(page_size=2, page_token=token), metadata=md(admin)
        )
        seen += [k.id for k in page.api_keys]
        assert page.total_size == 6
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 6 and made <= set(seen)
    # a token is bound to its query
    first = await admin_stub.ListApiKeys(pb.ListApiKeysRequest(page_size=2), metadata=md(admin))
    await fails(
        admin_stub.ListApiKeys(
            pb.ListApiKeysRequest(page_token=first.next_page_token, include_revoked=True),
            metadata=md(admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_key_validation(admin_stub: Stub, admin_key: str) -> None:
    cases = [
        (pb.ApiKey(name="ok"), {"api_key.scopes"}),
        (pb.ApiKey(name="ok", scopes=[READ, ScopeValue(7)]), {"api_key.scopes[1]"}),
        (pb.ApiKey(name="bad\x00name", scopes=[READ]), {"api_key.name"}),
        (pb.ApiKey(name="n" * 201, scopes=[READ]), {"api_key.name"}),
    ]
    for api_key, fields in cases:
        err = await fails(
            admin_stub.CreateApiKey(
                pb.CreateApiKeyRequest(api_key=api_key), metadata=md(admin_key)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert violations(err) == fields
    err = await fails(
        admin_stub.UpdateApiKey(
            pb.UpdateApiKeyRequest(api_key=pb.ApiKey()), metadata=md(admin_key)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert violations(err) == {"api_key"}
    err = await fails(
        admin_stub.RevokeApiKey(pb.RevokeApiKeyRequest(id=""), metadata=md(admin_key)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert violations(err) == {"id"}


async def test_retry_returns_the_same_key_and_secret(admin_stub: Stub, new_key: NewKey) -> None:
    _, admin = await new_key(scopes=("admin",))
    request = pb.CreateApiKeyRequest(
        api_key=pb.ApiKey(name="retry", scopes=[READ]), request_id="create-key-1"
    )
    first = await admin_stub.CreateApiKey(request, metadata=md(admin))
    again = await admin_stub.CreateApiKey(request, metadata=md(admin))
    assert first == again
    listed = await admin_stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=md(admin))
    assert [k.name for k in listed.api_keys].count("retry") == 1


async def test_secrets_are_hashed_at_rest(
    admin_stub: Stub, new_key: NewKey, server: ServerHandle, admin_key: str
) -> None:
    _, admin = await new_key(scopes=("admin",))
    secrets = [
        (await create_key(admin_stub, admin, name="plain")).secret,
        (
            await admin_stub.CreateApiKey(
                pb.CreateApiKeyRequest(api_key=pb.ApiKey(scopes=[READ]), request_id="hashed-1"),
                metadata=md(admin),
            )
        ).secret,
        admin,
        admin_key,
    ]
    data_dir: Path = server.data_dir

    def read_all() -> list[bytes]:
        return [p.read_bytes() for p in data_dir.rglob("*") if p.is_file()]

    blobs = await asyncio.to_thread(read_all)
    assert blobs
    for secret in secrets:
        assert not any(secret.encode() in b for b in blobs), "a secret is stored in clear"
    # what is stored is the sha256 (sanity check that we grepped the right files)
    assert any(hash_secret(admin).encode() in b for b in blobs)


async def test_keys_are_isolated_between_projects(
    admin_stub: Stub, new_key: NewKey, admin_key: str
) -> None:
    project_a, admin_a = await new_key(scopes=("admin",))
    project_b, admin_b = await new_key(scopes=("admin",))
    key_b = (await create_key(admin_stub, admin_b, name="b-key")).api_key

    listed_a = await admin_stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=md(admin_a))
    assert {k.project_id for k in listed_a.api_keys} == {project_a}
    not_found = grpc.StatusCode.NOT_FOUND
    calls = [
        admin_stub.RevokeApiKey(pb.RevokeApiKeyRequest(id=key_b.id), metadata=md(admin_a)),
        admin_stub.UpdateApiKey(
            pb.UpdateApiKeyRequest(api_key=pb.ApiKey(id=key_b.id, name="mine")),
            metadata=md(admin_a),
        ),
        admin_stub.ListApiKeys(pb.ListApiKeysRequest(project_id=project_b), metadata=md(admin_a)),
        admin_stub.CreateApiKey(
            pb.CreateApiKeyRequest(project_id=project_b, api_key=pb.ApiKey(scopes=[ADMIN])),
            metadata=md(admin_a),
        ),
    ]
    for call in calls:
        await fails(call, not_found)

    # the bootstrap key manages any project's keys
    listed_b = await admin_stub.ListApiKeys(
        pb.ListApiKeysRequest(project_id=project_b), metadata=md(admin_key)
    )
    assert key_b.id in {k.id for k in listed_b.api_keys}
    renamed = await admin_stub.UpdateApiKey(
        pb.UpdateApiKeyRequest(api_key=pb.ApiKey(id=key_b.id, name="by-root")),
        metadata=md(admin_key),
    )
    assert renamed.name == "by-root"
    await fails(
        admin_stub.ListApiKeys(
            pb.ListApiKeysRequest(project_id="prj_nope"), metadata=md(admin_key)
        ),
        not_found,
    )


async def test_bootstrap_key_is_protected(admin_stub: Stub, admin_key: str) -> None:
    listed = await admin_stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=md(admin_key))
    (boot,) = [k for k in listed.api_keys if k.name == "bootstrap"]
    await fails(
        admin_stub.RevokeApiKey(pb.RevokeApiKeyRequest(id=boot.id), metadata=md(admin_key)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    await fails(
        admin_stub.UpdateApiKey(
            pb.UpdateApiKeyRequest(api_key=pb.ApiKey(id=boot.id, scopes=[READ])),
            metadata=md(admin_key),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


# -- bootstrap key ------------------------------------------------------------------------------
async def _default_project(address: str, key: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(address) as ch:
        try:
            await Stub(ch).GetProject(pb.GetProjectRequest(id="default"), metadata=md(key))
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def test_bootstrap_key_generated_kept_and_replaced(
    tmp_path: Path, shared_embedder: Embedder
) -> None:
    data = tmp_path / "data"
    logs = io.StringIO()
    previous = set_stream(logs)
    try:
        running = await start(make_config(data, None), embedder=shared_embedder)
        await running.stop(0)
        key_file = data / "admin.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        generated = key_file.read_text().strip()
        assert generated.startswith("mgk_")

        # a restart keeps it (and does not log a new one)
        running = await start(make_config(data, None), embedder=shared_embedder)
        assert await _default_project(running.address, generated) == grpc.StatusCode.OK
        await running.stop(0)
        assert key_file.read_text().strip() == generated

        # MEMGRPC_ADMIN_KEY set: it becomes the bootstrap key, the generated one is revoked
        configured = "configured-admin-key-0123456789"
        running = await start(make_config(data, configured), embedder=shared_embedder)
        assert await _default_project(running.address, configured) == grpc.StatusCode.OK
        assert await _default_project(running.address, generated) == grpc.StatusCode.UNAUTHENTICATED
        await running.stop(0)
    finally:
        set_stream(previous)
    events = [json.loads(line) for line in logs.getvalue().splitlines()]
    generated_events = [e for e in events if e["event"] == "bootstrap_key_generated"]
    assert len(generated_events) == 1 and generated_events[0]["level"] == "warning"
    assert generated_events[0]["secret"] == generated
    assert sum(e["event"] == "bootstrap_key_kept" for e in events) == 1
