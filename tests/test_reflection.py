"""Reflection under v1 and v1alpha, with the google.rpc error detail types resolvable.

Generic clients (buf curl, grpcurl, Postman) try `grpc.reflection.v1` first; error details are
`Any`s that such a client decodes only if reflection knows their types.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2 as refl

from memgrpc.server.reflection import DETAIL_TYPES, V1_SERVICE, V1ALPHA_SERVICE
from tests.conftest import ServerHandle
from tests.test_grpcurl import grpcurl


def _buf() -> str:
    found = Path(sys.executable).parent / "buf"
    if not found.exists():
        pytest.fail("buf not installed in the venv (make setup)")
    return str(found)


async def _run(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


Request = refl.ServerReflectionRequest
Response = refl.ServerReflectionResponse


async def _ask(address: str, service: str, *requests: Request) -> list[Response]:
    """One reflection stream on `service` (v1 and v1alpha share the wire format)."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=refl.ServerReflectionRequest.SerializeToString,
            response_deserializer=refl.ServerReflectionResponse.FromString,
        )
        return [r async for r in call(iter(requests), timeout=10)]


@pytest.mark.parametrize("service", [V1_SERVICE, V1ALPHA_SERVICE])
async def test_both_protocols_list_and_resolve_error_details(
    server: ServerHandle, service: str
) -> None:
    requests = [refl.ServerReflectionRequest(list_services="*")]
    requests += [refl.ServerReflectionRequest(file_containing_symbol=t) for t in DETAIL_TYPES]
    listed, *files = await _ask(server.address, service, *requests)
    names = {s.name for s in listed.list_services_response.service}
    assert {V1_SERVICE, V1ALPHA_SERVICE, "memgrpc.v1.MemoryService"} <= names
    for symbol, resp in zip(DETAIL_TYPES, files, strict=True):
        assert resp.HasField("file_descriptor_response"), (symbol, resp.error_response)
        protos = [
            descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in resp.file_descriptor_response.file_descriptor_proto
        ]
        package, _, name = symbol.rpartition(".")
        assert any(
            p.package == package and name in [m.name for m in p.message_type] for p in protos
        )


async def test_buf_curl_over_reflection_v1(server: ServerHandle) -> None:
    url = f"http://{server.address}"
    base = (
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--reflect-protocol",
        "grpc-v1",
    )
    code, out, err = await _run(_buf(), *base, "--list-services", url)
    assert code == 0, err
    assert "memgrpc.v1.MemoryService" in out.split() and V1_SERVICE in out.split()
    # a call: schema from v1 reflection, the error's details typed by name
    code, out, err = await _run(
        _buf(), *base, "-d", '{"user_id": "alice"}', f"{url}/memgrpc.v1.MemoryService/ListMemories"
    )
    assert code != 0 and '"code": "unauthenticated"' in err, err
    assert '"type": "google.rpc.ErrorInfo"' in err


async def test_grpcurl_describes_and_decodes_error_details(server: ServerHandle) -> None:
    for symbol in DETAIL_TYPES:
        code, out, err = await grpcurl(server.address, "describe", symbol)
        assert code == 0, err
        assert f"{symbol} is a message" in out
    code, out, err = await grpcurl(server.address, "describe", V1_SERVICE)
    assert code == 0 and "rpc ServerReflectionInfo" in out, err
    # details decoded into JSON, not left as bytes
    code, _, err = await grpcurl(
        "-d", '{"user_id": "alice"}', server.address, "memgrpc.v1.MemoryService/ListMemories"
    )
    assert code != 0
    assert '"@type":"type.googleapis.com/google.rpc.ErrorInfo"' in err.replace(" ", "")
    assert '"reason":"API_KEY_MISSING"' in err.replace(" ", "")
