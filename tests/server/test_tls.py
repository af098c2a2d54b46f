"""TLS and mutual TLS: certificates made here (Python `cryptography`), real servers on loopback,
grpcio clients and the real grpcurl binary."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memgrpc.config import ConfigError, ServerConfig
from memgrpc.embed import Embedder
from memgrpc.server.app import RunningServer, start
from memgrpc.v1 import memory_pb2, memory_pb2_grpc
from tests.conftest import make_config
from tests.helpers import md
from tests.test_grpcurl import grpcurl_path

RPC_TIMEOUT = 10.0


# -- a tiny PKI ----------------------------------------------------------------------------------
@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path
    key_file: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _save(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    issued = Issued(cert, key, directory / f"{stem}.pem", directory / f"{stem}.key")
    issued.cert_file.write_bytes(issued.cert_pem)
    issued.key_file.write_bytes(issued.key_pem)
    return issued


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def make_ca(directory: Path, name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _save(directory, name, cert, key)


def issue(directory: Path, ca: Issued, name: str, *, server: bool) -> Issued:
    """A leaf signed by `ca`: a server cert for 127.0.0.1/localhost, or a client cert."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(name, ca.cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return _save(directory, name, builder.sign(ca.key, hashes.SHA256()), key)


@dataclass
class Pki:
    ca: Issued
    other_ca: Issued  # trusted by nobody here
    server: Issued
    client: Issued
    rogue_client: Issued  # signed by other_ca
    rogue_server: Issued  # signed by other_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, other = make_ca(d, "memgrpc-test-ca"), make_ca(d, "other-ca")
    return Pki(
        ca=ca,
        other_ca=other,
        server=issue(d, ca, "server", server=True),
        client=issue(d, ca, "client", server=False),
        rogue_client=issue(d, other, "rogue-client", server=False),
        rogue_server=issue(d, other, "rogue-server", server=True),
    )


@dataclass
class TlsServer:
    running: RunningServer
    admin_key: str

    @property
    def address(self) -> str:
        return self.running.address


async def _start(tmp: Path, embedder: Embedder, **tls: object) -> TlsServer:
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    running = await start(make_config(tmp, admin_key, **tls), embedder=embedder)
    return TlsServer(running, admin_key)


@pytest.fixture(scope="module")
async def tls_server(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, pki: Pki
) -> AsyncIterator[TlsServer]:
    srv = await _start(
        tmp_path_factory.mktemp("tls"),
        shared_embedder,
        tls_cert=str(pki.server.cert_file),
        tls_key=str(pki.server.key_file),
    )
    try:
        yield srv
    finally:
        await srv.running.stop(1.0)


@pytest.fixture(scope="module")
async def mtls_server(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, pki: Pki
) -> AsyncIterator[TlsServer]:
    srv = await _start(
        tmp_path_factory.mktemp("mtls"),
        shared_embedder,
        tls_cert=str(pki.server.cert_file),
        tls_key=str(pki.server.key_file),
        tls_client_ca=str(pki.ca.cert_file),
    )
    try:
        yield srv
    finally:
        await srv.running.stop(1.0)


# -- grpcio clients ------------------------------------------------------------------------------
def creds(ca: Issued, client: Issued | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.cert_pem)
    return grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem,
        private_key=client.key_pem,
        certificate_chain=client.cert_pem,
    )


async def check_health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=RPC_TIMEOUT
    )
    return int(reply.status)


async def create_and_get(channel: grpc.aio.Channel, key: str) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(channel)
    created = await stub.CreateMemory(
        memory_pb2.CreateMemoryRequest(
            memory=memory_pb2.Memory(user_id="tls", content="Bob keeps his bike in the shed")
        ),
        metadata=md(key),
        timeout=RPC_TIMEOUT,
    )
    got = await stub.GetMemory(
        memory_pb2.GetMemoryRequest(id=created.id), metadata=md(key), timeout=RPC_TIMEOUT
    )
    assert got.content == "Bob keeps his bike in the shed"


async def assert_refused(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await check_health(channel)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


SERVING = health_pb2.HealthCheckResponse.SERVING


async def test_tls_client_succeeds(tls_server: TlsServer, pki: Pki) -> None:
    async with grpc.aio.secure_channel(tls_server.address, creds(pki.ca)) as ch:
        assert await check_health(ch) == SERVING
        await create_and_get(ch, tls_server.admin_key)


async def test_tls_by_hostname(tls_server: TlsServer, pki: Pki) -> None:
    address = f"localhost:{tls_server.running.port}"
    async with grpc.aio.secure_channel(address, creds(pki.ca)) as ch:
        assert await check_health(ch) == SERVING


async def test_plaintext_client_is_refused(tls_server: TlsServer) -> None:
    async with grpc.aio.insecure_channel(tls_server.address) as ch:
        await assert_refused(ch)


async def test_client_trusting_another_ca_is_refused(tls_server: TlsServer, pki: Pki) -> None:
    async with grpc.aio.secure_channel(tls_server.address, creds(pki.other_ca)) as ch:
        await assert_refused(ch)


async def test_mtls_client_with_cert_succeeds(mtls_server: TlsServer, pki: Pki) -> None:
    async with grpc.aio.secure_channel(mtls_server.address, creds(pki.ca, pki.client)) as ch:
        assert await check_health(ch) == SERVING
        await create_and_get(ch, mtls_server.admin_key)


async def test_mtls_client_without_cert_is_refused(mtls_server: TlsServer, pki: Pki) -> None:
    async with grpc.aio.secure_channel(mtls_server.address, creds(pki.ca)) as ch:
        await assert_refused(ch)


async def test_mtls_client_cert_from_another_ca_is_refused(
    mtls_server: TlsServer, pki: Pki
) -> None:
    async with grpc.aio.secure_channel(mtls_server.address, creds(pki.ca, pki.rogue_client)) as ch:
        await assert_refused(ch)


async def test_mtls_still_needs_an_api_key(mtls_server: TlsServer, pki: Pki) -> None:
    async with grpc.aio.secure_channel(mtls_server.address, creds(pki.ca, pki.client)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await memory_pb2_grpc.MemoryServiceStub(ch).ListMemories(
                memory_pb2.ListMemoriesRequest(user_id="tls"), timeout=RPC_TIMEOUT
            )
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_plaintext_client_is_refused_by_mtls(mtls_server: TlsServer) -> None:
    async with grpc.aio.insecure_channel(mtls_server.address) as ch:
        await assert_refused(ch)


# -- grpcurl -------------------------------------------------------------------------------------
async def grpcurl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        grpcurl_path(),
        "-max-time",
        "20",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_grpcurl_with_cacert(tls_server: TlsServer, pki: Pki) -> None:
    ca = str(pki.ca.cert_file)
    code, out, err = await grpcurl("-cacert", ca, tls_server.address, "list")
    assert code == 0, err
    assert "memgrpc.v1.MemoryService" in out.split()
    code, out, err = await grpcurl(
        "-cacert",
        ca,
        "-H",
        f"x-api-key: {tls_server.admin_key}",
        "-d",
        json.dumps({"user_id": "tls"}),
        tls_server.address,
        "memgrpc.v1.MemoryService/ListMemories",
    )
    assert code == 0, err
    json.loads(out)
    # without -cacert grpcurl does not trust the test CA
    code, _, err = await grpcurl(tls_server.address, "list")
    assert code != 0
    assert "certificate" in err.lower()


async def test_grpcurl_with_client_cert(mtls_server: TlsServer, pki: Pki) -> None:
    ca = str(pki.ca.cert_file)
    cert, key = str(pki.client.cert_file), str(pki.client.key_file)
    code, out, err = await grpcurl(
        "-cacert",
        ca,
        "-cert",
        cert,
        "-key",
        key,
        mtls_server.address,
        "grpc.health.v1.Health/Check",
    )
    assert code == 0, err
    assert json.loads(out) == {"status": "SERVING"}
    code, _, err = await grpcurl("-cacert", ca, mtls_server.address, "list")
    assert code != 0, "mTLS server accepted grpcurl without a client certificate"
    rogue = (str(pki.rogue_client.cert_file), str(pki.rogue_client.key_file))
    code, _, err = await grpcurl(
        "-cacert", ca, "-cert", rogue[0], "-key", rogue[1], mtls_server.address, "list"
    )
    assert code != 0, "mTLS server accepted a client certificate of another CA"


# -- configuration -------------------------------------------------------------------------------
def test_config_validation(pki: Pki, tmp_path: Path) -> None:
    cert, key, ca = (str(pki.server.cert_file), str(pki.server.key_file), str(pki.ca.cert_file))
    ok = ServerConfig.load(
        env={"MEMGRPC_TLS_CERT": cert, "MEMGRPC_TLS_KEY": key, "MEMGRPC_TLS_CLIENT_CA": ca}
    )
    assert (ok.tls_cert, ok.tls_key, ok.tls_client_ca) == (cert, key, ca)
    with pytest.raises(ConfigError, match="MEMGRPC_TLS_CERT / --tls-cert: needs MEMGRPC_TLS_KEY"):
        ServerConfig(tls_cert=cert)
    with pytest.raises(ConfigError, match=r"--tls-key: needs .*--tls-cert"):
        ServerConfig(tls_key=key)
    with pytest.raises(ConfigError, match="--tls-client-ca: mutual TLS needs"):
        ServerConfig(tls_client_ca=ca)
    with pytest.raises(ConfigError, match=r"--tls-cert: .*missing.pem: no such file"):
        ServerConfig(tls_cert=str(tmp_path / "missing.pem"), tls_key=key)
    with pytest.raises(ConfigError, match=r"--tls-key: .* not a PEM file with a PRIVATE KEY"):
        ServerConfig(tls_cert=cert, tls_key=cert)
    with pytest.raises(ConfigError, match=r"--tls-client-ca: .* not a PEM file with a CERTIFICATE"):
        ServerConfig(tls_cert=cert, tls_key=key, tls_client_ca=key)
    with pytest.raises(ConfigError, match="the key does not match the certificate"):
        ServerConfig(tls_cert=cert, tls_key=str(pki.client.key_file))
    unreadable = tmp_path / "dir.pem"
    unreadable.mkdir()
    with pytest.raises(ConfigError, match=r"--tls-cert: .*dir.pem: cannot read"):
        ServerConfig(tls_cert=str(unreadable), tls_key=key)


def test_cli_reports_tls_errors(capsys: pytest.CaptureFixture[str], pki: Pki) -> None:
    from memgrpc.cli import main

    assert main(["serve", "--tls-cert", str(pki.server.cert_file)]) == 2
    assert "--tls-key" in capsys.readouterr().err
