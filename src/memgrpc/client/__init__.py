"""The Python client of memgrpc: `MemgrpcClient` (sync) and `AsyncMemgrpcClient` (asyncio).

    from memgrpc.client import MemgrpcClient, NotFoundError

    with MemgrpcClient("127.0.0.1:50051", api_key="mgk_...") as client:
        mem = client.memory.create({"user_id": "alice", "content": "Prefers dark mode",
                                    "type": "preference", "tags": ["ui"]})
        hits = client.memory.search("what theme?", user_id="alice", limit=5)

Dicts in, dicts out; enums by short name ('preference', 'hybrid', 'low_latency', 'read', ...);
timestamps as ISO-8601 strings. Failures raise the typed errors of memgrpc.client.errors.
"""

from memgrpc.client.aio import AsyncMemgrpcClient
from memgrpc.client.client import MemgrpcClient
from memgrpc.client.errors import (
    AuthenticationError,
    ConflictAlreadyResolvedError,
    ConflictError,
    ConflictInvalidAnswerError,
    ConflictInvalidQuestionsError,
    ConflictMissingAnswersError,
    ConflictNotFoundError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    MemgrpcError,
    MergeConflictAlreadyResolvedError,
    MergeConflictError,
    MergeConflictInvalidAnswerError,
    MergeConflictInvalidQuestionsError,
    MergeConflictMissingAnswersError,
    MergeConflictNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    TimeoutError,
    UnavailableError,
)
from memgrpc.client.sessions import AsyncSession, Session

__all__ = [
    "AsyncMemgrpcClient",
    "AsyncSession",
    "AuthenticationError",
    "ConflictAlreadyResolvedError",
    "ConflictError",
    "ConflictInvalidAnswerError",
    "ConflictInvalidQuestionsError",
    "ConflictMissingAnswersError",
    "ConflictNotFoundError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "MemgrpcClient",
    "MemgrpcError",
    "MergeConflictAlreadyResolvedError",
    "MergeConflictError",
    "MergeConflictInvalidAnswerError",
    "MergeConflictInvalidQuestionsError",
    "MergeConflictMissingAnswersError",
    "MergeConflictNotFoundError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Session",
    "TimeoutError",
    "UnavailableError",
]
