"""client.admin (projects, keys) and the typed exception mapping against the real server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import grpc
import pytest

from memgrpc.client import (
    AsyncMemgrpcClient,
    AuthenticationError,
    ConflictError,
    FailedPreconditionError,
    InvalidArgumentError,
    MemgrpcClient,
    MemgrpcError,
    NotFoundError,
    PermissionDeniedError,
    TimeoutError,
    UnavailableError,
)
from tests.conftest import NewKey, ServerHandle

MakeClient = Callable[..., MemgrpcClient]


async def test_admin_projects_and_keys_sync(make_client: MakeClient, admin_key: str) -> None:
    def body() -> None:
        with make_client(admin_key) as admin:
            project = admin.admin.projects.create(display_name="my app")
            assert project["id"].startswith("prj_") and project["display_name"] == "my app"
            assert admin.admin.projects.get(project["id"]) == project
            assert project["id"] in {p["id"] for p in admin.admin.projects.list()["projects"]}

            created = admin.admin.keys.create(
                {"name": "backend", "scopes": ["read", "write"]}, project_id=project["id"]
            )
            secret, api_key = created["secret"], created["api_key"]
            assert secret and api_key["scopes"] == ["read", "write"]
            assert api_key["project_id"] == project["id"] and api_key["revoke_time"] is None

        with make_client(secret) as app:
            app.memory.create(user_id="u", content="hello")
            with pytest.raises(PermissionDeniedError) as denied:
                app.admin.keys.list()
            assert denied.value.reason == "SCOPE_MISSING"

        with make_client(admin_key) as admin:
            keys = admin.admin.keys.list(project_id=project["id"])["api_keys"]
            assert [k["id"] for k in keys] == [api_key["id"]]
            renamed = admin.admin.keys.update(api_key["id"], name="backend-2")
            assert renamed["name"] == "backend-2" and renamed["scopes"] == ["read", "write"]
            rescoped = admin.admin.keys.update(api_key["id"], {"scopes": ["read"]})
            assert rescoped["scopes"] == ["read"] and rescoped["name"] == "backend-2"
            revoked = admin.admin.keys.revoke(api_key["id"])
            assert revoked["revoke_time"] is not None
            with pytest.raises(FailedPreconditionError) as failed:
                admin.admin.keys.update(api_key["id"], name="again")
            assert failed.value.reason == "API_KEY_REVOKED" and failed.value.request_id
            assert admin.admin.keys.list(project_id=project["id"])["api_keys"] == []
            listed = admin.admin.keys.list(project_id=project["id"], include_revoked=True)
            assert len(listed["api_keys"]) == 1

        time.sleep(0.6)  # the server caches authentication for read_consistency_s (0.5 s)
        with make_client(secret) as app, pytest.raises(AuthenticationError) as info:
            app.memory.list()
        assert info.value.reason == "API_KEY_REVOKED"

    await asyncio.to_thread(body)


async def test_admin_async(server: ServerHandle, admin_key: str) -> None:
    async with AsyncMemgrpcClient(server.address, api_key=admin_key) as admin:
        project = await admin.admin.projects.create({"display_name": "async"})
        assert (await admin.admin.projects.get(project["id"]))["display_name"] == "async"
        assert (await admin.admin.projects.list(page_size=1))["projects"]
        created = await admin.admin.keys.create(
            name="k", scopes=["admin"], project_id=project["id"]
        )
        key_id = created["api_key"]["id"]
        assert (await admin.admin.keys.update(key_id, name="k2"))["name"] == "k2"
        keys = await admin.admin.keys.list({"project_id": project["id"]})
        assert [k["name"] for k in keys["api_keys"]] == ["k2"]
        assert (await admin.admin.keys.revoke(key_id))["revoke_time"]


async def test_error_mapping_sync(make_client: MakeClient, new_key: NewKey) -> None:
    _, key = await new_key()
    _, read_only = await new_key(scopes=("read",))
    server_loop = asyncio.get_running_loop()

    def stall_server(seconds: float) -> None:
        """Block the in-process server's loop, so a call's deadline passes before any reply.

        A 1 us deadline alone raced: on a busy machine the reply could beat gRPC's timer."""
        stalled = threading.Event()

        def block() -> None:
            stalled.set()
            time.sleep(seconds)

        server_loop.call_soon_threadsafe(block)
        assert stalled.wait(5)

    def body() -> None:
        with make_client(key) as client:
            with pytest.raises(NotFoundError) as nf:
                client.memory.get("mem_01h0000000000000000000000")
            err = nf.value
            assert err.status == grpc.StatusCode.NOT_FOUND and err.code == 5
            assert err.reason == "MEMORY_NOT_FOUND" and err.domain == "memgrpc"
            assert err.request_id and len(err.request_id) == 32
            assert err.details[0]["@type"].endswith("google.rpc.ErrorInfo")
            assert "NOT_FOUND" in str(err) and err.request_id in str(err)

            traced = client.with_options(metadata={"X-Request-Id": "trace-42"})
            with pytest.raises(NotFoundError) as nf2:
                traced.memory.get("mem_01h0000000000000000000000")
            assert nf2.value.request_id == "trace-42"

            with pytest.raises(InvalidArgumentError) as bad:
                client.memory.create({"user_id": "", "content": ""})
            fields = {v["field"] for v in bad.value.field_violations}
            assert {"memory.user_id", "memory.content"} <= fields
            assert all(v["description"] for v in bad.value.field_violations)
            assert bad.value.request_id and bad.value.reason

            client.users.create("taken")
            with pytest.raises(ConflictError) as conflict:
                client.users.create("taken")
            assert conflict.value.status == grpc.StatusCode.ALREADY_EXISTS

            session = client.sessions.create(user_id="taken")
            session.process(wait=True)
            with pytest.raises(FailedPreconditionError) as pre:
                session.process(wait=True)
            assert pre.value.reason == "SESSION_PROCESSED" and pre.value.request_id

            stall_server(0.5)
            with pytest.raises(TimeoutError) as late:
                client.with_options(timeout=0.1).memory.list()
            assert late.value.status == grpc.StatusCode.DEADLINE_EXCEEDED
            assert isinstance(late.value, MemgrpcError)

        with (
            make_client("mgk_not_a_real_key") as stranger,
            pytest.raises(AuthenticationError) as auth,
        ):
            stranger.memory.list()
        assert auth.value.reason == "API_KEY_INVALID" and auth.value.request_id

        with make_client(read_only) as reader, pytest.raises(PermissionDeniedError) as perm:
            reader.memory.create(user_id="u", content="x")
        assert perm.value.reason == "SCOPE_MISSING"

    await asyncio.to_thread(body)


async def test_api_key_from_env_and_missing(
    server: ServerHandle, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMGRPC_API_KEY", key)
    async with AsyncMemgrpcClient(server.address) as client:
        assert (await client.memory.list())["memories"] == []
    monkeypatch.delenv("MEMGRPC_API_KEY")
    async with AsyncMemgrpcClient(server.address) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.memory.list()
        assert info.value.reason == "API_KEY_MISSING"
        assert (await client.health())["status"] == "serving"  # no key needed


async def test_error_mapping_async(aclient: AsyncMemgrpcClient) -> None:
    with pytest.raises(NotFoundError) as nf:
        await aclient.sessions.get("ses_01h0000000000000000000000")
    assert nf.value.request_id and nf.value.reason
    with pytest.raises(InvalidArgumentError) as bad:
        await aclient.memory.create(user_id="u", content="")
    assert [v["field"] for v in bad.value.field_violations] == ["memory.content"]


async def test_unreachable_server_is_unavailable_after_retries() -> None:
    started = time.monotonic()
    client = AsyncMemgrpcClient(
        "127.0.0.1:1", api_key="k", max_retries=2, initial_backoff=0.01, max_backoff=0.02
    )
    async with client:
        with pytest.raises(UnavailableError) as info:
            await client.memory.list()
    assert info.value.status == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 5
