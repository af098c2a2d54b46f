"""Helpers of the agent context-engine tests: an agent, its sessions and past-dated messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import timestamp_pb2

from memgrpc.v1 import agent_state_pb2 as apb
from memgrpc.v1 import agents_pb2 as pb
from memgrpc.v1 import agents_pb2_grpc
from memgrpc.v1 import sessions_pb2 as spb
from tests.convhelpers import add, new_session
from tests.helpers import md
from tests.intelhelpers import Conv


def ts(dt: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(dt)
    return out


def days_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)


class AgentConv:
    """One project's agent stubs and key, and a conversation helper."""

    def __init__(self, conv: Conv) -> None:
        self.conv = conv
        self.key = conv.key
        self.admin_key = ""  # a project admin key, when a test made one
        self.agents = agents_pb2_grpc.AgentServiceStub(conv.channel)

    async def agent(self, name: str = "Ava") -> str:
        made = await self.agents.CreateAgent(
            pb.CreateAgentRequest(agent=pb.Agent(display_name=name)), metadata=md(self.key)
        )
        return made.id

    async def talk(
        self,
        agent_id: str,
        user: str,
        *texts: str,
        at: datetime | None = None,
        instance_id: str = "",
        name: str = "",
    ) -> spb.Session:
        """A session of `user` with `agent_id`, the texts as user messages (times `at` on)."""
        s = await self.conv.sessions.CreateSession(
            new_session(user, agent_id=agent_id, instance_id=instance_id), metadata=md(self.key)
        )
        msgs = []
        for i, t in enumerate(texts):
            m = spb.Message(content=t, role="user", name=name)
            if at is not None:
                m.create_time.CopyFrom(ts(at + timedelta(seconds=i)))
            msgs.append(m)
        if msgs:
            await self.conv.sessions.AddMessages(add(s.id, *msgs), metadata=md(self.key))
        return s

    def who(self, agent_id: str, user: str) -> apb.AgentUserRequest:
        return apb.AgentUserRequest(agent_id=agent_id, user_id=user)

    async def mood(self, agent_id: str, user: str) -> apb.Mood:
        return await self.agents.GetMood(self.who(agent_id, user), metadata=md(self.key))

    async def relationship(self, agent_id: str, user: str) -> apb.Relationship:
        return await self.agents.GetRelationship(self.who(agent_id, user), metadata=md(self.key))


async def status_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        return err.code()
    raise AssertionError("the call succeeded")
