"""Memories: the model, its store rows and input rules, the service (CRUD, versions, list) with
search and batch, import/export, and recall (the per-user in-memory index and its ranking)."""

from memgrpc.core.memory.batch import BatchOp, BatchResult
from memgrpc.core.memory.model import (
    MEMORY_TYPES,
    Memory,
    MemoryQuery,
    MemoryVersion,
    Patch,
    SearchHit,
)
from memgrpc.core.memory.search import SearchMode
from memgrpc.core.memory.service import AsyncEmbedder, MemoryService, embed_text
from memgrpc.core.memory.transfer import ImportSummary, Record, Transfer

__all__ = [
    "MEMORY_TYPES",
    "AsyncEmbedder",
    "BatchOp",
    "BatchResult",
    "ImportSummary",
    "Memory",
    "MemoryQuery",
    "MemoryService",
    "MemoryVersion",
    "Patch",
    "Record",
    "SearchHit",
    "SearchMode",
    "Transfer",
    "embed_text",
]
