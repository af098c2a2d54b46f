"""Helpers for memory tests: decoding rich errors and building requests."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from memgrpc.v1 import memory_pb2 as pb


def details(err: grpc.aio.AioRpcError) -> tuple[set[str], str]:
    """(BadRequest field paths, ErrorInfo reason) of a failed call."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"no google.rpc.Status details on {err.code()}: {err.details()}"
    fields: set[str] = set()
    reason = ""
    for d in status.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            fields |= {v.field for v in br.field_violations}
        elif d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            reason = info.reason
    return fields, reason


def struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def mem(user: str, content: str, **kw: Any) -> pb.CreateMemoryRequest:
    if "metadata" in kw:
        kw["metadata"] = struct(kw["metadata"])
    request_id = kw.pop("request_id", "")
    return pb.CreateMemoryRequest(
        memory=pb.Memory(user_id=user, content=content, **kw), request_id=request_id
    )
