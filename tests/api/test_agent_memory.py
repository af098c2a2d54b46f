"""Memory per agent and user through the real server: memories carry agent_id / instance_id,
agent-scoped recall (list, search, context, chat) sees the agent's memories of that instance (or
its default state) plus the user's general ones and never another agent's or instance's; agent
sessions scope their messages and extracted facts; the memory tree, timeline and AddFacts; bad
input and other projects' agents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from memgrpc.store.filters import Where
from memgrpc.v1 import agent_state_pb2 as st
from memgrpc.v1 import agents_pb2 as apb
from memgrpc.v1 import (
    agents_pb2_grpc,
    chat_pb2_grpc,
    context_pb2_grpc,
    memory_pb2_grpc,
    sessions_pb2_grpc,
    users_pb2_grpc,
)
from memgrpc.v1 import chat_pb2 as cpb
from memgrpc.v1 import context_pb2 as xpb
from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import users_pb2 as upb
from tests.conftest import NewKey, ServerHandle
from tests.convhelpers import add, msg
from tests.helpers import md
from tests.memhelpers import details, mem


class World:
    """One project with agents A and B, an instance of A, and stubs."""

    def __init__(self, channel: grpc.aio.Channel, key: str, project: str = "") -> None:
        self.key = key
        self.project = project
        self.channel = channel
        self.agents = agents_pb2_grpc.AgentServiceStub(channel)
        self.memories = memory_pb2_grpc.MemoryServiceStub(channel)
        self.sessions = sessions_pb2_grpc.SessionServiceStub(channel)
        self.context = context_pb2_grpc.ContextServiceStub(channel)
        self.users = users_pb2_grpc.UserServiceStub(channel)
        self.chat = chat_pb2_grpc.ChatServiceStub(channel)
        self.a = self.b = self.ins = ""

    async def setup(self) -> World:
        self.a = (await self.agent("Ava")).id
        self.b = (await self.agent("Bo")).id
        made = await self.agents.CreateInstance(
            st.CreateInstanceRequest(agent_id=self.a, instance=st.Instance(display_name="one")),
            metadata=md(self.key),
        )
        self.ins = made.id
        return self

    async def agent(self, name: str) -> apb.Agent:
        return await self.agents.CreateAgent(
            apb.CreateAgentRequest(agent=apb.Agent(display_name=name)), metadata=md(self.key)
        )

    async def remember(self, user: str, content: str, **kw: Any) -> pb.Memory:
        return await self.memories.CreateMemory(mem(user, content, **kw), metadata=md(self.key))

    async def listed(self, user: str, **kw: Any) -> set[str]:
        r = await self.memories.ListMemories(
            pb.ListMemoriesRequest(user_id=user, page_size=100, **kw), metadata=md(self.key)
        )
        return {m.content for m in r.memories}

    async def searched(self, user: str, query: str, **kw: Any) -> set[str]:
        r = await self.memories.SearchMemories(
            pb.SearchMemoriesRequest(user_id=user, query=query, limit=50, **kw),
            metadata=md(self.key),
        )
        return {h.memory.content for h in r.results}


@pytest.fixture
async def world(channel: grpc.aio.Channel, new_key: NewKey) -> World:
    project, key = await new_key()
    return await World(channel, key, project).setup()


async def fails(call: Any, code: grpc.StatusCode) -> tuple[set[str], str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return details(err.value)


async def count(server: ServerHandle, table: str, project_id: str) -> int:
    where = Where().eq("project_id", project_id)
    return int(await server.app.store.table(table).count_rows(str(where)))


GENERAL, OF_A, OF_INS, OF_B = (
    "Coffee: the user drinks it black.",
    "Coffee: the user told Ava they grind their own beans.",
    "Coffee: the user told Ava's instance they like espresso.",
    "Coffee: the user told Bo they quit coffee.",
)
COFFEE = ["coffee"]


async def test_agent_scoped_recall(world: World) -> None:
    w = world
    made = {
        GENERAL: await w.remember("u1", GENERAL, entities=COFFEE),
        OF_A: await w.remember("u1", OF_A, agent_id=w.a, entities=COFFEE),
        OF_INS: await w.remember("u1", OF_INS, agent_id=w.a, instance_id=w.ins, entities=COFFEE),
        OF_B: await w.remember("u1", OF_B, agent_id=w.b, entities=COFFEE),
    }
    assert (made[OF_INS].agent_id, made[OF_INS].instance_id) == (w.a, w.ins)
    got = await w.memories.GetMemory(pb.GetMemoryRequest(id=made[OF_A].id), metadata=md(w.key))
    assert (got.agent_id, got.instance_id) == (w.a, "")
    everything = {GENERAL, OF_A, OF_INS, OF_B}
    expected = [
        ({}, everything),  # a plain recall sees every scope, as before
        ({"agent_id": w.a}, {GENERAL, OF_A}),  # the agent's default state + general
        ({"agent_id": w.a, "instance_id": w.ins}, {GENERAL, OF_INS}),
        ({"agent_id": w.b}, {GENERAL, OF_B}),
    ]
    for scope, want in expected:
        assert await w.listed("u1", **scope) == want, scope
        # the user is cached after the first search: the second runs the cache's filter twin
        assert await w.searched("u1", "coffee", **scope) == want, scope
        assert await w.searched("u1", "coffee", **scope) == want, scope
        assert await w.searched("", "coffee", mode=pb.SEARCH_MODE_KEYWORD, **scope) == want
    # connected memories (a shared entity) stay within the scope too
    linked = await w.memories.ListMemories(
        pb.ListMemoriesRequest(
            user_id="u1", agent_id=w.a, include_connected_memories=True, page_size=10
        ),
        metadata=md(w.key),
    )
    for m in linked.memories:
        assert {c.content for c in m.connected_memories} == {GENERAL, OF_A} - {m.content}
    # an unknown instance of A sees only the general memories; an update keeps the scope
    assert await w.listed("u1", agent_id=w.a, instance_id="ins_other") == {GENERAL}
    updated = await w.memories.UpdateMemory(
        pb.UpdateMemoryRequest(memory=pb.Memory(id=made[OF_B].id, content=OF_B + " Really.")),
        metadata=md(w.key),
    )
    assert updated.agent_id == w.b and updated.version == 2
    assert await w.listed("u1", agent_id=w.a) == {GENERAL, OF_A}


async def test_scope_checks_on_write(world: World, new_key: NewKey) -> None:
    w = world
    project = (await w.agents.ListAgents(apb.ListAgentsRequest(), metadata=md(w.key))).agents
    assert len(project) == 2
    _, other_key = await new_key()
    theirs = await World(w.channel, other_key).agent("X")
    their_ins = await w.agents.CreateInstance(
        st.CreateInstanceRequest(agent_id=theirs.id), metadata=md(other_key)
    )
    fields, _ = await fails(
        w.remember("u1", "x", instance_id=w.ins), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert fields == {"memory.instance_id"}
    _, reason = await fails(w.remember("u1", "x", agent_id=theirs.id), grpc.StatusCode.NOT_FOUND)
    assert reason == "AGENT_NOT_FOUND"
    # an instance of another agent (of another project, or B's view of A's instance)
    for agent, ins in ((w.a, their_ins.id), (w.b, w.ins)):
        _, reason = await fails(
            w.remember("u1", "x", agent_id=agent, instance_id=ins), grpc.StatusCode.NOT_FOUND
        )
        assert reason == "INSTANCE_NOT_FOUND"
    fields, _ = await fails(
        w.memories.ListMemories(
            pb.ListMemoriesRequest(user_id="u1", instance_id=w.ins), metadata=md(w.key)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == {"instance_id"}
    # a batch: the create naming another project's agent fails alone
    batch = await w.memories.BatchMemories(
        pb.BatchMemoriesRequest(
            operations=[
                pb.BatchOperation(create=pb.CreateMemoryRequest(memory=m))
                for m in (
                    pb.Memory(user_id="u1", content="ok", agent_id=w.a, instance_id=w.ins),
                    pb.Memory(user_id="u1", content="bad", agent_id=theirs.id),
                )
            ]
        ),
        metadata=md(w.key),
    )
    assert [r.code for r in batch.results] == [0, grpc.StatusCode.NOT_FOUND.value[0]]
    assert batch.results[0].memory.instance_id == w.ins
    # an import: the record naming another project's agent is rejected, the other imported
    records = [
        pb.MemoryRecord(memory=pb.Memory(user_id="u2", content="imported", agent_id=w.b)),
        pb.MemoryRecord(memory=pb.Memory(user_id="u2", content="lost", agent_id=theirs.id)),
    ]

    async def stream() -> Any:
        yield pb.ImportMemoriesRequest(records=records)

    summary = await w.memories.ImportMemories(stream(), metadata=md(w.key))
    assert (summary.imported, summary.failed) == (1, 1)
    assert await w.listed("u2", agent_id=w.b) == {"imported"}
    assert await w.listed("u1") == {"ok"}  # nothing else was written


async def session_with(w: World, user: str, *texts: str, **scope: str) -> spb.Session:
    s = await w.sessions.CreateSession(
        spb.CreateSessionRequest(session=spb.Session(user_id=user, **scope)), metadata=md(w.key)
    )
    if texts:
        await w.sessions.AddMessages(add(s.id, *(msg(t) for t in texts)), metadata=md(w.key))
    return s


async def process(w: World, session_id: str) -> spb.Job:
    job = await w.sessions.ProcessSession(
        spb.ProcessSessionRequest(session_id=session_id, wait=True), metadata=md(w.key)
    )
    assert job.state == spb.JOB_STATE_DONE, job.error
    return job


async def extracted(w: World, user: str, **scope: str) -> list[pb.Memory]:
    r = await w.memories.ListMemories(
        pb.ListMemoriesRequest(
            user_id=user, origins=[pb.MEMORY_ORIGIN_EXTRACTED], page_size=100, **scope
        ),
        metadata=md(w.key),
    )
    return list(r.memories)


async def test_agent_sessions_scope_messages_facts_and_recall(
    world: World, server: ServerHandle
) -> None:
    w = world
    s_a = await session_with(w, "u1", "I live in Glasgow.", agent_id=w.a)
    s_ins = await session_with(w, "u1", "I love kayaking.", agent_id=w.a, instance_id=w.ins)
    s_chat_early = await session_with(w, "u1", agent_id=w.a, instance_id=w.ins)
    # the message rows and their MESSAGE memories carry the session's scope
    tbl = server.app.store.table("messages")
    rows = (await tbl.query().where(str(Where().eq("session_id", s_ins.id))).to_arrow()).to_pylist()
    assert [(r["agent_id"], r["instance_id"]) for r in rows] == [(w.a, w.ins)]
    turns = await w.memories.ListMemories(
        pb.ListMemoriesRequest(session_id=s_a.id, types=[pb.MEMORY_TYPE_MESSAGE]),
        metadata=md(w.key),
    )
    assert [(m.agent_id, m.instance_id) for m in turns.memories] == [(w.a, "")]
    await process(w, s_a.id)
    await process(w, s_ins.id)
    summaries = await w.memories.ListMemories(
        pb.ListMemoriesRequest(session_id=s_ins.id, types=[pb.MEMORY_TYPE_SUMMARY]),
        metadata=md(w.key),
    )
    assert [(m.agent_id, m.instance_id) for m in summaries.memories] == [(w.a, w.ins)]
    # an action recorded in an agent session is that agent's too
    act = await w.users.RecordAction(
        upb.RecordActionRequest(
            user_id="u1",
            session_id=s_chat_early.id,
            content="User opened the kayak shop page",
            timestamp=ts(datetime.now(UTC)),
        ),
        metadata=md(w.key),
    )
    assert (act.memory.agent_id, act.memory.instance_id) == (w.a, w.ins)
    facts_a = await extracted(w, "u1", agent_id=w.a)
    assert facts_a and {(m.agent_id, m.instance_id) for m in facts_a} == {(w.a, "")}
    assert any("Glasgow" in m.content for m in facts_a)
    assert not any("kayak" in m.content.lower() for m in facts_a)  # the instance's fact
    facts_ins = await extracted(w, "u1", agent_id=w.a, instance_id=w.ins)
    assert {(m.agent_id, m.instance_id) for m in facts_ins} == {(w.a, w.ins)}
    assert any("kayak" in m.content.lower() for m in facts_ins)
    # B hears another city: a fact of B's own, no conflict with A's (no merge across scopes)
    job = await process(w, (await session_with(w, "u1", "I live in Perth.", agent_id=w.b)).id)
    assert (job.stats.conflicts_opened, job.stats.versions_made) == (0, 0)
    assert job.stats.facts_added >= 1
    facts_b = await extracted(w, "u1", agent_id=w.b)
    assert any("Perth" in m.content for m in facts_b)
    assert not any("Glasgow" in m.content for m in facts_b)
    # the same fact told A again reinforces A's memory instead of adding one
    again = await process(w, (await session_with(w, "u1", "I live in Glasgow.", agent_id=w.a)).id)
    assert again.stats.facts_reinforced >= 1 and again.stats.facts_added == 0
    glasgow = [m for m in await extracted(w, "u1") if "Glasgow" in m.content]
    assert len(glasgow) == 1 and glasgow[0].mention_count == 2
    # the context of a session with A (its scope by default) never shows B's facts or turns
    s_chat = await session_with(w, "u1", agent_id=w.a)
    ctx = await w.context.GetContext(
        xpb.GetContextRequest(user_id="u1", session_id=s_chat.id, query="Where do I live?"),
        metadata=md(w.key),
    )
    shown = " ".join(h.memory.content for h in ctx.memories)
    assert "Glasgow" in shown and "Perth" not in shown
    assert "Glasgow" in ctx.context and "Perth" not in ctx.context  # the profile too
    ctx_b = await w.context.GetContext(
        xpb.GetContextRequest(user_id="u1", agent_id=w.b, query="Where do I live?"),
        metadata=md(w.key),
    )
    shown = " ".join(h.memory.content for h in ctx_b.memories)
    assert "Perth" in shown and "Glasgow" not in shown and "Glasgow" not in ctx_b.context
    # a chat turn in a session with A recalls in A's scope; a plain one recalls everything
    events = [
        e
        async for e in w.chat.Chat(
            cpb.ChatRequest(session_id=s_chat.id, message="Where do I live?"), metadata=md(w.key)
        )
    ]
    recalled = " ".join(h.memory.content for h in events[1].context.memories)
    assert "Glasgow" in recalled and "Perth" not in recalled
    plain = [
        e
        async for e in w.chat.Chat(
            cpb.ChatRequest(user_id="u1", message="Where do I live?"), metadata=md(w.key)
        )
    ]
    recalled = " ".join(h.memory.content for h in plain[1].context.memories)
    assert "Glasgow" in recalled and "Perth" in recalled


async def test_list_users_by_agent(world: World) -> None:
    w = world
    await session_with(w, "ana", agent_id=w.a)
    await session_with(w, "ben", agent_id=w.a, instance_id=w.ins)
    await session_with(w, "cy", agent_id=w.b)
    await session_with(w, "dee")

    async def users(agent_id: str = "") -> list[str]:
        r = await w.users.ListUsers(upb.ListUsersRequest(agent_id=agent_id), metadata=md(w.key))
        return sorted(u.id for u in r.users)

    assert await users(w.a) == ["ana", "ben"]
    assert await users(w.b) == ["cy"]
    assert await users() == ["ana", "ben", "cy", "dee"]
    assert await users("agt_none") == []


def ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


async def test_add_facts_tree_and_timeline(world: World) -> None:
    w = world
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    facts = [
        st.FactInput(content="Has a cat named Miso.", categories=["pets"], importance=0.9),
        st.FactInput(content="Has a parrot.", categories=["pets"], importance=0.4),
        st.FactInput(content="Works as a nurse.", categories=["work", "personal_info"]),
        st.FactInput(content="Likes jazz.", create_time=ts(t0)),
    ]
    added = await w.agents.AddFacts(
        st.AddFactsRequest(agent_id=w.a, user_id="u1", facts=facts), metadata=md(w.key)
    )
    assert [m.content for m in added.memories] == [f.content for f in facts]
    assert all(m.agent_id == w.a and m.origin == pb.MEMORY_ORIGIN_CLIENT for m in added.memories)
    assert added.memories[2].importance == pytest.approx(0.5)
    assert added.memories[3].create_time.ToDatetime(tzinfo=UTC) == t0
    await w.remember("u1", "Lives in Oslo.", categories=["location"])  # general: in the tree
    await w.remember("u1", "Told Bo about a dog.", categories=["pets"], agent_id=w.b)
    tree = await w.agents.GetMemoryTree(
        st.GetMemoryTreeRequest(agent_id=w.a, user_id="u1"), metadata=md(w.key)
    )
    by_name = {n.category: [m.content for m in n.facts] for n in tree.categories}
    assert by_name == {
        "pets": ["Has a cat named Miso.", "Has a parrot."],  # importance, highest first
        "work": ["Works as a nurse."],
        "personal_info": ["Works as a nurse."],
        "location": ["Lives in Oslo."],
        "uncategorized": ["Likes jazz."],
    }
    assert tree.categories[0].category == "pets" and tree.total_facts == 5
    capped = await w.agents.GetMemoryTree(
        st.GetMemoryTreeRequest(agent_id=w.a, user_id="u1", limit_per_category=1),
        metadata=md(w.key),
    )
    assert [m.content for m in capped.categories[0].facts] == ["Has a cat named Miso."]
    # the instance has none of the agent's default-state facts: only the general one
    other = await w.agents.GetMemoryTree(
        st.GetMemoryTreeRequest(agent_id=w.a, user_id="u1", instance_id=w.ins),
        metadata=md(w.key),
    )
    assert [(n.category, len(n.facts)) for n in other.categories] == [("location", 1)]
    # search for an agent: SearchMemories with agent_id
    assert "Told Bo about a dog." not in await w.searched("u1", "pets", agent_id=w.a)
    # the timeline: oldest first, paged, within a range
    seen: list[str] = []
    token = ""
    while True:
        page = await w.agents.GetTimeline(
            st.GetTimelineRequest(agent_id=w.a, user_id="u1", page_size=2, page_token=token),
            metadata=md(w.key),
        )
        seen += [m.content for m in page.memories]
        token = page.next_page_token
        if not token:
            break
    assert seen[0] == "Likes jazz." and len(seen) == 5 and "Told Bo about a dog." not in seen
    ranged = await w.agents.GetTimeline(
        st.GetTimelineRequest(
            agent_id=w.a,
            user_id="u1",
            start_time=ts(t0 - timedelta(days=1)),
            end_time=ts(t0 + timedelta(days=1)),
        ),
        metadata=md(w.key),
    )
    assert [m.content for m in ranged.memories] == ["Likes jazz."]


async def test_add_facts_bad_input_writes_nothing(
    world: World, server: ServerHandle, new_key: NewKey
) -> None:
    w = world
    await w.remember("u1", "already here")

    async def add_facts(**kw: Any) -> Any:
        return await w.agents.AddFacts(st.AddFactsRequest(**kw), metadata=md(w.key))

    facts = [st.FactInput(content=f"fact {i}") for i in range(5)]
    facts[1] = st.FactInput(content="x" * (8 * 1024 + 1))
    facts[3] = st.FactInput(content="")
    facts[4] = st.FactInput(content="ok", importance=1.5, categories=[""])
    fields, _ = await fails(
        add_facts(agent_id=w.a, user_id="u1", facts=facts), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert fields == {
        "facts[1].content",
        "facts[3].content",
        "facts[4].importance",
        "facts[4].categories[0]",
    }
    fields, _ = await fails(
        add_facts(agent_id=w.a, user_id="u1", facts=[]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert fields == {"facts"}
    many = [st.FactInput(content="f")] * 1001
    fields, _ = await fails(
        add_facts(agent_id=w.a, user_id="u1", facts=many), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert fields == {"facts"}
    fields, _ = await fails(
        add_facts(user_id="", instance_id=w.ins, facts=facts[:1]),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == {"agent_id", "user_id", "instance_id"}
    # another project's agent and instance are NOT_FOUND, for every RPC
    _, other_key = await new_key()
    theirs = await World(w.channel, other_key).setup()
    for agent, ins in ((theirs.a, ""), (w.a, theirs.ins)):
        for call in (
            add_facts(agent_id=agent, instance_id=ins, user_id="u1", facts=facts[:1]),
            w.agents.GetMemoryTree(
                st.GetMemoryTreeRequest(agent_id=agent, instance_id=ins, user_id="u1"),
                metadata=md(w.key),
            ),
            w.agents.GetTimeline(
                st.GetTimelineRequest(agent_id=agent, instance_id=ins, user_id="u1"),
                metadata=md(w.key),
            ),
        ):
            _, reason = await fails(call, grpc.StatusCode.NOT_FOUND)
            assert reason == ("INSTANCE_NOT_FOUND" if ins else "AGENT_NOT_FOUND")
    fields, _ = await fails(
        w.agents.GetMemoryTree(
            st.GetMemoryTreeRequest(agent_id=w.a, user_id="u1", limit_per_category=1001),
            metadata=md(w.key),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields == {"limit_per_category"}
    assert await count(server, "memories", w.project) == 1  # nothing was written
