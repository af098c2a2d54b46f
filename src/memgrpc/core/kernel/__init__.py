"""The shared kernel every domain builds on: domain errors, ids, per-key locks, request-id
idempotency, keyset paging, input validation and the cache of rows this process wrote.

Paging and validation are mostly functions, used through their modules (paging.fetch,
validation.check_id); their types are exported here."""

from memgrpc.core.kernel.errors import (
    AlreadyExists,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Violations,
    error_for,
)
from memgrpc.core.kernel.idempotency import Idempotency
from memgrpc.core.kernel.ids import derived_id, new_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.paging import Page, PageRequest
from memgrpc.core.kernel.rowcache import OwnWritesCache, ThrottledVersion

__all__ = [
    "AlreadyExists",
    "DeadlineExceeded",
    "DomainError",
    "FailedPrecondition",
    "FieldViolation",
    "Idempotency",
    "InvalidArgument",
    "KeyedLocks",
    "NotFound",
    "OwnWritesCache",
    "Page",
    "PageRequest",
    "PermissionDenied",
    "ResourceExhausted",
    "ThrottledVersion",
    "Unauthenticated",
    "Unavailable",
    "Violations",
    "derived_id",
    "error_for",
    "new_id",
]
