"""Server configuration: one frozen value built from CLI flags over env vars over defaults.

Everything is validated here, at startup, so a typo fails with a message naming the setting
instead of surfacing later as an odd runtime error.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

MiB = 1024 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error")
EMBEDDERS = ("local", "openai")
MIN_ADMIN_KEY_CHARS = 16
MAX_RATE = 1_000_000  # bound of MEMGRPC_RATE_LIMIT_RPS and _BURST

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
    "index_cache_mb": "MEMGRPC_INDEX_CACHE_MB",
    "metadata_cache_mb": "MEMGRPC_METADATA_CACHE_MB",
    "prewarm_indexes": "MEMGRPC_PREWARM_INDEXES",
    "recall_cache_rows": "MEMGRPC_RECALL_CACHE_ROWS",
    "rate_limit_rps": "MEMGRPC_RATE_LIMIT_RPS",
    "rate_limit_burst": "MEMGRPC_RATE_LIMIT_BURST",
    "tls_cert": "MEMGRPC_TLS_CERT",
    "tls_key": "MEMGRPC_TLS_KEY",
    "tls_client_ca": "MEMGRPC_TLS_CLIENT_CA",
    "metrics_addr": "MEMGRPC_METRICS_ADDR",
    "otel": "MEMGRPC_OTEL",
    "chat_provider": "MEMGRPC_CHAT_PROVIDER",
    "openai_base_url": "MEMGRPC_OPENAI_BASE_URL",
    "openai_api_key": "MEMGRPC_OPENAI_API_KEY",
    "openai_model": "MEMGRPC_OPENAI_MODEL",
    "openai_timeout_s": "MEMGRPC_OPENAI_TIMEOUT",
    "event_loop": "MEMGRPC_EVENT_LOOP",
    "extractor": "MEMGRPC_EXTRACTOR",
    "extractor_fallback": "MEMGRPC_EXTRACTOR_FALLBACK",
    "job_stale_after_s": "MEMGRPC_JOB_STALE_AFTER",
    "master_key": "MEMGRPC_MASTER_KEY",
    "provider_base_urls": "MEMGRPC_PROVIDER_BASE_URLS",
    "notify_interval_s": "MEMGRPC_NOTIFY_INTERVAL",
    "inactivity_days": "MEMGRPC_INACTIVITY_DAYS",
    "async_recall_deadline_ms": "MEMGRPC_ASYNC_RECALL_DEADLINE_MS",
    "change_retention_s": "MEMGRPC_CHANGE_RETENTION",
    "watch_poll_s": "MEMGRPC_WATCH_POLL",
    "watch_heartbeat_s": "MEMGRPC_WATCH_HEARTBEAT",
    "watch_buffer": "MEMGRPC_WATCH_BUFFER",
    "watch_stall_s": "MEMGRPC_WATCH_STALL",
    "sim_max_runs": "MEMGRPC_SIM_MAX_RUNS",
    "sim_max_run_s": "MEMGRPC_SIM_MAX_RUN",
    "sim_lease_s": "MEMGRPC_SIM_LEASE",
    "sim_heartbeat_s": "MEMGRPC_SIM_HEARTBEAT",
}

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})$")
_SECRET_SETTINGS = frozenset({"admin_key", "embed_api_key", "openai_api_key", "master_key"})
# BYOK providers (all OpenAI-compatible endpoints) and their default base URLs
BYOK_BASE_URLS: Mapping[str, str] = {
    "openai": "https://api.openai.com/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta/openai",
    "xai": "https://api.x.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
}
# the model a BYOK key chats with when it names none
BYOK_MODELS: Mapping[str, str] = {
    "openai": "gpt-4o-mini",
    "gemini": "gemini-2.0-flash",
    "xai": "grok-3-mini",
    "openrouter": "openai/gpt-4o-mini",
}
MASTER_KEY_BYTES = 32
CHAT_PROVIDERS = ("local", "openai")
EXTRACTORS = ("rules", "llm", "none")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")  # auto: uvloop where installed
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


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
    # LanceDB's caches (store/db.py): opened indexes, and manifests/file metadata
    index_cache_mb: int = 1024
    metadata_cache_mb: int = 16
    # load the memories' search indexes into that cache at start and after an index build
    prewarm_indexes: bool = True
    # memories the per-user recall cache may hold in all (core/memory/recall_cache.py), ~3 KiB each
    recall_cache_rows: int = 300_000
    # per-API-key token bucket (server/ratelimit.py); None = no limit, burst None = 2 x rps
    rate_limit_rps: float | None = None
    rate_limit_burst: int | None = None
    # PEM files: TLS when cert+key are set, mutual TLS (client certs required) with a client CA
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # HOST:PORT of the Prometheus endpoint (server/metrics.py); None = off
    metrics_addr: str | None = None
    # OpenTelemetry tracing (server/telemetry.py; needs the `otel` extra)
    otel: bool = False
    # chat (core/chat/turn.py, llm/): the provider a request without one gets, and the
    # OpenAI-compatible endpoint (an API key alone means api.openai.com)
    chat_provider: str = "local"
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str | None = None
    openai_timeout_s: float = 60.0
    # the server's asyncio event loop (cli._run)
    event_loop: str = "auto"
    # fact extraction when sessions are processed (core/intelligence/step.py): rules (offline),
    # llm (the openai provider's endpoint and model; may fall back to rules on failure) or none
    extractor: str = "rules"
    extractor_fallback: str | None = None
    # a processing job whose session stayed PROCESSING this long while no replica ran it (its
    # server died) is failed by the sweeper, so the session can be processed again
    job_stale_after_s: float = 600.0
    # BYOK (core/providers): the AES-256-GCM key provider keys are encrypted with, 32 bytes as
    # 64 hex digits or base64; unset = a key generated into `master.key` next to admin.key
    master_key: str | None = None
    # provider -> base URL, overriding BYOK_BASE_URLS (JSON object, e.g. for a proxy)
    provider_base_urls: Mapping[str, str] = field(default_factory=dict)
    # the agents' proactive notifications (core/agents/engine/notifications.py): how often the
    # background sweep runs their checks, and the idle days before an inactivity check-in
    notify_interval_s: float = 60.0
    inactivity_days: float = 7.0
    # how long a chat turn of an ASYNC-memory agent waits for recall before generating without
    # it (the late result serves the session's next turn; core/chat/turn.py)
    async_recall_deadline_ms: float = 50.0
    # the change feed (core/memory/changes.py): how long changes are kept, how often a watcher
    # looks for other replicas' changes, its heartbeat when idle, and the changes it holds for
    # a client that reads slower than they come, and how long a full buffer waits for a client
    # that stopped reading before its stream ends with WATCH_LAGGING
    change_retention_s: float = 7 * 86400.0
    watch_poll_s: float = 0.5
    watch_heartbeat_s: float = 15.0
    watch_buffer: int = 1000
    watch_stall_s: float = 30.0
    # simulation runs (core/simulation/runs.py): queued or running at once per project, the
    # wall-clock cap of one run, the lease after which a RUNNING run's owner counts as gone,
    # and the idle time after which an event stream sends a heartbeat
    sim_max_runs: int = 2
    sim_max_run_s: float = 900.0
    sim_lease_s: float = 30.0
    sim_heartbeat_s: float = 10.0

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
        if self.event_loop not in EVENT_LOOPS:
            raise ConfigError(
                f"{_label('event_loop')}: {self.event_loop!r} is not one of {EVENT_LOOPS}"
            )
        if not 1024 <= self.max_message_bytes <= 1024 * MiB:
            raise ConfigError(f"{_label('max_message_bytes')}: must be between 1 KiB and 1 GiB")
        for name in ("grace_period_s", "read_consistency_s", "maintenance_interval_s"):
            value = getattr(self, name)
            if not 0 <= value <= 86400:
                raise ConfigError(f"{_label(name)}: must be between 0 and 86400 seconds")
        if self.maintenance_interval_s == 0:
            raise ConfigError(f"{_label('maintenance_interval_s')}: must be > 0")
        for name in ("index_cache_mb", "metadata_cache_mb"):
            if not 1 <= getattr(self, name) <= 1024 * 1024:
                raise ConfigError(f"{_label(name)}: must be between 1 and 1048576 MiB")
        if not 0 <= self.recall_cache_rows <= 100_000_000:
            raise ConfigError(f"{_label('recall_cache_rows')}: must be between 0 and 100000000")
        _check_rate_limit(self.rate_limit_rps, self.rate_limit_burst)
        _check_tls(self.tls_cert, self.tls_key, self.tls_client_ca)
        if self.metrics_addr is not None:
            _check_addr(self.metrics_addr, "metrics_addr")
        if not isinstance(self.otel, bool):
            raise ConfigError(f"{_label('otel')}: must be true or false")
        _check_chat(self)
        _check_extractor(self)
        if self.master_key is not None:
            decode_master_key(self.master_key)
        for name, url in self.provider_base_urls.items():
            if name not in BYOK_BASE_URLS:
                raise ConfigError(
                    f"{_label('provider_base_urls')}: {name!r} is not one of {sorted(BYOK_BASE_URLS)}"
                )
            if not url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"{_label('provider_base_urls')}: {name} must start with http:// or https://"
                )

        if not 0.01 <= self.notify_interval_s <= 86400:
            raise ConfigError(f"{_label('notify_interval_s')}: must be between 0.01 and 86400 s")
        if not 0 < self.inactivity_days <= 3650:
            raise ConfigError(f"{_label('inactivity_days')}: must be between 0 and 3650 days")

    def byok_base_urls(self) -> dict[str, str]:
        return {**BYOK_BASE_URLS, **self.provider_base_urls}

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
    if name == "provider_base_urls":
        return parse_storage_options(value, name)
    if name in ("log_level", "embedder", "event_loop"):
        return value.strip().lower()
    if name == "max_message_bytes":
        try:
            return int(value)
        except ValueError:
            raise ConfigError(
                f"{_label(name)}: {value!r} is not an integer number of bytes"
            ) from None
    if name == "rate_limit_rps":
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{_label(name)}: {value!r} is not a number of requests/s") from None
    if name in ("index_cache_mb", "metadata_cache_mb"):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{_label(name)}: {value!r} is not a whole number of MiB") from None
    if name in ("rate_limit_burst", "recall_cache_rows", "watch_buffer", "sim_max_runs"):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{_label(name)}: {value!r} is not a whole number") from None
    if name in ("chat_provider", "extractor", "extractor_fallback"):
        return value.strip().lower()
    if name in ("otel", "prewarm_indexes"):
        flag = value.strip().lower()
        if flag not in _TRUE + _FALSE:
            raise ConfigError(f"{_label(name)}: {value!r} is not one of 1/0, true/false, yes/no")
        return flag in _TRUE
    if name.endswith("_ms"):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(
                f"{_label(name)}: {value!r} is not a number of milliseconds"
            ) from None
    if name.endswith("_s"):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{_label(name)}: {value!r} is not a number of seconds") from None
    return value


def decode_master_key(text: str) -> bytes:
    """MEMGRPC_MASTER_KEY: 32 bytes as 64 hex digits or as base64 (standard or URL-safe)."""
    raw = text.strip()
    try:
        key = bytes.fromhex(raw) if len(raw) == 2 * MASTER_KEY_BYTES else b""
    except ValueError:
        key = b""
    if not key:
        try:
            key = base64.b64decode(raw.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(
            f"{_label('master_key')}: must be {MASTER_KEY_BYTES} bytes as 64 hex digits or base64 "
            "(e.g. `openssl rand -base64 32`)"
        )
    return key


def parse_storage_options(text: str, setting: str = "storage_options") -> dict[str, str]:
    """JSON object -> str->str dict (LanceDB's storage_options are all strings)."""
    var = _label(setting)
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


def _check_rate_limit(rps: float | None, burst: int | None) -> None:
    if rps is not None and not (
        isinstance(rps, int | float) and math.isfinite(rps) and 0 < rps <= MAX_RATE
    ):
        raise ConfigError(
            f"{_label('rate_limit_rps')}: must be a number of requests/s above 0 and at most "
            f"{MAX_RATE:,} (leave it unset for no limit)"
        )
    if burst is None:
        return
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_RATE:
        raise ConfigError(
            f"{_label('rate_limit_burst')}: must be a whole number from 1 to {MAX_RATE:,}"
        )
    if rps is None:
        raise ConfigError(
            f"{_label('rate_limit_burst')}: needs {ENV['rate_limit_rps']} (the refill rate) too"
        )


def _check_tls(cert: str | None, key: str | None, client_ca: str | None) -> None:
    if (cert is None) != (key is None):
        given, missing = ("tls_cert", "tls_key") if key is None else ("tls_key", "tls_cert")
        raise ConfigError(f"{_label(given)}: needs {_label(missing)} too (both or neither)")
    if client_ca is not None and cert is None:
        raise ConfigError(
            f"{_label('tls_client_ca')}: mutual TLS needs the server's own certificate too "
            f"({_label('tls_cert')} and {_label('tls_key')})"
        )
    for name, path, marker in (
        ("tls_cert", cert, "CERTIFICATE-----"),
        ("tls_key", key, "PRIVATE KEY-----"),
        ("tls_client_ca", client_ca, "CERTIFICATE-----"),
    ):
        if path is None:
            continue
        try:
            with open(path, "rb") as fh:
                head = fh.read(1 << 20)
        except FileNotFoundError:
            raise ConfigError(f"{_label(name)}: {path}: no such file") from None
        except OSError as exc:
            raise ConfigError(f"{_label(name)}: {path}: cannot read ({exc.strerror})") from None
        if marker.encode() not in head:
            raise ConfigError(
                f"{_label(name)}: {path}: not a PEM file with a {marker.rstrip('-')} in it"
            )
        if name == "tls_key" and b"ENCRYPTED" in head:
            raise ConfigError(f"{_label(name)}: {path}: encrypted keys are not supported")
    if cert is None or key is None:
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{_label('tls_cert')} and {_label('tls_key')}: the key does not match the "
            f"certificate, or one of them is invalid ({exc.reason or exc})"
        ) from None
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{_label('tls_client_ca')}: {client_ca}: not a valid CA certificate bundle "
                f"({exc.reason or exc})"
            ) from None


def _check_chat(c: ServerConfig) -> None:
    if c.chat_provider not in CHAT_PROVIDERS:
        raise ConfigError(
            f"{_label('chat_provider')}: {c.chat_provider!r} is not one of {CHAT_PROVIDERS}"
        )
    if c.openai_base_url is not None and not c.openai_base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{_label('openai_base_url')}: must start with http:// or https://")
    if c.chat_provider == "openai" and not (c.openai_base_url or c.openai_api_key):
        raise ConfigError(
            f"{_label('chat_provider')}: openai needs {ENV['openai_base_url']} "
            f"or {ENV['openai_api_key']}"
        )
    if not 0 < c.openai_timeout_s <= 3600:
        raise ConfigError(f"{_label('openai_timeout_s')}: must be above 0 and at most 3600 seconds")


def _check_extractor(c: ServerConfig) -> None:
    if c.extractor not in EXTRACTORS:
        raise ConfigError(f"{_label('extractor')}: {c.extractor!r} is not one of {EXTRACTORS}")
    if c.extractor == "llm" and not c.openai_base_url:
        raise ConfigError(
            f"{_label('extractor')}: llm needs {_label('openai_base_url')} (the "
            "OpenAI-compatible endpoint it asks)"
        )
    if c.extractor_fallback is not None:
        if c.extractor_fallback != "rules":
            raise ConfigError(
                f"{_label('extractor_fallback')}: {c.extractor_fallback!r} is not 'rules'"
            )
        if c.extractor != "llm":
            raise ConfigError(
                f"{_label('extractor_fallback')}: only falls back from {ENV['extractor']}=llm"
            )
    if not 1 <= c.job_stale_after_s <= 7 * 86400:
        raise ConfigError(f"{_label('job_stale_after_s')}: must be between 1 s and 7 days")
    if not 0 <= c.async_recall_deadline_ms <= 60_000:
        raise ConfigError(f"{_label('async_recall_deadline_ms')}: must be between 0 and 60000 ms")
    if not 1 <= c.change_retention_s <= 365 * 86400:
        raise ConfigError(f"{_label('change_retention_s')}: must be between 1 s and 365 days")
    if not 0.01 <= c.watch_poll_s <= 60:
        raise ConfigError(f"{_label('watch_poll_s')}: must be between 0.01 s and 60 s")
    if not 0.05 <= c.watch_heartbeat_s <= 3600:
        raise ConfigError(f"{_label('watch_heartbeat_s')}: must be between 0.05 s and 1 hour")
    if not 0.1 <= c.watch_stall_s <= 3600:
        raise ConfigError(f"{_label('watch_stall_s')}: must be between 0.1 s and 1 hour")
    if isinstance(c.watch_buffer, bool) or not 1 <= c.watch_buffer <= 1_000_000:
        raise ConfigError(f"{_label('watch_buffer')}: must be a whole number from 1 to 1000000")
    if isinstance(c.sim_max_runs, bool) or not 1 <= c.sim_max_runs <= 1000:
        raise ConfigError(f"{_label('sim_max_runs')}: must be between 1 and 1000")
    for name, low, high in (
        ("sim_max_run_s", 1.0, 86400.0),
        ("sim_lease_s", 1.0, 3600.0),
        ("sim_heartbeat_s", 0.05, 3600.0),
    ):
        value = getattr(c, name)
        if not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"{_label(name)}: must be between {low:g} s and {high:g} s")


def _check_addr(addr: str, name: str = "addr") -> None:
    m = _HOST_PORT.match(addr)
    if m is None:
        raise ConfigError(f"{_label(name)}: {addr!r} is not HOST:PORT (e.g. 127.0.0.1:50051)")
    if int(m["port"]) > 65535:
        raise ConfigError(f"{_label(name)}: port {m['port']} is out of range")
