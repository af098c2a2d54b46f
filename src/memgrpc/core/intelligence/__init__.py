"""What memgrpc derives from conversations: the processing steps ProcessSession runs (summary,
fact extraction with its extractors in `extract/`), reconciliation of new facts with the user's
current ones (reinforce, version, or a merge conflict in `conflicts/`), profiles, and user
actions."""

from memgrpc.core.intelligence.processing import ProcessingStep, SessionWork, default_steps

__all__ = [
    "ProcessingStep",
    "SessionWork",
    "default_steps",
]
