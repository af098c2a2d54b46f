"""The server process's allocator settings: applied by default, an explicit setting wins."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = (
    "from memgrpc import allocators; allocators.tune(); import pyarrow as pa; "
    "print(pa.default_memory_pool().backend_name)"
)


def _probe(code: str, env: dict[str, str]) -> str:
    """What `code` prints in a fresh interpreter, with no allocator settings inherited."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MALLOC_")
        and k not in ("ARROW_DEFAULT_MEMORY_POOL", "GLIBC_TUNABLES", "LD_PRELOAD")
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_system_pool_by_default_and_env_wins() -> None:
    assert _probe(PROBE, {}) == "system"
    assert _probe(PROBE, {"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"


# After a 16 MiB block is freed, glibc's moving threshold (16 MiB then) puts an 8 MiB block on the
# heap; with the threshold held at 128 KiB it is mapped on its own (the IS_MMAPPED bit, 0x2, of
# the chunk's size field, the word before the pointer). Blocks this large, not the 256 KiB of
# before: pyarrow 25+'s import leaves free heap chunks of that size, which malloc reuses first.
MMAP_PROBE = """
import ctypes, sys
from memgrpc import allocators
allocators.tune()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(16 << 20))
p = libc.malloc(8 << 20)
print(bool(ctypes.c_size_t.from_address(p - ctypes.sizeof(ctypes.c_size_t)).value & 2))
"""


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or sys.maxsize <= 2**32,
    reason="glibc on 64-bit (elsewhere the threshold moves differently or not at all)",
)
def test_mmap_threshold_held_and_env_wins() -> None:
    assert _probe(MMAP_PROBE, {}) == "True"
    assert _probe(MMAP_PROBE, {"MALLOC_MMAP_THRESHOLD_": str(1 << 30)}) == "False"
    assert (
        _probe(MMAP_PROBE, {"GLIBC_TUNABLES": f"glibc.malloc.mmap_threshold={1 << 30}"}) == "False"
    )
