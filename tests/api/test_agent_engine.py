"""The context engine through the real server: mood and relationship moved by AddMessages and
Chat (warm up, hostile down, once per message), habits / goals / interests from what the user
said and its extracted facts, the diary written when a session is processed, bad input,
another project's agent, and DeleteUser leaving no rows in the engine's tables."""

from __future__ import annotations

import grpc
import pytest

from memgrpc.core.conversation.records import Message
from memgrpc.v1 import agent_state_pb2 as apb
from memgrpc.v1 import chat_pb2, chat_pb2_grpc
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import users_pb2 as upb
from tests.api.agenthelpers import AgentConv, days_ago
from tests.conftest import NewKey, ServerHandle
from tests.convhelpers import count_rows, eventually
from tests.helpers import md
from tests.intelhelpers import Conv, uid
from tests.memhelpers import details

ENGINE_TABLES = ("agent_relations", "agent_diary", "notifications")


@pytest.fixture
def ac(conv: Conv) -> AgentConv:
    return AgentConv(conv)


async def test_mood_defaults_to_neutral_before_any_turn(ac: AgentConv) -> None:
    agent = await ac.agent()
    mood = await ac.mood(agent, uid("u"))
    assert (mood.label, mood.valence, mood.turns, mood.source) == ("neutral", 0.0, 0, "lexicon")
    assert mood.arousal == pytest.approx(0.3)
    rel = await ac.relationship(agent, uid("u"))
    assert (
        rel.familiarity == 0.0 and rel.messages == 0 and not rel.HasField("last_interaction_time")
    )


async def test_warm_conversation_raises_affinity_and_pleases_the_mood(ac: AgentConv) -> None:
    agent, user = await ac.agent(), uid("warm")
    await ac.talk(agent, user, "Thank you so much, you are really helpful!")
    await ac.talk(agent, user, "I appreciate it, this is wonderful. Thanks, friend")
    mood = await ac.mood(agent, user)
    assert mood.valence > 0.35 and mood.label in ("content", "cheerful"), mood
    assert mood.turns == 2 and mood.source == "lexicon"
    rel = await ac.relationship(agent, user)
    assert rel.affinity > 0.2, rel
    assert (rel.sessions, rel.messages) == (2, 2)
    assert 0 < rel.familiarity < 1
    assert "warm" in rel.description or "friendly" in rel.description
    assert rel.last_interaction_time.seconds > 0


async def test_hostile_conversation_lowers_affinity_and_sours_the_mood(ac: AgentConv) -> None:
    agent, user = await ac.agent(), uid("hostile")
    await ac.talk(agent, user, "You are stupid and useless.", "Shut up, I hate this, idiot")
    mood = await ac.mood(agent, user)
    assert mood.valence < -0.3 and mood.label in ("annoyed", "hurt"), mood
    rel = await ac.relationship(agent, user)
    assert rel.affinity < -0.2, rel
    assert "hostile" in rel.description or "cool" in rel.description
    # negation: "not happy" is not a pleasant turn
    other = uid("neg")
    await ac.talk(agent, other, "I am not happy at all")
    assert (await ac.mood(agent, other)).valence < 0


async def test_a_message_moves_the_mood_once(
    new_key: NewKey, server: ServerHandle, channel: grpc.aio.Channel
) -> None:
    """AddMessages' hook observed it; observing the same stored messages again (as SubmitTurn
    would) changes nothing."""
    project, key = await new_key()
    ac = AgentConv(Conv(channel, key))
    agent, user = await ac.agent(), uid("once")
    s = await ac.talk(agent, user, "Thanks, that was great!")
    before = await ac.mood(agent, user)
    session = await server.app.conversations.session_store.require(project, s.id)
    again = [
        Message(id=m.id, session_id=s.id, role=m.role, content=m.content)
        for m in await ac.conv.messages(s.id)
    ]
    mood = await server.app.agent_engine.engine.observe_turn(project, session, again)
    assert mood is not None and mood.turns == before.turns == 1
    assert mood.valence == pytest.approx(before.valence)
    assert (await ac.relationship(agent, user)).messages == 1


async def test_chat_moves_the_mood(ac: AgentConv) -> None:
    agent, user = await ac.agent(), uid("chat")
    s = await ac.talk(agent, user)
    chat = chat_pb2_grpc.ChatServiceStub(ac.conv.channel)
    events = [
        ev
        async for ev in chat.Chat(
            chat_pb2.ChatRequest(session_id=s.id, message="Thanks, you are wonderful and kind!"),
            metadata=md(ac.key),
        )
    ]
    assert events

    async def moved() -> bool:
        return (await ac.mood(agent, user)).turns == 1

    await eventually(moved)  # the turn's user message is stored alongside the reply
    mood = await ac.mood(agent, user)
    assert mood.valence > 0.2 and (await ac.relationship(agent, user)).messages == 1, mood


async def test_goal_habit_and_interest_from_the_conversation(ac: AgentConv) -> None:
    agent, user = await ac.agent(), uid("ins")
    s = await ac.talk(
        agent,
        user,
        "I want to run a marathon.",
        "I go swimming every morning.",
        "I love jazz.",
        "I really love jazz, honestly.",
    )
    goals = await ac.agents.ListGoals(ac.who(agent, user), metadata=md(ac.key))
    assert [g.text for g in goals.insights] == ["run a marathon"]
    assert goals.insights[0].status == "active" and goals.insights[0].memory_ids
    habits = await ac.agents.ListHabits(ac.who(agent, user), metadata=md(ac.key))
    assert [h.text for h in habits.insights] == ["go swimming every morning"]
    interests = await ac.agents.ListInterests(ac.who(agent, user), metadata=md(ac.key))
    assert [i.text for i in interests.insights] == ["jazz"]
    jazz = interests.insights[0]
    assert jazz.strength > habits.insights[0].strength  # said twice
    # once processed, the extracted facts back the same insights (no second mention)
    job = await ac.conv.process(s.id)
    assert job.state == spb.JOB_STATE_DONE
    after = await ac.agents.ListInterests(ac.who(agent, user), metadata=md(ac.key))
    assert [i.text for i in after.insights] == ["jazz"]
    assert after.insights[0].strength == pytest.approx(jazz.strength)
    assert len(after.insights[0].memory_ids) > len(jazz.memory_ids)
    # another user of the agent has none of them
    empty = await ac.agents.ListGoals(ac.who(agent, uid("x")), metadata=md(ac.key))
    assert not empty.insights


async def test_insights_from_facts_of_other_sessions(ac: AgentConv) -> None:
    """The user's general extracted facts (said outside the agent's sessions) count too."""
    agent, user = await ac.agent(), uid("facts")
    await ac.conv.talk(user, "I'm into photography.")
    interests = await ac.agents.ListInterests(ac.who(agent, user), metadata=md(ac.key))
    assert [i.text for i in interests.insights] == ["photography"]


async def test_diary_entry_for_the_day_with_both_users(ac: AgentConv) -> None:
    agent, ana, bob = await ac.agent(), uid("ana"), uid("bob")
    day = days_ago(3).replace(hour=10)
    s1 = await ac.talk(agent, ana, "I love jazz.", at=day, name="Ana")
    s2 = await ac.talk(agent, bob, "Hello there!", at=day.replace(hour=15))
    for s in (s1, s2):
        assert (await ac.conv.process(s.id)).state == spb.JOB_STATE_DONE
    listing = await ac.agents.ListDiaryEntries(
        apb.ListDiaryEntriesRequest(agent_id=agent), metadata=md(ac.key)
    )
    assert len(listing.entries) == 1
    e = listing.entries[0]
    assert e.date == day.date().isoformat()
    assert sorted(e.user_ids) == sorted([ana, bob])
    assert sorted(e.session_ids) == sorted([s1.id, s2.id])
    assert e.facts_learned >= 1
    assert "I met Ana" in e.text and "Ana loves jazz" in e.text and "2 people" in e.text
    # processing again rewrites the page, never a second one
    await ac.conv.process(s1.id, force=True)
    again = await ac.agents.ListDiaryEntries(
        apb.ListDiaryEntriesRequest(agent_id=agent, user_id=bob), metadata=md(ac.key)
    )
    assert [x.date for x in again.entries] == [e.date] and again.entries[0].text == e.text
    # familiarity grew with the facts learned
    assert (await ac.relationship(agent, ana)).familiarity > (
        await ac.relationship(agent, bob)
    ).familiarity


async def test_bad_input_and_another_projects_agent(
    ac: AgentConv, new_key: NewKey, server: ServerHandle
) -> None:
    agent = await ac.agent()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ac.agents.GetMood(apb.AgentUserRequest(agent_id=agent), metadata=md(ac.key))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id" in details(err.value)[0]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ac.agents.ListGoals(
            apb.AgentUserRequest(agent_id="bad\x01id", user_id="u"), metadata=md(ac.key)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "agent_id" in details(err.value)[0]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ac.agents.ListDiaryEntries(
            apb.ListDiaryEntriesRequest(agent_id=agent, page_size=-1), metadata=md(ac.key)
        )
    assert "page_size" in details(err.value)[0]
    _, other = await new_key()
    for call in (
        ac.agents.GetMood(ac.who(agent, "u"), metadata=md(other)),
        ac.agents.GetRelationship(ac.who(agent, "u"), metadata=md(other)),
        ac.agents.ListHabits(ac.who(agent, "u"), metadata=md(other)),
        ac.agents.ListDiaryEntries(apb.ListDiaryEntriesRequest(agent_id=agent), metadata=md(other)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_delete_user_leaves_no_engine_rows(
    new_key: NewKey, server: ServerHandle, channel: grpc.aio.Channel
) -> None:
    project, key = await new_key()
    ac = AgentConv(Conv(channel, key))
    agent, user = await ac.agent(), uid("gone")
    s = await ac.talk(agent, user, "My exam is tomorrow. Thanks!", at=days_ago(10))
    await ac.conv.process(s.id)
    await ac.agents.RunNotificationChecks(
        apb.RunNotificationChecksRequest(agent_id=agent), metadata=md(key)
    )
    before = await count_rows(server.data_dir, project, user)
    assert all(before[t] >= 1 for t in ENGINE_TABLES), before
    await ac.conv.users.DeleteUser(upb.DeleteUserRequest(id=user), metadata=md(key))
    after = await count_rows(server.data_dir, project, user)
    assert all(n == 0 for n in after.values()), after
    assert (await ac.mood(agent, user)).turns == 0
