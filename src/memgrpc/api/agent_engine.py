"""AgentService's context-engine RPCs (a mixin of AgentServicer): mood, relationship, habits,
goals, interests and the diary. Uses `self._engine` (core ContextEngine) and `self._diary`."""

from __future__ import annotations

import grpc

from memgrpc.api import convert
from memgrpc.core.access import principal
from memgrpc.core.agents.engine import ContextEngine, Diary, DiaryEntry, Found, Relationship
from memgrpc.core.agents.turns import Mood, Scope
from memgrpc.core.kernel import PageRequest
from memgrpc.v1 import agent_state_pb2 as spb


def mood_to_pb(m: Mood) -> spb.Mood:
    return spb.Mood(
        label=m.label,
        valence=m.valence,
        arousal=m.arousal,
        turns=m.turns,
        update_time=convert.to_ts(m.update_time),
        source=m.source,
    )


def relationship_to_pb(r: Relationship) -> spb.Relationship:
    return spb.Relationship(
        familiarity=r.familiarity,
        affinity=r.affinity,
        last_interaction_time=convert.to_ts(r.last_interaction_time),
        description=r.description,
        sessions=r.sessions,
        messages=r.messages,
        source=r.source,
    )


def insight_to_pb(f: Found) -> spb.Insight:
    return spb.Insight(
        text=f.text,
        strength=f.strength,
        memory_ids=f.memory_ids,
        first_seen_time=convert.to_ts(f.first_seen),
        last_seen_time=convert.to_ts(f.last_seen),
        status=f.status,
    )


def diary_to_pb(e: DiaryEntry) -> spb.DiaryEntry:
    return spb.DiaryEntry(
        date=e.date,
        agent_id=e.agent_id,
        instance_id=e.instance_id,
        text=e.text,
        user_ids=e.user_ids,
        session_ids=e.session_ids,
        facts_learned=e.facts_learned,
        update_time=convert.to_ts(e.update_time),
    )


class EngineRpcs:
    _engine: ContextEngine
    _diary: Diary

    async def _scope(self, r: spb.AgentUserRequest) -> tuple[str, Scope]:
        project = principal.current().project_id
        return project, await self._engine.require(project, r.agent_id, r.user_id, r.instance_id)

    async def GetMood(
        self, request: spb.AgentUserRequest, context: grpc.aio.ServicerContext
    ) -> spb.Mood:
        project, scope = await self._scope(request)
        return mood_to_pb(await self._engine.mood(project, scope))

    async def GetRelationship(
        self, request: spb.AgentUserRequest, context: grpc.aio.ServicerContext
    ) -> spb.Relationship:
        project, scope = await self._scope(request)
        return relationship_to_pb(await self._engine.relationship(project, scope))

    async def _insights(self, request: spb.AgentUserRequest, kind: str) -> spb.ListInsightsResponse:
        project, scope = await self._scope(request)
        found = (await self._engine.insights(project, scope))[kind]
        return spb.ListInsightsResponse(insights=[insight_to_pb(f) for f in found])

    async def ListHabits(
        self, request: spb.AgentUserRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListInsightsResponse:
        return await self._insights(request, "habit")

    async def ListGoals(
        self, request: spb.AgentUserRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListInsightsResponse:
        return await self._insights(request, "goal")

    async def ListInterests(
        self, request: spb.AgentUserRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListInsightsResponse:
        return await self._insights(request, "interest")

    async def ListDiaryEntries(
        self, request: spb.ListDiaryEntriesRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListDiaryEntriesResponse:
        project = principal.current().project_id
        scope = await self._engine.require(
            project, request.agent_id, request.user_id, request.instance_id, user_required=False
        )
        entries, token = await self._diary.entries(
            project, scope, PageRequest(size=request.page_size, token=request.page_token)
        )
        return spb.ListDiaryEntriesResponse(
            entries=[diary_to_pb(e) for e in entries], next_page_token=token
        )
