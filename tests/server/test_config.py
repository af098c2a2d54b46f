"""Configuration: flags over env over defaults, and clear errors for bad values."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from memgrpc.cli import _run, main
from memgrpc.config import ConfigError, ServerConfig
from memgrpc.server.app import key_file_path
from memgrpc.server.auth import credentials


def test_defaults() -> None:
    c = ServerConfig.load(env={})
    assert (c.addr, c.data, c.admin_key) == ("127.0.0.1:50051", "./data", None)
    assert c.max_message_bytes == 8 * 1024 * 1024
    assert (c.grace_period_s, c.read_consistency_s, c.maintenance_interval_s) == (10, 0.5, 30)
    assert (c.index_cache_mb, c.metadata_cache_mb) == (1024, 16)
    assert c.prewarm_indexes is True
    assert c.recall_cache_rows == 300_000
    assert ServerConfig.load(env={"MEMGRPC_RECALL_CACHE_ROWS": "0"}).recall_cache_rows == 0
    assert ServerConfig.load(env={"MEMGRPC_PREWARM_INDEXES": "off"}).prewarm_indexes is False
    assert c.event_loop == "auto"
    assert ServerConfig.load(env={"MEMGRPC_EVENT_LOOP": " AsyncIO "}).event_loop == "asyncio"
    assert c.async_recall_deadline_ms == 50
    deadline = {"MEMGRPC_ASYNC_RECALL_DEADLINE_MS": "120"}
    assert ServerConfig.load(env=deadline).async_recall_deadline_ms == 120


def test_flags_win_over_env() -> None:
    env = {
        "MEMGRPC_ADDR": "127.0.0.1:6000",
        "MEMGRPC_DATA": "/tmp/env-data",
        "MEMGRPC_STORAGE_OPTIONS": '{"region": "eu", "allow_http": true, "timeout": 5}',
        "MEMGRPC_GRACE_PERIOD": "3.5",
        "MEMGRPC_LOG_LEVEL": "DEBUG",
        "MEMGRPC_METADATA_CACHE_MB": "32",
    }
    c = ServerConfig.load({"addr": "127.0.0.1:7000", "data": None}, env=env)
    assert c.addr == "127.0.0.1:7000" and c.port == 7000 and c.host == "127.0.0.1"
    assert c.data == "/tmp/env-data"
    assert c.storage_options == {"region": "eu", "allow_http": "true", "timeout": "5"}
    assert c.grace_period_s == 3.5 and c.log_level == "debug"
    assert c.metadata_cache_mb == 32


@pytest.mark.parametrize(
    ("env", "mentions"),
    [
        ({"MEMGRPC_ADDR": "localhost"}, "MEMGRPC_ADDR"),
        ({"MEMGRPC_ADDR": "127.0.0.1:70000"}, "out of range"),
        ({"MEMGRPC_STORAGE_OPTIONS": "{nope"}, "not valid JSON"),
        ({"MEMGRPC_STORAGE_OPTIONS": '{"a": {"b": 1}}'}, "'a'"),
        ({"MEMGRPC_GRACE_PERIOD": "soon"}, "--grace-period"),
        ({"MEMGRPC_READ_CONSISTENCY": "-1"}, "MEMGRPC_READ_CONSISTENCY"),
        ({"MEMGRPC_MAX_MESSAGE_BYTES": "12"}, "MEMGRPC_MAX_MESSAGE_BYTES"),
        ({"MEMGRPC_LOG_LEVEL": "loud"}, "MEMGRPC_LOG_LEVEL"),
        ({"MEMGRPC_EMBEDDER": "magic"}, "MEMGRPC_EMBEDDER"),
        ({"MEMGRPC_ADMIN_KEY": "short"}, "MEMGRPC_ADMIN_KEY"),
        ({"MEMGRPC_INDEX_CACHE_MB": "lots"}, "--index-cache-mb"),
        ({"MEMGRPC_METADATA_CACHE_MB": "0"}, "MEMGRPC_METADATA_CACHE_MB"),
        ({"MEMGRPC_RECALL_CACHE_ROWS": "many"}, "--recall-cache-rows"),
        ({"MEMGRPC_RECALL_CACHE_ROWS": "-1"}, "MEMGRPC_RECALL_CACHE_ROWS"),
        ({"MEMGRPC_PREWARM_INDEXES": "maybe"}, "--prewarm-indexes"),
        ({"MEMGRPC_EVENT_LOOP": "trio"}, "MEMGRPC_EVENT_LOOP"),
        ({"MEMGRPC_ASYNC_RECALL_DEADLINE_MS": "fast"}, "--async-recall-deadline-ms"),
        ({"MEMGRPC_ASYNC_RECALL_DEADLINE_MS": "-5"}, "MEMGRPC_ASYNC_RECALL_DEADLINE_MS"),
    ],
)
def test_invalid_values_name_the_setting(env: dict[str, str], mentions: str) -> None:
    with pytest.raises(ConfigError, match=mentions):
        ServerConfig.load(env=env)


def test_redacted_hides_secrets() -> None:
    c = ServerConfig(admin_key="a" * 20, storage_options={"aws_secret_access_key": "s3cr3t"})
    shown = str(c.redacted())
    assert "a" * 20 not in shown and "s3cr3t" not in shown


def test_key_file_location(tmp_path: Path) -> None:
    assert key_file_path(ServerConfig(data=str(tmp_path))) == tmp_path / "admin.key"
    assert key_file_path(ServerConfig(data=f"file://{tmp_path}")) == tmp_path / "admin.key"
    assert key_file_path(ServerConfig(data="s3://bucket/memgrpc")) == Path("admin.key")


def test_cli_rejects_bad_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--addr", "nope"]) == 2
    assert "--addr" in capsys.readouterr().err


def test_credentials() -> None:
    assert credentials([]) is None
    assert credentials([("x-api-key", "k1"), ("authorization", "Bearer k2")]) == "k1"
    assert credentials([("authorization", "Bearer k2"), ("x-api-key", "k1")]) == "k1"
    assert credentials([("x-api-key", " "), ("authorization", "bearer  k2 ")]) == "k2"
    assert credentials([("authorization", "Basic Zm9v")]) == ""


def test_uvloop_asked_for_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError

    async def never() -> None:
        raise AssertionError("must not run")

    with pytest.raises(ConfigError, match="MEMGRPC_EVENT_LOOP: uvloop is not installed"):
        _run(never(), "uvloop")
    ran: list[str] = []

    async def once() -> None:
        ran.append(type(asyncio.get_running_loop()).__module__)

    _run(once(), "auto")  # without uvloop: asyncio's own loop
    assert ran == ["asyncio.unix_events"]
