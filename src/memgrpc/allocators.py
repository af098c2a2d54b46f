"""Memory allocators of the server process, set before LanceDB and Arrow start their threads.

Under a steady mixed load (scripts/load.py) the process grew by ~100 MiB more in 150 s with the
defaults: glibc gives each thread that contends for the heap an arena of its own (up to 8 per
core, with LanceDB's, gRPC's and ONNX Runtime's threads all allocating), and pyarrow's mimalloc
pool keeps what it freed. Two arenas and the system pool cost no throughput there. An explicit
MALLOC_ARENA_MAX or ARROW_DEFAULT_MEMORY_POOL wins.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

_M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)
ARENAS = 2


def tune() -> None:
    if sys.platform == "linux" and "MALLOC_ARENA_MAX" not in os.environ:
        # not glibc (e.g. musl): nothing to tune
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, ARENAS)
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
