"""Helpers for extraction/profile tests: a user's conversation through the real server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc

from memgrpc.v1 import conflicts_pb2 as cpb
from memgrpc.v1 import conflicts_pb2_grpc, memory_pb2_grpc, sessions_pb2_grpc, users_pb2_grpc
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import users_pb2 as upb
from tests.convhelpers import add, msg, new_session
from tests.helpers import md

EXTRACTED = mpb.MEMORY_ORIGIN_EXTRACTED


def uid(prefix: str) -> str:
    """A user id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Conv:
    """One project's stubs and key."""

    channel: grpc.aio.Channel
    key: str

    @property
    def sessions(self) -> sessions_pb2_grpc.SessionServiceStub:
        return sessions_pb2_grpc.SessionServiceStub(self.channel)

    @property
    def users(self) -> users_pb2_grpc.UserServiceStub:
        return users_pb2_grpc.UserServiceStub(self.channel)

    @property
    def memories(self) -> memory_pb2_grpc.MemoryServiceStub:
        return memory_pb2_grpc.MemoryServiceStub(self.channel)

    async def session(self, user: str, *messages: str | tuple[str, str]) -> spb.Session:
        """A session of `user` with `messages` (text = role user; (role, text) otherwise)."""
        s = await self.sessions.CreateSession(new_session(user), metadata=md(self.key))
        msgs = [msg(m) if isinstance(m, str) else msg(m[1], role=m[0]) for m in messages]
        if msgs:
            await self.sessions.AddMessages(add(s.id, *msgs), metadata=md(self.key))
        return s

    async def messages(self, session_id: str) -> list[spb.Message]:
        resp = await self.sessions.ListMessages(
            spb.ListMessagesRequest(session_id=session_id, page_size=100), metadata=md(self.key)
        )
        return list(resp.messages)

    async def process(self, session_id: str, *, force: bool = False) -> spb.Job:
        return await self.sessions.ProcessSession(
            spb.ProcessSessionRequest(session_id=session_id, wait=True, force=force),
            metadata=md(self.key),
        )

    async def talk(self, user: str, *messages: str | tuple[str, str]) -> spb.Job:
        """One session with `messages`, processed; its DONE job."""
        s = await self.session(user, *messages)
        job = await self.process(s.id)
        assert job.state == spb.JOB_STATE_DONE, job.error
        return job

    async def extracted(self, user: str) -> list[mpb.Memory]:
        resp = await self.memories.ListMemories(
            mpb.ListMemoriesRequest(user_id=user, origins=[EXTRACTED], page_size=1000),
            metadata=md(self.key),
        )
        return list(resp.memories)

    async def matching(self, user: str, word: str) -> list[mpb.Memory]:
        return [m for m in await self.extracted(user) if word.lower() in m.content.lower()]

    async def profile(self, user: str) -> dict[str, upb.ProfileFact]:
        resp = await self.users.GetProfile(
            upb.GetProfileRequest(user_id=user), metadata=md(self.key)
        )
        return dict(resp.facts)

    async def versions(self, memory_id: str) -> list[mpb.MemoryVersion]:
        resp = await self.memories.ListMemoryVersions(
            mpb.ListMemoryVersionsRequest(id=memory_id), metadata=md(self.key)
        )
        return list(resp.versions)

    @property
    def conflict_stub(self) -> conflicts_pb2_grpc.ConflictServiceStub:
        return conflicts_pb2_grpc.ConflictServiceStub(self.channel)

    async def conflicts(self, user: str) -> list[cpb.Conflict]:
        resp = await self.conflict_stub.ListConflicts(
            cpb.ListConflictsRequest(user_id=user, page_size=100), metadata=md(self.key)
        )
        return list(resp.conflicts)

    async def resolve(self, conflict: cpb.Conflict, pick: str) -> cpb.Conflict:
        """Answer the question that has an option containing `pick` with it, others with
        their first option."""
        answers = []
        for q in conflict.clarifying_questions:
            chosen = next((o for o in q.options if pick.lower() in o.lower()), q.options[0])
            answers.append(cpb.ConflictAnswer(question=q.question, answer=chosen))
        return await self.conflict_stub.ResolveConflict(
            cpb.ResolveConflictRequest(id=conflict.id, answers=answers), metadata=md(self.key)
        )
