"""The LanceDB connection: long-lived table handles, one writer per table, index set-up."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import lancedb
import pyarrow as pa
import structlog
from lancedb.index import FTS, BTree, LabelList

from memgrpc.store import schemas
from memgrpc.store.writer import TableWriter

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StoreConfig:
    uri: str
    dim: int
    storage_options: dict[str, str] = field(default_factory=dict)
    # how stale a read may be when another process wrote (replicas); 0 = always check
    read_consistency_s: float = 0.5
    writer_max_rows: int = 2000
    # LanceDB's caches: its defaults (6 GiB of indexes, 1 GiB of metadata) fill with every
    # version's manifests under a steady write load, which reads as a leak
    index_cache_mb: int = 1024
    metadata_cache_mb: int = 16
    # load the memories' search indexes into the index cache at open and after a build (the
    # server turns it on; tools opening a store for a moment leave it off)
    prewarm_indexes: bool = False
    writer_max_wait_ms: float = 0.0


@dataclass(frozen=True)
class _Spec:
    schema: pa.Schema
    key: str
    btree: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    fts: str | None = None


def _specs(dim: int) -> dict[str, _Spec]:
    return {
        "projects": _Spec(schemas.PROJECTS, "id"),
        "api_keys": _Spec(schemas.API_KEYS, "id", btree=("secret_hash", "project_id")),
        "users": _Spec(schemas.USERS, "pk", btree=("project_id", "id"), labels=("metadata_kv",)),
        "memories": _Spec(
            schemas.memories(dim),
            "id",
            btree=("id", "project_id", "user_id", "session_id"),
            labels=("tags", "categories", "metadata_kv"),
            fts="content",
        ),
        "memory_versions": _Spec(schemas.MEMORY_VERSIONS, "pk", btree=("memory_id",)),
        "requests": _Spec(schemas.REQUESTS, "pk"),
        "categories": _Spec(schemas.CATEGORIES, "pk", btree=("project_id",)),
        "sessions": _Spec(
            schemas.SESSIONS,
            "id",
            btree=("id", "project_id", "user_id", "status"),
            labels=("metadata_kv",),
        ),
        "messages": _Spec(schemas.MESSAGES, "pk", btree=("session_id", "user_id")),
        "jobs": _Spec(schemas.JOBS, "id", btree=("id", "session_id")),
        "chat_results": _Spec(schemas.CHAT_RESULTS, "id", btree=("id",)),
        "conflicts": _Spec(
            schemas.CONFLICTS, "id", btree=("id", "project_id", "user_id"), labels=("memory_ids",)
        ),
        "agents": _Spec(schemas.AGENTS, "id", btree=("id", "project_id")),
        "provider_keys": _Spec(schemas.PROVIDER_KEYS, "id", btree=("project_id",)),
        "agent_states": _Spec(
            schemas.AGENT_STATES, "pk", btree=("pk", "project_id", "agent_id", "user_id")
        ),
        "agent_relations": _Spec(
            schemas.AGENT_RELATIONS, "pk", btree=("pk", "project_id", "agent_id", "user_id")
        ),
        "agent_diary": _Spec(schemas.AGENT_DIARY, "pk", btree=("project_id", "agent_id")),
        "notifications": _Spec(
            schemas.NOTIFICATIONS, "id", btree=("id", "project_id", "agent_id", "user_id")
        ),
        "agent_instances": _Spec(schemas.AGENT_INSTANCES, "id", btree=("id", "agent_id")),
        "memory_changes": _Spec(schemas.MEMORY_CHANGES, "pk", btree=("pk", "project_id")),
        "eval_templates": _Spec(schemas.EVAL_TEMPLATES, "id", btree=("id", "project_id")),
        "runs": _Spec(schemas.RUNS, "id", btree=("id", "project_id", "status")),
        "run_events": _Spec(schemas.RUN_EVENTS, "pk", btree=("run_id",)),
    }


# object stores: give up on an unreachable endpoint in seconds, not minutes (callers get
# UNAVAILABLE and retry); every key can be overridden through MEMGRPC_STORAGE_OPTIONS
_REMOTE_DEFAULTS = {
    "connect_timeout": "2s",
    "timeout": "30s",
    "client_max_retries": "2",
    "client_retry_timeout": "5",
}


def storage_options(uri: str, given: dict[str, str]) -> dict[str, str] | None:
    remote = "://" in uri and not uri.startswith("file://")
    merged = ({**_REMOTE_DEFAULTS} if remote else {}) | dict(given)
    return merged or None


class Store:
    """Open once per process; `table(name)` and `writer(name)` are cheap afterwards."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._db: Any = None
        self._tables: dict[str, Any] = {}
        self._writers: dict[str, TableWriter] = {}
        self._specs = _specs(config.dim)
        self.session = self._new_session()
        self.session_renewals = 0
        self._snapshot_reads: list[tuple[str, float]] = []  # (table, commit time held)

    @property
    def specs(self) -> dict[str, _Spec]:
        return self._specs

    def _new_session(self) -> Any:
        return lancedb.Session(
            index_cache_size_bytes=self.config.index_cache_mb * 2**20,
            metadata_cache_size_bytes=self.config.metadata_cache_mb * 2**20,
        )

    async def _connect(self, session: Any) -> Any:
        return await lancedb.connect_async(
            self.config.uri,
            storage_options=storage_options(self.config.uri, self.config.storage_options),
            read_consistency_interval=timedelta(seconds=self.config.read_consistency_s),
            session=session,
        )

    async def open(self) -> None:
        self._db = await self._connect(self.session)
        existing = set(await self._list_tables())
        for name, spec in self._specs.items():
            if name in existing:
                tbl = await self._db.open_table(name)
                await self._migrate(name, tbl, spec.schema)
            else:
                tbl = await self._create(name, spec.schema)
            self._tables[name] = tbl
            self._writers[name] = TableWriter(
                tbl,
                spec.schema,
                spec.key,
                max_rows=self.config.writer_max_rows,
                max_wait_ms=self.config.writer_max_wait_ms,
                name=name,
            )
            await self._ensure_indexes(tbl, spec)
        await self.prewarm("memories")

    async def _create(self, name: str, schema: pa.Schema) -> Any:
        """A new table; the change feed's is born with its anchor row, so that replicas
        creating it at once never hold two (store/changes.py)."""
        if name != "memory_changes":
            return await self._db.create_table(name, schema=schema, exist_ok=True)
        try:
            return await self._db.create_table(name, data=schemas.change_anchor())
        except Exception:  # another replica created it first: its anchor is the one
            return await self._db.open_table(name)

    async def renew_session(self) -> None:
        """Move every table to a new LanceDB session, whose caches hold only what is read from
        now on. LanceDB keys cached indexes by index version, so under steady writes its cache
        keeps every version that maintenance replaced until the cap pushes them out (tens of MiB
        a minute under load, towards a 1 GiB cap; measured: docs/BENCHMARKS.md).

        Each table moves between its writer's commits, with none in flight: a handle sees its
        own commits at once but others' only after `read_consistency_s`, so every write
        acknowledged before the move is in the version the new handle opens, and every write
        after it goes through the new handle (reads still running on an old one finish there).
        """
        session = self._new_session()
        db = await self._connect(session)
        fresh = {name: await db.open_table(name) for name in self._specs}
        await self._prewarm(fresh["memories"], "memories")

        async def move(name: str, tbl: Any) -> None:
            await tbl.checkout_latest()
            self._tables[name] = tbl
            self._writers[name].rebind(tbl)

        for name, tbl in fresh.items():
            await self._writers[name].exclusive(functools.partial(move, name, tbl), appends=False)
        self._db, self.session = db, session
        self.session_renewals += 1

    async def prewarm(self, table: str) -> None:
        """Load the table's search indexes into LanceDB's cache now: otherwise the first searches
        load the parts they touch (at 1M memories, the first vector searches took 20-120 ms
        instead of 5). Called at open, after a vector index build and for a new session."""
        await self._prewarm(self._tables[table], table)

    async def _prewarm(self, tbl: Any, table: str) -> None:
        if not self.config.prewarm_indexes:
            return
        try:
            for ix in await tbl.list_indices():
                if ix.index_type == "FTS" or ix.index_type.startswith("Ivf"):  # not scalar ones
                    await tbl.prewarm_index(ix.name)
        except Exception as exc:  # a cold cache is slower, never wrong
            log.warning("index_prewarm_failed", table=table, error=str(exc)[:300])

    async def _list_tables(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            resp = await self._db.list_tables(page_token=token)
            names.extend(resp.tables)
            token = resp.page_token
            if not token:
                return names

    @staticmethod
    async def _migrate(name: str, tbl: Any, wanted: pa.Schema) -> None:
        """Add columns this version has and the data does not; only nullable ones may be added,
        since rows written by an older replica carry no value for them."""
        actual = await tbl.schema()
        missing = [f for f in wanted if f.name not in actual.names]
        if not missing:
            return
        required = [f.name for f in missing if not f.nullable]
        if required:
            raise RuntimeError(f"table {name}: cannot add NOT NULL columns {required}")
        await tbl.add_columns(missing)
        log.info("table_migrated", table=name, added=[f.name for f in missing])

    async def _ensure_indexes(self, tbl: Any, spec: _Spec) -> None:
        have = {tuple(ix.columns) for ix in await tbl.list_indices()}
        wanted: list[tuple[str, Any]] = [(c, BTree()) for c in spec.btree]
        wanted += [(c, LabelList()) for c in spec.labels]
        if spec.fts:
            wanted.append(
                (
                    spec.fts,
                    FTS(with_position=False, stem=True, remove_stop_words=True, lower_case=True),
                )
            )
        for col, cfg in wanted:
            if (col,) in have:
                continue
            try:
                await tbl.create_index(col, config=cfg)
            except Exception as exc:  # another replica may have raced us; indexes are optional
                log.warning("index_create_failed", column=col, error=str(exc))

    @contextlib.asynccontextmanager
    async def snapshot_read(self, table: str) -> AsyncIterator[None]:
        """Around a read that streams the version of `table` current now for long (an export):
        old-version cleanup keeps every version since that one's commit until the read ends
        (store/maintenance.py). Lance removes versions by commit time, and the version read may
        be old when the table was quiet, so it is the commit time that is held."""
        entry = (table, await _commit_time(self._tables[table]))
        self._snapshot_reads.append(entry)
        try:
            yield
        finally:
            self._snapshot_reads.remove(entry)  # equal entries are interchangeable

    def snapshot_age_s(self, table: str) -> float:
        """How old the oldest version of `table` a snapshot read holds is (0 when none)."""
        held = [t for name, t in self._snapshot_reads if name == table]
        return max(0.0, time.time() - min(held)) if held else 0.0

    def table(self, name: str) -> Any:
        return self._tables[name]

    def writer(self, name: str) -> TableWriter:
        return self._writers[name]

    def writers(self) -> dict[str, TableWriter]:
        return dict(self._writers)

    async def close(self) -> None:
        """Flush every writer, then drop the handles."""
        await asyncio.gather(*(w.close() for w in self._writers.values()), return_exceptions=True)
        for tbl in self._tables.values():
            with contextlib.suppress(Exception):
                tbl.close()
        self._tables.clear()


async def list_versions(tbl: Any, *, tries: int = 5) -> list[dict[str, Any]]:
    """The table's versions, listed again when a cleanup (here or on another replica) removed one
    while they were read: LanceDB lists the versions, then reads each one's manifest, and fails
    on one removed meanwhile (seen under load as "Not found: ..._versions/N.manifest")."""
    for attempt in range(1, tries + 1):
        try:
            return list(await tbl.list_versions())
        except Exception as exc:
            if attempt == tries or "not found" not in str(exc).lower():
                raise
            await asyncio.sleep(0.05 * attempt)  # a cleanup takes a moment
    raise AssertionError("unreachable")


async def _commit_time(tbl: Any) -> float:
    """Epoch seconds of the commit of the version `tbl` reads now (a read started after this
    sees it or a newer one). LanceDB gives the time as a naive local datetime."""
    version = int(await tbl.version())
    for v in await list_versions(tbl):
        if int(v["version"]) == version:
            return float(v["timestamp"].timestamp())
    return time.time()  # removed meanwhile: the read sees a newer version
