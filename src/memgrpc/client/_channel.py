"""Connection settings, channel construction, per-call headers and call descriptions.

A channel connects lazily: constructing a client opens no connection. Every call carries the API
key (`x-api-key`), the client's extra headers and an `x-request-id`; a mutation's idempotency key
(`request_id` in the request) is that same id, generated once per logical call and reused by
its retries, so a retry the server already executed returns the first result.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message

from memgrpc import __version__
from memgrpc.client._retry import RetryPolicy
from memgrpc.client.errors import REQUEST_ID_HEADER

API_KEY_ENV = "MEMGRPC_API_KEY"
API_KEY_HEADER = "x-api-key"
DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 30.0

Headers = Mapping[str, str] | Sequence[tuple[str, str]]
Resp = TypeVar("Resp", bound=Message)
Out = TypeVar("Out")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def new_request_id() -> str:
    return uuid.uuid4().hex


def normalize_headers(headers: Headers | None) -> tuple[tuple[str, str], ...]:
    """gRPC wants lowercase keys; accept a dict or (key, value) pairs."""
    if headers is None:
        return ()
    pairs: Iterable[tuple[str, str]] = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(k).lower(), str(v)) for k, v in pairs)


@dataclass(frozen=True)
class Settings:
    """What a client was constructed with (shared by its with_options copies)."""

    target: str
    api_key: str | None
    tls: bool
    root_certificates: bytes | None
    retry: RetryPolicy
    channel_options: tuple[tuple[str, Any], ...] = ()
    # PEM client key and certificate chain, for servers that require client certificates (mTLS)
    private_key: bytes | None = None
    certificate_chain: bytes | None = None

    @classmethod
    def create(
        cls,
        address: str,
        *,
        api_key: str | None,
        tls: bool,
        root_certificates: bytes | None,
        retry: RetryPolicy,
        channel_options: Sequence[tuple[str, Any]] | None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
    ) -> Settings:
        target = address.strip()
        for scheme, secure in (("https://", True), ("http://", False), ("grpc://", False)):
            if target.startswith(scheme):
                target, tls = target[len(scheme) :].rstrip("/"), tls or secure
        if not target:
            raise ValueError("address must be host:port")
        if (private_key is None) != (certificate_chain is None):
            raise ValueError("a client certificate needs both private_key and certificate_chain")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        return cls(
            target=target,
            api_key=key,
            tls=tls or root_certificates is not None or private_key is not None,
            root_certificates=root_certificates,
            retry=retry,
            channel_options=tuple(channel_options or ()),
            private_key=private_key,
            certificate_chain=certificate_chain,
        )

    def grpc_options(self) -> list[tuple[str, Any]]:
        base: dict[str, Any] = {
            # a page of 1000 memories of up to 32 KiB each is far beyond gRPC's 4 MiB default
            "grpc.max_receive_message_length": -1,
            "grpc.primary_user_agent": f"memgrpc-python/{__version__}",
        }
        base.update(dict(self.channel_options))
        return list(base.items())

    def credentials(self) -> Any:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def sync_channel(self) -> grpc.Channel:
        if self.tls:
            return grpc.secure_channel(self.target, self.credentials(), options=self.grpc_options())
        return grpc.insecure_channel(self.target, options=self.grpc_options())

    def aio_channel(self) -> grpc.aio.Channel:
        if self.tls:
            return grpc.aio.secure_channel(
                self.target, self.credentials(), options=self.grpc_options()
            )
        return grpc.aio.insecure_channel(self.target, options=self.grpc_options())


@dataclass(frozen=True)
class CallOptions:
    """Per-client-view defaults: a deadline (seconds, None = none) and extra headers."""

    timeout: float | None = DEFAULT_TIMEOUT
    headers: tuple[tuple[str, str], ...] = ()

    def merged(self, *, timeout: float | _Unset | None, headers: Headers | None) -> CallOptions:
        extra = normalize_headers(headers)
        names = {k for k, _ in extra}
        return CallOptions(
            timeout=self.timeout if isinstance(timeout, _Unset) else timeout,
            headers=tuple(h for h in self.headers if h[0] not in names) + extra,
        )

    def metadata(self, settings: Settings, request_id: str) -> tuple[tuple[str, str], ...]:
        """The headers of one call: key, extra headers, x-request-id (unless one is given)."""
        out: list[tuple[str, str]] = []
        if settings.api_key:
            out.append((API_KEY_HEADER, settings.api_key))
        out.extend(self.headers)
        if all(k != REQUEST_ID_HEADER for k, _ in out):
            out.append((REQUEST_ID_HEADER, request_id))
        return tuple(out)

    def sent_request_id(self, request_id: str) -> str:
        for k, v in self.headers:
            if k == REQUEST_ID_HEADER:
                return v
        return request_id


@dataclass(frozen=True)
class Unary(Generic[Resp, Out]):
    """One unary RPC to make: path, request, response type, and how to present the reply."""

    method: str
    request: Message
    response: type[Resp]
    convert: Callable[[Resp], Out]
    request_id: str = field(default_factory=new_request_id)


@dataclass(frozen=True)
class Stream(Generic[Resp]):
    """One server-streaming RPC to make."""

    method: str
    request: Message
    response: type[Resp]
    request_id: str = field(default_factory=new_request_id)


def method_path(service: Any, name: str) -> str:
    """`/memgrpc.v1.MemoryService/CreateMemory` from a service descriptor and a method name."""
    method = service.methods_by_name[name]
    return f"/{service.full_name}/{method.name}"


def serialize(msg: Message) -> bytes:
    return msg.SerializeToString()
