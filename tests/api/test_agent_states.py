"""Custom states through the real server: both scopes, JSON and text values, Create vs Upsert,
bad input (nothing written), isolation between projects, paging, concurrency and purges."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from memgrpc.store.filters import Where
from memgrpc.store.owned import count_agent_rows
from memgrpc.v1 import agent_state_pb2 as spb
from memgrpc.v1 import agents_pb2 as pb
from memgrpc.v1 import agents_pb2_grpc, users_pb2_grpc
from memgrpc.v1 import users_pb2 as upb
from tests.conftest import NewKey, ServerHandle
from tests.convhelpers import count_rows, new_user
from tests.helpers import md
from tests.memhelpers import details

Stub = agents_pb2_grpc.AgentServiceStub
GLOBAL, USER = spb.STATE_SCOPE_GLOBAL, spb.STATE_SCOPE_USER


@pytest.fixture(scope="module")
def agents(channel: grpc.aio.Channel) -> Stub:
    return agents_pb2_grpc.AgentServiceStub(channel)


@pytest.fixture(scope="module")
def users(channel: grpc.aio.Channel) -> users_pb2_grpc.UserServiceStub:
    return users_pb2_grpc.UserServiceStub(channel)


def value(v: Any) -> struct_pb2.Value:
    return json_format.ParseDict(v, struct_pb2.Value())


def state(agent_id: str, key: str, scope: int = GLOBAL, **kw: Any) -> spb.CustomState:
    if "value" in kw:
        kw["value"] = value(kw["value"])
    return spb.CustomState(agent_id=agent_id, key=key, scope=scope, **kw)


def skey(agent_id: str, key: str, scope: int = GLOBAL, user_id: str = "") -> spb.StateKey:
    return spb.StateKey(agent_id=agent_id, key=key, scope=scope, user_id=user_id)


async def new_agent(agents: Stub, key: str) -> str:
    made = await agents.CreateAgent(
        pb.CreateAgentRequest(agent=pb.Agent(display_name="Ava")), metadata=md(key)
    )
    return made.id


async def rows(server: ServerHandle, project_id: str) -> int:
    where = Where().eq("project_id", project_id)
    return int(await server.app.store.table("agent_states").count_rows(str(where)))


async def fails(call: Any, code: grpc.StatusCode) -> tuple[set[str], str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return details(err.value)


async def test_both_scopes_round_trip_json_and_text(agents: Stub, new_key: NewKey) -> None:
    _, key = await new_key()
    agent = await new_agent(agents, key)
    nested = {"level": 3, "inventory": ["sword", {"name": "potion", "n": 2}], "ok": True, "x": None}
    made = await agents.CreateState(
        spb.CreateStateRequest(state=state(agent, "game.progress", value=nested)),
        metadata=md(key),
    )
    assert made.content_type == "application/json" and made.scope == GLOBAL
    assert made.create_time.seconds > 0 and made.update_time == made.create_time
    text = await agents.CreateState(
        spb.CreateStateRequest(state=state(agent, "note", USER, user_id="u1", text="likes tea")),
        metadata=md(key),
    )
    assert text.content_type == "text/plain" and not text.HasField("value")

    got = await agents.GetState(
        spb.GetStateRequest(key=skey(agent, "game.progress")), metadata=md(key)
    )
    assert json_format.MessageToDict(got.value) == nested
    assert got == made
    mine = await agents.GetState(
        spb.GetStateRequest(key=skey(agent, "note", USER, "u1")), metadata=md(key)
    )
    assert mine.text == "likes tea" and mine.user_id == "u1"
    # the same key in the other scope, or for another user, is another state
    await fails(
        agents.GetState(spb.GetStateRequest(key=skey(agent, "note")), metadata=md(key)),
        grpc.StatusCode.NOT_FOUND,
    )
    await fails(
        agents.GetState(spb.GetStateRequest(key=skey(agent, "note", USER, "u2")), metadata=md(key)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_create_conflicts_upsert_replaces(
    agents: Stub, new_key: NewKey, server: ServerHandle
) -> None:
    project, key = await new_key()
    agent = await new_agent(agents, key)
    first = await agents.CreateState(
        spb.CreateStateRequest(state=state(agent, "k", text="one")), metadata=md(key)
    )
    _, reason = await fails(
        agents.CreateState(
            spb.CreateStateRequest(state=state(agent, "k", text="two")), metadata=md(key)
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert reason == "STATE_ALREADY_EXISTS"
    replaced = await agents.UpsertState(
        spb.UpsertStateRequest(state=state(agent, "k", value={"n": 2})), metadata=md(key)
    )
    assert replaced.create_time == first.create_time
    assert replaced.update_time.ToDatetime() > first.update_time.ToDatetime()
    assert replaced.content_type == "application/json" and replaced.text == ""
    got = await agents.GetState(spb.GetStateRequest(key=skey(agent, "k")), metadata=md(key))
    assert json_format.MessageToDict(got.value) == {"n": 2}
    fresh = await agents.UpsertState(
        spb.UpsertStateRequest(state=state(agent, "new", text="x")), metadata=md(key)
    )
    assert fresh.create_time == fresh.update_time
    assert await rows(server, project) == 2

    await agents.DeleteState(spb.DeleteStateRequest(key=skey(agent, "k")), metadata=md(key))
    await fails(
        agents.GetState(spb.GetStateRequest(key=skey(agent, "k")), metadata=md(key)),
        grpc.StatusCode.NOT_FOUND,
    )
    _, reason = await fails(
        agents.DeleteState(spb.DeleteStateRequest(key=skey(agent, "k")), metadata=md(key)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason == "STATE_NOT_FOUND"
    assert await rows(server, project) == 1


async def test_concurrent_creates_one_wins(
    agents: Stub, new_key: NewKey, server: ServerHandle
) -> None:
    project, key = await new_key()
    agent = await new_agent(agents, key)
    calls = [
        agents.CreateState(
            spb.CreateStateRequest(state=state(agent, "race", text=str(i))), metadata=md(key)
        )
        for i in range(6)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    won = [r for r in results if isinstance(r, spb.CustomState)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 5
    assert {e.code() for e in lost} == {grpc.StatusCode.ALREADY_EXISTS}
    got = await agents.GetState(spb.GetStateRequest(key=skey(agent, "race")), metadata=md(key))
    assert got.text == won[0].text
    assert await rows(server, project) == 1


BIG = "x" * (64 * 1024 + 1)


@pytest.mark.parametrize(
    ("given", "fields"),
    [
        (dict(scope=USER, text="t"), {"state.user_id"}),
        (dict(scope=GLOBAL, user_id="u1", text="t"), {"state.user_id"}),
        (dict(scope=0, text="t"), {"state.scope"}),
        (dict(scope=7, text="t"), {"state.scope"}),
        (dict(key="bad key!", text="t"), {"state.key"}),
        (dict(key="", text="t"), {"state.key"}),
        (dict(key="k" * 129, text="t"), {"state.key"}),
        (dict(content_type="image/png", text="t"), {"state.content_type"}),
        (dict(content_type="application/json", text="t"), {"state.value", "state.text"}),
        (dict(content_type="text/plain", value={"a": 1}), {"state.value"}),
        (dict(text=BIG), {"state.text"}),
        (dict(value={"big": BIG}), {"state.value"}),
        (dict(agent_id="", text="t"), {"state.agent_id"}),
    ],
)
async def test_bad_input_writes_nothing(
    agents: Stub, new_key: NewKey, server: ServerHandle, given: dict[str, Any], fields: set[str]
) -> None:
    project, key = await new_key()
    agent = await new_agent(agents, key)
    kw = {"agent_id": agent, "key": "k", "scope": GLOBAL} | given
    if "value" in kw:
        kw["value"] = value(kw["value"])
    for call in (agents.CreateState, agents.UpsertState):
        request: Any = (
            spb.CreateStateRequest if call is agents.CreateState else spb.UpsertStateRequest
        )(state=spb.CustomState(**kw))
        got, reason = await fails(call(request, metadata=md(key)), grpc.StatusCode.INVALID_ARGUMENT)
        assert got == fields and reason == "INVALID_ARGUMENT"
    assert await rows(server, project) == 0


async def test_bad_keys_and_filters(agents: Stub, new_key: NewKey) -> None:
    _, key = await new_key()
    agent = await new_agent(agents, key)
    got, _ = await fails(
        agents.GetState(spb.GetStateRequest(key=skey(agent, "k", USER)), metadata=md(key)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert got == {"key.user_id"}
    got, _ = await fails(
        agents.DeleteState(spb.DeleteStateRequest(key=skey("", "")), metadata=md(key)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert got == {"key.agent_id", "key.key"}
    got, _ = await fails(
        agents.ListStates(
            spb.ListStatesRequest(agent_id=agent, scope=GLOBAL, user_id="u", page_size=-1),
            metadata=md(key),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert got == {"user_id", "page_size"}
    # an instance names the agent's copy: not without an agent
    got, _ = await fails(
        agents.ListStates(spb.ListStatesRequest(instance_id="ins_x"), metadata=md(key)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert got == {"agent_id"}


async def test_list_filters_and_pages_by_key(agents: Stub, new_key: NewKey) -> None:
    _, key = await new_key()
    agent = await new_agent(agents, key)
    for k in ("b", "a", "c"):
        await agents.CreateState(
            spb.CreateStateRequest(state=state(agent, k, text=k)), metadata=md(key)
        )
    for user in ("u1", "u2"):
        await agents.CreateState(
            spb.CreateStateRequest(state=state(agent, "a", USER, user_id=user, text=user)),
            metadata=md(key),
        )
    ins = await agents.CreateInstance(
        spb.CreateInstanceRequest(agent_id=agent, instance=spb.Instance(display_name="i")),
        metadata=md(key),
    )
    await agents.CreateState(
        spb.CreateStateRequest(
            state=spb.CustomState(
                agent_id=agent, instance_id=ins.id, scope=GLOBAL, key="a", text="i"
            )
        ),
        metadata=md(key),
    )

    async def listed(**kw: Any) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        token = ""
        while True:
            page = await agents.ListStates(
                spb.ListStatesRequest(agent_id=agent, page_size=2, page_token=token, **kw),
                metadata=md(key),
            )
            assert page.total_size >= len(page.states)
            out += [(s.key, s.user_id) for s in page.states]
            token = page.next_page_token
            if not token:
                return out

    everything = await listed()
    assert [k for k, _ in everything] == ["a", "a", "a", "b", "c"]
    assert sorted(everything) == [("a", ""), ("a", "u1"), ("a", "u2"), ("b", ""), ("c", "")]
    assert [k for k, _ in await listed(scope=GLOBAL)] == ["a", "b", "c"]
    assert sorted(await listed(scope=USER)) == [("a", "u1"), ("a", "u2")]
    assert await listed(scope=USER, user_id="u1") == [("a", "u1")]
    assert sorted(await listed(user_id="u2")) == [("a", ""), ("a", "u2"), ("b", ""), ("c", "")]
    assert await listed(instance_id=ins.id) == [("a", "")]
    page = await agents.ListStates(
        spb.ListStatesRequest(agent_id=agent, page_size=2), metadata=md(key)
    )
    assert page.total_size == 5
    _, _ = await fails(
        agents.ListStates(
            spb.ListStatesRequest(agent_id=agent, scope=GLOBAL, page_token=page.next_page_token),
            metadata=md(key),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_another_projects_states_are_not_found(
    agents: Stub, new_key: NewKey, server: ServerHandle
) -> None:
    _, key = await new_key()
    other_project, other = await new_key()
    agent = await new_agent(agents, key)
    await agents.CreateState(
        spb.CreateStateRequest(state=state(agent, "k", text="mine")), metadata=md(key)
    )
    _, reason = await fails(
        agents.GetState(spb.GetStateRequest(key=skey(agent, "k")), metadata=md(other)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason == "STATE_NOT_FOUND"
    await fails(
        agents.DeleteState(spb.DeleteStateRequest(key=skey(agent, "k")), metadata=md(other)),
        grpc.StatusCode.NOT_FOUND,
    )
    for call in (
        agents.ListStates(spb.ListStatesRequest(agent_id=agent), metadata=md(other)),
        agents.CreateState(
            spb.CreateStateRequest(state=state(agent, "k2", text="x")), metadata=md(other)
        ),
        agents.UpsertState(
            spb.UpsertStateRequest(state=state(agent, "k", text="x")), metadata=md(other)
        ),
    ):
        _, reason = await fails(call, grpc.StatusCode.NOT_FOUND)
        assert reason == "AGENT_NOT_FOUND"
    assert await rows(server, other_project) == 0
    got = await agents.GetState(spb.GetStateRequest(key=skey(agent, "k")), metadata=md(key))
    assert got.text == "mine"


async def test_scopes_of_keys(agents: Stub, new_key: NewKey) -> None:
    project, key = await new_key()
    agent = await new_agent(agents, key)
    _, reader = await new_key(scopes=("read",), project_id=project)
    await fails(
        agents.CreateState(
            spb.CreateStateRequest(state=state(agent, "k", text="x")), metadata=md(reader)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await agents.CreateState(
        spb.CreateStateRequest(state=state(agent, "k", text="x")), metadata=md(key)
    )
    got = await agents.GetState(spb.GetStateRequest(key=skey(agent, "k")), metadata=md(reader))
    assert got.text == "x"


async def test_delete_user_and_delete_agent_purge_states(
    agents: Stub, users: users_pb2_grpc.UserServiceStub, new_key: NewKey, server: ServerHandle
) -> None:
    project, key = await new_key()
    agent = await new_agent(agents, key)
    await users.CreateUser(new_user("gone"), metadata=md(key))
    for user in ("gone", "kept"):
        await agents.CreateState(
            spb.CreateStateRequest(
                state=state(agent, "mood", USER, user_id=user, value={"v": 1}),
                request_id=f"r-{user}",
            ),
            metadata=md(key),
        )
    await agents.CreateState(
        spb.CreateStateRequest(state=state(agent, "world", text="w")), metadata=md(key)
    )
    assert (await count_rows(server.data_dir, project, "gone"))["agent_states"] == 1

    await users.DeleteUser(upb.DeleteUserRequest(id="gone"), metadata=md(key))
    assert sum((await count_rows(server.data_dir, project, "gone")).values()) == 0
    assert (await count_rows(server.data_dir, project, "kept"))["agent_states"] == 1
    # the purged user's recorded Create reply is gone too: the same request_id creates again
    again = await agents.CreateState(
        spb.CreateStateRequest(
            state=state(agent, "mood", USER, user_id="gone", value={"v": 2}), request_id="r-gone"
        ),
        metadata=md(key),
    )
    assert json_format.MessageToDict(again.value) == {"v": 2}

    counts = await count_agent_rows(server.app.store, project, agent)
    assert counts["agent_states"] == 3
    await agents.DeleteAgent(pb.DeleteAgentRequest(id=agent), metadata=md(key))
    counts = await count_agent_rows(server.app.store, project, agent)
    assert counts["agent_states"] == 0 and await rows(server, project) == 0
