"""Rows this process may serve without reading the store: valid while the table has changed
only through this process's own writes, which the cache applies to itself.

A chat turn reads its session and the session's last messages; a read costs ~5-15 ms of LanceDB
scan, reading the table's version 1-4 ms (done at most once per read consistency interval, as
long as any LanceDB read may lag others' writes, for all keys). An entry remembers the table
version it was loaded at and is served while every later version was committed here
(store/versionlog.py), so another replica's write forces a re-read (compactions and index builds
made here count as own). While one runs here, its versions are not sorted out yet: entries are
served as they are until it ends (at most store.versionlog.MAINTENANCE_GRACE_S), as the recall
cache does. Reading them meanwhile from a table busy compacting held chat turns for over a second
(measured: docs/BENCHMARKS.md). Another replica's write made during the pass is read once it
ends.

Own writes must reach the cache: the writing code calls `writing()` around the write and settles
the entry's new value after the commit (an idempotent change: it may meet a value loaded after
the commit). A load during which a write of the same key ended is not kept (it may have read the
old row, and the write has settled already). Writes that bypass the cache (purge, rename) call
`forget`.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from memgrpc.store.tables import Table

V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    value: V
    version: int  # the table version the value was checked against


class ThrottledVersion:
    """A table's version, read at most once per `every_s` for all callers (a read costs 1-4 ms
    on a busy table; others' writes may go unseen that long anyway, see read consistency)."""

    def __init__(self, read: Callable[[], Awaitable[int]], every_s: float) -> None:
        self._read = read
        self._every_s = every_s
        self._seen, self._seen_at = -1, -1e9

    async def __call__(self) -> int:
        now = time.monotonic()
        if now - self._seen_at >= self._every_s:
            self._seen, self._seen_at = await self._read(), now
        return self._seen


class _Load:
    spoiled = False  # a write of the key ended while this load was reading


class OwnWritesCache(Generic[V]):
    def __init__(self, table: Table, refresh_s: float, size: int = 10_000) -> None:
        """`refresh_s`: how long an entry is served before the table version is checked again
        (the store's read consistency interval: reads may miss others' writes that long)."""
        self._table = table
        self._size = size
        self._version = ThrottledVersion(table.version, refresh_s)
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._loads: dict[str, set[_Load]] = {}  # loads in flight, by key

    async def get(self, key: str, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value if still valid, else `load()` (kept unless a write raced it)."""
        current = await self._version()
        hit = self._entries.get(key)
        if hit is not None:
            versions = self._table.writer.versions
            if versions.only_own_since(hit.version, current):
                hit.version = max(hit.version, current)  # later checks start here
                self._entries.move_to_end(key)
                return hit.value
            if versions.maintaining_lately():  # its version stays: checked again after the pass
                self._entries.move_to_end(key)
                return hit.value
        token = _Load()
        self._loads.setdefault(key, set()).add(token)
        try:
            value = await load()
        finally:
            loads = self._loads[key]
            loads.discard(token)
            if not loads:
                del self._loads[key]
        self._keep(key, None if token.spoiled else value, current)
        return value

    def peek(self, key: str) -> V | None:
        """The entry as last cached, unchecked (for updating it after a write)."""
        hit = self._entries.get(key)
        return hit.value if hit is not None else None

    @contextlib.asynccontextmanager
    async def writing(self, key: str) -> AsyncIterator[Callable[[V | None], None]]:
        """Around a write of `key`: yields `settle(value)`, to call once the write committed
        with the entry's new value (None drops it). A write that fails drops the entry."""
        settled: list[V | None] = []
        try:
            yield settled.append
        finally:
            self._spoil(key)
            hit = self._entries.get(key)
            if hit is not None:
                if settled and settled[-1] is not None:
                    # the version stays: the only change since it is this write, now applied
                    hit.value = settled[-1]
                else:
                    del self._entries[key]

    @contextlib.asynccontextmanager
    async def creating(self, key: str) -> AsyncIterator[Callable[[V | None], None]]:
        """Around the insert of a row under a new key: the settled value is cached as of a
        version read before the insert (no earlier commit can have touched a key that did not
        exist), so the row's first read costs nothing."""
        version = await self._version()
        settled: list[V | None] = []
        try:
            yield settled.append
        finally:
            self._spoil(key)
            self._keep(key, settled[-1] if settled else None, version)

    def _keep(self, key: str, value: V | None, version: int) -> None:
        """Cache `value` as checked at `version` (None drops the entry)."""
        if value is None:
            self._entries.pop(key, None)
            return
        self._entries[key] = _Entry(value, version)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        """Forget one entry (and a load of it in flight)."""
        self._spoil(key)
        self._entries.pop(key, None)

    def forget(self, match: Callable[[str, V], bool]) -> None:
        """Drop entries written behind the cache's back (and any load in flight)."""
        for key in list(self._loads):
            self._spoil(key)
        for key in [k for k, e in self._entries.items() if match(k, e.value)]:
            del self._entries[key]

    def _spoil(self, key: str) -> None:
        for token in self._loads.get(key, ()):
            token.spoiled = True
