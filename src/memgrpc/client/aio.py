"""AsyncMemgrpcClient: the asyncio client, the same surface as MemgrpcClient with `await`."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from memgrpc.client._channel import (
    DEFAULT_ADDRESS,
    DEFAULT_TIMEOUT,
    UNSET,
    CallOptions,
    Headers,
    normalize_headers,
)
from memgrpc.client._transport import AsyncCaller, AsyncTransport
from memgrpc.client.admin import AsyncAdminResource
from memgrpc.client.agents import AsyncAgentsResource
from memgrpc.client.chat import AsyncChatResource
from memgrpc.client.client import health_call, make_settings
from memgrpc.client.conflicts import AsyncConflictsResource
from memgrpc.client.context import AsyncContextResource
from memgrpc.client.memory import AsyncMemoryResource
from memgrpc.client.recall import AsyncRecallResource
from memgrpc.client.sessions import AsyncJobsResource, AsyncSessionsResource
from memgrpc.client.simulations import (
    AsyncEvalRunsResource,
    AsyncSimulationsResource,
    EvalTemplates,
)
from memgrpc.client.users import AsyncUsersResource


class AsyncMemgrpcClient:
    """The async twin of MemgrpcClient (same arguments). The channel is created on the first
    call, inside the running event loop; use `async with` or `await client.aclose()`."""

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
        self._bind(AsyncTransport(settings), CallOptions(timeout, normalize_headers(metadata)))

    def _bind(self, transport: AsyncTransport, options: CallOptions) -> None:
        self._transport = transport
        self._caller = AsyncCaller(transport, options)
        self.memory = AsyncMemoryResource(self._caller)
        self.users = AsyncUsersResource(self._caller)
        self.recall = AsyncRecallResource(self._caller)
        self.sessions = AsyncSessionsResource(self._caller)
        self.jobs = AsyncJobsResource(self._caller)
        self.context = AsyncContextResource(self._caller)
        self.chat = AsyncChatResource(self._caller)
        self.admin = AsyncAdminResource(self._caller)
        self.conflicts = AsyncConflictsResource(self._caller)
        self.agents = AsyncAgentsResource(self._caller)
        self.simulations = AsyncSimulationsResource(self._caller)
        self.eval_templates: EvalTemplates[Any] = EvalTemplates(self._caller.unary)
        self.eval_runs = AsyncEvalRunsResource(self._caller)

    @property
    def address(self) -> str:
        return self._transport.settings.target

    @property
    def timeout(self) -> float | None:
        return self._caller.options.timeout

    def with_options(
        self, *, timeout: float | None = UNSET, metadata: Headers | None = None
    ) -> AsyncMemgrpcClient:
        """A view with another timeout and/or more headers, sharing this client's connection."""
        view = object.__new__(AsyncMemgrpcClient)
        view._owner = False
        view._bind(self._transport, self._caller.options.merged(timeout=timeout, headers=metadata))
        return view

    async def health(self, service: str = "") -> dict[str, Any]:
        return await self._caller.unary(health_call(service))

    async def aclose(self) -> None:
        if self._owner:
            await self._transport.close()

    async def __aenter__(self) -> AsyncMemgrpcClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncMemgrpcClient(address={self.address!r})"
