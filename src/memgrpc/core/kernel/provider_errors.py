"""How a failed LLM provider call is reported: one domain error (and so one gRPC status) per
`ProviderError.kind`, the same for chat and for the LLM fact extractor."""

from __future__ import annotations

from memgrpc.core.kernel.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from memgrpc.llm import ProviderError


def provider_failure(exc: ProviderError) -> DomainError:
    """The domain error (and so the gRPC status) a provider failure is reported as."""
    meta = {"provider": exc.provider}
    if exc.status is not None:
        meta["http_status"] = str(exc.status)
    what = f"LLM provider {exc.provider!r}: {exc.message}"
    match exc.kind:
        case "auth":
            return FailedPrecondition(
                f"{what} (it rejected memgrpc's credentials; check the provider API key)",
                reason="PROVIDER_AUTH_FAILED",
                metadata=meta,
            )
        case "rate_limited":
            return ResourceExhausted(
                what, reason="PROVIDER_RATE_LIMITED", metadata=meta, retry_after_s=exc.retry_after_s
            )
        case "timeout":
            return DeadlineExceeded(what, reason="PROVIDER_TIMEOUT", metadata=meta)
        case "rejected":
            return InvalidArgument(what, reason="PROVIDER_REJECTED_REQUEST", metadata=meta)
        case "not_found":
            return FailedPrecondition(what, reason="PROVIDER_MODEL_NOT_FOUND", metadata=meta)
        case "not_configured":
            return FailedPrecondition(what, reason="PROVIDER_NOT_CONFIGURED", metadata=meta)
        case "bad_response":
            return Unavailable(what, reason="PROVIDER_BAD_RESPONSE", metadata=meta)
        case _:
            return Unavailable(
                what, reason="PROVIDER_UNAVAILABLE", metadata=meta, retry_after_s=exc.retry_after_s
            )
