"""Sonzai's order, end to end through the real server and the local provider: an agent with a
personality; two users, two sessions each, talking to it through Chat; then its memory tree,
timeline, mood, relationship, habits, goals, interests, diary, a follow-up notification, an
instance reset that forgets one user's instance only, and custom states in both scopes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import struct_pb2, timestamp_pb2

from memgrpc.store import owned
from memgrpc.v1 import agent_state_pb2 as st
from memgrpc.v1 import agents_pb2 as apb
from memgrpc.v1 import agents_pb2_grpc, chat_pb2_grpc, memory_pb2_grpc, users_pb2_grpc
from memgrpc.v1 import chat_pb2 as cpb
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import users_pb2 as upb
from memgrpc.v1.sessions_pb2_grpc import SessionServiceStub
from tests.conftest import NewKey, ServerHandle
from tests.helpers import md
from tests.intelhelpers import uid

TALKS = {
    "alice": [
        ["Hi! I work as a nurse in Lisbon.", "I want to run a marathon next year."],
        ["Thanks so much, you are really kind and helpful!", "My driving test is tomorrow."],
    ],
    "bob": [
        ["I love jazz, especially Coltrane.", "I go swimming every morning."],
        ["Great, that was wonderful, thank you!", "I usually cook pasta on Sundays."],
    ],
}


def ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


async def chat_session(
    channel: grpc.aio.Channel, key: str, agent_id: str, user: str, lines: list[str], **scope: str
) -> str:
    """One session with the agent; each line is a Chat turn; the session is ended (processed)."""
    sessions = SessionServiceStub(channel)
    chat = chat_pb2_grpc.ChatServiceStub(channel)
    s = await sessions.CreateSession(
        spb.CreateSessionRequest(session=spb.Session(user_id=user, agent_id=agent_id, **scope)),
        metadata=md(key),
    )
    for line in lines:
        events = [
            ev
            async for ev in chat.Chat(
                cpb.ChatRequest(session_id=s.id, message=line), metadata=md(key)
            )
        ]
        assert events[-1].WhichOneof("event") == "done", events[-1]
    ended = await sessions.EndSession(
        spb.EndSessionRequest(session_id=s.id, wait=True), metadata=md(key)
    )
    assert ended.job.state == spb.JOB_STATE_DONE, ended.job.error
    return s.id


def texts(resp: st.ListInsightsResponse) -> str:
    return " | ".join(i.text.lower() for i in resp.insights)


async def test_sonzai_order_end_to_end(
    channel: grpc.aio.Channel, new_key: NewKey, server: ServerHandle
) -> None:
    project, key = await new_key()
    agents = agents_pb2_grpc.AgentServiceStub(channel)
    memories = memory_pb2_grpc.MemoryServiceStub(channel)
    users = users_pb2_grpc.UserServiceStub(channel)
    personality = apb.Personality(
        big_five=apb.BigFive(openness=0.8, agreeableness=0.9), dimensions={"warmth": 9}
    )
    ava = await agents.CreateAgent(
        apb.CreateAgentRequest(
            agent=apb.Agent(
                display_name="Ava", system_prompt="You are Ava.", personality=personality
            )
        ),
        metadata=md(key),
    )
    alice, bob = uid("alice"), uid("bob")
    start = datetime.now(UTC) - timedelta(seconds=1)
    for user, name in ((alice, "alice"), (bob, "bob")):
        for lines in TALKS[name]:
            await chat_session(channel, key, ava.id, user, lines)
    scope = {"agent_id": ava.id}

    # the memory tree and the timeline hold what each user said
    tree = await agents.GetMemoryTree(
        st.GetMemoryTreeRequest(**scope, user_id=alice), metadata=md(key)
    )
    facts = [f.content.lower() for node in tree.categories for f in node.facts]
    assert tree.total_facts == len(facts) > 0 and any("nurse" in f for f in facts), facts
    timeline = await agents.GetTimeline(
        st.GetTimelineRequest(
            **scope, user_id=alice, start_time=ts(start), end_time=ts(datetime.now(UTC))
        ),
        metadata=md(key),
    )
    times = [m.create_time.ToDatetime() for m in timeline.memories]
    assert times and times == sorted(times)
    assert all(m.agent_id == ava.id and m.user_id == alice for m in timeline.memories)
    found = await memories.SearchMemories(
        mpb.SearchMemoriesRequest(user_id=bob, agent_id=ava.id, query="which music"),
        metadata=md(key),
    )
    assert "jazz" in found.results[0].memory.content.lower()

    # mood and relationship moved with the warm conversations
    mood = await agents.GetMood(st.AgentUserRequest(**scope, user_id=alice), metadata=md(key))
    assert mood.turns == 4 and mood.valence > 0, mood
    rel = await agents.GetRelationship(
        st.AgentUserRequest(**scope, user_id=alice), metadata=md(key)
    )
    assert rel.sessions == 2 and rel.familiarity > 0 and rel.affinity > 0, rel
    assert rel.description

    # habits, goals, interests from the extracted facts
    req = st.AgentUserRequest(**scope, user_id=bob)
    assert "swim" in texts(await agents.ListHabits(req, metadata=md(key)))
    assert "jazz" in texts(await agents.ListInterests(req, metadata=md(key)))
    goals = await agents.ListGoals(st.AgentUserRequest(**scope, user_id=alice), metadata=md(key))
    assert "marathon" in texts(goals)

    # the diary met both users today; ListUsers by agent lists both
    diary = await agents.ListDiaryEntries(st.ListDiaryEntriesRequest(**scope), metadata=md(key))
    assert diary.entries and {alice, bob} <= set(diary.entries[0].user_ids)
    listed = await users.ListUsers(upb.ListUsersRequest(agent_id=ava.id), metadata=md(key))
    assert {u.id for u in listed.users} == {alice, bob}

    # "my driving test is tomorrow": a follow-up once that day has passed, never twice
    later = ts(datetime.now(UTC) + timedelta(days=2, hours=1))
    checks = st.RunNotificationChecksRequest(**scope, now=later)
    made = await agents.RunNotificationChecks(checks, metadata=md(key))
    follow = [n for n in made.created if n.check_type == "follow_up" and n.user_id == alice]
    assert len(follow) == 1 and "driving test" in follow[0].generated_message.lower()
    again = await agents.RunNotificationChecks(checks, metadata=md(key))
    assert not [n for n in again.created if n.check_type == "follow_up" and n.user_id == alice]
    consumed = await agents.ConsumeNotification(
        st.ConsumeNotificationRequest(**scope, notification_id=follow[0].id), metadata=md(key)
    )
    assert consumed.status == st.NOTIFICATION_STATUS_CONSUMED
    history = await agents.ListNotifications(
        st.ListNotificationsRequest(**scope, status=st.NOTIFICATION_STATUS_CONSUMED),
        metadata=md(key),
    )
    assert [n.id for n in history.notifications] == [follow[0].id]

    # an instance: both users talk to it; resetting alice's state there forgets only that
    ins = await agents.CreateInstance(
        st.CreateInstanceRequest(**scope, instance=st.Instance(display_name="beta")),
        metadata=md(key),
    )
    await chat_session(channel, key, ava.id, alice, ["I play the cello."], instance_id=ins.id)
    await chat_session(channel, key, ava.id, bob, ["I play the drums."], instance_id=ins.id)

    async def count(user: str, instance_id: str) -> int:
        resp = await memories.ListMemories(
            mpb.ListMemoriesRequest(
                user_id=user, agent_id=ava.id, instance_id=instance_id, page_size=1000
            ),
            metadata=md(key),
        )
        return sum(1 for m in resp.memories if m.instance_id == instance_id)

    before = {u: await count(u, ins.id) for u in (alice, bob)}
    default_alice = len(
        (
            await memories.ListMemories(
                mpb.ListMemoriesRequest(user_id=alice, agent_id=ava.id, page_size=1000),
                metadata=md(key),
            )
        ).memories
    )
    assert before[alice] > 0 and before[bob] > 0
    reset = await agents.ResetInstance(
        st.ResetInstanceRequest(**scope, instance_id=ins.id, user_id=alice), metadata=md(key)
    )
    assert reset.HasField("reset_time")
    assert await count(alice, ins.id) == 0
    assert await count(bob, ins.id) == before[bob]
    after_default = await memories.ListMemories(
        mpb.ListMemoriesRequest(user_id=alice, agent_id=ava.id, page_size=1000), metadata=md(key)
    )
    assert len(after_default.memories) == default_alice
    mood_ins = await agents.GetMood(
        st.AgentUserRequest(**scope, user_id=alice, instance_id=ins.id), metadata=md(key)
    )
    assert mood_ins.turns == 0  # the instance's mood towards alice is back to the default

    # custom states in both scopes
    value = struct_pb2.Value()
    value.struct_value.update({"level": 3, "items": ["map"]})
    await agents.CreateState(
        st.CreateStateRequest(
            state=st.CustomState(**scope, scope=st.STATE_SCOPE_GLOBAL, key="world", text="rain")
        ),
        metadata=md(key),
    )
    await agents.UpsertState(
        st.UpsertStateRequest(
            state=st.CustomState(
                **scope, scope=st.STATE_SCOPE_USER, user_id=bob, key="quest", value=value
            )
        ),
        metadata=md(key),
    )
    got = await agents.GetState(
        st.GetStateRequest(
            key=st.StateKey(**scope, scope=st.STATE_SCOPE_USER, user_id=bob, key="quest")
        ),
        metadata=md(key),
    )
    assert got.value == value and got.content_type == "application/json"
    states = await agents.ListStates(st.ListStatesRequest(**scope), metadata=md(key))
    assert {(s.key, s.scope) for s in states.states} == {
        ("world", st.STATE_SCOPE_GLOBAL),
        ("quest", st.STATE_SCOPE_USER),
    }

    # deleting the agent leaves none of its rows, in any table (jobs of its sessions included)
    before = await owned.count_agent_rows(server.app.store, project, ava.id)
    assert before["jobs"] >= 4 and before["memories"] and before["agent_states"] == 2, before
    await agents.DeleteAgent(apb.DeleteAgentRequest(id=ava.id), metadata=md(key))
    after = await owned.count_agent_rows(server.app.store, project, ava.id)
    assert after == dict.fromkeys(after, 0), after
