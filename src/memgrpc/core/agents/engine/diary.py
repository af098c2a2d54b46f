"""The agent's diary: one entry per day (UTC, from the message times) it had sessions, saying
whom it met and what it learned.

Written by a processing step (`DiaryStep`, after extraction): a session's facts exist only once
it is processed, so that is when the day's page can say what the agent learned; processing
again (ProcessSession with force) rewrites the same page, never a second one. One row per
(agent, instance, day, user) keeps the user's part, so DeleteUser removes exactly that user's
lines; an entry is the day's rows together.

Offline the text is a template in the agent's voice (first person): "I met Ana (2 sessions,
14 messages). I learned that Ana loves jazz; Ana wants to run a marathon." With an LLM
configured, the model writes each user's paragraph (a bad answer keeps the template).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from memgrpc.core.agents.engine.llm import EngineLlm, text
from memgrpc.core.agents.engine.relations import ContextEngine, scope_where
from memgrpc.core.agents.turns import Scope
from memgrpc.core.intelligence.processing import SessionWork
from memgrpc.core.kernel import paging
from memgrpc.core.kernel.errors import Violations
from memgrpc.core.kernel.locks import KeyedLocks
from memgrpc.core.memory.model import MemoryQuery
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.tables import Row, Table

_FACTS_SHOWN = 5
_MAX_ROWS = 20_000  # rows one listing reads (a page of days is cut from them)
_USER = re.compile(r"^User(?='s\b|\b)")

AgentName = Callable[[str, str], Awaitable[str]]


@dataclass
class DiaryEntry:
    date: str
    agent_id: str
    instance_id: str
    text: str
    user_ids: list[str] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    facts_learned: int = 0
    update_time: datetime | None = None


def diary_pk(project_id: str, scope: Scope, day: str) -> str:
    return "\x1f".join((project_id, scope.agent_id, scope.instance_id, day, scope.user_id))


def paragraph(who: str, sessions: dict[str, Any]) -> str:
    """The template: the user's part of the day, first person."""
    n_msgs = sum(int(s["messages"]) for s in sessions.values())
    facts = [f for s in sessions.values() for f in s["facts"]]
    k = len(sessions)
    out = f"I met {who} ({k} session{'s' if k != 1 else ''}, {n_msgs} messages)."
    if facts:
        shown = "; ".join(_USER.sub(who, f).rstrip(".") for f in facts[:_FACTS_SHOWN])
        more = f" and {len(facts) - _FACTS_SHOWN} more" if len(facts) > _FACTS_SHOWN else ""
        out += f" I learned that {shown}{more}."
    else:
        out += " I did not learn anything new about them."
    return out


class Diary:
    """The diary step and the diary's reads."""

    name = "diary"

    def __init__(
        self, store: Store, engine: ContextEngine, *, llm: EngineLlm | None = None
    ) -> None:
        self._rows = Table(store, "agent_diary")
        self._engine = engine
        self._llm = llm
        self._locks = KeyedLocks()

    # -- the processing step ------------------------------------------------------------------
    async def run(self, work: SessionWork) -> None:
        s = work.session
        if not s.agent_id:
            return
        scope = Scope(s.agent_id, s.user_id, s.instance_id)
        days: dict[str, list[Any]] = defaultdict(list)
        day_of: dict[str, str] = {}
        for m in work.messages:
            day = (m.create_time or datetime.now(UTC)).astimezone(UTC).date().isoformat()
            days[day].append(m)
            day_of[m.id] = day
        if not days:
            return
        facts = await work.memories.all(
            work.project_id,
            MemoryQuery(user_id=s.user_id, session_id=s.id, origins=("extracted",)),
        )
        learned: dict[str, list[str]] = defaultdict(list)
        last_day = max(days)
        for f in facts:
            own = [day_of[i] for i in f.source_message_ids if i in day_of]
            learned[min(own) if own else last_day].append(f.content)
        for day, msgs in sorted(days.items()):
            names = sorted({m.name for m in msgs if m.role == "user" and m.name})
            part = {"messages": len(msgs), "facts": learned.get(day, []), "names": names}
            await self._write(work.project_id, scope, day, s.id, part)
        total = await self._facts_of(work.project_id, scope)
        await self._engine.set_facts(work.project_id, scope, total)

    async def _write(
        self, project_id: str, scope: Scope, day: str, session_id: str, part: dict[str, Any]
    ) -> None:
        pk = diary_pk(project_id, scope, day)
        async with self._locks.hold(pk):
            row = await self._rows.first(Where().eq("pk", pk))
            sessions: dict[str, Any] = json.loads(row["sessions"]) if row else {}
            sessions[session_id] = part
            names = sorted({n for p in sessions.values() for n in p["names"]})
            who = names[0] if names else scope.user_id
            body, source = paragraph(who, sessions), "template"
            if self._llm is not None:
                written = await self._llm.ask(
                    project_id,
                    {
                        "task": "diary",
                        "date": day,
                        "user_id": scope.user_id,
                        "names": names,
                        "sessions": len(sessions),
                        "messages": sum(int(p["messages"]) for p in sessions.values()),
                        "facts": [f for p in sessions.values() for f in p["facts"]],
                    },
                    lambda js: text(js["text"], 4000),
                )
                if written is not None:
                    body, source = written, "llm"
            await self._rows.writer.upsert(
                [
                    {
                        "pk": pk,
                        "project_id": project_id,
                        "agent_id": scope.agent_id,
                        "instance_id": scope.instance_id or None,
                        "user_id": scope.user_id,
                        "day": day,
                        "sessions": json.dumps(sessions),
                        "text": body,
                        "source": source,
                        "update_time": datetime.now(UTC),
                    }
                ]
            )

    async def _facts_of(self, project_id: str, scope: Scope) -> int:
        where = scope_where(project_id, scope.agent_id, scope.instance_id, scope.user_id)
        rows = await self._rows.rows(where, ["sessions"])
        return sum(len(p["facts"]) for r in rows for p in json.loads(r["sessions"]).values())

    # -- reads --------------------------------------------------------------------------------
    async def entries(
        self, project_id: str, scope: Scope, page: paging.PageRequest
    ) -> tuple[list[DiaryEntry], str]:
        """Newest day first; with `scope.user_id`, only the days that user was met."""
        v = Violations()
        size = paging.page_size(v, page.size)
        v.raise_if_any()
        fp = paging.fingerprint(project_id, scope, "diary")
        after = paging.decode(page.token, fp, str)[0] if page.token else None
        where = scope_where(project_id, scope.agent_id, scope.instance_id)
        if after is not None:
            where = where.cmp("day", "<", after)
        rows = await self._rows.rows(where, limit=_MAX_ROWS)
        by_day: dict[str, list[Row]] = defaultdict(list)
        for r in rows:
            by_day[r["day"]].append(r)
        days = sorted(
            (d for d, rs in by_day.items() if not scope.user_id or any(
                r["user_id"] == scope.user_id for r in rs)),
            reverse=True,
        )  # fmt: skip
        out = [self._entry(scope, d, by_day[d]) for d in days[:size]]
        token = paging.encode(days[size - 1], days[size - 1], fp) if len(days) > size else ""
        return out, token

    @staticmethod
    def _entry(scope: Scope, day: str, rows: list[Row]) -> DiaryEntry:
        rows = sorted(rows, key=lambda r: r["user_id"])
        n = len(rows)
        pretty = date.fromisoformat(day).strftime("%A %d %B %Y")
        head = f"{pretty}: I talked with {n} {'person' if n == 1 else 'people'} today."
        parts = [json.loads(r["sessions"]) for r in rows]
        return DiaryEntry(
            date=day,
            agent_id=scope.agent_id,
            instance_id=scope.instance_id,
            text="\n".join([head, *(r["text"] for r in rows)]),
            user_ids=[r["user_id"] for r in rows],
            session_ids=sorted({sid for p in parts for sid in p}),
            facts_learned=sum(len(s["facts"]) for p in parts for s in p.values()),
            update_time=max(r["update_time"] for r in rows),
        )
