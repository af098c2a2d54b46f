"""A memory row of every column type (unicode, nulls, float32, UTC times), shared by the store
tests that need realistic rows: with or without its doc."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from memgrpc.store.memories import DOC, encode_doc

DIM = 8
T0 = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)


def _vec(i: int) -> np.ndarray:
    return np.eye(DIM, dtype=np.float32)[i % DIM]


def _row(i: int, *, doc: bool) -> dict[str, Any]:
    vec = _vec(i) + 0.1
    row: dict[str, Any] = {
        "id": f"m{i:02d}", "project_id": "p", "user_id": "u", "session_id": None if i % 2 else "s1",
        "content": f"Zoë's lighthouse note {i} \u2603", "type": "fact", "tags": ["a", "b"] if i % 3 else [],
        "categories": ["c"], "metadata": '{"k":[1,2]}', "metadata_kv": ['k=[1,2]'], "importance": 0.7,
        "archived": i == 3, "source_message_ids": [f"msg{i}"], "version": 2,
        "event_time": None if i == 4 else T0 + timedelta(days=i), "create_time": T0,
        "update_time": T0 + timedelta(seconds=i), "version_time": T0,
        "speaker": None if i % 2 else "Zoë", "seq": None if i % 2 else i, "vector": vec.tolist(),
    }  # fmt: skip
    if doc:
        row[DOC] = encode_doc(row)
    return row
