"""Input rules every domain shares: ids, content, labels, metadata, importance."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from memgrpc.core.kernel.errors import Violations

MAX_CONTENT_BYTES = 32 * 1024
MAX_ID_CHARS = 256
MAX_LABELS = 64
MAX_LABEL_CHARS = 128
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_KEYS = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_id(v: Violations, name: str, value: str, *, required: bool) -> None:
    if not value:
        if required:
            v.add(name, "is required")
        return
    if len(value) > MAX_ID_CHARS:
        v.add(name, f"must be at most {MAX_ID_CHARS} characters")
    elif _CONTROL.search(value):
        v.add(name, "must not contain control characters")


def check_content(v: Violations, name: str, content: str) -> None:
    if not content.strip():
        v.add(name, "must not be empty")
    elif len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
        v.add(name, f"must be at most {MAX_CONTENT_BYTES} bytes")
    elif "\x00" in content:
        v.add(name, "must not contain NUL characters")


def check_labels(v: Violations, name: str, labels: Sequence[str]) -> None:
    if len(labels) > MAX_LABELS:
        v.add(name, f"at most {MAX_LABELS} values")
        return
    for i, label in enumerate(labels):
        if not label or len(label) > MAX_LABEL_CHARS or _CONTROL.search(label):
            v.add(
                f"{name}[{i}]", f"must be 1-{MAX_LABEL_CHARS} characters without control characters"
            )


def check_metadata(v: Violations, name: str, metadata: dict[str, Any]) -> None:
    if len(metadata) > MAX_METADATA_KEYS:
        v.add(name, f"at most {MAX_METADATA_KEYS} keys")
        return
    for key in metadata:
        if not key or len(key) > MAX_LABEL_CHARS or _CONTROL.search(key) or "=" in key:
            v.add(
                f"{name}.{key[:40]}",
                "keys must be 1-128 characters, without '=' or control characters",
            )
    try:
        size = len(canonical_json(metadata).encode("utf-8"))
    except ValueError:
        v.add(name, "values must be finite numbers, strings, booleans, null, lists or objects")
        return
    if size > MAX_METADATA_BYTES:
        v.add(name, f"must be at most {MAX_METADATA_BYTES} bytes as JSON")


def check_importance(v: Violations, name: str, importance: float | None) -> None:
    if importance is not None and (not math.isfinite(importance) or not 0.0 <= importance <= 1.0):
        v.add(name, "must be between 0 and 1")


def _normalise(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite number")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        return {k: _normalise(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(x) for x in value]
    return value


def canonical_json(value: Any) -> str:
    """One spelling per value (1 == 1.0, sorted keys), so exact metadata matches are exact."""
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def metadata_pairs(metadata: dict[str, Any]) -> list[str]:
    return sorted(f"{k}={canonical_json(val)}" for k, val in metadata.items())
