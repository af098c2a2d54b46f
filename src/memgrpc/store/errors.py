"""Which storage failures mean "the store is unreachable right now" (retry later) rather than a bug.

LanceDB reports object-store and filesystem trouble as a RuntimeError carrying the lance error
kind; an unreachable S3 endpoint, a timeout or a refused connection is an outage the client may
retry, not an internal error.
"""

from __future__ import annotations

_OUTAGE_MARKS = (
    "LanceError(IO)",
    "error sending request",
    "connection refused",
    "Connection refused",
    "operation timed out",
    "timed out",
    "dns error",
    "Generic S3 error",
    "Generic GCS error",
    "Generic MicrosoftAzure error",
)


def is_unavailable(exc: BaseException) -> bool:
    """True for storage I/O failures (object store down, network, timeouts)."""
    text = str(exc)
    return isinstance(exc, OSError | RuntimeError) and any(m in text for m in _OUTAGE_MARKS)
