"""What memgrpc derives from conversations: the processing steps ProcessSession runs."""

from memgrpc.core.intelligence.processing import ProcessingStep, SessionWork, default_steps

__all__ = [
    "ProcessingStep",
    "SessionWork",
    "default_steps",
]
