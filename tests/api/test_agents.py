"""AgentService through the real server: CRUD, personality, capabilities PATCH, bad input,
project isolation, paging and request_id replay."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from memgrpc.store.filters import Where
from memgrpc.v1 import agents_pb2 as pb
from memgrpc.v1 import agents_pb2_grpc
from tests.conftest import NewKey, ServerHandle
from tests.helpers import md
from tests.memhelpers import details, struct

Stub = agents_pb2_grpc.AgentServiceStub


@pytest.fixture(scope="module")
def agents(channel: grpc.aio.Channel) -> Stub:
    return agents_pb2_grpc.AgentServiceStub(channel)


def agent(name: str = "Ava", **kw: Any) -> pb.Agent:
    if "metadata" in kw:
        kw["metadata"] = struct(kw["metadata"])
    return pb.Agent(display_name=name, **kw)


def big_five(**kw: float) -> pb.BigFive:
    traits = dict.fromkeys(
        ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"), 0.5
    )
    return pb.BigFive(**(traits | kw))


async def rows(server: ServerHandle, project_id: str) -> int:
    where = Where().eq("project_id", project_id)
    return int(await server.app.store.table("agents").count_rows(str(where)))


async def fails(call: Any, code: grpc.StatusCode) -> tuple[set[str], str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return details(err.value)


async def test_crud_happy_path(agents: Stub, new_key: NewKey) -> None:
    _, key = await new_key()
    personality = pb.Personality(
        big_five=big_five(openness=0.9, neuroticism=0.1), dimensions={"warmth": 8, "humor": 6.5}
    )
    made = await agents.CreateAgent(
        pb.CreateAgentRequest(
            agent=agent(
                "Ava",
                system_prompt="You are Ava, a kind tutor.",
                personality=personality,
                capabilities=pb.Capabilities(memory_mode=pb.MEMORY_MODE_ASYNC, web_search=True),
                metadata={"tier": "gold"},
            )
        ),
        metadata=md(key),
    )
    assert made.id.startswith("agt_")
    assert made.create_time.seconds > 0 and made.update_time == made.create_time
    got = await agents.GetAgent(pb.GetAgentRequest(id=made.id), metadata=md(key))
    assert got == made
    assert got.display_name == "Ava" and got.system_prompt == "You are Ava, a kind tutor."
    assert got.personality.big_five.openness == pytest.approx(0.9)
    assert got.personality.big_five.neuroticism == pytest.approx(0.1)
    assert dict(got.personality.dimensions) == {"warmth": 8.0, "humor": 6.5}
    assert got.capabilities.memory_mode == pb.MEMORY_MODE_ASYNC
    assert got.capabilities.web_search and not got.capabilities.inventory
    assert got.metadata["tier"] == "gold"

    p = await agents.GetPersonality(pb.GetPersonalityRequest(agent_id=made.id), metadata=md(key))
    assert p == got.personality
    c = await agents.GetCapabilities(pb.GetCapabilitiesRequest(agent_id=made.id), metadata=md(key))
    assert c == got.capabilities

    listed = await agents.ListAgents(pb.ListAgentsRequest(), metadata=md(key))
    assert [a.id for a in listed.agents] == [made.id] and listed.total_size == 1

    await agents.DeleteAgent(pb.DeleteAgentRequest(id=made.id), metadata=md(key))
    _, reason = await fails(
        agents.GetAgent(pb.GetAgentRequest(id=made.id), metadata=md(key)), grpc.StatusCode.NOT_FOUND
    )
    assert reason == "AGENT_NOT_FOUND"
    listed = await agents.ListAgents(pb.ListAgentsRequest(), metadata=md(key))
    assert not listed.agents and listed.total_size == 0


async def test_defaults(agents: Stub, new_key: NewKey) -> None:
    _, key = await new_key()
    made = await agents.CreateAgent(pb.CreateAgentRequest(agent=agent()), metadata=md(key))
    assert made.personality.big_five == big_five()
    assert not made.personality.dimensions
    assert made.capabilities.memory_mode == pb.MEMORY_MODE_SYNC
    assert made.capabilities == pb.Capabilities(
        memory_mode=pb.MEMORY_MODE_SYNC,
        knowledge_base=False,
        web_search=False,
        remember_name=False,
        image_generation=False,
        inventory=False,
    )
    partial = await agents.CreateAgent(
        pb.CreateAgentRequest(
            agent=agent(personality=pb.Personality(big_five=pb.BigFive(openness=0.0)))
        ),
        metadata=md(key),
    )
    assert partial.personality.big_five == big_five(openness=0.0)  # unset traits: 0.5


async def test_update_with_and_without_mask(agents: Stub, new_key: NewKey) -> None:
    _, key = await new_key()
    made = await agents.CreateAgent(
        pb.CreateAgentRequest(agent=agent("Ava", system_prompt="old", metadata={"a": 1})),
        metadata=md(key),
    )
    # no mask: the fields set change, the others stay
    updated = await agents.UpdateAgent(
        pb.UpdateAgentRequest(agent=pb.Agent(id=made.id, display_name="Ava 2")), metadata=md(key)
    )
    assert updated.display_name == "Ava 2" and updated.system_prompt == "old"
    assert updated.metadata["a"] == 1
    assert updated.update_time.ToDatetime() > made.update_time.ToDatetime()
    # mask: a named field is written even when empty, an unnamed set one is not
    updated = await agents.UpdateAgent(
        pb.UpdateAgentRequest(
            agent=pb.Agent(
                id=made.id,
                display_name="ignored",
                personality=pb.Personality(dimensions={"formality": 2}),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["system_prompt", "personality"]),
        ),
        metadata=md(key),
    )
    assert updated.display_name == "Ava 2" and updated.system_prompt == ""
    assert dict(updated.personality.dimensions) == {"formality": 2.0}
    assert updated.personality.big_five == big_five()
    got = await agents.GetAgent(pb.GetAgentRequest(id=made.id), metadata=md(key))
    assert got == updated


async def test_capabilities_patch_leaves_omitted_fields(agents: Stub, new_key: NewKey) -> None:
    _, key = await new_key()
    made = await agents.CreateAgent(
        pb.CreateAgentRequest(
            agent=agent(
                capabilities=pb.Capabilities(
                    memory_mode=pb.MEMORY_MODE_ASYNC, knowledge_base=True, inventory=True
                )
            )
        ),
        metadata=md(key),
    )
    caps = await agents.UpdateCapabilities(
        pb.UpdateCapabilitiesRequest(
            agent_id=made.id, capabilities=pb.Capabilities(web_search=True, inventory=False)
        ),
        metadata=md(key),
    )
    assert caps.memory_mode == pb.MEMORY_MODE_ASYNC  # omitted: unchanged
    assert caps.knowledge_base and caps.web_search and not caps.inventory
    assert not caps.remember_name and not caps.image_generation
    caps = await agents.UpdateCapabilities(
        pb.UpdateCapabilitiesRequest(
            agent_id=made.id, capabilities=pb.Capabilities(memory_mode=pb.MEMORY_MODE_SYNC)
        ),
        metadata=md(key),
    )
    assert caps.memory_mode == pb.MEMORY_MODE_SYNC and caps.knowledge_base and caps.web_search
    got = await agents.GetCapabilities(
        pb.GetCapabilitiesRequest(agent_id=made.id), metadata=md(key)
    )
    assert got == caps
    whole = await agents.GetAgent(pb.GetAgentRequest(id=made.id), metadata=md(key))
    assert whole.capabilities == caps and whole.display_name == "Ava"


async def test_bad_input_writes_nothing(
    agents: Stub, new_key: NewKey, server: ServerHandle
) -> None:
    project, key = await new_key()
    bad: list[tuple[pb.Agent, str]] = [
        (pb.Agent(), "agent.display_name"),
        (agent("x" * 201), "agent.display_name"),
        (agent(system_prompt="x" * (32 * 1024 + 1)), "agent.system_prompt"),
        (
            agent(personality=pb.Personality(big_five=big_five(openness=1.5))),
            "agent.personality.big_five.openness",
        ),
        (
            agent(personality=pb.Personality(big_five=big_five(neuroticism=-0.1))),
            "agent.personality.big_five.neuroticism",
        ),
        (
            agent(personality=pb.Personality(dimensions={"warmth": 11})),
            "agent.personality.dimensions.warmth",
        ),
        (
            agent(personality=pb.Personality(dimensions={"humor": float("nan")})),
            "agent.personality.dimensions.humor",
        ),
        (agent(capabilities=pb.Capabilities(memory_mode=9)), "agent.capabilities.memory_mode"),  # type: ignore[arg-type]
    ]
    for a, field in bad:
        fields, _ = await fails(
            agents.CreateAgent(pb.CreateAgentRequest(agent=a), metadata=md(key)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert field in fields, (field, fields)
    assert await rows(server, project) == 0

    made = await agents.CreateAgent(pb.CreateAgentRequest(agent=agent()), metadata=md(key))
    before = await agents.GetAgent(pb.GetAgentRequest(id=made.id), metadata=md(key))
    updates: list[tuple[pb.UpdateAgentRequest, str]] = [
        (pb.UpdateAgentRequest(agent=pb.Agent(id=made.id)), "agent"),
        (
            pb.UpdateAgentRequest(
                agent=pb.Agent(id=made.id), update_mask=field_mask_pb2.FieldMask(paths=["id"])
            ),
            "update_mask",
        ),
        (
            pb.UpdateAgentRequest(
                agent=pb.Agent(id=made.id),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
            "agent.display_name",
        ),
        (
            pb.UpdateAgentRequest(
                agent=pb.Agent(
                    id=made.id,
                    display_name="ok",
                    personality=pb.Personality(big_five=big_five(agreeableness=2)),
                )
            ),
            "agent.personality.big_five.agreeableness",
        ),
        (pb.UpdateAgentRequest(agent=pb.Agent(display_name="no id")), "agent.id"),
    ]
    for request, field in updates:
        fields, _ = await fails(
            agents.UpdateAgent(request, metadata=md(key)), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert field in fields, (field, fields)
    fields, _ = await fails(
        agents.UpdateCapabilities(
            pb.UpdateCapabilitiesRequest(
                agent_id=made.id,
                capabilities=pb.Capabilities(memory_mode=7, web_search=True),  # type: ignore[arg-type]
            ),
            metadata=md(key),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "capabilities.memory_mode" in fields
    after = await agents.GetAgent(pb.GetAgentRequest(id=made.id), metadata=md(key))
    assert after == before and not after.capabilities.web_search

    # empty ids on every by-id RPC
    for call, field in [
        (agents.GetAgent(pb.GetAgentRequest(), metadata=md(key)), "id"),
        (agents.DeleteAgent(pb.DeleteAgentRequest(), metadata=md(key)), "id"),
        (agents.GetPersonality(pb.GetPersonalityRequest(), metadata=md(key)), "agent_id"),
        (agents.GetCapabilities(pb.GetCapabilitiesRequest(), metadata=md(key)), "agent_id"),
        (
            agents.UpdateCapabilities(pb.UpdateCapabilitiesRequest(), metadata=md(key)),
            "agent_id",
        ),
    ]:
        fields, _ = await fails(call, grpc.StatusCode.INVALID_ARGUMENT)
        assert field in fields
    for request in (pb.ListAgentsRequest(page_size=-1), pb.ListAgentsRequest(page_token="junk")):
        await fails(agents.ListAgents(request, metadata=md(key)), grpc.StatusCode.INVALID_ARGUMENT)
    assert await rows(server, project) == 1


async def test_another_projects_agent_is_not_found(
    agents: Stub, new_key: NewKey, server: ServerHandle
) -> None:
    owner, key = await new_key()
    _, other = await new_key()
    made = await agents.CreateAgent(pb.CreateAgentRequest(agent=agent()), metadata=md(key))
    calls = [
        agents.GetAgent(pb.GetAgentRequest(id=made.id), metadata=md(other)),
        agents.GetPersonality(pb.GetPersonalityRequest(agent_id=made.id), metadata=md(other)),
        agents.GetCapabilities(pb.GetCapabilitiesRequest(agent_id=made.id), metadata=md(other)),
        agents.UpdateAgent(
            pb.UpdateAgentRequest(agent=pb.Agent(id=made.id, display_name="stolen")),
            metadata=md(other),
        ),
        agents.UpdateCapabilities(
            pb.UpdateCapabilitiesRequest(
                agent_id=made.id, capabilities=pb.Capabilities(web_search=True)
            ),
            metadata=md(other),
        ),
        agents.DeleteAgent(pb.DeleteAgentRequest(id=made.id), metadata=md(other)),
    ]
    for call in calls:
        _, reason = await fails(call, grpc.StatusCode.NOT_FOUND)
        assert reason == "AGENT_NOT_FOUND"
    listed = await agents.ListAgents(pb.ListAgentsRequest(), metadata=md(other))
    assert not listed.agents and listed.total_size == 0
    got = await agents.GetAgent(pb.GetAgentRequest(id=made.id), metadata=md(key))
    assert got == made and await rows(server, owner) == 1


async def test_paging(agents: Stub, new_key: NewKey) -> None:
    _, key = await new_key()
    made = [
        (await agents.CreateAgent(pb.CreateAgentRequest(agent=agent(f"a{i}")), metadata=md(key))).id
        for i in range(5)
    ]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await agents.ListAgents(
            pb.ListAgentsRequest(page_size=2, page_token=token), metadata=md(key)
        )
        assert len(page.agents) <= 2 and page.total_size == 5
        seen += [a.id for a in page.agents]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == list(reversed(made))  # newest first
    big = await agents.ListAgents(pb.ListAgentsRequest(page_size=5000), metadata=md(key))
    assert len(big.agents) == 5 and not big.next_page_token


async def test_request_id_replay(agents: Stub, new_key: NewKey, server: ServerHandle) -> None:
    project, key = await new_key()
    request = pb.CreateAgentRequest(agent=agent("Once"), request_id="req-create-1")
    first = await agents.CreateAgent(request, metadata=md(key))
    again = await agents.CreateAgent(request, metadata=md(key))
    assert again == first and await rows(server, project) == 1

    upd = pb.UpdateAgentRequest(
        agent=pb.Agent(id=first.id, display_name="Twice"), request_id="req-upd-1"
    )
    u1 = await agents.UpdateAgent(upd, metadata=md(key))
    u2 = await agents.UpdateAgent(upd, metadata=md(key))
    assert u1 == u2 and u1.update_time == u2.update_time

    caps = pb.UpdateCapabilitiesRequest(
        agent_id=first.id, capabilities=pb.Capabilities(inventory=True), request_id="req-caps-1"
    )
    c1 = await agents.UpdateCapabilities(caps, metadata=md(key))
    assert await agents.UpdateCapabilities(caps, metadata=md(key)) == c1

    delete = pb.DeleteAgentRequest(id=first.id, request_id="req-del-1")
    await agents.DeleteAgent(delete, metadata=md(key))
    await agents.DeleteAgent(delete, metadata=md(key))  # replayed, not NOT_FOUND
    assert await rows(server, project) == 0
    await fails(
        agents.DeleteAgent(pb.DeleteAgentRequest(id=first.id), metadata=md(key)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_scopes(agents: Stub, new_key: NewKey) -> None:
    project, key = await new_key()
    _, reader = await new_key(scopes=("read",), project_id=project)
    made = await agents.CreateAgent(pb.CreateAgentRequest(agent=agent()), metadata=md(key))
    got = await agents.GetAgent(pb.GetAgentRequest(id=made.id), metadata=md(reader))
    assert got.id == made.id
    await fails(
        agents.CreateAgent(pb.CreateAgentRequest(agent=agent()), metadata=md(reader)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
