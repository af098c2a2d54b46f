"""Proto <-> domain conversion for ExportMemories / ImportMemories (core.memory.transfer does the work)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import numpy as np

from memgrpc.api import convert
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.memory.model import MemoryVersion
from memgrpc.core.memory.transfer import ImportSummary, Record
from memgrpc.v1 import memory_pb2 as pb

# an export response stays well below any sane message size limit (one large record may not)
MAX_RESPONSE_BYTES = 1024 * 1024


def record_from_pb(v: Violations, r: pb.MemoryRecord) -> Record:
    m = convert.memory_from_pb(v, r.memory)
    m.id = r.memory.id
    m.version = r.memory.version
    m.create_time = convert.opt_timestamp(v, "memory.create_time", r.memory, "create_time")
    m.update_time = convert.opt_timestamp(v, "memory.update_time", r.memory, "update_time")
    # an export's own fields come back as they were (a client's record has none of them)
    m.origin = convert.origin_name(r.memory.origin)
    m.profile_slot = r.memory.profile_slot
    m.mention_count = r.memory.mention_count
    m.last_mentioned_time = convert.opt_timestamp(
        v, "memory.last_mentioned_time", r.memory, "last_mentioned_time"
    )
    return Record(
        memory=m,
        vector=np.asarray(r.vector, dtype=np.float32) if len(r.vector) else None,
        model=r.model,
        versions=[_version_from_pb(v, f"versions[{i}]", x) for i, x in enumerate(r.versions)],
        seq=r.seq if r.HasField("seq") else None,
    )


def _version_from_pb(v: Violations, prefix: str, x: pb.MemoryVersion) -> MemoryVersion:
    return MemoryVersion(
        memory_id=x.memory_id,
        version=x.version,
        content=x.content,
        type=convert.memory_type(v, f"{prefix}.type", x.type),
        tags=list(x.tags),
        metadata=convert.struct_to_dict(x.metadata) if x.HasField("metadata") else {},
        create_time=convert.opt_timestamp(v, f"{prefix}.create_time", x, "create_time"),
        expire_time=convert.opt_timestamp(v, f"{prefix}.expire_time", x, "expire_time"),
        expire_reason=x.expire_reason,
    )


def record_to_pb(r: Record) -> pb.MemoryRecord:
    out = pb.MemoryRecord(
        memory=convert.memory_to_pb(r.memory),
        model=r.model,
        versions=[convert.version_to_pb(x) for x in r.versions],
    )
    if r.vector is not None:
        out.vector.extend(r.vector.tolist())
    if r.seq is not None:
        out.seq = r.seq
    return out


async def export_responses(
    batches: AsyncIterator[list[Record]],
) -> AsyncIterator[pb.ExportMemoriesResponse]:
    """One response per batch, split further where a batch would exceed MAX_RESPONSE_BYTES."""
    async for batch in batches:
        for chunk in _chunks(record_to_pb(r) for r in batch):
            yield pb.ExportMemoriesResponse(records=chunk)


def _chunks(records: Iterable[pb.MemoryRecord]) -> Iterable[list[pb.MemoryRecord]]:
    chunk: list[pb.MemoryRecord] = []
    size = 0
    for r in records:
        n = r.ByteSize() + 8
        if chunk and size + n > MAX_RESPONSE_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(r)
        size += n
    if chunk:
        yield chunk


def summary_to_pb(s: ImportSummary) -> pb.ImportMemoriesResponse:
    return pb.ImportMemoriesResponse(
        imported=s.imported,
        skipped=s.skipped,
        failed=s.failed,
        errors=[
            pb.ImportRecordError(index=e.index, id=e.id, reason=e.reason, message=e.message)
            for e in s.errors
        ],
        embedded=s.embedded,
        renamed=s.renamed,
        model=s.model,
        dimension=s.dimension,
    )
