"""Simulation and evaluation (Sonzai simulate / run_eval / eval_only / evaluate): a simulated
user talks to an agent over several sessions through the real chat turn; judges score the
transcript with weighted eval templates; every step is a stored event any replica can stream."""

from memgrpc.core.simulation.events import EventLog
from memgrpc.core.simulation.model import (
    BUILTIN_TEMPLATE_ID,
    JUDGES,
    RUN_KINDS,
    RUN_STATUSES,
    Category,
    CategoryScore,
    Evaluation,
    Persona,
    Run,
    RunEvent,
    RunSpec,
    SimConfig,
    Template,
    Turn,
)
from memgrpc.core.simulation.runs import Limits, RunService
from memgrpc.core.simulation.templates import TemplateService

__all__ = [
    "BUILTIN_TEMPLATE_ID",
    "JUDGES",
    "RUN_KINDS",
    "RUN_STATUSES",
    "Category",
    "CategoryScore",
    "Evaluation",
    "EventLog",
    "Limits",
    "Persona",
    "Run",
    "RunEvent",
    "RunService",
    "RunSpec",
    "SimConfig",
    "Template",
    "TemplateService",
    "Turn",
]
