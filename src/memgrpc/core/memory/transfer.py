"""Export and import of a project's memories: backups, moves between projects or servers, bulk
loads with precomputed vectors.

Export streams one table version (a consistent snapshot) in batches, optionally with each
memory's vector and versions. Import takes records in stream order and writes them in batches of
`IMPORT_BATCH` rows, one commit each, through the table's single writer:

- ids are kept. A record whose id the project already has (or that came earlier in the stream)
  is skipped, never updated, so importing the same file twice changes nothing. A record without
  an id gets a new one (and so is imported again on a re-import).
- The memories table is keyed by id across projects, so an id that another project on this
  server uses is replaced by one derived from (project, id): the same on every re-import.
- Times, version, tags, metadata, importance, archived, speaker, seq, origin and the fields of
  extracted facts (profile slot, mentions, entities) are kept; older
  versions, when given, become the memory's history.
- A vector is used as it is only if its model id is the server's and its length the server's
  dimension (and it is finite and non-zero); otherwise the content is embedded here.
- Users are created implicitly (without marking them active) and the recall cache learns about
  the new rows at once.
- Invalid records are reported per record and the rest go on. A store or embedder failure ends
  the import: the batches committed before it stay, and re-running the import completes it.

Imports of one process run one batch at a time (the id check and the commit under one lock);
concurrent imports of the same new ids through different replicas are not guarded against.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import DomainError, InvalidArgument, NotFound, Violations
from memgrpc.core.kernel.ids import derived_id, new_id
from memgrpc.core.memory import checks, rows
from memgrpc.core.memory.changes import ChangeKind, written
from memgrpc.core.memory.model import (
    DEFAULT_IMPORTANCE,
    DEFAULT_MEMORY_TYPE,
    MEMORY_TYPES,
    Memory,
    MemoryQuery,
    MemoryVersion,
)
from memgrpc.core.memory.service import MemoryService, embed_text
from memgrpc.store.filters import Where
from memgrpc.store.memories import MemoryTable
from memgrpc.store.tables import Table

IMPORT_BATCH = 1000
DEFAULT_EXPORT_BATCH = 500
MAX_EXPORT_BATCH = 1000
MAX_ERRORS = 100
MAX_VERSIONS = 1000
# client ids: what new_id makes, UUIDs (mem0) and the like
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
ID_RULE = "must be 1-128 letters, digits, '_', '-', '.' or ':', starting with a letter or digit"


@dataclass
class Record:
    """One memory with what a plain Memory does not carry (see MemoryRecord in memory.proto)."""

    memory: Memory
    vector: np.ndarray | None = None
    model: str = ""
    versions: list[MemoryVersion] = field(default_factory=list)
    seq: int | None = None


@dataclass
class RecordError:
    index: int
    id: str
    reason: str
    message: str


@dataclass
class ImportSummary:
    model: str
    dimension: int
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    embedded: int = 0
    renamed: int = 0
    errors: list[RecordError] = field(default_factory=list)


@dataclass
class _Ready:
    """A validated record, ready to be written."""

    index: int
    memory: Memory
    vector: np.ndarray | None
    version_time: datetime
    history: list[MemoryVersion]


def _now() -> datetime:
    return datetime.now(UTC)


class Transfer:
    """Export and import over the memory service's tables, writers, embedder and caches."""

    def __init__(self, memories: MemoryService) -> None:
        self._svc = memories
        self._table = MemoryTable(memories.store)
        self._versions = memories.store.writer("memory_versions")
        self._versions_tbl = Table(memories.store, "memory_versions")
        self._memories_tbl = Table(memories.store, "memories")
        self._embedder = memories.embedder
        self._lock = asyncio.Lock()

    @property
    def model_id(self) -> str:
        model: str = getattr(self._embedder, "model_id", "")
        return model

    @property
    def dim(self) -> int:
        return self._embedder.dim

    # -- export -----------------------------------------------------------------------------
    async def export(
        self,
        project_id: str,
        q: MemoryQuery,
        *,
        vectors: bool = False,
        versions: bool = False,
        batch_size: int = 0,
    ) -> AsyncIterator[list[Record]]:
        """The matching memories in batches of `batch_size` (0 = 500), from one table version."""
        v = Violations()
        if not 0 <= batch_size <= MAX_EXPORT_BATCH:
            v.add("batch_size", f"must be between 0 and {MAX_EXPORT_BATCH}")
        v.raise_if_any()
        flt = self._svc.query_filter(project_id, q)
        size = batch_size or DEFAULT_EXPORT_BATCH
        pending: list[tuple[Record, datetime | None]] = []
        async for batch in self._table.scan(flt, with_vectors=vectors, batch_rows=size):
            pending += self._records(batch, vectors)
            while len(pending) >= size:
                out, pending = pending[:size], pending[size:]
                yield await self._finish(project_id, out, versions)
        if pending:
            yield await self._finish(project_id, pending, versions)

    def _records(
        self, batch: pa.RecordBatch, with_vectors: bool
    ) -> list[tuple[Record, datetime | None]]:
        vecs: np.ndarray | None = None
        if with_vectors:
            column = batch.column("vector")
            flat = column.flatten().to_numpy(zero_copy_only=False)
            vecs = np.asarray(flat, dtype=np.float32).reshape(len(column), -1)
            batch = batch.drop_columns(["vector"])
        out = []
        for i, row in enumerate(batch.to_pylist()):
            record = Record(memory=rows.from_row(row), seq=row.get("seq"))
            if vecs is not None:
                record.vector, record.model = vecs[i], self.model_id
            out.append((record, row.get("version_time")))
        return out

    async def _finish(
        self, project_id: str, batch: list[tuple[Record, datetime | None]], versions: bool
    ) -> list[Record]:
        """Attach the versions (current first, then older ones, newest first) when asked."""
        records = [r for r, _ in batch]
        if not versions:
            return records
        where = (
            Where().eq("project_id", project_id).is_in("memory_id", [r.memory.id for r in records])
        )
        old: dict[str, list[MemoryVersion]] = defaultdict(list)
        for row in await self._versions_tbl.rows(where):
            old[row["memory_id"]].append(rows.version_from_row(row))
        for record, version_time in batch:
            m = record.memory
            current = MemoryVersion(
                memory_id=m.id,
                version=m.version,
                content=m.content,
                type=m.type,
                tags=m.tags,
                metadata=m.metadata,
                create_time=version_time or m.create_time,
            )
            older = sorted(
                (x for x in old.get(m.id, []) if x.version < m.version), key=lambda x: -x.version
            )
            record.versions = [current, *older]
        return records

    # -- import -----------------------------------------------------------------------------
    async def check_scope(self, project_id: str, m: Memory) -> None:
        """NOT_FOUND when the record names an agent (instance) the project does not have."""
        await self._svc.check_scopes(project_id, [m])

    def importer(self, project_id: str) -> Importer:
        return Importer(self, project_id)

    def prepare(self, index: int, record: Record) -> _Ready:
        """Validate one record and fill in its defaults; raises InvalidArgument."""
        m = record.memory
        v = Violations()
        if m.id and not ID_PATTERN.match(m.id):
            v.add("memory.id", ID_RULE)
        validation.check_id(v, "memory.user_id", m.user_id, required=True)
        checks.check_memory(v, m)
        if m.version < 0:
            v.add("memory.version", "must not be negative")
        if record.seq is not None and record.seq < 0:
            v.add("seq", "must not be negative")
        version = max(m.version, 1)
        create = m.create_time or _now()
        update = m.update_time or create
        current_time, history = self._history(v, record.versions, version)
        v.raise_if_any()
        ready = replace(
            m,
            id=m.id or new_id("mem"),
            type=m.type or DEFAULT_MEMORY_TYPE,
            importance=DEFAULT_IMPORTANCE if m.importance is None else m.importance,
            version=version,
            event_time=m.event_time or create,
            create_time=create,
            update_time=update,
            seq=record.seq,
        )
        version_time = current_time or (update if version > 1 else create)
        return _Ready(index, ready, self._usable(record), version_time, history)

    @staticmethod
    def _history(
        v: Violations, versions: Sequence[MemoryVersion], current: int
    ) -> tuple[datetime | None, list[MemoryVersion]]:
        """(create time of the current version if given, the older versions)."""
        if len(versions) > MAX_VERSIONS:
            v.add("versions", f"at most {MAX_VERSIONS} versions")
            return None, []
        seen: set[int] = set()
        current_time = None
        older = []
        for i, ver in enumerate(versions):
            name = f"versions[{i}]"
            if not 1 <= ver.version <= current:
                v.add(f"{name}.version", f"must be between 1 and memory.version ({current})")
                continue
            if ver.version in seen:
                v.add(f"{name}.version", f"version {ver.version} appears twice")
                continue
            seen.add(ver.version)
            if ver.version == current:
                current_time = ver.create_time
                continue
            validation.check_content(v, f"{name}.content", ver.content)
            if ver.type and ver.type not in MEMORY_TYPES:
                v.add(f"{name}.type", "unknown memory type")
            validation.check_labels(v, f"{name}.tags", ver.tags)
            validation.check_metadata(v, f"{name}.metadata", ver.metadata)
            older.append(ver)
        return current_time, older

    def _usable(self, record: Record) -> np.ndarray | None:
        """The record's vector if it can be stored as is: the server's model and dimension."""
        if record.vector is None or not len(record.vector) or record.model != self.model_id:
            return None
        vec = np.asarray(record.vector, dtype=np.float32)
        if vec.shape != (self.dim,) or not np.isfinite(vec).all():
            return None
        norm = float(np.linalg.norm(vec))
        if norm < 1e-6:
            return None
        return vec if abs(norm - 1.0) <= 1e-3 else vec / np.float32(norm)

    async def write(self, project_id: str, batch: list[_Ready], summary: ImportSummary) -> None:
        """Check ids, embed what needs it and commit one batch (one import batch at a time)."""
        async with self._lock:
            todo, renamed = await self._new_only(project_id, batch, summary)
            if not todo:
                return
            missing = [r for r in todo if r.vector is None]
            if missing:
                computed = await self._embedder.embed([embed_text(r.memory) for r in missing])
                for r, vec in zip(missing, computed, strict=True):
                    r.vector = vec
            await self._svc.users.ensure(project_id, {r.memory.user_id for r in todo}, active=False)
            await self._svc.categories.register(
                project_id, {c for r in todo for c in r.memory.categories}
            )
            history = [_version_row(project_id, r, ver) for r in todo for ver in r.history]
            if history:  # first: a crash in between leaves versions a re-import completes
                await self._versions.upsert(history)
            new_rows = [rows.to_row(r.memory, project_id, r.vector, r.version_time) for r in todo]
            await self._table.writer.insert(new_rows)
            await self._svc.cache.written(project_id, new_rows)
            await self._svc.changes.record(
                project_id, [written(ChangeKind.CREATED, r.memory) for r in todo]
            )
            summary.imported += len(todo)
            summary.embedded += len(missing)
            summary.renamed += renamed

    async def _new_only(
        self, project_id: str, batch: list[_Ready], summary: ImportSummary
    ) -> tuple[list[_Ready], int]:
        """The records to write: not in the project yet, ids of other projects replaced."""
        seen: set[str] = set()
        fresh: list[_Ready] = []
        for r in batch:  # an id twice in one batch: the first one counts
            if r.memory.id in seen:
                summary.skipped += 1
            else:
                seen.add(r.memory.id)
                fresh.append(r)
        owners = await self._owners([r.memory.id for r in fresh])
        keep: list[_Ready] = []
        moved: list[_Ready] = []
        for r in fresh:
            owner = owners.get(r.memory.id)
            if owner == project_id:
                summary.skipped += 1
            elif owner is None:
                keep.append(r)
            else:
                moved.append(r)
        if not moved:
            return keep, 0
        for r in moved:
            r.memory = replace(r.memory, id=derived_id("mem", project_id, r.memory.id))
        owners = await self._owners([r.memory.id for r in moved])
        renamed = 0
        for r in moved:
            owner = owners.get(r.memory.id)
            if owner == project_id or r.memory.id in seen:
                summary.skipped += 1
            elif owner is not None:
                _fail(summary, r.index, r.memory.id, "ID_IN_USE", "the id is in use")
            else:
                seen.add(r.memory.id)
                keep.append(r)
                renamed += 1
        return keep, renamed

    async def _owners(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> project of the ids that exist in any project."""
        if not ids:
            return {}
        where = Where().is_in("id", list(ids))
        found = await self._memories_tbl.rows(where, ["id", "project_id"])
        return {r["id"]: r["project_id"] for r in found}


class Importer:
    """One import stream: `add` (or `reject`) records in stream order, then `finish`."""

    def __init__(self, transfer: Transfer, project_id: str) -> None:
        self._transfer = transfer
        self._project = project_id
        self._pending: list[_Ready] = []
        self._next = 0
        self.summary = ImportSummary(model=transfer.model_id, dimension=transfer.dim)

    def reject(self, memory_id: str, error: DomainError) -> None:
        """Count the next record as failed (it could not even be decoded)."""
        _fail(self.summary, self._next, memory_id, error.reason, error.message)
        self._next += 1

    async def add(self, record: Record) -> None:
        index, self._next = self._next, self._next + 1
        try:
            ready = self._transfer.prepare(index, record)
            await self._transfer.check_scope(self._project, ready.memory)
        except (InvalidArgument, NotFound) as exc:
            _fail(self.summary, index, record.memory.id, exc.reason, exc.message)
            return
        self._pending.append(ready)
        if len(self._pending) >= IMPORT_BATCH:
            await self.flush()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            await self._transfer.write(self._project, batch, self.summary)

    async def finish(self) -> ImportSummary:
        await self.flush()
        return self.summary


def _fail(summary: ImportSummary, index: int, memory_id: str, reason: str, message: str) -> None:
    summary.failed += 1
    if len(summary.errors) < MAX_ERRORS:
        summary.errors.append(RecordError(index, memory_id, reason, message))


def _version_row(project_id: str, r: _Ready, ver: MemoryVersion) -> dict[str, Any]:
    """An imported older version, with the defaults of a version written here."""
    m = r.memory
    filled = replace(
        ver,
        memory_id=m.id,
        type=ver.type or DEFAULT_MEMORY_TYPE,
        create_time=ver.create_time or (m.create_time if ver.version == 1 else None),
        expire_time=ver.expire_time or r.version_time,
    )
    return rows.version_row(project_id, m.user_id, filled, m.agent_id, m.instance_id)
