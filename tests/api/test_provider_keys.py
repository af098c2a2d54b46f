"""BYOK provider keys through the real server, checked against a fake OpenAI-compatible server
on loopback: set (validated first), list / activate / test / delete, scopes, isolation, chat and
extraction on the project's key, and the plaintext key in no data file and no log line."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from memgrpc.config import ConfigError, ServerConfig, decode_master_key
from memgrpc.core.providers import load_or_create
from memgrpc.embed import Embedder
from memgrpc.server.app import start
from memgrpc.store.filters import Where
from memgrpc.v1 import admin_pb2 as pb
from memgrpc.v1 import chat_pb2 as cpb
from memgrpc.v1 import chat_pb2_grpc, sessions_pb2_grpc
from memgrpc.v1 import sessions_pb2 as spb
from tests.conftest import NewKey, ServerHandle, make_config
from tests.convhelpers import add, msg, new_session
from tests.helpers import md
from tests.llm.fakellm import FakeLLM
from tests.memhelpers import details

GOOD = "sk-proj-" + secrets.token_urlsafe(24)  # what the fake accepts
SECOND = "sk-two-" + secrets.token_urlsafe(24)
OTHER = "sk-other-" + secrets.token_urlsafe(24)
SERVER_KEY = "sk-server-" + secrets.token_urlsafe(8)


@pytest.fixture(scope="module")
async def fake_llm() -> AsyncIterator[FakeLLM]:
    server = await FakeLLM().start()
    server.keys = {GOOD, SECOND, OTHER, SERVER_KEY}
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, fake_llm: FakeLLM
) -> AsyncIterator[ServerHandle]:
    """Every BYOK provider points at the fake, but xai at a closed port (unreachable); the
    server's own openai provider uses SERVER_KEY; chats default to the local provider."""
    data_dir = tmp_path_factory.mktemp("data")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    urls = {p: fake_llm.base_url for p in ("openai", "gemini", "openrouter")}
    config = make_config(
        data_dir,
        admin_key,
        openai_base_url=fake_llm.base_url,
        openai_api_key=SERVER_KEY,
        openai_model="fast",
        openai_timeout_s=2.0,
        provider_base_urls=urls | {"xai": "http://127.0.0.1:9/v1"},
    )
    running = await start(config, embedder=shared_embedder)
    try:
        yield ServerHandle(running.address, data_dir, admin_key, running.app, running)
    finally:
        await running.stop(1.0)


async def rows(server: ServerHandle, project_id: str) -> int:
    where = Where().eq("project_id", project_id)
    return int(await server.app.store.table("provider_keys").count_rows(str(where)))


async def fails(call: object, code: grpc.StatusCode) -> tuple[set[str], str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == code, err.value.details()
    return details(err.value)


def set_key(api_key: str, provider: str = "openai", **kw: str) -> pb.SetProviderKeyRequest:
    return pb.SetProviderKeyRequest(provider=provider, api_key=api_key, **kw)


async def test_set_list_activate_test_delete(admin_stub, new_key: NewKey, server) -> None:
    project, key = await new_key()
    first = await admin_stub.SetProviderKey(
        set_key(GOOD, default_model="fast", request_id="s1"), metadata=md(key)
    )
    assert first.id.startswith("pvk_") and first.is_active
    assert first.key_prefix == GOOD[:6] and first.provider == "openai"
    assert first.health_status == pb.PROVIDER_KEY_HEALTH_HEALTHY
    assert first.last_check_time.seconds > 0 and first.default_model == "fast"
    second = await admin_stub.SetProviderKey(
        set_key(SECOND, provider="gemini", base_url=""), metadata=md(key)
    )
    assert not second.is_active  # only the first key becomes active by itself

    listed = (
        await admin_stub.ListProviderKeys(pb.ListProviderKeysRequest(), metadata=md(key))
    ).keys
    assert [k.id for k in listed] == [first.id, second.id]
    assert [k.is_active for k in listed] == [True, False]
    for k in listed:
        assert GOOD not in str(k) and SECOND not in str(k)

    made = await admin_stub.SetActiveProviderKey(
        pb.SetActiveProviderKeyRequest(id=second.id), metadata=md(key)
    )
    assert made.is_active
    listed = (
        await admin_stub.ListProviderKeys(pb.ListProviderKeysRequest(), metadata=md(key))
    ).keys
    assert {k.id: k.is_active for k in listed} == {first.id: False, second.id: True}

    tested = await admin_stub.TestProviderKey(
        pb.TestProviderKeyRequest(id=first.id), metadata=md(key)
    )
    assert tested.health_status == pb.PROVIDER_KEY_HEALTH_HEALTHY
    assert tested.last_check_time.ToDatetime() >= first.last_check_time.ToDatetime()

    await admin_stub.DeleteProviderKey(pb.DeleteProviderKeyRequest(id=first.id), metadata=md(key))
    _, reason = await fails(
        admin_stub.TestProviderKey(pb.TestProviderKeyRequest(id=first.id), metadata=md(key)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason == "PROVIDER_KEY_NOT_FOUND"
    assert await rows(server, project) == 1


async def test_a_refused_key_is_not_saved(admin_stub, new_key: NewKey, server, fake_llm) -> None:
    project, key = await new_key()
    _, reason = await fails(
        admin_stub.SetProviderKey(set_key("sk-wrong-" + "x" * 20), metadata=md(key)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason == "PROVIDER_KEY_INVALID"
    assert fake_llm.seen[-1].path.endswith("/models")  # it was asked
    _, reason = await fails(
        admin_stub.SetProviderKey(set_key(GOOD, provider="xai"), metadata=md(key)),
        grpc.StatusCode.UNAVAILABLE,
    )
    assert reason == "PROVIDER_UNREACHABLE"
    assert await rows(server, project) == 0


async def test_a_key_that_stops_working_tests_unhealthy(
    admin_stub, new_key: NewKey, fake_llm: FakeLLM
) -> None:
    _, key = await new_key()
    made = await admin_stub.SetProviderKey(set_key(OTHER), metadata=md(key))
    assert fake_llm.keys is not None
    fake_llm.keys.discard(OTHER)  # revoked at the provider
    try:
        tested = await admin_stub.TestProviderKey(
            pb.TestProviderKeyRequest(id=made.id), metadata=md(key)
        )
    finally:
        fake_llm.keys.add(OTHER)
    assert tested.health_status == pb.PROVIDER_KEY_HEALTH_UNHEALTHY
    assert "401" in tested.last_error and OTHER not in tested.last_error
    listed = (
        await admin_stub.ListProviderKeys(pb.ListProviderKeysRequest(), metadata=md(key))
    ).keys
    assert listed[0].health_status == pb.PROVIDER_KEY_HEALTH_UNHEALTHY


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (set_key(GOOD, provider="anthropic"), {"provider"}),
        (set_key("", provider=""), {"provider", "api_key"}),
        (set_key("sk has spaces"), {"api_key"}),
        (set_key(GOOD, base_url="ftp://x"), {"base_url"}),
        (set_key(GOOD, default_model="a b"), {"default_model"}),
    ],
)
async def test_bad_input_writes_nothing(
    admin_stub, new_key: NewKey, server, request_: pb.SetProviderKeyRequest, fields: set[str]
) -> None:
    project, key = await new_key()
    got, reason = await fails(
        admin_stub.SetProviderKey(request_, metadata=md(key)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert got == fields and reason == "INVALID_ARGUMENT"
    assert await rows(server, project) == 0


async def test_scopes(admin_stub, new_key: NewKey) -> None:
    project, _ = await new_key()
    _, reader = await new_key(scopes=("read", "write"), project_id=project)
    _, admin = await new_key(project_id=project)
    await fails(
        admin_stub.SetProviderKey(set_key(GOOD), metadata=md(reader)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await fails(
        admin_stub.ListProviderKeys(pb.ListProviderKeysRequest(), metadata=md(reader)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # keys with the new scopes, made through the admin API
    made = await admin_stub.CreateApiKey(
        pb.CreateApiKeyRequest(
            project_id=project,
            api_key=pb.ApiKey(name="byok-r", scopes=[pb.API_KEY_SCOPE_BYOK_READ]),
        ),
        metadata=md(admin),
    )
    assert list(made.api_key.scopes) == [pb.API_KEY_SCOPE_BYOK_READ]
    only_read = made.secret
    writer = (
        await admin_stub.CreateApiKey(
            pb.CreateApiKeyRequest(
                project_id=project,
                api_key=pb.ApiKey(name="byok-w", scopes=[pb.API_KEY_SCOPE_BYOK_WRITE]),
            ),
            metadata=md(admin),
        )
    ).secret
    k = await admin_stub.SetProviderKey(set_key(GOOD), metadata=md(writer))
    await fails(
        admin_stub.SetProviderKey(set_key(GOOD), metadata=md(only_read)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await fails(
        admin_stub.DeleteProviderKey(pb.DeleteProviderKeyRequest(id=k.id), metadata=md(only_read)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    listed = await admin_stub.ListProviderKeys(pb.ListProviderKeysRequest(), metadata=md(only_read))
    assert [x.id for x in listed.keys] == [k.id]
    await admin_stub.TestProviderKey(pb.TestProviderKeyRequest(id=k.id), metadata=md(only_read))
    await fails(
        admin_stub.ListProviderKeys(pb.ListProviderKeysRequest(), metadata=md(writer)),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def chat_once(channel: grpc.aio.Channel, key: str, **kw: str) -> list[cpb.ChatEvent]:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    events = [ev async for ev in stub.Chat(cpb.ChatRequest(**kw), metadata=md(key))]  # type: ignore[arg-type]
    assert events[-1].HasField("done"), events[-1]
    return events


def completions(fake: FakeLLM, since: int) -> list[str]:
    """The bearer keys of the chat completions the fake got after `since` requests."""
    return [
        s.headers.get("authorization", "")
        for s in fake.seen[since:]
        if s.path.endswith("/chat/completions")
    ]


async def test_chat_uses_the_projects_key_and_others_do_not(
    admin_stub, new_key: NewKey, channel, fake_llm: FakeLLM
) -> None:
    _, key = await new_key()
    _, other = await new_key()
    k = await admin_stub.SetProviderKey(set_key(GOOD, default_model="fast"), metadata=md(key))

    since = len(fake_llm.seen)
    events = await chat_once(channel, key, user_id="u", message="hello there")
    text = "".join(e.delta.text for e in events if e.HasField("delta"))
    assert text == "Hello from the fake model."
    assert completions(fake_llm, since) == [f"Bearer {GOOD}"]
    assert fake_llm.seen[-1].body["model"] == "fast"

    # another project: its key is NOT_FOUND, not listed, and its chat stays on the server's
    for call in (
        admin_stub.TestProviderKey(pb.TestProviderKeyRequest(id=k.id), metadata=md(other)),
        admin_stub.SetActiveProviderKey(
            pb.SetActiveProviderKeyRequest(id=k.id), metadata=md(other)
        ),
        admin_stub.DeleteProviderKey(pb.DeleteProviderKeyRequest(id=k.id), metadata=md(other)),
    ):
        await fails(call, grpc.StatusCode.NOT_FOUND)
    listed = await admin_stub.ListProviderKeys(pb.ListProviderKeysRequest(), metadata=md(other))
    assert list(listed.keys) == []
    since = len(fake_llm.seen)
    await chat_once(channel, other, user_id="u", message="hello there")  # the local provider
    assert completions(fake_llm, since) == []
    await chat_once(channel, other, user_id="u", message="hello", provider="openai")
    assert completions(fake_llm, since) == [f"Bearer {SERVER_KEY}"]

    # deleting the key: the project falls back to the server's provider at once
    await admin_stub.DeleteProviderKey(pb.DeleteProviderKeyRequest(id=k.id), metadata=md(key))
    since = len(fake_llm.seen)
    await chat_once(channel, key, user_id="u", message="hello again")
    assert completions(fake_llm, since) == []


async def test_activation_switches_the_chat_key(
    admin_stub, new_key: NewKey, channel, fake_llm
) -> None:
    _, key = await new_key()
    await admin_stub.SetProviderKey(set_key(GOOD, default_model="fast"), metadata=md(key))
    two = await admin_stub.SetProviderKey(
        set_key(SECOND, provider="openrouter", default_model="fast"), metadata=md(key)
    )
    await chat_once(channel, key, user_id="u", message="hi")  # caches the first key's provider
    await admin_stub.SetActiveProviderKey(
        pb.SetActiveProviderKeyRequest(id=two.id), metadata=md(key)
    )
    since = len(fake_llm.seen)
    await chat_once(channel, key, user_id="u", message="hi")
    assert completions(fake_llm, since) == [f"Bearer {SECOND}"]


async def test_extraction_uses_the_projects_key(
    admin_stub, new_key: NewKey, channel, fake_llm
) -> None:
    _, key = await new_key()
    await admin_stub.SetProviderKey(set_key(GOOD, default_model="fast"), metadata=md(key))
    sessions = sessions_pb2_grpc.SessionServiceStub(channel)
    s = await sessions.CreateSession(new_session("u"), metadata=md(key))
    await sessions.AddMessages(add(s.id, msg("I live in Oslo.")), metadata=md(key))
    since = len(fake_llm.seen)
    job = await sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=s.id, wait=True), metadata=md(key)
    )
    assert job.state == spb.JOB_STATE_DONE
    asked = [s for s in fake_llm.seen[since:] if s.path.endswith("/chat/completions")]
    assert [a.headers["authorization"] for a in asked] == [f"Bearer {GOOD}"]
    assert "facts" in asked[0].body["messages"][0]["content"]  # the extraction prompt
    # the fake's prose is no JSON: the server's own extractor (rules) took over
    assert job.stats.extractor == "rules" and job.stats.facts_extracted >= 1


async def test_plaintext_in_no_file_and_no_log_line(
    admin_stub,
    new_key: NewKey,
    server: ServerHandle,
    channel,
    fake_llm: FakeLLM,
    capfd: pytest.CaptureFixture[str],
) -> None:
    secret = "sk-proj-" + secrets.token_urlsafe(32)
    assert fake_llm.keys is not None
    fake_llm.keys.add(secret)
    _, key = await new_key()
    made = await admin_stub.SetProviderKey(
        set_key(secret, default_model="fast", request_id="plain-1"), metadata=md(key)
    )
    await admin_stub.TestProviderKey(pb.TestProviderKeyRequest(id=made.id), metadata=md(key))
    await chat_once(channel, key, user_id="u", message="hello")
    assert completions(fake_llm, len(fake_llm.seen) - 1) == [f"Bearer {secret}"]
    await fails(  # a refused key's error does not echo it either
        admin_stub.SetProviderKey(set_key(secret + "x"), metadata=md(key)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )

    logged = capfd.readouterr()
    assert "provider_key_set" in logged.err  # the server's log lines were captured
    for needle in (secret, secret[8:]):
        assert needle not in logged.out and needle not in logged.err
    files = await asyncio.to_thread(data_files, Path(server.data_dir))
    assert files
    for path, data in files.items():
        assert secret.encode() not in data and secret[8:].encode() not in data, path
    # the grep does see what the table stores in the clear
    assert any(made.id.encode() in data for data in files.values())


def data_files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_master_key_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        key = load_or_create(tmp_path / "sub" / "master.key")
    finally:
        os.umask(old)
    path = tmp_path / "sub" / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 32 and load_or_create(path) == key  # read back, not replaced


def test_server_generates_its_master_key_file(server: ServerHandle) -> None:
    path = Path(server.data_dir) / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text().strip())) == 32


def test_master_key_setting_formats() -> None:
    raw = secrets.token_bytes(32)
    assert decode_master_key(raw.hex()) == raw
    assert decode_master_key(base64.b64encode(raw).decode()) == raw
    assert decode_master_key(base64.urlsafe_b64encode(raw).decode()) == raw
    for bad in ("short", base64.b64encode(b"x" * 16).decode(), "zz" * 32):
        with pytest.raises(ConfigError, match="MEMGRPC_MASTER_KEY"):
            ServerConfig(master_key=bad)
    assert ServerConfig(master_key=raw.hex()).redacted()["master_key"] == "***"
