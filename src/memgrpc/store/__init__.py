"""LanceDB storage: schemas, tables, single writers, indexes, maintenance, filters."""

import os

# Lance runs its compute work (decoding, index search) on (cores - 2) threads, at least one: on
# a 2-core machine the two legs of a hybrid search then take turns (~25% slower, measured at 1M
# rows). Set before lancedb starts its runtime; an explicit setting wins.
if (os.cpu_count() or 1) <= 2:
    os.environ.setdefault("LANCE_CPU_THREADS", "2")
