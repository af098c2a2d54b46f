"""Instances through the real server: create / list / reset / delete, bad input, other projects,
and the purges (ResetInstance for one user or all, DeleteInstance, DeleteAgent) counted per table:
the purged scope reaches zero rows, every other scope keeps exactly what it had."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from memgrpc.store import owned
from memgrpc.store.filters import Where
from memgrpc.v1 import agent_state_pb2 as st
from memgrpc.v1 import agents_pb2 as apb
from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import sessions_pb2 as spb
from tests.api.test_agent_memory import World, fails, session_with
from tests.conftest import NewKey, ServerHandle
from tests.helpers import md
from tests.memhelpers import mem

USERS = ("u1", "u2")


@pytest.fixture
async def world(channel: grpc.aio.Channel, new_key: NewKey) -> World:
    project, key = await new_key()
    return await World(channel, key, project).setup()


async def new_instance(w: World, agent_id: str, name: str = "", **kw: Any) -> st.Instance:
    return await w.agents.CreateInstance(
        st.CreateInstanceRequest(agent_id=agent_id, instance=st.Instance(display_name=name, **kw)),
        metadata=md(w.key),
    )


async def test_create_list_and_bad_input(world: World, server: ServerHandle) -> None:
    w = world
    second = await new_instance(w, w.a, "two")
    assert second.id.startswith("ins_") and second.agent_id == w.a
    assert second.create_time.seconds > 0 and not second.HasField("reset_time")
    listed = await w.agents.ListInstances(
        st.ListInstancesRequest(agent_id=w.a, page_size=1), metadata=md(w.key)
    )
    assert [i.id for i in listed.instances] == [second.id]  # newest first
    assert listed.total_size == 2 and listed.next_page_token
    rest = await w.agents.ListInstances(
        st.ListInstancesRequest(agent_id=w.a, page_token=listed.next_page_token),
        metadata=md(w.key),
    )
    assert [i.id for i in rest.instances] == [w.ins] and not rest.next_page_token
    empty = await w.agents.ListInstances(st.ListInstancesRequest(agent_id=w.b), metadata=md(w.key))
    assert list(empty.instances) == [] and empty.total_size == 0
    before = await _instances(server, w.project)
    fields, _ = await fails(new_instance(w, w.a, "n" * 201), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields == {"instance.display_name"}
    fields, _ = await fails(new_instance(w, ""), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields == {"agent_id"}
    fields, _ = await fails(
        w.agents.ResetInstance(
            st.ResetInstanceRequest(agent_id=w.a, instance_id=w.ins, user_id="u" * 300),
            metadata=md(w.key),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == {"user_id"}
    fields, _ = await fails(
        w.agents.ListInstances(
            st.ListInstancesRequest(agent_id=w.a, page_size=-1), metadata=md(w.key)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == {"page_size"}
    assert await _instances(server, w.project) == before  # nothing written


async def test_other_projects_agents_and_instances_are_not_found(
    world: World, new_key: NewKey
) -> None:
    w = world
    _, other_key = await new_key()
    theirs = await World(w.channel, other_key).setup()
    _, reason = await fails(new_instance(w, theirs.a), grpc.StatusCode.NOT_FOUND)
    assert reason == "AGENT_NOT_FOUND"
    _, reason = await fails(
        w.agents.ListInstances(st.ListInstancesRequest(agent_id=theirs.a), metadata=md(w.key)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason == "AGENT_NOT_FOUND"
    # their instance under our agent, our instance under our other agent
    for agent, ins in ((w.a, theirs.ins), (w.b, w.ins)):
        for call in (
            w.agents.ResetInstance(
                st.ResetInstanceRequest(agent_id=agent, instance_id=ins), metadata=md(w.key)
            ),
            w.agents.DeleteInstance(
                st.DeleteInstanceRequest(agent_id=agent, instance_id=ins), metadata=md(w.key)
            ),
        ):
            _, reason = await fails(call, grpc.StatusCode.NOT_FOUND)
            assert reason == "INSTANCE_NOT_FOUND"
    # a session cannot name an instance of another agent either
    _, reason = await fails(
        session_with(w, "u1", agent_id=w.b, instance_id=w.ins), grpc.StatusCode.NOT_FOUND
    )
    assert reason == "INSTANCE_NOT_FOUND"
    mine = await theirs.agents.ListInstances(
        st.ListInstancesRequest(agent_id=theirs.a), metadata=md(theirs.key)
    )
    assert [i.id for i in mine.instances] == [theirs.ins]  # untouched


# -- purges -------------------------------------------------------------------------------------
Scope = tuple[str, str, str]  # (agent_id, instance_id, user_id)


async def _fill(w: World, agent: str, instance: str, user: str) -> None:
    """Sessions, messages and their memories, a fact and a version of it, in one scope."""
    scope = {"agent_id": agent, "instance_id": instance}
    await session_with(w, user, f"hello from {user}", f"{instance or 'default'} talk", **scope)
    made = await w.memories.CreateMemory(
        mem(user, f"a fact of {user} in {agent}/{instance}", **scope), metadata=md(w.key)
    )
    await w.memories.UpdateMemory(
        pb.UpdateMemoryRequest(memory=pb.Memory(id=made.id, content=made.content + " (v2)")),
        metadata=md(w.key),
    )


async def _counts(server: ServerHandle, project: str, scope: Scope) -> dict[str, int]:
    """Rows per agent table of exactly one scope (instance "" = the agent's default state)."""
    agent, instance, user = scope
    where = Where().eq("project_id", project).eq("user_id", user)
    where = where.eq("agent_id", agent) if agent else where.is_null("agent_id")
    where = where.eq("instance_id", instance) if instance else where.is_null("instance_id")
    store = server.app.store
    return {t: int(await store.table(t).count_rows(str(where))) for t in owned.AGENT_TABLES}


async def _instances(server: ServerHandle, project: str, agent: str = "") -> int:
    where = Where().eq("project_id", project)
    if agent:
        where.eq("agent_id", agent)
    return int(await server.app.store.table("agent_instances").count_rows(str(where)))


async def test_reset_delete_instance_and_delete_agent_purge_only_their_scope(
    world: World, server: ServerHandle
) -> None:
    w = world
    ins2 = (await new_instance(w, w.a, "two")).id
    scopes: list[Scope] = [
        (agent, instance, user)
        for agent, instance in ((w.a, ""), (w.a, w.ins), (w.a, ins2), (w.b, ""), ("", ""))
        for user in USERS
    ]
    for agent, instance, user in scopes:
        if agent:
            await _fill(w, agent, instance, user)
        else:  # the users' general memories and sessions
            await w.remember(user, f"general note of {user}")
            await session_with(w, user, "a plain session")
    counts = {s: await _counts(server, w.project, s) for s in scopes}
    assert all(counts[s]["memory_versions"] == 1 for s in scopes if s[0])
    assert all(counts[s]["messages"] == 2 and counts[s]["memories"] == 3 for s in scopes if s[0])
    # cached before the purge: a search after it must not see what it deleted
    assert f"a fact of u1 in {w.a}/{w.ins} (v2)" in await w.searched("u1", "fact")

    async def check(purged: set[Scope]) -> None:
        for s in scopes:
            got = await _counts(server, w.project, s)
            want = dict.fromkeys(got, 0) if s in purged else counts[s]
            assert got == want, s

    # reset one user's state in one instance
    reset = await w.agents.ResetInstance(
        st.ResetInstanceRequest(agent_id=w.a, instance_id=w.ins, user_id="u1"), metadata=md(w.key)
    )
    assert reset.id == w.ins and reset.reset_time.seconds > 0
    purged = {(w.a, w.ins, "u1")}
    await check(purged)
    assert await _instances(server, w.project, w.a) == 2  # the instance stays
    found = await w.searched("u1", "fact", agent_id=w.a, instance_id=w.ins)
    assert found == {"general note of u1", "a plain session"}  # only general ones left
    assert f"a fact of u2 in {w.a}/{w.ins} (v2)" in await w.searched(
        "u2", "fact", agent_id=w.a, instance_id=w.ins
    )
    listed = await w.agents.ListInstances(st.ListInstancesRequest(agent_id=w.a), metadata=md(w.key))
    assert {i.id: i.HasField("reset_time") for i in listed.instances} == {w.ins: True, ins2: False}
    # the instance keeps working after a reset
    await _fill(w, w.a, w.ins, "u1")
    counts[(w.a, w.ins, "u1")] = await _counts(server, w.project, (w.a, w.ins, "u1"))
    assert counts[(w.a, w.ins, "u1")]["memories"] == 3

    # reset every user's state in the instance
    await w.agents.ResetInstance(
        st.ResetInstanceRequest(agent_id=w.a, instance_id=w.ins), metadata=md(w.key)
    )
    purged |= {(w.a, w.ins, u) for u in USERS}
    await check(purged)

    # delete the other instance: its rows and its row go
    await w.agents.DeleteInstance(
        st.DeleteInstanceRequest(agent_id=w.a, instance_id=ins2), metadata=md(w.key)
    )
    purged |= {(w.a, ins2, u) for u in USERS}
    await check(purged)
    assert await _instances(server, w.project, w.a) == 1
    _, reason = await fails(
        w.remember("u1", "x", agent_id=w.a, instance_id=ins2), grpc.StatusCode.NOT_FOUND
    )
    assert reason == "INSTANCE_NOT_FOUND"

    # delete the agent: everything of A goes (default state, instances), B and general stay
    await w.agents.DeleteAgent(apb.DeleteAgentRequest(id=w.a), metadata=md(w.key))
    purged |= {(w.a, "", u) for u in USERS}
    await check(purged)
    left = await owned.count_agent_rows(server.app.store, w.project, w.a)
    assert left == dict.fromkeys((*owned.AGENT_TABLES, *owned.SESSION_TABLES), 0)
    assert await _instances(server, w.project, w.a) == 0
    assert await _instances(server, w.project) == 0
    remaining = await w.memories.ListMemories(
        pb.ListMemoriesRequest(user_id="u1", page_size=100), metadata=md(w.key)
    )
    assert {m.agent_id for m in remaining.memories} == {w.b, ""}
    assert "general note of u1" in {m.content for m in remaining.memories}
    plain = await w.sessions.ListSessions(spb.ListSessionsRequest(user_id="u1"), metadata=md(w.key))
    assert {s.agent_id for s in plain.sessions} == {w.b, ""}


def test_every_agent_table_has_the_scope_columns(server: ServerHandle) -> None:
    """What owned.delete_agent_rows filters on; a table added without them would fail a purge."""
    for table in owned.AGENT_TABLES:
        names = set(server.app.store.specs[table].schema.names)
        assert {"project_id", "agent_id", "instance_id", "user_id"} <= names, table
