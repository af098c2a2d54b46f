"""Fact extraction through the real server (rules extractor): what ProcessSession writes, how
restatements, changes and re-processing reconcile with the user's current facts, and the job's
stats. Sentences of the dev scenarios' kinds in other words (the dev set is not copied)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from memgrpc.v1 import conflicts_pb2 as cpb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import users_pb2 as upb
from tests.helpers import md
from tests.intelhelpers import Conv, uid


async def test_facts_cite_their_message_fill_the_profile_and_count_in_stats(conv: Conv) -> None:
    user = uid("facts")
    s = await conv.session(user, "I'm a nurse and I live in Bergen.", "I love kayaking.")
    job = await conv.process(s.id)
    assert job.state == spb.JOB_STATE_DONE, job.error
    profile = await conv.profile(user)
    assert profile["location"].value == "Bergen"
    assert "nurse" in profile["occupation"].value.lower()
    kayak = await conv.matching(user, "kayak")
    assert len(kayak) == 1
    messages = await conv.messages(s.id)
    assert list(kayak[0].source_message_ids) == [messages[1].id]
    assert kayak[0].mention_count == 1
    # the messages stay stored verbatim next to the facts
    assert [m.content for m in messages] == [
        "I'm a nurse and I live in Bergen.",
        "I love kayaking.",
    ]
    stats = job.stats
    assert stats.extractor == "rules"
    assert stats.facts_extracted >= 3
    assert stats.facts_added == len(await conv.extracted(user))
    assert (stats.facts_reinforced, stats.versions_made, stats.conflicts_opened) == (0, 0, 0)
    # GetJob shows the same stats
    got = await conv.sessions.GetJob(spb.GetJobRequest(id=job.id), metadata=md(conv.key))
    assert got.stats == stats


async def test_a_fact_said_twice_in_a_session_is_one_memory_mentioned_twice(conv: Conv) -> None:
    user = uid("twice")
    s = await conv.session(
        user, "I do yoga every Sunday morning.", "I do yoga every Sunday morning."
    )
    job = await conv.process(s.id)
    yoga = await conv.matching(user, "yoga")
    assert len(yoga) == 1
    assert yoga[0].mention_count == 2
    assert set(yoga[0].source_message_ids) == {m.id for m in await conv.messages(s.id)}
    assert job.stats.facts_added == 1


async def test_a_paraphrase_in_a_later_session_reinforces_instead_of_adding(conv: Conv) -> None:
    user = uid("across")
    await conv.talk(user, "I play the trumpet in a brass band.")
    job = await conv.talk(user, "Like I mentioned, I play trumpet in a brass band.")
    trumpet = await conv.matching(user, "trumpet")
    assert len(trumpet) == 1, [m.content for m in trumpet]
    assert trumpet[0].mention_count == 2
    assert len(trumpet[0].source_message_ids) == 2
    assert job.stats.facts_reinforced == 1 and job.stats.facts_added == 0


async def test_different_facts_of_one_kind_stay_apart(conv: Conv) -> None:
    user = uid("apart")
    await conv.talk(user, "I swim every Thursday.", "My sister lives in Lyon.")
    await conv.talk(user, "I swim every Saturday too.", "My brother lives in Lyon.")
    assert len(await conv.matching(user, "swim")) == 2
    assert len(await conv.matching(user, "lyon")) == 2


async def test_reprocessing_with_force_adds_nothing(conv: Conv) -> None:
    user = uid("again")
    s = await conv.session(user, "My favourite colour is teal.", "I'm 41 years old.")
    first = await conv.process(s.id)
    assert first.state == spb.JOB_STATE_DONE
    before = {
        m.id: (m.mention_count, list(m.source_message_ids)) for m in await conv.extracted(user)
    }
    assert before
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.process(s.id)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    again = await conv.process(s.id, force=True)
    assert again.state == spb.JOB_STATE_DONE and again.id != first.id
    after = {
        m.id: (m.mention_count, list(m.source_message_ids)) for m in await conv.extracted(user)
    }
    assert after == before
    assert again.stats.facts_extracted == first.stats.facts_extracted
    assert (again.stats.facts_added, again.stats.facts_reinforced) == (0, 0)
    session = await conv.sessions.GetSession(spb.GetSessionRequest(id=s.id), metadata=md(conv.key))
    assert session.status == spb.SESSION_STATUS_PROCESSED


async def test_an_explicit_move_makes_a_new_version_of_the_location(conv: Conv) -> None:
    user = uid("move")
    await conv.talk(user, "I live in Leeds.")
    first = (await conv.profile(user))["location"]
    job = await conv.talk(user, "We moved to Bristol last year.")
    now = (await conv.profile(user))["location"]
    assert now.value == "Bristol"
    assert now.memory_id == first.memory_id and now.version == 2
    versions = await conv.versions(now.memory_id)
    assert [v.version for v in versions] == [2, 1]
    assert "Leeds" in versions[1].content and versions[1].expire_reason == "SUPERSEDED"
    assert job.stats.versions_made == 1 and job.stats.conflicts_opened == 0
    slot_rows = [m for m in await conv.extracted(user) if m.profile_slot == "location"]
    assert len(slot_rows) == 1


async def test_quitting_a_habit_supersedes_it(conv: Conv) -> None:
    user = uid("quit")
    await conv.talk(user, "I smoke about ten cigarettes a day.")
    job = await conv.talk(user, "I finally quit smoking last month.")
    smoking = await conv.matching(user, "smok")
    assert len(smoking) == 1 and "quit" in smoking[0].content.lower()
    versions = await conv.versions(smoking[0].id)
    assert len(versions) == 2 and versions[1].expire_reason == "SUPERSEDED"
    assert job.stats.versions_made == 1


async def test_what_is_not_about_the_user_writes_no_fact(conv: Conv) -> None:
    user = uid("none")
    job = await conv.talk(
        user,
        "Where did I say I work?",
        "ok cool, thanks",
        ("assistant", "I'm Nova and I live in a data centre."),
    )
    assert await conv.extracted(user) == []
    assert job.stats.facts_extracted == 0
    assert (await conv.profile(user)) == {}


async def test_a_pet_after_no_pets_opens_a_conflict_once(conv: Conv) -> None:
    user = uid("pets")
    await conv.talk(user, "We have no pets at home.")
    s = await conv.session(user, "I took my dog for a long walk by the canal.")
    job = await conv.process(s.id)
    assert job.stats.conflicts_opened == 1
    conflicts = await conv.conflicts(user)
    assert len(conflicts) == 1
    c = conflicts[0]
    assert c.status == cpb.CONFLICT_STATUS_PENDING
    assert any(len(q.options) >= 2 for q in c.clarifying_questions)
    assert "dog" in c.new_memory.content.lower()
    # the new fact waits in the conflict; the current one is flagged
    assert await conv.matching(user, "dog") == []
    flagged = [m for m in await conv.extracted(user) if m.merge_conflict_in_progress]
    assert [m.id for m in flagged] == [cm.memory.id for cm in c.conflicting_memories]
    # re-processing finds the same conflict instead of opening a second one
    again = await conv.process(s.id, force=True)
    assert again.stats.conflicts_opened == 0
    assert len(await conv.conflicts(user)) == 1


async def test_another_city_without_a_change_marker_is_a_conflict_not_a_guess(conv: Conv) -> None:
    user = uid("city")
    await conv.talk(user, "I live in Glasgow.")
    job = await conv.talk(user, "I live in Perth, close to the station.")
    assert job.stats.conflicts_opened == 1 and job.stats.versions_made == 0
    location = (await conv.profile(user))["location"]
    assert location.value == "Glasgow" and location.version == 1  # nothing overwritten


async def test_a_diet_switch_conflict_resolves_into_a_new_version(conv: Conv) -> None:
    user = uid("diet")
    await conv.talk(user, "I'm vegetarian.")
    before = (await conv.profile(user))["diet"]
    await conv.talk(user, "I'm pescatarian these days.")
    conflicts = await conv.conflicts(user)
    assert len(conflicts) == 1
    done = await conv.resolve(conflicts[0], "pescatarian")
    assert done.status == cpb.CONFLICT_STATUS_RESOLVED
    after = (await conv.profile(user))["diet"]
    assert after.value == "pescatarian" and after.memory_id == before.memory_id
    assert [m for m in await conv.extracted(user) if m.merge_conflict_in_progress] == []


async def test_actions_recorded_in_a_session_feed_extraction(conv: Conv) -> None:
    user = uid("act")
    s = await conv.session(user, "Hello again.")
    ts = Timestamp()
    ts.GetCurrentTime()
    action = await conv.users.RecordAction(
        upb.RecordActionRequest(
            user_id=user,
            session_id=s.id,
            timestamp=ts,
            content="User switched the app theme to dark mode.",
            event_type="preference_update",
        ),
        metadata=md(conv.key),
    )
    job = await conv.process(s.id)
    assert job.state == spb.JOB_STATE_DONE
    dark = await conv.matching(user, "dark")
    assert len(dark) == 1 and list(dark[0].source_message_ids) == [action.memory.id]


async def test_a_new_job_after_quitting_the_old_one_is_a_version_not_a_conflict(
    conv: Conv,
) -> None:
    user = uid("job")
    await conv.talk(user, "I'm a line cook at a diner on the high street.")
    first = (await conv.profile(user))["occupation"]
    job = await conv.talk(user, "Quit the diner job, I'm a dog groomer now.")
    now = (await conv.profile(user))["occupation"]
    assert "groomer" in now.value and now.memory_id == first.memory_id and now.version == 2
    assert job.stats.conflicts_opened == 0 and await conv.conflicts(user) == []
    versions = await conv.versions(now.memory_id)
    assert "cook" in versions[1].content and versions[1].expire_reason == "SUPERSEDED"


async def test_a_named_employer_ends_when_the_job_is_quit(conv: Conv) -> None:
    user = uid("employer")
    await conv.talk(user, "I work at Brightline as a courier.")
    job = await conv.talk(user, "Got laid off from Brightline. I'm a locksmith now.")
    profile = await conv.profile(user)
    assert "locksmith" in profile["occupation"].value
    # the employer's memory is versioned into the end; the profile shows no employer
    assert "employer" not in profile
    brightline = await conv.matching(user, "Brightline")
    assert len(brightline) == 1 and "no longer" in brightline[0].content
    assert len(await conv.versions(brightline[0].id)) == 2
    assert job.stats.conflicts_opened == 0


async def test_quitting_coffee_supersedes_the_coffee_habit(conv: Conv) -> None:
    user = uid("coffee")
    await conv.talk(user, "I drink about six espressos a day.")
    job = await conv.talk(user, "I gave up caffeine in March, feel way calmer.")
    coffee = [m for m in await conv.extracted(user) if "caffeine" in m.content.lower() or
              "espresso" in m.content.lower()]  # fmt: skip
    assert len(coffee) == 1 and "gave up" in coffee[0].content, [m.content for m in coffee]
    versions = await conv.versions(coffee[0].id)
    assert len(versions) == 2 and "espressos" in versions[1].content
    assert job.stats.versions_made == 1 and job.stats.conflicts_opened == 0


async def test_a_thing_said_not_owned_then_mentioned_as_mine_opens_a_conflict(
    conv: Conv,
) -> None:
    user = uid("bike")
    await conv.talk(user, "We don't have a bike, we walk everywhere.")
    job = await conv.talk(user, "My bike has a puncture again, third time this month.")
    assert job.stats.conflicts_opened == 1
    conflicts = await conv.conflicts(user)
    assert len(conflicts) == 1 and "bike" in conflicts[0].new_memory.content.lower()
    assert any(len(q.options) >= 2 for q in conflicts[0].clarifying_questions)


async def test_buying_the_thing_after_not_owning_it_is_a_change(conv: Conv) -> None:
    user = uid("car")
    await conv.talk(user, "I don't own a car.")
    job = await conv.talk(user, "I finally bought a car last weekend, a little hatchback.")
    assert job.stats.conflicts_opened == 0 and job.stats.versions_made == 1
    car = await conv.matching(user, "car")
    assert len(car) == 1 and "bought" in car[0].content
