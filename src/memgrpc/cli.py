"""`memgrpc` command line. Flags override MEMGRPC_* env vars, which override defaults.

Secrets (MEMGRPC_ADMIN_KEY, MEMGRPC_EMBED_API_KEY, MEMGRPC_MASTER_KEY) are env-only: a flag would show up in `ps`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from memgrpc import __version__
from memgrpc.config import ENV, ConfigError, ServerConfig

# flag -> (setting, help)
_SERVE_FLAGS: dict[str, tuple[str, str]] = {
    "--addr": ("addr", "HOST:PORT to listen on (default 127.0.0.1:50051; port 0 = any free)"),
    "--data": ("data", "data directory or object-store URI such as s3://bucket/path (./data)"),
    "--storage-options": ("storage_options", "JSON object passed to LanceDB storage_options"),
    "--log-level": ("log_level", "debug, info, warning or error (info)"),
    "--embedder": ("embedder", "local (bundled MiniLM, offline) or openai (compatible endpoint)"),
    "--embed-url": ("embed_url", "base URL of the OpenAI-compatible embeddings endpoint"),
    "--embed-model": ("embed_model", "embedding model name"),
    "--max-message-bytes": ("max_message_bytes", "max gRPC message size in bytes (8 MiB)"),
    "--grace-period": ("grace_period_s", "seconds in-flight RPCs get at shutdown (10)"),
    "--read-consistency": ("read_consistency_s", "max staleness of reads across replicas (0.5)"),
    "--maintenance-interval": ("maintenance_interval_s", "seconds between compactions (30)"),
    "--index-cache-mb": ("index_cache_mb", "LanceDB's cache of opened indexes, MiB (1024)"),
    "--metadata-cache-mb": ("metadata_cache_mb", "LanceDB's cache of table metadata, MiB (16)"),
    "--prewarm-indexes": ("prewarm_indexes", "1/0: search indexes into that cache at start (1)"),
    "--recall-cache-rows": ("recall_cache_rows", "memories the recall cache may hold (300000)"),
    "--rate-limit-rps": ("rate_limit_rps", "per-API-key calls/s, per replica (unset = no limit)"),
    "--rate-limit-burst": ("rate_limit_burst", "per-API-key bucket size (2 x rps, at least 1)"),
    "--tls-cert": ("tls_cert", "PEM certificate (chain) of the server; enables TLS with --tls-key"),
    "--tls-key": ("tls_key", "PEM private key of --tls-cert"),
    "--tls-client-ca": ("tls_client_ca", "PEM CA bundle: require client certs it signed (mTLS)"),
    "--metrics-addr": ("metrics_addr", "HOST:PORT of a Prometheus /metrics endpoint (off)"),
    "--chat-provider": ("chat_provider", "LLM provider of chats that name none: local or openai"),
    "--event-loop": ("event_loop", "auto (uvloop where installed), uvloop or asyncio (auto)"),
    "--openai-base-url": ("openai_base_url", "OpenAI-compatible API base URL, e.g. .../v1"),
    "--openai-model": ("openai_model", "default model of the openai provider (gpt-4o-mini)"),
    "--openai-timeout": ("openai_timeout_s", "seconds the openai provider may stay silent (60)"),
    "--extractor": (
        "extractor",
        "fact extraction: rules (offline), llm (the openai endpoint) or none",
    ),
    "--extractor-fallback": ("extractor_fallback", "rules: use it when the llm extractor fails"),
    "--job-stale-after": ("job_stale_after_s", "seconds before a dead replica's job fails (600)"),
    "--provider-base-urls": (
        "provider_base_urls",
        'JSON object of BYOK provider base URLs, e.g. {"openai": "https://proxy/v1"}',
    ),
    "--notify-interval": ("notify_interval_s", "seconds between notification sweeps (60)"),
    "--inactivity-days": ("inactivity_days", "idle days before an inactivity check-in (7)"),
    "--async-recall-deadline-ms": (
        "async_recall_deadline_ms",
        "ms an ASYNC-memory agent's turn waits for recall (50)",
    ),
    "--change-retention": ("change_retention_s", "seconds the change feed keeps changes (7 days)"),
    "--watch-poll": (
        "watch_poll_s",
        "seconds between a watcher's looks for other replicas' changes",
    ),
    "--watch-heartbeat": ("watch_heartbeat_s", "seconds of quiet before a watch heartbeat (15)"),
    "--watch-buffer": ("watch_buffer", "changes a watcher holds for a slow client (1000)"),
    "--watch-stall": ("watch_stall_s", "seconds a full watch buffer waits for its client (30)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memgrpc", description="Self-hosted memory layer for AI apps, served over gRPC."
    )
    parser.add_argument("--version", action="version", version=f"memgrpc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the gRPC server",
        description="Run the gRPC server until SIGTERM/SIGINT.",
        epilog="Secrets come from the environment only: MEMGRPC_ADMIN_KEY (bootstrap key; "
        "generated into <data>/admin.key when unset), MEMGRPC_EMBED_API_KEY, "
        "MEMGRPC_OPENAI_API_KEY.",
    )
    for flag, (setting, help_text) in _SERVE_FLAGS.items():
        serve.add_argument(flag, dest=setting, default=None, help=f"{help_text} [{ENV[setting]}]")
    serve.add_argument(
        "--otel",
        dest="otel",
        action="store_const",
        const=True,
        default=None,
        help=f"OpenTelemetry tracing over OTLP (needs memgrpc[otel]) [{ENV['otel']}=1]",
    )
    from memgrpc import transfer_cli

    transfer_cli.add_commands(commands)
    from memgrpc.mcp import cli as mcp_cli

    mcp_cli.add_command(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from memgrpc import allocators

    allocators.tune()  # before the store's and the embedder's threads start
    from memgrpc.server.app import serve
    from memgrpc.server.logging import configure_logging

    overrides = {setting: getattr(args, setting) for setting, _ in _SERVE_FLAGS.values()}
    overrides["otel"] = args.otel
    try:
        config = ServerConfig.load(overrides)
    except ConfigError as exc:
        print(f"memgrpc: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    try:
        _run(serve(config), config.event_loop)
    except KeyboardInterrupt:  # a signal before the handlers were installed
        return 130
    except ConfigError as exc:  # found at startup, e.g. --otel without the SDK installed
        print(f"memgrpc: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        import structlog

        structlog.get_logger("memgrpc").error("server_failed", error=str(exc), exc_info=True)
        print(f"memgrpc: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """On uvloop unless told otherwise (or not installed: Windows): in A/B runs at 1M memories,
    0.92-0.98x the search p50 and 0.93-0.98x the server's CPU per search of asyncio's own loop."""
    if event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if event_loop == "uvloop":
                main.close()  # never started
                raise ConfigError(f"{ENV['event_loop']}: uvloop is not installed") from None
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command in ("export", "import"):
        from memgrpc import transfer_cli

        return transfer_cli.run(args)
    if args.command == "mcp":
        from memgrpc.mcp import cli as mcp_cli

        return mcp_cli.run(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects others
