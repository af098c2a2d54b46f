"""Chat settings: env and flags, validation at startup, the API key kept out of logs."""

from __future__ import annotations

import pytest

from memgrpc.cli import build_parser
from memgrpc.config import ConfigError, ServerConfig


def test_defaults_and_env() -> None:
    c = ServerConfig.load(env={})
    assert (c.chat_provider, c.openai_base_url, c.openai_timeout_s) == ("local", None, 60.0)
    c = ServerConfig.load(
        env={
            "MEMGRPC_CHAT_PROVIDER": "OpenAI",
            "MEMGRPC_OPENAI_BASE_URL": "http://127.0.0.1:11434/v1",
            "MEMGRPC_OPENAI_API_KEY": "sk-secret",
            "MEMGRPC_OPENAI_MODEL": "llama3.2",
            "MEMGRPC_OPENAI_TIMEOUT": "5",
        }
    )
    assert c.chat_provider == "openai" and c.openai_model == "llama3.2"
    assert c.openai_timeout_s == 5.0
    assert c.redacted()["openai_api_key"] == "***"


@pytest.mark.parametrize(
    ("settings", "mentions"),
    [
        ({"chat_provider": "claude"}, "MEMGRPC_CHAT_PROVIDER"),
        ({"chat_provider": "openai"}, "MEMGRPC_OPENAI_BASE_URL"),
        ({"openai_base_url": "127.0.0.1:8000"}, "http"),
        ({"openai_timeout_s": 0}, "MEMGRPC_OPENAI_TIMEOUT"),
    ],
)
def test_bad_settings(settings: dict[str, object], mentions: str) -> None:
    with pytest.raises(ConfigError, match=mentions):
        ServerConfig(**settings)  # type: ignore[arg-type]


def test_flags_but_no_key_flag() -> None:
    args = build_parser().parse_args(
        ["serve", "--chat-provider", "openai", "--openai-base-url", "http://h/v1"]
    )
    assert (args.chat_provider, args.openai_base_url) == ("openai", "http://h/v1")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--openai-api-key", "sk"])
