"""The change feed's settings: env vars and flags, with clear errors for bad values."""

from __future__ import annotations

import pytest

from memgrpc.config import ConfigError, ServerConfig


def test_change_feed_settings_from_env() -> None:
    env = {
        "MEMGRPC_CHANGE_RETENTION": "3600",
        "MEMGRPC_WATCH_POLL": "0.2",
        "MEMGRPC_WATCH_HEARTBEAT": "5",
        "MEMGRPC_WATCH_BUFFER": "64",
        "MEMGRPC_WATCH_STALL": "2.5",
    }
    c = ServerConfig.load(env=env)
    assert (c.change_retention_s, c.watch_poll_s, c.watch_heartbeat_s) == (3600.0, 0.2, 5.0)
    assert (c.watch_buffer, c.watch_stall_s) == (64, 2.5)
    d = ServerConfig.load(env={})
    assert (d.change_retention_s, d.watch_buffer) == (7 * 86400.0, 1000)


@pytest.mark.parametrize(
    ("var", "value", "said"),
    [
        ("MEMGRPC_WATCH_BUFFER", "0", "MEMGRPC_WATCH_BUFFER / --watch-buffer"),
        ("MEMGRPC_WATCH_BUFFER", "many", "not a whole number"),
        ("MEMGRPC_CHANGE_RETENTION", "0", "between 1 s and 365 days"),
        ("MEMGRPC_WATCH_POLL", "soon", "not a number of seconds"),
        ("MEMGRPC_WATCH_HEARTBEAT", "0", "--watch-heartbeat"),
        ("MEMGRPC_WATCH_STALL", "0", "--watch-stall"),
    ],
)
def test_bad_change_feed_settings_are_named(var: str, value: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said.replace("/", ".").replace("-", ".")):
        ServerConfig.load(env={var: value})
