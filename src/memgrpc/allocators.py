"""Memory allocators of the server process, set before LanceDB and Arrow start their threads.

Under a steady mixed load (scripts/load.py) the process grew by ~100 MiB more in 150 s with the
defaults: glibc gives each thread that contends for the heap an arena of its own (up to 8 per
core, with LanceDB's, gRPC's and ONNX Runtime's threads all allocating), and pyarrow's mimalloc
pool keeps what it freed. Two arenas and the system pool cost no throughput there.

glibc also raises its mmap threshold each time a large block is freed (up to 32 MiB on 64-bit),
after which blocks of that size come from the heap, where the small ones LanceDB keeps around pin
them: a loop of single-row LanceDB commits with compaction grew ~17 KiB a commit with the moving
threshold and under 2 KiB with it held at 128 KiB (measured: docs/BENCHMARKS.md).
An explicit MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_, GLIBC_TUNABLES or ARROW_DEFAULT_MEMORY_POOL
wins.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

# mallopt parameters (glibc malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept from moving


def tune() -> None:
    if sys.platform == "linux":
        # not glibc (e.g. musl): nothing to tune
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6")
            tunables = os.environ.get("GLIBC_TUNABLES", "")
            if "MALLOC_ARENA_MAX" not in os.environ and "arena_max" not in tunables:
                libc.mallopt(_M_ARENA_MAX, ARENAS)
            if "MALLOC_MMAP_THRESHOLD_" not in os.environ and "mmap_threshold" not in tunables:
                libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
