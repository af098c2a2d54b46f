"""Conversational recall: in-memory hybrid ranking of one user's messages and memories.

Pure domain code (numpy + PyStemmer): no gRPC, no storage. ``UserIndex`` holds a user's
items with their vectors; ``UserIndex.search`` scores all of them with ``rank.score``.
"""

from memgrpc.core.memory.recall.index import ItemInfo, UserIndex
from memgrpc.core.memory.recall.rank import RankParams
from memgrpc.core.memory.recall.text import embed_text, index_text, tokenize

__all__ = ["ItemInfo", "RankParams", "UserIndex", "embed_text", "index_text", "tokenize"]
