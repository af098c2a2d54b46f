"""Eval templates: a project's own (CRUD) plus the built-in `tpl_memory_continuity`, which
every project reads and none can change."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import FailedPrecondition, NotFound, ResourceExhausted, Violations
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.kernel.paging import Page, PageRequest
from memgrpc.core.simulation.model import (
    BUILTIN_TEMPLATE,
    BUILTIN_TEMPLATE_ID,
    Template,
    check_template,
    template_from_row,
    template_row,
)
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Table

UPDATABLE = ("name", "scoring_rubric", "categories")
# templates are few: a list reads them all and pages by offset
MAX_TEMPLATES = 200


def _not_found(template_id: str) -> NotFound:
    return NotFound(
        f"eval template {template_id} not found",
        reason="EVAL_TEMPLATE_NOT_FOUND",
        metadata={"id": template_id},
    )


def _builtin_is_fixed(template_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{template_id} is built in: it cannot be changed or deleted (create your own)",
        reason="EVAL_TEMPLATE_BUILTIN",
        metadata={"id": template_id},
    )


class TemplateService:
    def __init__(self, store: Store) -> None:
        self._table = Table(store, "eval_templates")
        self._locks = KeyedLocks()

    @staticmethod
    def _where(project_id: str, template_id: str) -> Where:
        return Where().eq("project_id", project_id).eq("id", template_id)

    async def get(self, project_id: str, template_id: str, name: str = "id") -> Template:
        v = Violations()
        validation.check_id(v, name, template_id, required=True)
        v.raise_if_any()
        if template_id == BUILTIN_TEMPLATE_ID:
            return BUILTIN_TEMPLATE
        row = await self._table.first(self._where(project_id, template_id))
        if row is None:
            raise _not_found(template_id)
        return template_from_row(row)

    async def create(self, project_id: str, t: Template) -> Template:
        v = Violations()
        check_template(v, "template", t, set(UPDATABLE))
        v.raise_if_any()
        async with self._locks.hold(project_id):
            if await self._table.count(Where().eq("project_id", project_id)) >= MAX_TEMPLATES:
                raise ResourceExhausted(
                    f"a project holds at most {MAX_TEMPLATES} eval templates",
                    reason="EVAL_TEMPLATE_LIMIT",
                )
            now = datetime.now(UTC)
            made = replace(t, id=new_id("tpl"), builtin=False, create_time=now, update_time=now)
            await self._table.writer.insert([template_row(project_id, made)])
            return made

    async def update(self, project_id: str, t: Template, fields: frozenset[str]) -> Template:
        if "*" in fields:
            fields = frozenset(UPDATABLE)
        v = Violations()
        validation.check_id(v, "template.id", t.id, required=True)
        for f in sorted(fields - set(UPDATABLE)):
            v.add("update_mask", f"field {f!r} cannot be updated (only {', '.join(UPDATABLE)})")
        if not fields:
            v.add("update_mask", "names no field to update")
        check_template(v, "template", t, set(fields))
        v.raise_if_any()
        if t.id == BUILTIN_TEMPLATE_ID:
            raise _builtin_is_fixed(t.id)
        async with self._locks.hold(f"{project_id}/{t.id}"):
            current = await self.get(project_id, t.id, "template.id")
            changed = replace(
                current, **{f: getattr(t, f) for f in fields}, update_time=datetime.now(UTC)
            )
            await self._table.writer.patch([template_row(project_id, changed)])
            return changed

    async def delete(self, project_id: str, template_id: str) -> None:
        await self.get(project_id, template_id)
        if template_id == BUILTIN_TEMPLATE_ID:
            raise _builtin_is_fixed(template_id)
        async with self._locks.hold(f"{project_id}/{template_id}"):
            await self._table.writer.delete(str(self._where(project_id, template_id)))

    async def list(self, project_id: str, page: PageRequest) -> Page[Template]:
        """The built-in template first, then the project's newest first."""
        v = Violations()
        size = paging.page_size(v, page.size)
        v.raise_if_any()
        fp = paging.fingerprint(project_id, "eval_templates")
        offset = paging.decode(page.token, fp, int)[0] if page.token else 0
        rows = await self._table.rows(Where().eq("project_id", project_id))
        rows.sort(key=lambda r: (r["create_time"], r["id"]), reverse=True)
        items = [BUILTIN_TEMPLATE, *(template_from_row(r) for r in rows)]
        chunk = items[offset : offset + size]
        more = offset + size < len(items)
        token = paging.encode(offset + size, "", fp) if more else ""
        return Page(chunk, token, len(items))
