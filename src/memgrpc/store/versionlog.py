"""Which versions of a table this process made: what the row caches check before serving.

A cache entry stays valid while every later table version is one of this process's own commits
(the cache applied those itself) or a version of its own compaction or index build (which changes
no rows); any other version is another process's write, to be read.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterable, Iterator

_OWN_VERSIONS = 4096
# how long a compaction or index build running here may hold back reading others' writes in the
# caches of its table (a compaction takes ~1-4 s; its versions change no rows, and every cached
# entry would otherwise be read again from a table busy compacting)
MAINTENANCE_GRACE_S = 5.0


class VersionLog:
    """The versions of one table made here; its writer records each commit's."""

    def __init__(self) -> None:
        # bounded: a cache entry older than the last _OWN_VERSIONS versions is re-read anyway
        self.own_versions: set[int] = set()
        self._version_order: deque[int] = deque()
        self._maintaining_since: float | None = None

    def record(self, version: int | None) -> None:
        """A version committed here (None: the commit's result did not say which)."""
        if version is None:
            return
        self.own_versions.add(int(version))
        self._version_order.append(int(version))
        while len(self._version_order) > _OWN_VERSIONS:
            self.own_versions.discard(self._version_order.popleft())

    @property
    def in_maintenance(self) -> bool:
        """Whether a compaction or index build of this process runs now (the writer batches more
        meanwhile: store.writer.MAINTAINING_WAIT_S)."""
        return self._maintaining_since is not None

    @contextlib.contextmanager
    def maintaining(self) -> Iterator[None]:
        """Around a compaction or index build of this table by this process: versions it commits
        are adopted only when it ends (see `maintaining_lately`)."""
        self._maintaining_since = time.monotonic()
        try:
            yield
        finally:
            self._maintaining_since = None

    def maintaining_lately(self, now: float | None = None) -> bool:
        """Whether such a pass began here less than MAINTENANCE_GRACE_S before `now`: until it
        ends (and its versions are adopted), caches keep serving what they hold."""
        since = self._maintaining_since
        now = time.monotonic() if now is None else now
        return since is not None and now - since < MAINTENANCE_GRACE_S

    def adopt(self, versions: Iterable[int]) -> None:
        """Versions that changed no rows (compaction, index builds): readers need not re-read."""
        for v in versions:
            self.record(v)

    def only_own_since(self, since: int, current: int) -> bool:
        """Whether every table version after `since` up to `current` was committed here."""
        return current - since <= _OWN_VERSIONS and all(
            v in self.own_versions for v in range(since + 1, current + 1)
        )
