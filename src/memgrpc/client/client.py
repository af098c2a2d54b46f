"""MemgrpcClient: the synchronous client (thread-safe; one per process is plenty)."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from grpc_health.v1 import health_pb2

from memgrpc.client import _convert as cv
from memgrpc.client._channel import (
    DEFAULT_ADDRESS,
    DEFAULT_TIMEOUT,
    UNSET,
    CallOptions,
    Headers,
    Settings,
    Unary,
    normalize_headers,
)
from memgrpc.client._retry import RetryPolicy
from memgrpc.client._transport import Caller, SyncTransport
from memgrpc.client.admin import AdminResource
from memgrpc.client.agents import AgentsResource
from memgrpc.client.chat import ChatResource
from memgrpc.client.conflicts import ConflictsResource
from memgrpc.client.context import ContextResource
from memgrpc.client.memory import MemoryResource
from memgrpc.client.recall import RecallResource
from memgrpc.client.sessions import JobsResource, SessionsResource
from memgrpc.client.simulations import EvalRunsResource, EvalTemplates, SimulationsResource
from memgrpc.client.users import UsersResource

HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def make_settings(
    address: str,
    *,
    api_key: str | None,
    max_retries: int,
    initial_backoff: float,
    max_backoff: float,
    tls: bool,
    root_certificates: bytes | None,
    channel_options: Sequence[tuple[str, Any]] | None,
    private_key: bytes | None = None,
    certificate_chain: bytes | None = None,
) -> Settings:
    return Settings.create(
        address,
        api_key=api_key,
        tls=tls,
        root_certificates=root_certificates,
        retry=RetryPolicy(
            max_retries=max_retries, initial_backoff=initial_backoff, max_backoff=max_backoff
        ),
        channel_options=channel_options,
        private_key=private_key,
        certificate_chain=certificate_chain,
    )


def health_call(service: str) -> Unary[health_pb2.HealthCheckResponse, dict[str, Any]]:
    request = health_pb2.HealthCheckRequest(service=service)
    return Unary(HEALTH_CHECK, request, health_pb2.HealthCheckResponse, cv.to_dict)


class MemgrpcClient:
    """A memgrpc server, as resource groups: memory, users, recall, sessions, jobs, context, chat,
    admin, conflicts, agents,
    simulations, eval_templates, eval_runs.

    `api_key` defaults to $MEMGRPC_API_KEY. `timeout` (seconds, None = none) is each attempt's
    deadline; UNAVAILABLE and RESOURCE_EXHAUSTED are retried up to `max_retries` times with
    exponential backoff and jitter (at least the server's retry delay). `metadata` adds headers
    to every call. `tls=True` (or `root_certificates`, or an `https://` address) uses TLS;
    `private_key` and `certificate_chain` (PEM) add a client certificate for mutual TLS.
    Constructing the client makes no connection; use it as a context manager or call close().
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        metadata: Headers | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        initial_backoff: float = 0.25,
        max_backoff: float = 8.0,
        channel_options: Sequence[tuple[str, Any]] | None = None,
    ) -> None:
        settings = make_settings(
            address,
            api_key=api_key,
            max_retries=max_retries,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            tls=tls,
            root_certificates=root_certificates,
            channel_options=channel_options,
            private_key=private_key,
            certificate_chain=certificate_chain,
        )
        self._owner = True
        self._bind(SyncTransport(settings), CallOptions(timeout, normalize_headers(metadata)))

    def _bind(self, transport: SyncTransport, options: CallOptions) -> None:
        self._transport = transport
        self._caller = Caller(transport, options)
        self.memory = MemoryResource(self._caller)
        self.users = UsersResource(self._caller)
        self.recall = RecallResource(self._caller)
        self.sessions = SessionsResource(self._caller)
        self.jobs = JobsResource(self._caller)
        self.context = ContextResource(self._caller)
        self.chat = ChatResource(self._caller)
        self.admin = AdminResource(self._caller)
        self.conflicts = ConflictsResource(self._caller)
        self.agents = AgentsResource(self._caller)
        self.simulations = SimulationsResource(self._caller)
        self.eval_templates: EvalTemplates[Any] = EvalTemplates(self._caller.unary)
        self.eval_runs = EvalRunsResource(self._caller)

    @property
    def address(self) -> str:
        return self._transport.settings.target

    @property
    def timeout(self) -> float | None:
        return self._caller.options.timeout

    def with_options(
        self, *, timeout: float | None = UNSET, metadata: Headers | None = None
    ) -> MemgrpcClient:
        """A view of this client with another timeout and/or more headers, sharing its
        connection: `client.with_options(timeout=120).chat.send(...)`."""
        view = object.__new__(MemgrpcClient)
        view._owner = False
        view._bind(self._transport, self._caller.options.merged(timeout=timeout, headers=metadata))
        return view

    def health(self, service: str = "") -> dict[str, Any]:
        """The gRPC health check: `{"status": "serving"}` (no API key needed)."""
        return self._caller.unary(health_call(service))

    def close(self) -> None:
        """Close the connection (views from with_options share it: close the original)."""
        if self._owner:
            self._transport.close()

    def __enter__(self) -> MemgrpcClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemgrpcClient(address={self.address!r})"
