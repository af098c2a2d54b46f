"""Server reflection under both protocols, v1 and v1alpha, plus the google.rpc detail types.

grpcio-reflection serves only `grpc.reflection.v1alpha`; newer clients (`buf curl`, grpcurl's
newer releases, Postman) ask for `grpc.reflection.v1` first, and `buf curl --reflect-protocol
grpc-v1` fails without it. The v1 proto is the v1alpha one under another package, field for field,
so the v1 service is the package's own servicer behind the v1 method name (the bytes on the wire
are the same); its descriptor is derived from v1alpha's so that reflection can describe itself.

Error details travel as `google.protobuf.Any`; a generic client decodes them only if reflection
can resolve their types, so the google.rpc files are imported here (registering them in the
default pool that reflection answers from) rather than left to whatever else imported them.
"""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha import reflection_pb2 as alpha_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc as alpha_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

V1ALPHA_SERVICE = alpha_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
# what the server's errors carry (server/errors.py); reflection resolves them from these imports
DETAIL_TYPES = tuple(
    m.full_name
    for m in (
        status_pb2.Status.DESCRIPTOR,
        error_details_pb2.ErrorInfo.DESCRIPTOR,
        error_details_pb2.BadRequest.DESCRIPTOR,
        error_details_pb2.RetryInfo.DESCRIPTOR,
    )
)


def _v1_file() -> None:
    """Put the v1 reflection file into the default pool (once), renamed from v1alpha's."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    old = f".{alpha_pb2.DESCRIPTOR.package}."
    new = f".{V1_PACKAGE}."
    proto = descriptor_pb2.FileDescriptorProto()
    alpha_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = V1_FILE
    proto.package = V1_PACKAGE
    for message in proto.message_type:
        for fld in message.field:
            if fld.HasField("type_name"):
                fld.type_name = fld.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    pool.AddSerializedFile(proto.SerializeToString())


def enable(server: grpc.aio.Server, service_names: tuple[str, ...]) -> None:
    """Serve reflection (v1 and v1alpha) listing `service_names` and both reflection services."""
    _v1_file()
    servicer = ReflectionServicer((*service_names, V1_SERVICE, V1ALPHA_SERVICE))
    alpha_grpc.add_ServerReflectionServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=alpha_pb2.ServerReflectionRequest.FromString,
                response_serializer=alpha_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
