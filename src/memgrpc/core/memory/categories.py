"""A project's memory categories, and the check that filters name only those.

A project's categories are the ones an admin chose (SetCategories; DEFAULT_CATEGORIES until
then) plus every category a memory of the project was written with: writes stay free to use
new ones (backward compatible), and each new name is registered once, so a filter by it stays
valid even after the chosen set drops it. A filter naming anything else is INVALID_ARGUMENT,
reason INVALID_CATEGORIES.

Every memory write passes its categories through `register`, so it must cost nothing in the
common case: an in-process cache of the names registered per project answers it without I/O.
A name missing there is looked up in the table first (another replica may have registered it)
and written only if still missing (insert-if-absent: replicas racing on it write one row).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from memgrpc.core.kernel.errors import FieldViolation, InvalidArgument, Violations
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table

# A project's categories until it sets its own (AdminService/SetCategories).
DEFAULT_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("personal_info", "name, age, where the user lives or comes from"),
    ("work", "occupation, employer, career"),
    ("preferences", "likes, dislikes, favourites"),
    ("health", "allergies, diet, conditions, habits that affect health"),
    ("relationships", "family, friends, partners"),
    ("pets", "animals the user has"),
    ("hobbies", "pastimes, sports, interests"),
    ("routines", "what the user does regularly"),
    ("plans", "trips, events and goals ahead"),
    ("possessions", "things the user owns"),
    ("education", "schools, studies, skills"),
)
MAX_CATEGORIES = 100
MAX_DESCRIPTION_BYTES = 1024
_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
# how long a cached chosen set answers filter checks: another replica's SetCategories that
# drops a category reaches this replica's checks within this time (registered names never
# become invalid, so they need no refresh)
CHOSEN_TTL_S = 5.0
# projects whose categories this process keeps (least recently used go first)
CACHED_PROJECTS = 10_000


@dataclass(frozen=True)
class Category:
    name: str
    description: str = ""
    # only known from memories that carry it (not in the chosen set)
    from_memories: bool = False


@dataclass
class _Known:
    """What this process knows of one project's categories."""

    chosen: tuple[Category, ...]
    registered: set[str] = field(default_factory=set)
    read_at: float = 0.0

    def valid(self) -> set[str]:
        return {c.name for c in self.chosen} | self.registered


def _pk(project_id: str, kind: str, name: str) -> str:
    return hashlib.sha256(f"{project_id}\x1f{kind}\x1f{name}".encode()).hexdigest()


def _defaults() -> tuple[Category, ...]:
    return tuple(Category(n, d) for n, d in DEFAULT_CATEGORIES)


def check_categories(v: Violations, categories: Sequence[Category], prefix: str) -> None:
    """SetCategories' rules: at most 100, names 1-64 of [a-z0-9_-] and unique, descriptions at
    most 1 KiB."""
    if len(categories) > MAX_CATEGORIES:
        v.add(prefix, f"at most {MAX_CATEGORIES} categories")
        return
    seen: set[str] = set()
    for i, c in enumerate(categories):
        if not _NAME.match(c.name):
            v.add(f"{prefix}[{i}].name", "must be 1-64 characters of a-z, 0-9, '_' and '-'")
        elif c.name in seen:
            v.add(f"{prefix}[{i}].name", f"{c.name!r} is given twice")
        seen.add(c.name)
        if len(c.description.encode("utf-8")) > MAX_DESCRIPTION_BYTES:
            v.add(f"{prefix}[{i}].description", f"must be at most {MAX_DESCRIPTION_BYTES} bytes")
        elif "\x00" in c.description:
            v.add(f"{prefix}[{i}].description", "must not contain NUL characters")


class Categories:
    """The `categories` table and this process's cache of it."""

    def __init__(self, store: Store) -> None:
        self._table = Table(store, "categories")
        self._cache: OrderedDict[str, _Known] = OrderedDict()
        self._locks = KeyedLocks()

    async def list(self, project_id: str) -> list[Category]:
        """The chosen set in its order, then the names only memories carry, sorted."""
        known = await self._load(project_id)
        chosen = {c.name for c in known.chosen}
        extra = sorted(n for n in known.registered if n not in chosen)
        return [*known.chosen, *(Category(n, from_memories=True) for n in extra)]

    async def set(self, project_id: str, categories: Sequence[Category]) -> builtins.list[Category]:
        """Replace the chosen set (one row: a reader sees the old set or the new, never a mix)."""
        v = Violations()
        check_categories(v, categories, "categories")
        v.raise_if_any()
        chosen = [{"name": c.name, "description": c.description} for c in categories]
        row = {
            "pk": _pk(project_id, "set", ""),
            "project_id": project_id,
            "kind": "set",
            "name": "",
            "categories": json.dumps(chosen, ensure_ascii=False),
            "update_time": datetime.now(UTC),
        }
        async with self._locks.hold(project_id):
            await self._table.writer.upsert([row])
            self._cache.pop(project_id, None)
        return await self.list(project_id)

    async def register(self, project_id: str, names: Iterable[str]) -> None:
        """Record the categories a memory is written with (free when all are known here)."""
        wanted = set(names)
        known = self._cache.get(project_id)
        if not wanted or (known is not None and wanted <= known.registered):
            return
        async with self._locks.hold(project_id):
            known = self._cache.get(project_id)
            if known is not None and wanted <= known.registered:
                return  # registered by a call that held the lock before us
            known = await self._load(project_id)
            missing = sorted(wanted - known.registered)
            if missing:
                now = datetime.now(UTC)
                await self._table.writer.insert_absent(
                    [
                        {
                            "pk": _pk(project_id, "memory", n),
                            "project_id": project_id,
                            "kind": "memory",
                            "name": n,
                            "categories": None,
                            "update_time": now,
                        }
                        for n in missing
                    ]
                )
                known.registered.update(missing)

    async def check_filter(
        self, project_id: str, names: Sequence[str], prefix: str = "categories"
    ) -> None:
        """INVALID_ARGUMENT (INVALID_CATEGORIES) naming each of `names` the project does not
        have."""
        if not names:
            return
        known = self._cache.get(project_id)
        fresh = known is not None and time.monotonic() - known.read_at < CHOSEN_TTL_S
        if known is not None and set(names) <= (known.valid() if fresh else known.registered):
            return
        valid = (await self._load(project_id)).valid()
        bad = [(i, n) for i, n in enumerate(names) if n not in valid]
        if not bad:
            return
        unknown = list(dict.fromkeys(n for _, n in bad))
        raise InvalidArgument(
            f"unknown categories: {', '.join(unknown)} (see AdminService/ListCategories)",
            reason="INVALID_CATEGORIES",
            metadata={"invalid_categories": json.dumps(unknown, ensure_ascii=False)},
            violations=[
                FieldViolation(f"{prefix}[{i}]", f"{n!r} is not a category of the project")
                for i, n in bad
            ],
        )

    async def _load(self, project_id: str) -> _Known:
        """Read the project's rows (what other replicas wrote too) into the cache."""
        found: list[Row] = await self._table.rows(
            Where().eq("project_id", project_id), ["kind", "name", "categories"]
        )
        chosen = _defaults()
        registered: set[str] = set()
        for r in found:
            if r["kind"] == "set":
                chosen = tuple(
                    Category(c["name"], c.get("description", ""))
                    for c in json.loads(r["categories"] or "[]")
                )
            elif r["kind"] == "memory" and r["name"]:
                registered.add(r["name"])
        known = _Known(chosen, registered, time.monotonic())
        self._cache[project_id] = known
        self._cache.move_to_end(project_id)
        while len(self._cache) > CACHED_PROJECTS:
            self._cache.popitem(last=False)
        return known
