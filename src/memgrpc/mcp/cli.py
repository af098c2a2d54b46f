"""`memgrpc mcp`: the command line of the MCP server (flags as `memgrpc export`'s)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

DEFAULT_ADDR = "127.0.0.1:50051"
API_KEY_ENV = "MEMGRPC_API_KEY"


class UsageError(Exception):
    """Exit code 2: a problem with the command line or the environment."""


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "mcp",
        help="serve memgrpc's memory to agents over MCP (stdio or Streamable HTTP)",
        description="A Model Context Protocol server whose tools (remember, recall, "
        "get_context, forget, add_messages, get_profile) call a memgrpc server. Speaks MCP on "
        "stdin/stdout unless --http is given.",
        epilog=f"stdio: the API key comes from ${API_KEY_ENV} only (a flag would show in ps). "
        "--http: each request's 'Authorization: Bearer <key>' is the memgrpc API key its "
        "calls use; requests without a key memgrpc accepts get 401.",
    )
    p.add_argument(
        "--addr",
        default=DEFAULT_ADDR,
        help=f"memgrpc server HOST:PORT ({DEFAULT_ADDR}); https://HOST:PORT means TLS",
    )
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        default=None,
        help="serve Streamable HTTP at http://HOST:PORT/mcp instead of stdio",
    )
    p.add_argument("--tls", action="store_true", help="connect with TLS (the system's CAs)")
    p.add_argument(
        "--tls-ca", metavar="PEM", help="CA bundle that signed the server certificate (implies TLS)"
    )
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate chain, for mutual TLS")
    p.add_argument("--tls-key", metavar="PEM", help="client private key, for mutual TLS")
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds each memgrpc call may take (30)"
    )


def _pem(path: str | None, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror or exc}") from None


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"--http {value}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def run(args: argparse.Namespace) -> int:
    from memgrpc.client import AsyncMemgrpcClient
    from memgrpc.mcp import server

    try:
        if (args.tls_cert is None) != (args.tls_key is None):
            raise UsageError("--tls-cert and --tls-key go together")
        listen = _host_port(args.http) if args.http else None
        key = os.environ.get(API_KEY_ENV, "")
        if listen is None and not key:
            raise UsageError(f"no API key: set {API_KEY_ENV}")
        try:
            # over HTTP the key is each request's bearer token, never the environment's
            client = AsyncMemgrpcClient(
                args.addr,
                api_key=key if listen is None else "",
                timeout=args.timeout,
                tls=args.tls,
                root_certificates=_pem(args.tls_ca, "--tls-ca"),
                private_key=_pem(args.tls_key, "--tls-key"),
                certificate_chain=_pem(args.tls_cert, "--tls-cert"),
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    except UsageError as exc:
        print(f"memgrpc mcp: {exc}", file=sys.stderr)
        return 2
    try:
        if listen is None:
            asyncio.run(server.run_stdio(client))
        else:
            asyncio.run(server.run_http(client, *listen))
    except KeyboardInterrupt:
        return 130
    return 0
