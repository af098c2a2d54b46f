"""An agent as the domain sees it, its row form, and the input rules of its fields."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from memgrpc.core.kernel import validation
from memgrpc.core.kernel.errors import Violations

MemoryMode = Literal["sync", "async"]
MEMORY_MODES: tuple[MemoryMode, ...] = ("sync", "async")
BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
FLAGS = ("knowledge_base", "web_search", "remember_name", "image_generation", "inventory")
MAX_DISPLAY_NAME_CHARS = 200
MAX_SYSTEM_PROMPT_BYTES = 32 * 1024
MAX_DIMENSIONS = 32
MAX_DIMENSION_NAME_CHARS = 64
DIMENSION_MAX = 10.0
DEFAULT_TRAIT = 0.5


def _default_big_five() -> dict[str, float]:
    return dict.fromkeys(BIG_FIVE, DEFAULT_TRAIT)


@dataclass(frozen=True)
class Personality:
    big_five: dict[str, float] = field(default_factory=_default_big_five)
    dimensions: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    memory_mode: MemoryMode = "sync"
    knowledge_base: bool = False
    web_search: bool = False
    remember_name: bool = False
    image_generation: bool = False
    inventory: bool = False


@dataclass(frozen=True)
class CapabilitiesPatch:
    """What UpdateCapabilities changes: None = leave as it is."""

    memory_mode: MemoryMode | None = None
    knowledge_base: bool | None = None
    web_search: bool | None = None
    remember_name: bool | None = None
    image_generation: bool | None = None
    inventory: bool | None = None

    def apply(self, to: Capabilities) -> Capabilities:
        changes = {
            name: getattr(self, name)
            for name in ("memory_mode", *FLAGS)
            if getattr(self, name) is not None
        }
        return Capabilities(**(vars(to) | changes))

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in ("memory_mode", *FLAGS))


@dataclass(frozen=True)
class Agent:
    id: str = ""
    display_name: str = ""
    system_prompt: str = ""
    personality: Personality = field(default_factory=Personality)
    capabilities: Capabilities = field(default_factory=Capabilities)
    metadata: dict[str, Any] = field(default_factory=dict)
    create_time: datetime | None = None
    update_time: datetime | None = None


def _score(v: Violations, name: str, value: float, top: float) -> None:
    if not math.isfinite(value) or not 0.0 <= value <= top:
        v.add(name, f"must be between 0 and {top:g}")


def check_personality(v: Violations, prefix: str, p: Personality) -> None:
    for trait in BIG_FIVE:
        _score(v, f"{prefix}.big_five.{trait}", p.big_five.get(trait, DEFAULT_TRAIT), 1.0)
    if len(p.dimensions) > MAX_DIMENSIONS:
        v.add(f"{prefix}.dimensions", f"at most {MAX_DIMENSIONS} dimensions")
        return
    for name, value in p.dimensions.items():
        short = name[:40]
        if not name.strip() or len(name) > MAX_DIMENSION_NAME_CHARS or not name.isprintable():
            v.add(
                f"{prefix}.dimensions.{short}",
                f"names must be 1-{MAX_DIMENSION_NAME_CHARS} printable characters",
            )
        else:
            _score(v, f"{prefix}.dimensions.{short}", value, DIMENSION_MAX)


def check_agent(v: Violations, prefix: str, a: Agent, fields: set[str]) -> None:
    if "display_name" in fields:
        if not a.display_name.strip():
            v.add(f"{prefix}.display_name", "is required")
        elif len(a.display_name) > MAX_DISPLAY_NAME_CHARS:
            v.add(f"{prefix}.display_name", f"must be at most {MAX_DISPLAY_NAME_CHARS} characters")
        elif not a.display_name.isprintable():
            v.add(f"{prefix}.display_name", "must not contain control characters")
    if "system_prompt" in fields:
        if len(a.system_prompt.encode("utf-8")) > MAX_SYSTEM_PROMPT_BYTES:
            v.add(f"{prefix}.system_prompt", f"must be at most {MAX_SYSTEM_PROMPT_BYTES} bytes")
        elif "\x00" in a.system_prompt:
            v.add(f"{prefix}.system_prompt", "must not contain NUL characters")
    if "personality" in fields:
        check_personality(v, f"{prefix}.personality", a.personality)
    if "metadata" in fields:
        validation.check_metadata(v, f"{prefix}.metadata", a.metadata)


def agent_row(project_id: str, a: Agent) -> dict[str, Any]:
    return {
        "id": a.id,
        "project_id": project_id,
        "display_name": a.display_name,
        "system_prompt": a.system_prompt,
        "personality": json.dumps(
            {"big_five": a.personality.big_five, "dimensions": a.personality.dimensions},
            sort_keys=True,
        ),
        "capabilities": json.dumps(vars(a.capabilities), sort_keys=True),
        "metadata": validation.canonical_json(a.metadata),
        "create_time": a.create_time,
        "update_time": a.update_time,
    }


def agent_from_row(row: dict[str, Any]) -> Agent:
    p = json.loads(row["personality"] or "{}")
    caps = json.loads(row["capabilities"] or "{}")
    known = {k: caps[k] for k in ("memory_mode", *FLAGS) if k in caps}
    return Agent(
        id=row["id"],
        display_name=row["display_name"] or "",
        system_prompt=row["system_prompt"] or "",
        personality=Personality(
            big_five=_default_big_five() | p.get("big_five", {}),
            dimensions=dict(p.get("dimensions", {})),
        ),
        capabilities=Capabilities(**known),
        metadata=json.loads(row["metadata"] or "{}"),
        create_time=row["create_time"],
        update_time=row["update_time"],
    )
