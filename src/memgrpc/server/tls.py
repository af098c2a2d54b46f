"""Transport security: TLS with `--tls-cert/--tls-key`, mutual TLS with `--tls-client-ca`.

The files were checked (present, readable, PEM) when the config was built; here they are read
once at startup. With a client CA the server requires a client certificate signed by it and
refuses the handshake otherwise, so only holders of such a certificate can reach any RPC, health
and reflection included. API keys are still required on top: mTLS says which service connects,
the key says which project it acts for.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from memgrpc.config import ServerConfig


def mode(config: ServerConfig) -> str:
    """`off`, `tls` or `mtls` (for the startup log)."""
    if config.tls_cert is None:
        return "off"
    return "mtls" if config.tls_client_ca is not None else "tls"


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """Credentials for `add_secure_port`, or None for plaintext."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    cert = Path(config.tls_cert).read_bytes()
    key = Path(config.tls_key).read_bytes()
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    """Listen on `config.addr` with or without TLS; the port bound (0 = failed)."""
    creds = server_credentials(config)
    if creds is None:
        return int(server.add_insecure_port(config.addr))
    return int(server.add_secure_port(config.addr, creds))
