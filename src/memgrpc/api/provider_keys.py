"""AdminService's BYOK RPCs (a mixin of AdminServicer): protos <-> core.providers.

Uses `self._provider_keys` (ProviderKeys) and `self._idem` (Idempotency) of the servicer. The
secret arrives in SetProviderKeyRequest and goes nowhere but core: what is recorded for a
request_id replay is the ProviderKey reply, which never holds it.
"""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from memgrpc.api.convert import to_ts
from memgrpc.core.access import principal
from memgrpc.core.kernel.idempotency import Idempotency
from memgrpc.core.providers import ProviderKey, ProviderKeys
from memgrpc.v1 import admin_pb2 as pb

_HEALTH = {
    "healthy": pb.PROVIDER_KEY_HEALTH_HEALTHY,
    "unhealthy": pb.PROVIDER_KEY_HEALTH_UNHEALTHY,
    "": pb.PROVIDER_KEY_HEALTH_UNSPECIFIED,
}


def provider_key_to_pb(k: ProviderKey) -> pb.ProviderKey:
    return pb.ProviderKey(
        id=k.id,
        provider=k.provider,
        key_prefix=k.key_prefix,
        is_active=k.is_active,
        health_status=_HEALTH[k.health],
        last_check_time=to_ts(k.last_check_time),
        last_error=k.last_error,
        base_url=k.base_url,
        default_model=k.default_model,
        create_time=to_ts(k.create_time),
    )


class ProviderKeyRpcs:
    _provider_keys: ProviderKeys
    _idem: Idempotency

    async def SetProviderKey(
        self, request: pb.SetProviderKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProviderKey:
        project = principal.current().project_id

        async def compute() -> bytes:
            made = await self._provider_keys.set(
                project,
                request.provider.strip().lower(),
                request.api_key,
                request.base_url.strip(),
                request.default_model.strip(),
            )
            return provider_key_to_pb(made).SerializeToString()

        raw = await self._idem.run(project, "SetProviderKey", request.request_id, compute)
        return pb.ProviderKey.FromString(raw)

    async def ListProviderKeys(
        self, request: pb.ListProviderKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProviderKeysResponse:
        keys = await self._provider_keys.list(principal.current().project_id)
        return pb.ListProviderKeysResponse(keys=[provider_key_to_pb(k) for k in keys])

    async def SetActiveProviderKey(
        self, request: pb.SetActiveProviderKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProviderKey:
        k = await self._provider_keys.activate(principal.current().project_id, request.id)
        return provider_key_to_pb(k)

    async def TestProviderKey(
        self, request: pb.TestProviderKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProviderKey:
        k = await self._provider_keys.test(principal.current().project_id, request.id)
        return provider_key_to_pb(k)

    async def DeleteProviderKey(
        self, request: pb.DeleteProviderKeyRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._provider_keys.delete(principal.current().project_id, request.id)
        return empty_pb2.Empty()
