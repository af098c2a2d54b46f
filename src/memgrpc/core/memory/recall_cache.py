"""A per-user in-memory recall index in front of LanceDB, for hybrid search of one user.

The ranker (core.memory.recall) scores every item of a user exhaustively with signals LanceDB cannot
compute (neighbouring turns, session scores, speaker and time cues, tuned BM25), in a few ms.
Users are loaded lazily from the store, kept current by this process's own writes (read-your-
writes), and refreshed from the store every `refresh_s` for writes of other replicas (a delta by
update_time; a full reload when rows went missing), or, while this process compacts the table,
once that ends (at most store.versionlog.MAINTENANCE_GRACE_S later). Least recently used users are
evicted once the cache holds `max_rows`; users larger than `max_user_rows` (or than `max_rows`) are
not cached (search falls back to the store's vector and full-text legs), and `max_rows=0` caches
no one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.rowcache import ThrottledVersion
from memgrpc.core.memory import rows as rowconv
from memgrpc.core.memory.model import Memory, default_origin
from memgrpc.core.memory.recall import UserIndex
from memgrpc.store.memories import MemoryFilter, MemoryTable

# rows whose commit raced a refresh may carry an update_time a little before it
_SLACK = timedelta(seconds=5)
MAX_ROWS = 300_000  # memories held in all, ~3 KiB each (scripts/bench_cache_memory.py)


@dataclass
class CachedUser:
    index: UserIndex
    memories: dict[str, Memory] = field(default_factory=dict)
    checked_at: float = 0.0  # monotonic time of the last store check
    checked_wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    checked_version: int = 0  # the table version seen at the last check
    archived: set[str] = field(default_factory=set)  # hidden from searches by default
    by_type: dict[str, set[str]] = field(default_factory=dict)  # memory ids of each type


class IndexCache:
    def __init__(
        self,
        table: MemoryTable,
        dim: int,
        *,
        refresh_s: float = 0.5,
        max_rows: int = MAX_ROWS,
        max_user_rows: int = 50_000,
    ) -> None:
        self._table = table
        self._dim = dim
        self._refresh_s = refresh_s
        self._max_rows = max_rows
        self._max_user_rows = min(max_user_rows, max_rows)
        self._users: OrderedDict[tuple[str, str], CachedUser] = OrderedDict()
        self._too_big: dict[tuple[str, str], float] = {}
        # own writes that land while a user is being loaded, applied once the load is done
        self._pending: dict[tuple[str, str], list[tuple[str, Any]]] = {}
        self._locks = KeyedLocks()
        self.loads = 0
        self._version = ThrottledVersion(table.version, refresh_s)

    @property
    def users(self) -> int:
        return len(self._users)

    @property
    def rows(self) -> int:
        return sum(len(u.memories) for u in self._users.values())

    async def get(self, project_id: str, user_id: str) -> CachedUser | None:
        """The user's index, loaded or refreshed as needed; None if too large to cache."""
        key = (project_id, user_id)
        if self._max_rows == 0 or time.monotonic() - self._too_big.get(key, -1e9) < 60:
            return None
        async with self._locks.hold(f"{project_id}\x1f{user_id}"):
            user = self._users.get(key)
            if user is None:
                user = await self._load(key)
                if user is None:
                    return None
            elif time.monotonic() - user.checked_at >= self._refresh_s:
                user = await self._refresh(key, user)
                if user is None:
                    self._users.pop(key, None)
                    return None
            self._users[key] = user
            self._users.move_to_end(key)
            self._evict()
            return user

    async def _load(self, key: tuple[str, str]) -> CachedUser | None:
        started, wall = time.monotonic(), datetime.now(UTC)
        self._pending[key] = []
        try:
            version = await self._version()
            found = await self._table.user_rows(*key)
            if len(found) > self._max_user_rows:
                self._too_big[key] = time.monotonic()
                return None
            self._too_big.pop(key, None)
            user = CachedUser(
                UserIndex(dim=self._dim),
                checked_at=started,
                checked_wall=wall,
                checked_version=version,
            )
            user.index.reserve(len(found))
            for row in found:
                _put(user, row)
            for op, arg in self._pending[key]:  # own writes committed while we were reading
                _put(user, arg) if op == "put" else _drop(user, arg)
        finally:
            self._pending.pop(key, None)
        self.loads += 1
        return user

    async def _refresh(self, key: tuple[str, str], user: CachedUser) -> CachedUser | None:
        started, wall = time.monotonic(), datetime.now(UTC)
        version = await self._version()
        versions = self._table.writer.versions
        if versions.only_own_since(user.checked_version, version):
            # nobody else wrote: this process's own writes are in the index already
            user.checked_at, user.checked_version = started, version
            return user
        if versions.maintaining_lately(started):
            # versions of a compaction running here are adopted when it ends: look again then
            # (the checked version stays, so another replica's write is read after it)
            user.checked_at = started
            return user
        changed = await self._table.user_rows(*key, since=user.checked_wall - _SLACK)
        for row in changed:
            if _newer(user, row):  # most were read by the last refresh too (the slack)
                _put(user, row)
        total = await self._table.count(
            MemoryFilter(project_id=key[0], user_id=key[1], include_archived=True)
        )
        if total != len(user.memories):  # another replica deleted rows: start over
            return await self._load(key)
        user.checked_at, user.checked_wall, user.checked_version = started, wall, version
        return user

    async def lookup(self, project_id: str, memory_id: str) -> Memory | None:
        """A memory of a cached user, as fresh as a search of that user sees it; None when no
        cached user holds it (the caller reads the store). A lookup by id in LanceDB scans every
        fragment not yet in the id index, which under a steady write load is most of the cost."""
        owner = next(
            (
                u
                for (p, u), user in self._users.items()
                if p == project_id and memory_id in user.memories
            ),
            None,
        )
        if owner is None:
            return None
        user = await self.get(project_id, owner)
        return None if user is None else user.memories.get(memory_id)

    def _evict(self) -> None:
        total = self.rows
        while total > self._max_rows and len(self._users) > 1:
            _, user = self._users.popitem(last=False)
            total -= len(user.memories)

    # -- this process's own writes, applied after their commit ------------------------------
    # No lock and no await: an index update is atomic on the event loop, and a write must not
    # wait behind a load or refresh that holds the user's lock while it reads the store.
    async def written(self, project_id: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            key = (project_id, row["user_id"])
            user = self._users.get(key)
            if user is not None:
                _put(user, row)
            elif key in self._pending:
                self._pending[key].append(("put", row))

    async def deleted(self, project_id: str, user_id: str, ids: list[str]) -> None:
        key = (project_id, user_id)
        user = self._users.get(key)
        for memory_id in ids:
            if user is not None:
                _drop(user, memory_id)
            elif key in self._pending:
                self._pending[key].append(("del", memory_id))

    def forget(self, project_id: str, user_id: str = "") -> None:
        """Drop cached users (a purge or rename): the next search reloads from the store."""
        for key in [
            k for k in self._users if k[0] == project_id and (not user_id or k[1] == user_id)
        ]:
            del self._users[key]


# memories memgrpc derived from a user's turns: they rank beside those turns, not above them
DERIVED_ORIGINS = ("extracted", "summary")


def _put(user: CachedUser, row: dict[str, Any]) -> None:
    m = rowconv.from_row(row)
    old = user.memories.get(m.id)
    if old is not None and old.type != m.type:
        user.by_type[old.type].discard(m.id)
    user.memories[m.id] = m
    user.by_type.setdefault(m.type, set()).add(m.id)
    if m.archived:
        user.archived.add(m.id)
    else:
        user.archived.discard(m.id)
    user.index.add(
        m.id,
        m.content,
        row["vector"],
        speaker=m.speaker,
        session=m.session_id,
        position=m.seq,
        time=m.event_time,
        derived=m.origin in DERIVED_ORIGINS,
    )


def _newer(user: CachedUser, row: dict[str, Any]) -> bool:
    held = user.memories.get(row["id"])
    return (
        held is None
        or held.version != int(row.get("version") or 1)
        or held.update_time != row.get("update_time")
    )


def _drop(user: CachedUser, memory_id: str) -> None:
    old = user.memories.pop(memory_id, None)
    if old is not None:
        user.by_type[old.type].discard(memory_id)
    user.archived.discard(memory_id)
    user.index.remove(memory_id)


def matches(m: Memory, f: MemoryFilter) -> bool:
    """The in-memory twin of MemoryFilter.where() for one memory of a cached user (the project is
    the cache's key). tests/core/test_recall_filter.py checks that the two agree on every field."""
    if f.user_id and m.user_id != f.user_id:
        return False
    if f.session_id and m.session_id != f.session_id:
        return False
    if f.ids and m.id not in f.ids:
        return False
    if f.seqs and m.seq not in f.seqs:
        return False
    if f.types and m.type not in f.types:
        return False
    if f.tags:
        tags = set(m.tags)
        if not (tags.issuperset(f.tags) if f.tags_all else tags.intersection(f.tags)):
            return False
    if f.categories and not set(m.categories).intersection(f.categories):
        return False
    if f.metadata_kv and not set(rowconv.metadata_kv(m)).issuperset(f.metadata_kv):
        return False
    if m.archived and not f.include_archived:
        return False
    if f.origins and (m.origin or default_origin(m.type)) not in f.origins:
        return False
    if f.profile_slots and m.profile_slot not in f.profile_slots:
        return False
    if f.entities and not set(m.entities).intersection(f.entities):
        return False
    if not in_scope(m, f):
        return False
    if f.start_time is None and f.end_time is None:
        return True
    when = None if m.event_time is None else _utc(m.event_time)
    if when is None:  # NULL compares false in SQL
        return False
    if f.start_time is not None and when < _utc(f.start_time):
        return False
    return f.end_time is None or when < _utc(f.end_time)


def in_scope(m: Memory, f: MemoryFilter) -> bool:
    """The twin of MemoryFilter.scope() ("" reads as NULL, as rows.to_row writes it)."""
    if f.scope_mode == "recall" and not f.agent_id:
        return True
    own = m.agent_id == f.agent_id and (not f.agent_id or m.instance_id == f.instance_id)
    return own or (f.scope_mode == "recall" and not m.agent_id)


def _utc(t: datetime) -> datetime:
    """As store.filters.literal reads a time: naive ones are UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
