"""Small helpers shared by the server/API tests."""

from __future__ import annotations

Metadata = tuple[tuple[str, str], ...]


def md(key: str, **extra: str) -> Metadata:
    """Call metadata carrying `key` as x-api-key, plus any extra headers (`x_request_id=...`
    becomes `x-request-id`)."""
    return (("x-api-key", key), *((name.replace("_", "-"), value) for name, value in extra.items()))
