"""Profiles (Sovant's recall helpers) through the real server: GetProfile, ExtractProfile,
SaveProfileFact, their bad input, idempotency and tenant isolation, and the Python client."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from memgrpc.client import MemgrpcClient
from memgrpc.core.intelligence.facts import SLOTS
from memgrpc.v1 import users_pb2 as upb
from tests.conftest import NewKey, ServerHandle
from tests.helpers import md
from tests.intelhelpers import Conv, uid
from tests.memhelpers import details


async def save(conv: Conv, user: str, slot: str, value: str, rid: str = "") -> upb.ProfileFact:
    return await conv.users.SaveProfileFact(
        upb.SaveProfileFactRequest(user_id=user, slot=slot, value=value, request_id=rid),
        metadata=md(conv.key),
    )


async def test_extract_profile_states_a_fact_or_none_and_writes_nothing(conv: Conv) -> None:
    got = await conv.users.ExtractProfile(
        upb.ExtractProfileRequest(text="honestly i'm from gdansk"), metadata=md(conv.key)
    )
    assert got.found and got.value == "Gdansk" and got.slot in SLOTS
    none = await conv.users.ExtractProfile(
        upb.ExtractProfileRequest(text="what a lovely afternoon"), metadata=md(conv.key)
    )
    assert not none.found and none.slot == "" and none.value == ""
    for text in ("", "   ", "x" * (32 * 1024 + 1)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await conv.users.ExtractProfile(
                upb.ExtractProfileRequest(text=text), metadata=md(conv.key)
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(err.value)[0] == {"text"}


async def test_a_single_slot_is_one_memory_whose_values_are_versions(conv: Conv) -> None:
    user = uid("single")
    first = await save(conv, user, "location", "  toronto ")
    assert first.value == "Toronto" and list(first.values) == ["Toronto"] and first.version == 1
    moved = await save(conv, user, "location", "vancouver")
    assert moved.memory_id == first.memory_id and moved.version == 2
    assert moved.value == "Vancouver"
    versions = await conv.versions(first.memory_id)
    assert [v.version for v in versions] == [2, 1]
    assert versions[1].expire_reason == "SUPERSEDED" and "Toronto" in versions[1].content
    rows = [m for m in await conv.extracted(user) if m.profile_slot == "location"]
    assert len(rows) == 1 and rows[0].origin == 4  # MEMORY_ORIGIN_EXTRACTED
    # the same value again reinforces: no version, one more mention
    same = await save(conv, user, "location", "Vancouver")
    assert same.memory_id == first.memory_id and same.version == 2
    rows = [m for m in await conv.extracted(user) if m.profile_slot == "location"]
    assert rows[0].mention_count == 2
    profile = await conv.profile(user)
    assert profile["location"].value == "Vancouver" and profile["location"].version == 2


async def test_a_list_slot_gains_values_and_lists_them_oldest_first(conv: Conv) -> None:
    user = uid("list")
    rex = await save(conv, user, "pets", "Rex")
    mochi = await save(conv, user, "pets", "Mochi")
    assert rex.memory_id != mochi.memory_id
    assert list(mochi.values) == ["Rex", "Mochi"] and mochi.value == "Mochi"
    again = await save(conv, user, "pets", "rex")
    assert again.memory_id == rex.memory_id
    pets = (await conv.profile(user))["pets"]
    assert list(pets.values) == ["Rex", "Mochi"] and pets.value == "Mochi"
    assert len([m for m in await conv.extracted(user) if m.profile_slot == "pets"]) == 2


async def test_extraction_fills_the_profile(conv: Conv) -> None:
    user = uid("talked")
    await conv.talk(user, "I'm 29 years old and I work as a welder.")
    profile = await conv.profile(user)
    assert profile["age"].value == "29"
    assert "welder" in profile["occupation"].value.lower()
    # an explicit save changes the extracted slot's memory, never adds a second one
    saved = await save(conv, user, "age", "30")
    assert saved.memory_id == profile["age"].memory_id and saved.version == 2


async def test_save_profile_fact_bad_input_writes_nothing(conv: Conv) -> None:
    user = uid("bad")
    cases = [
        (upb.SaveProfileFactRequest(user_id=user, slot="shoe_size", value="44"), {"slot"}),
        (upb.SaveProfileFactRequest(user_id=user, slot="location", value="  "), {"value"}),
        (upb.SaveProfileFactRequest(user_id="", slot="location", value="Oslo"), {"user_id"}),
        (upb.SaveProfileFactRequest(user_id=user, slot="name", value="x" * 500), {"value"}),
    ]
    for request, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await conv.users.SaveProfileFact(request, metadata=md(conv.key))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(err.value)[0] == fields
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await save(conv, user, "shoe_size", "44")
    assert "location" in (err.value.details() or "")  # the valid slots are listed
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.profile(user)  # nothing was written: the user does not exist
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await conv.profile("")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_save_profile_fact_request_id_is_idempotent(conv: Conv) -> None:
    user = uid("idem")
    a = await save(conv, user, "hometown", "porto", rid="req-profile-1")
    b = await save(conv, user, "hometown", "porto", rid="req-profile-1")
    assert a == b
    rows = [m for m in await conv.extracted(user) if m.profile_slot == "hometown"]
    assert len(rows) == 1 and rows[0].mention_count == 1


async def test_another_project_sees_no_profile(channel: grpc.aio.Channel, new_key: NewKey) -> None:
    mine, theirs = Conv(channel, (await new_key())[1]), Conv(channel, (await new_key())[1])
    user = uid("iso")
    await save(mine, user, "name", "Ilse")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await theirs.profile(user)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # their own user of the same id is a different user with its own profile
    await save(theirs, user, "name", "Other")
    assert (await mine.profile(user))["name"].value == "Ilse"
    assert (await theirs.profile(user))["name"].value == "Other"


async def test_python_client_recall_helpers(server: ServerHandle, new_key: NewKey) -> None:
    key = (await new_key())[1]
    user = uid("client")

    def run() -> None:
        with MemgrpcClient(server.address, api_key=key, timeout=30.0) as client:
            fact = client.recall.extract_profile("i'm from kuching")
            assert fact is not None and fact["value"] == "Kuching"
            assert client.recall.extract_profile("nice weather today") is None
            saved = client.recall.save_profile_fact({**fact, "user_id": user})
            assert saved["value"] == "Kuching"
            client.recall.save_profile_fact(user, "pets", "Biscuit")
            client.recall.save_profile_fact(user, "pets", "Rolo")
            facts = client.recall.get_profile_facts(user)
            assert facts[fact["slot"]] == "Kuching" and facts["pets"] == ["Biscuit", "Rolo"]
            profile = client.users.get_profile(user)
            assert profile["facts"]["pets"]["value"] == "Rolo"
            s = client.sessions.create(user_id=user)
            s.add_messages([{"content": "I'm a baker."}])
            assert s.process()["state"] == "done"
            again = s.process(force=True)
            assert again["state"] == "done" and again["stats"]["facts_added"] == 0

    await asyncio.to_thread(run)
