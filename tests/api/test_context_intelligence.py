"""GetContext with memory intelligence: the user's profile ahead of the memories, extracted facts
marked as such and ranked ahead of the raw turns they came from, disputed facts flagged."""

from __future__ import annotations

import grpc

from memgrpc.v1 import context_pb2 as xpb
from memgrpc.v1 import context_pb2_grpc
from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import users_pb2 as upb
from tests.conftest import NewKey
from tests.helpers import md
from tests.intelhelpers import Conv, uid


async def context(conv: Conv, **kw: object) -> xpb.GetContextResponse:
    stub = context_pb2_grpc.ContextServiceStub(conv.channel)
    return await stub.GetContext(xpb.GetContextRequest(**kw), metadata=md(conv.key))


async def test_the_profile_leads_and_extracted_facts_are_marked_ahead_of_their_turns(
    conv: Conv,
) -> None:
    user = uid("ctx")
    await conv.talk(user, "I'm based in Lisbon.", "I'm allergic to peanuts, sadly.")
    got = await context(conv, user_id=user, query="does the user have any food allergies?")
    assert got.profile.facts["location"].value == "Lisbon"
    assert "peanut" in got.profile.facts["allergies"].value.lower()
    text = got.context
    assert text.index("## Profile") < text.index("## Relevant memories")
    assert "- location: Lisbon" in text
    # the extracted allergy fact is listed, marked, and ahead of the message it came from
    origins = [r.memory.origin for r in got.memories]
    assert mpb.MEMORY_ORIGIN_EXTRACTED in origins
    first_fact = origins.index(mpb.MEMORY_ORIGIN_EXTRACTED)
    assert all(o != mpb.MEMORY_ORIGIN_MESSAGE for o in origins[:first_fact])
    fact = got.memories[first_fact].memory
    assert "peanut" in fact.content.lower()
    assert f"(extracted fact) {fact.content}" in text


async def test_include_profile_false_and_a_tight_budget_leave_the_profile_out(conv: Conv) -> None:
    user = uid("noprof")
    await conv.talk(user, "I live in Tallinn and I work as a carpenter.")
    without = await context(conv, user_id=user, query="where?", include_profile=False)
    assert "## Profile" not in without.context
    assert not without.profile.facts
    # LOW_LATENCY and no query: the instructions and the profile only
    full = await context(conv, user_id=user, strategy=xpb.CONTEXT_STRATEGY_LOW_LATENCY)
    assert "## Profile" in full.context and "You are talking" in full.context
    # a budget they do not both fit in: the profile goes before the instructions
    tight = await context(
        conv,
        user_id=user,
        strategy=xpb.CONTEXT_STRATEGY_LOW_LATENCY,
        token_budget=full.token_count - 5,
    )
    assert 0 < tight.token_count <= full.token_count - 5
    assert "## Profile" not in tight.context and not tight.profile.facts
    assert "You are talking" in tight.context


async def test_a_disputed_fact_is_flagged(conv: Conv) -> None:
    user = uid("disputed")
    await conv.talk(user, "I don't have any pets.")
    await conv.talk(user, "I took my cat to the vet this morning.")
    got = await context(conv, user_id=user, query="does the user have pets?", memory_threshold=0.01)
    flagged = [r.memory for r in got.memories if r.memory.merge_conflict_in_progress]
    assert flagged, [r.memory.content for r in got.memories]
    assert f"(disputed: the user said otherwise too) {flagged[0].content}" in got.context


async def test_another_projects_key_sees_no_profile(
    conv: Conv, channel: grpc.aio.Channel, new_key: NewKey
) -> None:
    user = uid("iso")
    await conv.talk(user, "I'm based in Quito.")
    _, other_key = await new_key()
    other = Conv(channel, other_key)
    got = await context(other, user_id=user, query="where does the user live?")
    assert not got.profile.facts
    assert "Quito" not in got.context


async def test_the_context_profile_follows_a_saved_fact_as_get_profile_does(conv: Conv) -> None:
    """The context reads the profile from the recall cache (warm after the first search):
    after SaveProfileFact it shows the same as GetProfile, which reads the store."""
    user = uid("cached")
    await conv.talk(user, "I'm based in Lima.", "I have a dog called Rex.")
    before = await context(conv, user_id=user, query="where does the user live?")
    assert before.profile.facts["location"].value == "Lima"
    await conv.users.SaveProfileFact(
        upb.SaveProfileFactRequest(user_id=user, slot="location", value="cusco"),
        metadata=md(conv.key),
    )
    after = await context(conv, user_id=user, query="where does the user live?")
    stored = await conv.profile(user)
    assert after.profile.facts["location"].value == "Cusco" == stored["location"].value
    assert dict(after.profile.facts) == stored
