"""The server process's allocator settings: applied by default, an explicit setting wins."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "from memgrpc import allocators; allocators.tune(); import pyarrow as pa; "
    "print(pa.default_memory_pool().backend_name)"
)


def _run(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("ARROW_DEFAULT_MEMORY_POOL",)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=clean | env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_system_pool_by_default_and_env_wins() -> None:
    assert _run({}) == "system"
    assert _run({"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"
