"""ExtractFacts: the processing step that turns a session into facts about its user.

It runs after the summary: the extractor reads the session's messages (and the user actions
recorded in it), shown the user's current facts; reconciliation then decides what each fact
does (core/intelligence/reconcile.py). Extraction happens before anything is written, so a bad
LLM answer, a 429 or a timeout fails the job with nothing half-written (or, with a fallback
configured, the rules extract instead and the job's stats say so); the writes that follow
are idempotent, so a job that died while writing is simply run again (ProcessSession, with
`force` on a PROCESSED session).

Test hook: MEMGRPC_TEST_EXTRACT_PAUSE_S (seconds) makes the step sleep between its write
phases, so a crash test can kill the server mid-write. Unset in production.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import structlog

from memgrpc.core.conversation.records import Message
from memgrpc.core.intelligence.extract.fallback import extract_named
from memgrpc.core.intelligence.facts import Extractor, Fact, KnownFact
from memgrpc.core.intelligence.processing import SessionWork
from memgrpc.core.intelligence.reconcile import Reconciler, known_fact
from memgrpc.core.memory.service import MemoryService

log = structlog.get_logger(__name__)

PAUSE_ENV = "MEMGRPC_TEST_EXTRACT_PAUSE_S"

# the user actions recorded in a session, as messages (core/intelligence/actions.py)
ActionSource = Callable[[MemoryService, str, str, str], Awaitable[list[Message]]]
# project id -> the extractor of its own LLM key (BYOK), None = the server's extractor
OwnExtractor = Callable[[str], Awaitable[Extractor | None]]


class ExtractFacts:
    name = "extract"

    def __init__(
        self,
        extractor: Extractor,
        reconciler: Reconciler,
        *,
        fallback: Extractor | None = None,
        actions: ActionSource | None = None,
        own_extractor: OwnExtractor | None = None,
    ) -> None:
        self._extractor = extractor
        self._own_extractor = own_extractor
        self._fallback = fallback
        self._reconciler = reconciler
        self._actions = actions

    async def run(self, work: SessionWork) -> None:
        project, user = work.project_id, work.session.user_id
        messages = [m for m in work.messages if m.content.strip()]
        if self._actions is not None:
            messages += await self._actions(work.memories, project, user, work.session.id)
        # an agent session's facts live in its agent scope, shown and reconciled only there
        scope = (work.session.agent_id, work.session.instance_id)
        current = await self._reconciler.current(project, user, scope=scope, exact=True)
        known = [known_fact(m) for m in current]
        facts, ran = await self._extract(project, messages, known) if messages else ([], "")
        async with self._reconciler.lock(project, user):
            plan = await self._reconciler.plan(project, user, work.session.id, facts, scope=scope)
            await self._reconciler.apply(project, plan, between=_pause_hook())
        plan.stats.extractor = ran or self._extractor.name
        work.stats = plan.stats
        # what it wrote: new facts, and facts it reinforced or versioned
        work.written.extend([*plan.inserts(), *(p.memory for p in plan.patches())])
        log.info(
            "facts_extracted",
            session_id=work.session.id,
            extractor=plan.stats.extractor,
            facts=plan.stats.facts_extracted,
            added=plan.stats.facts_added,
            reinforced=plan.stats.facts_reinforced,
            versions=plan.stats.versions_made,
            conflicts=plan.stats.conflicts_opened,
        )

    async def _extract(
        self, project_id: str, messages: list[Message], known: list[KnownFact]
    ) -> tuple[list[Fact], str]:
        """With the project's own key, its LLM extracts; should that fail, the server's own
        extractor takes over when it is not an LLM too (rules), else the configured fallback."""
        own = await self._own_extractor(project_id) if self._own_extractor is not None else None
        if own is None:
            return await extract_named(self._extractor, self._fallback, messages, known)
        fallback = self._fallback if self._extractor.name == own.name else self._extractor
        return await extract_named(own, fallback, messages, known)


def _pause_hook() -> Callable[[], Awaitable[None]] | None:
    raw = os.environ.get(PAUSE_ENV, "")
    if not raw:
        return None
    seconds = float(raw)

    async def pause() -> None:
        log.warning("extract_test_pause", seconds=seconds)
        await asyncio.sleep(seconds)

    return pause
