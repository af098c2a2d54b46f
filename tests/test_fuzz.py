"""Fuzz the request decoding and validation of every RPC with hypothesis.

Requests are generated from the proto descriptors (so new RPCs are fuzzed without changing this
file): random text (unicode, control characters, huge), extreme numbers, unknown enum values,
nested messages, Structs. Every call must end in a deliberate status (never INTERNAL or UNKNOWN),
the server must stay up, and nothing malformed may land in the store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf import message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memgrpc.v1 import admin_pb2, chat_pb2, context_pb2, memory_pb2, sessions_pb2, users_pb2
from tests.procs import free_port, start_memgrpc, stop_server

KEY = "mgk_fuzz_test_bootstrap_key_0123456789ab"
MODULES = (memory_pb2, admin_pb2, users_pb2, sessions_pb2, context_pb2, chat_pb2)
BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
EXAMPLES = int(os.environ.get("MEMGRPC_FUZZ_EXAMPLES", "15"))

TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(
        ["", " ", "x' OR '1'='1", "a'); DROP TABLE memories; --", "\x00", "mem_", "D1:3", "*"]
    ),
    st.just("x" * 40_000),
)
INT = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 1, 2**31 - 1, -(2**31)]))
FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, -0.0, 1.5])
)
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=10), kids, max_size=3)
    ),
    max_leaves=8,
)


def _scalar(f: d.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = f.type
    if t == d.FieldDescriptor.TYPE_STRING:
        return TEXT
    if t == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (d.FieldDescriptor.TYPE_FLOAT, d.FieldDescriptor.TYPE_DOUBLE):
        return FLOAT
    if t == d.FieldDescriptor.TYPE_ENUM:
        return st.one_of(
            st.sampled_from([v.number for v in f.enum_type.values]), st.integers(-5, 99)
        )
    if t == d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=50)
    if t in (
        d.FieldDescriptor.TYPE_INT64,
        d.FieldDescriptor.TYPE_UINT64,
        d.FieldDescriptor.TYPE_SINT64,
    ):
        return (
            st.integers(-(2**63), 2**63 - 1)
            if t != d.FieldDescriptor.TYPE_UINT64
            else st.integers(0, 2**64 - 1)
        )
    if t == d.FieldDescriptor.TYPE_UINT32:
        return st.integers(0, 2**32 - 1)
    return INT


def message(desc: d.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    cls = message_factory.GetMessageClass(desc)
    if desc.full_name == "google.protobuf.Struct":
        return st.dictionaries(st.text(max_size=12), JSONISH, max_size=4).map(
            lambda v: _struct(cls, v)
        )
    if desc.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return st.builds(
            lambda s, n: cls(seconds=s, nanos=n),
            st.integers(-(2**40), 2**40),
            st.integers(-10, 10**9),
        )
    if desc.full_name == "google.protobuf.FieldMask":
        return st.lists(TEXT, max_size=3).map(lambda p: cls(paths=p))
    if depth > 2:
        return st.just(cls())
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        nested = f.type == d.FieldDescriptor.TYPE_MESSAGE
        if nested and f.message_type.GetOptions().map_entry:  # a map (RecordAction's anchors)
            key, val = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            parts[f.name] = st.dictionaries(_scalar(key), _scalar(val), max_size=4)
            continue
        one = message(f.message_type, depth + 1) if nested else _scalar(f)
        many = f.is_repeated
        parts[f.name] = st.lists(one, max_size=3 if depth else 4) if many else one
    return st.fixed_dictionaries({}, optional=parts).map(lambda kw: _build(cls, kw))


def _struct(cls: type[Message], value: dict[str, Any]) -> Message:
    s = cls()
    s.update(value)  # type: ignore[attr-defined]
    return s


def _build(cls: type[Message], kw: dict[str, Any]) -> Message:
    m = cls()
    for name, value in kw.items():
        field = getattr(m, name)
        try:
            if isinstance(value, dict):
                field.update(value)
            elif isinstance(value, list):
                if value and isinstance(value[0], Message):
                    for v in value:
                        field.add().CopyFrom(v)
                else:
                    field.extend(value)
            elif isinstance(value, Message):
                field.CopyFrom(value)
            else:
                setattr(m, name, value)
        except (ValueError, TypeError):
            pass  # a value the field cannot hold (e.g. a oneof clash): leave the field unset
    return m


def _methods() -> Iterator[tuple[str, d.MethodDescriptor]]:
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if not method.client_streaming:
                    yield f"/{service.full_name}/{method.name}", method


METHODS = sorted(_methods(), key=lambda kv: kv[0])


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[grpc.Channel, Path]]:
    data = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    proc = start_memgrpc(str(data / "db"), port, data / "server.log", KEY, MEMGRPC_GRACE_PERIOD="2")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=90)
        yield channel, data / "server.log"
    finally:
        channel.close()
        stop_server(proc)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("path", "method"), METHODS, ids=[p for p, _ in METHODS])
def test_fuzz_rpc(
    fuzz_server: tuple[grpc.Channel, Path], path: str, method: d.MethodDescriptor
) -> None:
    channel, log = fuzz_server
    req_cls = message_factory.GetMessageClass(method.input_type)
    resp_cls = message_factory.GetMessageClass(method.output_type)
    if method.server_streaming:
        call = channel.unary_stream(path, req_cls.SerializeToString, resp_cls.FromString)
    else:
        call = channel.unary_unary(path, req_cls.SerializeToString, resp_cls.FromString)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=os.environ.get("MEMGRPC_FUZZ_RANDOM") != "1",
        suppress_health_check=list(HealthCheck),
    )
    @given(message(method.input_type))
    def one(request: Message) -> None:
        try:
            result = call(request, metadata=(("x-api-key", KEY),), timeout=30)
            if method.server_streaming:
                for _ in result:
                    pass
        except grpc.RpcError as e:
            assert e.code() not in BAD, f"{path}: {e.code()} {e.details()} for {request}"

    one()
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    text = log.read_text(errors="replace")
    assert "rpc_internal_error" not in text, text[-3000:]


def test_nothing_malformed_was_stored(fuzz_server: tuple[grpc.Channel, Path]) -> None:
    """Runs after the fuzzing (file order): every stored memory is well-formed."""
    from memgrpc.v1 import memory_pb2_grpc

    channel, _ = fuzz_server
    stub = memory_pb2_grpc.MemoryServiceStub(channel)
    listed = stub.ListMemories(
        memory_pb2.ListMemoriesRequest(page_size=1000, include_archived=True),
        metadata=(("x-api-key", KEY),),
    )
    for m in listed.memories:
        assert m.content.strip() and "\x00" not in m.content and m.type != 0 and m.user_id
