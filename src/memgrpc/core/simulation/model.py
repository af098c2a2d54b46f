"""Simulation and evaluation as the domain sees them: templates, personas, run specs, runs,
events and evaluations, their input rules and their row forms."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import Violations

RunKind = Literal["simulation", "run_eval", "eval_only"]
RUN_KINDS: tuple[RunKind, ...] = ("simulation", "run_eval", "eval_only")
RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = ("queued", "running", "completed", "failed", "cancelled")
ACTIVE: tuple[RunStatus, ...] = ("queued", "running")
JudgeName = Literal["offline", "llm"]
JUDGES: tuple[JudgeName, ...] = ("offline", "llm")
TERMINAL_EVENTS = frozenset({"run_completed", "run_failed", "run_cancelled"})
HEARTBEAT = "heartbeat"

BUILTIN_TEMPLATE_ID = "tpl_memory_continuity"
WEIGHT_TOLERANCE = 1e-6
MAX_NAME_CHARS = 200
MAX_CATEGORY_NAME_CHARS = 100
MAX_RUBRIC_BYTES = 16 * 1024
MAX_CRITERIA_BYTES = 4 * 1024
MAX_CATEGORIES = 32
MAX_PERSONA_NAME_CHARS = 100
MAX_BACKGROUND_BYTES = 4 * 1024
MAX_TRAITS = 16
MAX_TRAIT_CHARS = 100
MAX_SESSIONS = 10
MAX_TURNS = 20
DEFAULT_SESSIONS = 3
DEFAULT_TURNS = 5
MAX_ADVANCE = timedelta(days=365)
MAX_EVAL_MESSAGES = 1000


@dataclass(frozen=True)
class Category:
    name: str
    weight: float
    criteria: str = ""


@dataclass(frozen=True)
class Template:
    id: str = ""
    name: str = ""
    scoring_rubric: str = ""
    categories: tuple[Category, ...] = ()
    builtin: bool = False
    create_time: datetime | None = None
    update_time: datetime | None = None


BUILTIN_TEMPLATE = Template(
    id=BUILTIN_TEMPLATE_ID,
    name="memory_continuity",
    scoring_rubric=(
        "Does the agent remember what the user told it in earlier sessions, use it, keep up "
        "with changes, and never contradict it? Replies should also answer what was asked, "
        "at a sensible length, without repeating themselves."
    ),
    categories=(
        Category(
            "memory_continuity",
            0.6,
            "Recall questions answered with the right (latest) fact; facts the user stated are "
            "used later and never contradicted.",
        ),
        Category("question_answered", 0.2, "Each question of the user gets an answer."),
        Category("repetition", 0.1, "Replies do not repeat earlier replies."),
        Category("length", 0.1, "Replies are neither empty nor rambling."),
    ),
    builtin=True,
)


def check_template(v: Violations, prefix: str, t: Template, fields: set[str]) -> None:
    if "name" in fields:
        if not t.name.strip():
            v.add(f"{prefix}.name", "is required")
        elif len(t.name) > MAX_NAME_CHARS or not t.name.isprintable():
            v.add(f"{prefix}.name", f"must be 1-{MAX_NAME_CHARS} printable characters")
    if "scoring_rubric" in fields and (
        len(t.scoring_rubric.encode()) > MAX_RUBRIC_BYTES or "\x00" in t.scoring_rubric
    ):
        v.add(f"{prefix}.scoring_rubric", f"must be at most {MAX_RUBRIC_BYTES} bytes, no NUL")
    if "categories" in fields:
        check_categories(v, f"{prefix}.categories", t.categories)


def check_categories(v: Violations, name: str, cats: tuple[Category, ...]) -> None:
    if not cats:
        v.add(name, "at least one category is required")
        return
    if len(cats) > MAX_CATEGORIES:
        v.add(name, f"at most {MAX_CATEGORIES} categories")
        return
    seen: set[str] = set()
    ok = True
    for i, c in enumerate(cats):
        at = f"{name}[{i}]"
        if not c.name.strip() or len(c.name) > MAX_CATEGORY_NAME_CHARS:
            v.add(f"{at}.name", f"must be 1-{MAX_CATEGORY_NAME_CHARS} characters")
        elif c.name.strip().lower() in seen:
            v.add(f"{at}.name", f"duplicates another category ({c.name!r})")
        seen.add(c.name.strip().lower())
        if not math.isfinite(c.weight) or not 0.0 < c.weight <= 1.0:
            v.add(f"{at}.weight", "must be in (0, 1]")
            ok = False
        if len(c.criteria.encode()) > MAX_CRITERIA_BYTES or "\x00" in c.criteria:
            v.add(f"{at}.criteria", f"must be at most {MAX_CRITERIA_BYTES} bytes, no NUL")
    total = math.fsum(c.weight for c in cats)
    if ok and abs(total - 1.0) > WEIGHT_TOLERANCE:
        v.add(name, f"weights must sum to 1 (they sum to {total:.6g})")


def template_row(project_id: str, t: Template) -> dict[str, Any]:
    return {
        "id": t.id,
        "project_id": project_id,
        "name": t.name,
        "scoring_rubric": t.scoring_rubric,
        "categories": json.dumps([asdict(c) for c in t.categories]),
        "create_time": t.create_time,
        "update_time": t.update_time,
    }


def template_from_row(row: dict[str, Any]) -> Template:
    return Template(
        id=row["id"],
        name=row["name"] or "",
        scoring_rubric=row["scoring_rubric"] or "",
        categories=tuple(Category(**c) for c in json.loads(row["categories"] or "[]")),
        create_time=row["create_time"],
        update_time=row["update_time"],
    )


@dataclass(frozen=True)
class Persona:
    name: str = ""
    background: str = ""
    personality_traits: tuple[str, ...] = ()
    communication_style: str = ""


@dataclass(frozen=True)
class SimConfig:
    max_sessions: int = 0
    max_turns_per_session: int = 0
    advance_time: timedelta | None = None

    @property
    def sessions(self) -> int:
        return self.max_sessions or DEFAULT_SESSIONS

    @property
    def turns(self) -> int:
        return self.max_turns_per_session or DEFAULT_TURNS


@dataclass(frozen=True)
class RunSpec:
    kind: RunKind
    agent_id: str
    persona: Persona = field(default_factory=Persona)
    config: SimConfig = field(default_factory=SimConfig)
    template_id: str = ""
    source_run_id: str = ""
    judge: JudgeName = "offline"


def check_persona(v: Violations, name: str, p: Persona) -> None:
    if not p.name.strip():
        v.add(f"{name}.name", "is required")
    elif len(p.name) > MAX_PERSONA_NAME_CHARS or not p.name.isprintable():
        v.add(f"{name}.name", f"must be 1-{MAX_PERSONA_NAME_CHARS} printable characters")
    if not p.background.strip():
        v.add(f"{name}.background", "is required (the simulated user's facts come from it)")
    elif len(p.background.encode()) > MAX_BACKGROUND_BYTES or "\x00" in p.background:
        v.add(f"{name}.background", f"must be at most {MAX_BACKGROUND_BYTES} bytes, no NUL")
    if len(p.personality_traits) > MAX_TRAITS:
        v.add(f"{name}.personality_traits", f"at most {MAX_TRAITS} traits")
    for i, t in enumerate(p.personality_traits):
        if not t.strip() or len(t) > MAX_TRAIT_CHARS or not t.isprintable():
            v.add(f"{name}.personality_traits[{i}]", f"must be 1-{MAX_TRAIT_CHARS} characters")
    style = p.communication_style
    if len(style) > MAX_TRAIT_CHARS or not style.isprintable():
        v.add(f"{name}.communication_style", f"must be at most {MAX_TRAIT_CHARS} characters")


def check_config(v: Violations, name: str, c: SimConfig) -> None:
    if not 0 <= c.max_sessions <= MAX_SESSIONS:
        v.add(f"{name}.max_sessions", f"must be between 1 and {MAX_SESSIONS} (0 = default)")
    if not 0 <= c.max_turns_per_session <= MAX_TURNS:
        v.add(f"{name}.max_turns_per_session", f"must be between 1 and {MAX_TURNS} (0 = default)")
    if c.advance_time is not None and not timedelta(0) <= c.advance_time <= MAX_ADVANCE:
        v.add(f"{name}.advance_time", "must be between 0 and 365 days")


def check_spec(v: Violations, s: RunSpec) -> None:
    validation.check_id(v, "agent_id", s.agent_id, required=True)
    validation.check_id(v, "template_id", s.template_id, required=False)
    if s.kind == "eval_only":
        validation.check_id(v, "source_run_id", s.source_run_id, required=True)
        return
    if s.source_run_id:
        v.add("source_run_id", "only an EVAL_ONLY run has a source run")
    check_persona(v, "user_persona", s.persona)
    check_config(v, "config", s.config)
    if s.kind == "simulation" and s.template_id:
        v.add("template_id", "a SIMULATION run is not evaluated (use RUN_EVAL)")


def spec_json(s: RunSpec) -> str:
    adv = s.config.advance_time
    return json.dumps(
        {
            "persona": asdict(s.persona),
            "config": {
                "max_sessions": s.config.max_sessions,
                "max_turns_per_session": s.config.max_turns_per_session,
                "advance_time_s": adv.total_seconds() if adv is not None else None,
            },
            "template_id": s.template_id,
            "source_run_id": s.source_run_id,
            "judge": s.judge,
        },
        sort_keys=True,
    )


def spec_from(kind: str, agent_id: str, raw: str) -> RunSpec:
    d = json.loads(raw or "{}")
    c = d.get("config", {})
    adv = c.get("advance_time_s")
    p = d.get("persona", {})
    return RunSpec(
        kind=kind,  # type: ignore[arg-type]  # written from RUN_KINDS
        agent_id=agent_id,
        persona=Persona(
            name=p.get("name", ""),
            background=p.get("background", ""),
            personality_traits=tuple(p.get("personality_traits", ())),
            communication_style=p.get("communication_style", ""),
        ),
        config=SimConfig(
            c.get("max_sessions", 0),
            c.get("max_turns_per_session", 0),
            timedelta(seconds=adv) if adv is not None else None,
        ),
        template_id=d.get("template_id", ""),
        source_run_id=d.get("source_run_id", ""),
        judge=d.get("judge", "offline"),
    )


@dataclass(frozen=True)
class Run:
    id: str
    spec: RunSpec
    status: RunStatus = "queued"
    user_id: str = ""
    sessions_done: int = 0
    turns_done: int = 0
    score: float | None = None
    recall_correct: int = 0
    recall_total: int = 0
    error: str = ""
    event_count: int = 0
    cancel_requested: bool = False
    lease_time: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    end_time: datetime | None = None


def run_row(project_id: str, r: Run) -> dict[str, Any]:
    return {
        "id": r.id,
        "project_id": project_id,
        "agent_id": r.spec.agent_id,
        "kind": r.spec.kind,
        "status": r.status,
        "spec": spec_json(r.spec),
        "user_id": r.user_id,
        "sessions_done": r.sessions_done,
        "turns_done": r.turns_done,
        "score": r.score,
        "recall_correct": r.recall_correct,
        "recall_total": r.recall_total,
        "error": r.error,
        "event_count": r.event_count,
        "cancel_requested": r.cancel_requested,
        "lease_time": r.lease_time,
        "create_time": r.create_time,
        "update_time": r.update_time,
        "end_time": r.end_time,
    }


def run_from_row(row: dict[str, Any]) -> Run:
    return Run(
        id=row["id"],
        spec=spec_from(row["kind"], row["agent_id"] or "", row["spec"]),
        status=row["status"],
        user_id=row["user_id"] or "",
        sessions_done=row["sessions_done"] or 0,
        turns_done=row["turns_done"] or 0,
        score=row["score"],
        recall_correct=row["recall_correct"] or 0,
        recall_total=row["recall_total"] or 0,
        error=row["error"] or "",
        event_count=row["event_count"] or 0,
        cancel_requested=bool(row["cancel_requested"]),
        lease_time=row["lease_time"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        end_time=row["end_time"],
    )


@dataclass(frozen=True)
class RunEvent:
    run_id: str
    index: int
    type: str
    message: str
    data: dict[str, Any]
    time: datetime


def event_row(project_id: str, e: RunEvent) -> dict[str, Any]:
    return {
        "pk": f"{e.run_id}/{e.index}",
        "project_id": project_id,
        "run_id": e.run_id,
        "index": e.index,
        "type": e.type,
        "message": e.message,
        "data": json.dumps(e.data, sort_keys=True, default=str),
        "time": e.time,
    }


def event_from_row(row: dict[str, Any]) -> RunEvent:
    return RunEvent(
        row["run_id"],
        row["index"],
        row["type"],
        row["message"] or "",
        json.loads(row["data"] or "{}"),
        row["time"],
    )


@dataclass(frozen=True)
class Turn:
    """One message of a transcript, with what the simulation knows about it (ground truth)."""

    role: str  # user or assistant
    content: str
    session: int = 0
    # user turns: the facts it states ({"key", "value"}) and the recall question it asks
    facts: tuple[dict[str, str], ...] = ()
    probe: dict[str, str] | None = None  # {"key", "expected", "stale"}


@dataclass(frozen=True)
class CategoryScore:
    name: str
    score: float
    feedback: str


@dataclass(frozen=True)
class Evaluation:
    score: float
    feedback: str
    categories: tuple[CategoryScore, ...]
    judge: JudgeName
    template_id: str
    recall_correct: int = 0
    recall_total: int = 0
