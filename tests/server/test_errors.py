"""Error details (google.rpc.Status), request ids in trailers, and the JSON access log."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from memgrpc.core.kernel import errors as domain
from memgrpc.core.kernel.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable
from memgrpc.server import errors
from memgrpc.server.logging import set_stream
from memgrpc.v1 import admin_pb2, admin_pb2_grpc
from tests.conftest import NewKey
from tests.helpers import md
from tests.server import probe


def details(err: grpc.aio.AioRpcError) -> dict[str, Any]:
    """ErrorInfo / BadRequest / RetryInfo of a failed call, decoded."""
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    out: dict[str, message.Message] = {}
    for any_detail in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            if any_detail.Is(cls.DESCRIPTOR):
                msg = cls()
                any_detail.Unpack(msg)
                out[cls.__name__] = msg
    return out


def trailer(err_or_md: Any, name: str) -> str | None:
    for key, value in err_or_md:
        if key == name:
            return str(value)
    return None


async def test_invalid_argument_has_field_violations(
    admin_stub: admin_pb2_grpc.AdminServiceStub, admin_key: str
) -> None:
    request = admin_pb2.CreateApiKeyRequest(
        api_key=admin_pb2.ApiKey(name="x" * 500, scopes=[admin_pb2.API_KEY_SCOPE_UNSPECIFIED])
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await admin_stub.CreateApiKey(request, metadata=md(admin_key))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    d = details(exc.value)
    assert d["ErrorInfo"].reason == "INVALID_ARGUMENT"
    assert d["ErrorInfo"].domain == "memgrpc"
    fields = {v.field for v in d["BadRequest"].field_violations}
    assert "api_key.scopes[0]" in fields


async def test_not_found_has_error_info(
    admin_stub: admin_pb2_grpc.AdminServiceStub, admin_key: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await admin_stub.RevokeApiKey(
            admin_pb2.RevokeApiKeyRequest(id="key_missing"), metadata=md(admin_key)
        )
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    d = details(exc.value)
    assert d["ErrorInfo"].reason == "API_KEY_NOT_FOUND"
    assert "BadRequest" not in d


def test_retry_info_for_resource_exhausted_and_unavailable() -> None:
    for err, code in (
        (ResourceExhausted("slow down", retry_after_s=1.5), code_pb2.RESOURCE_EXHAUSTED),
        (Unavailable("try later", retry_after_s=0.25), code_pb2.UNAVAILABLE),
    ):
        status = errors.to_rpc_status(err)
        assert status.code == code
        retry = error_details_pb2.RetryInfo()
        assert any(d.Unpack(retry) for d in status.details if d.Is(retry.DESCRIPTOR))
        assert retry.retry_delay.ToNanoseconds() == int(err.retry_after_s * 1e9)  # type: ignore[operator]


# the status each domain error is documented with (API.md: canonical codes); a new subclass
# must be added here, so its code is a decision, not an accident
DOCUMENTED = {
    domain.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    domain.NotFound: grpc.StatusCode.NOT_FOUND,
    domain.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    domain.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    domain.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    domain.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    domain.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    domain.Unavailable: grpc.StatusCode.UNAVAILABLE,
    domain.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    domain.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
}


def _subclasses(cls: type[domain.DomainError]) -> list[type[domain.DomainError]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


@pytest.mark.parametrize("cls", _subclasses(domain.DomainError), ids=lambda c: c.__name__)
def test_every_domain_error_has_its_documented_code(cls: type[domain.DomainError]) -> None:
    assert cls in DOCUMENTED, f"{cls.__name__} has no documented status"
    want = DOCUMENTED[cls]
    err = cls("x")
    assert errors.grpc_code(err) == want
    assert errors.to_rpc_status(err).code == want.value[0]
    # a failure stored by its code name (a background chat's) comes back as the same class
    assert type(domain.error_for(cls.code, "x", "R")) is cls


def test_a_bare_domain_error_is_internal() -> None:
    assert errors.grpc_code(domain.DomainError("x")) == grpc.StatusCode.INTERNAL
    assert errors.grpc_code(domain.error_for("INTERNAL", "x", "R")) == grpc.StatusCode.INTERNAL


def test_domain_error_mapping() -> None:
    assert errors.to_rpc_status(NotFound("x")).code == code_pb2.NOT_FOUND
    bad = errors.to_rpc_status(InvalidArgument.field("memory.content", "must not be empty"))
    assert bad.code == code_pb2.INVALID_ARGUMENT
    internal = errors.to_rpc_status(KeyError("row 17 of /srv/secret"))
    assert (internal.code, internal.message) == (code_pb2.INTERNAL, "internal error")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    previous = set_stream(buf)
    try:
        yield buf
    finally:
        set_stream(previous)


def _records(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


async def test_unexpected_exception_is_internal_without_details_leak(
    probe_channel: grpc.aio.Channel, new_key: NewKey, log_lines: io.StringIO
) -> None:
    _, key = await new_key()
    call = probe_channel.unary_unary(f"/{probe.SERVICE}/Unary")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call(b"boom", metadata=md(key, x_request_id="boom-1"))
    assert exc.value.code() == grpc.StatusCode.INTERNAL
    assert exc.value.details() == "internal error"
    assert "secret internal detail" not in str(exc.value.trailing_metadata())
    assert details(exc.value)["ErrorInfo"].reason == "INTERNAL"
    assert trailer(exc.value.trailing_metadata(), "x-request-id") == "boom-1"
    logged = [r for r in _records(log_lines) if r.get("request_id") == "boom-1"]
    failure = next(r for r in logged if r["event"] == "rpc_internal_error")
    assert "secret internal detail" in json.dumps(failure)  # the traceback stays server-side
    assert any(r["event"] == "rpc" and r["code"] == "INTERNAL" for r in logged)


async def test_error_mid_stream_is_mapped(probe_channel: grpc.aio.Channel, new_key: NewKey) -> None:
    _, key = await new_key()
    call = probe_channel.unary_stream(f"/{probe.SERVICE}/ServerStream")
    got: list[bytes] = []
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for item in call(b"fail-mid", metadata=md(key, x_request_id="mid-1")):
            got.append(item)
    assert len(got) == 1
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert details(exc.value)["ErrorInfo"].reason == "PROBE_GONE"
    assert trailer(exc.value.trailing_metadata(), "x-request-id") == "mid-1"


async def test_request_id_echoed_on_success_and_error(
    admin_stub: admin_pb2_grpc.AdminServiceStub, admin_key: str
) -> None:
    ok = admin_stub.GetProject(
        admin_pb2.GetProjectRequest(id="default"), metadata=md(admin_key, x_request_id="req-ok-1")
    )
    await ok
    assert trailer(await ok.trailing_metadata(), "x-request-id") == "req-ok-1"

    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await admin_stub.GetProject(
            admin_pb2.GetProjectRequest(id="nope"), metadata=md(admin_key, x_request_id="req-e-1")
        )
    assert trailer(exc.value.trailing_metadata(), "x-request-id") == "req-e-1"

    # none sent, or an unusable one (spaces, too long): the server makes one up
    for bad in ("", "has spaces", "a" * 200):
        metadata = md(admin_key, x_request_id=bad) if bad else md(admin_key)
        call = admin_stub.GetProject(admin_pb2.GetProjectRequest(id="default"), metadata=metadata)
        await call
        rid = trailer(await call.trailing_metadata(), "x-request-id")
        assert rid is not None and re.fullmatch(r"[0-9a-f]{32}", rid)


async def test_access_log_is_one_json_line_per_rpc(
    admin_stub: admin_pb2_grpc.AdminServiceStub,
    admin_key: str,
    log_lines: io.StringIO,
) -> None:
    await admin_stub.GetProject(
        admin_pb2.GetProjectRequest(id="default"), metadata=md(admin_key, x_request_id="log-ok")
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await admin_stub.GetProject(
            admin_pb2.GetProjectRequest(id="default"), metadata=(("x-request-id", "log-unauth"),)
        )
    records = _records(log_lines)
    by_id = {r["request_id"]: r for r in records if r.get("event") == "rpc"}
    ok = by_id["log-ok"]
    assert ok["method"] == "/memgrpc.v1.AdminService/GetProject"
    assert ok["code"] == "OK"
    assert ok["project"] == "default"
    assert isinstance(ok["ms"], int | float) and ok["ms"] >= 0
    assert ok["level"] == "info" and "timestamp" in ok
    unauth = by_id["log-unauth"]
    assert unauth["code"] == "UNAUTHENTICATED"
    assert unauth["project"] is None
    assert sum(1 for r in records if r.get("request_id") == "log-ok" and r["event"] == "rpc") == 1


async def test_handler_abort_keeps_request_id_and_is_logged(
    channel: grpc.aio.Channel, log_lines: io.StringIO
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await health.Check(
            health_pb2.HealthCheckRequest(service="no.such.Service"),
            metadata=(("x-request-id", "abort-1"),),
        )
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert trailer(exc.value.trailing_metadata(), "x-request-id") == "abort-1"
    logged = [r for r in _records(log_lines) if r.get("request_id") == "abort-1"]
    assert [r["code"] for r in logged if r["event"] == "rpc"] == ["NOT_FOUND"]


async def test_oversized_message_is_rejected(
    admin_stub: admin_pb2_grpc.AdminServiceStub, admin_key: str
) -> None:
    huge = admin_pb2.CreateProjectRequest(project=admin_pb2.Project(display_name="x" * (9 << 20)))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await admin_stub.CreateProject(huge, metadata=md(admin_key))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # and the server is fine afterwards
    await admin_stub.GetProject(admin_pb2.GetProjectRequest(id="default"), metadata=md(admin_key))
