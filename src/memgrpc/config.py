"""Server configuration: one frozen value built from CLI flags over env vars over defaults.

Everything is validated here, at startup, so a typo fails with a message naming the setting
instead of surfacing later as an odd runtime error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

MiB = 1024 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error")
EMBEDDERS = ("local", "openai")
MIN_ADMIN_KEY_CHARS = 16

# setting name -> environment variable
ENV: Mapping[str, str] = {
    "addr": "MEMGRPC_ADDR",
    "data": "MEMGRPC_DATA",
    "storage_options": "MEMGRPC_STORAGE_OPTIONS",
    "admin_key": "MEMGRPC_ADMIN_KEY",
    "log_level": "MEMGRPC_LOG_LEVEL",
    "embedder": "MEMGRPC_EMBEDDER",
    "embed_url": "MEMGRPC_EMBED_URL",
    "embed_api_key": "MEMGRPC_EMBED_API_KEY",
    "embed_model": "MEMGRPC_EMBED_MODEL",
    "max_message_bytes": "MEMGRPC_MAX_MESSAGE_BYTES",
    "grace_period_s": "MEMGRPC_GRACE_PERIOD",
    "read_consistency_s": "MEMGRPC_READ_CONSISTENCY",
    "maintenance_interval_s": "MEMGRPC_MAINTENANCE_INTERVAL",
}

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})$")
_SECRET_SETTINGS = frozenset({"admin_key", "embed_api_key"})


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the flag/env var and what is wrong."""


@dataclass(frozen=True)
class ServerConfig:
    addr: str = "127.0.0.1:50051"
    data: str = "./data"
    storage_options: Mapping[str, str] = field(default_factory=dict)
    admin_key: str | None = None
    log_level: str = "info"
    embedder: str = "local"
    embed_url: str | None = None
    embed_api_key: str | None = None
    embed_model: str | None = None
    max_message_bytes: int = 8 * MiB
    grace_period_s: float = 10.0
    read_consistency_s: float = 0.5
    maintenance_interval_s: float = 30.0

    def __post_init__(self) -> None:
        _check_addr(self.addr)
        if not self.data.strip():
            raise ConfigError(f"{_label('data')}: must not be empty")
        if self.admin_key is not None and (
            len(self.admin_key) < MIN_ADMIN_KEY_CHARS or any(c.isspace() for c in self.admin_key)
        ):
            raise ConfigError(
                f"{_label('admin_key')}: must be at least {MIN_ADMIN_KEY_CHARS} characters "
                "without whitespace"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"{_label('log_level')}: {self.log_level!r} is not one of {LOG_LEVELS}"
            )
        if self.embedder not in EMBEDDERS:
            raise ConfigError(f"{_label('embedder')}: {self.embedder!r} is not one of {EMBEDDERS}")
        if not 1024 <= self.max_message_bytes <= 1024 * MiB:
            raise ConfigError(f"{_label('max_message_bytes')}: must be between 1 KiB and 1 GiB")
        for name in ("grace_period_s", "read_consistency_s", "maintenance_interval_s"):
            value = getattr(self, name)
            if not 0 <= value <= 86400:
                raise ConfigError(f"{_label(name)}: must be between 0 and 86400 seconds")
        if self.maintenance_interval_s == 0:
            raise ConfigError(f"{_label('maintenance_interval_s')}: must be > 0")

    @property
    def host(self) -> str:
        return self.addr.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    @property
    def is_local_data(self) -> bool:
        """True when `data` is a directory on this machine (not s3://, gs://, az://, ...)."""
        return "://" not in self.data or self.data.startswith("file://")

    @property
    def local_data_path(self) -> str | None:
        if not self.is_local_data:
            return None
        return self.data.removeprefix("file://")

    def redacted(self) -> dict[str, Any]:
        """The settings for a startup log line, secrets masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_SETTINGS and value:
                value = "***"
            elif f.name == "storage_options":
                value = sorted(value)  # keys only: values are often credentials
            out[f.name] = value
        return out

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> ServerConfig:
        """Flags (`overrides`, None = not given) win over env vars, which win over defaults."""
        env = os.environ if env is None else env
        raw: dict[str, Any] = {}
        for name, var in ENV.items():
            value = env.get(var)
            if value is not None and value != "":
                raw[name] = value
        for name, value in (overrides or {}).items():
            if name not in ENV:
                raise ConfigError(f"unknown setting {name!r}")
            if value is not None:
                raw[name] = value
        return cls(**{name: _parse(name, value) for name, value in raw.items()})


def _label(name: str) -> str:
    """How a setting is named in messages: its env var, plus its flag when it has one."""
    if name in _SECRET_SETTINGS:
        return ENV[name]
    return f"{ENV[name]} / --{name.removesuffix('_s').replace('_', '-')}"


def _parse(name: str, value: Any) -> Any:
    """Turn a string (env or flag) into the setting's type; non-strings pass through."""
    if not isinstance(value, str):
        return value
    if name == "storage_options":
        return parse_storage_options(value)
    if name in ("log_level", "embedder"):
        return value.strip().lower()
    if name == "max_message_bytes":
        try:
            return int(value)
        except ValueError:
            raise ConfigError(
                f"{_label(name)}: {value!r} is not an integer number of bytes"
            ) from None
    if name.endswith("_s"):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{_label(name)}: {value!r} is not a number of seconds") from None
    return value


def parse_storage_options(text: str) -> dict[str, str]:
    """JSON object -> str->str dict (LanceDB's storage_options are all strings)."""
    var = _label("storage_options")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{var}: not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{var}: must be a JSON object of string values")
    out: dict[str, str] = {}
    for key, value in obj.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[key] = str(value)
        else:
            raise ConfigError(f"{var}: value of {key!r} must be a string, number or boolean")
    return out


def _check_addr(addr: str) -> None:
    m = _HOST_PORT.match(addr)
    if m is None:
        raise ConfigError(f"{_label('addr')}: {addr!r} is not HOST:PORT (e.g. 127.0.0.1:50051)")
    if int(m["port"]) > 65535:
        raise ConfigError(f"{_label('addr')}: port {m['port']} is out of range")
