"""Merge conflicts (RecallrAI's): a new fact that contradicts the user's current memories
without saying it changed waits here, with clarifying questions, until it is resolved."""

from memgrpc.core.intelligence.conflicts.rows import CONFLICT_STATUSES, Answer, Conflict
from memgrpc.core.intelligence.conflicts.service import ConflictService

__all__ = ["CONFLICT_STATUSES", "Answer", "Conflict", "ConflictService"]
