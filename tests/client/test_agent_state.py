"""`client.agents`' per-user state through the real server: instances, custom states,
notifications, the agent's memory and the context engine's reads, sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from memgrpc.client import (
    AsyncMemgrpcClient,
    ConflictError,
    InvalidArgumentError,
    MemgrpcClient,
    NotFoundError,
)

MakeClient = Callable[..., MemgrpcClient]


async def test_agent_state_sync(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            agents = client.agents
            ava = agents.create(display_name="Ava")["id"]
            s = client.sessions.start(user_id="ana", agent_id=ava)
            s.turn(
                [
                    {"role": "user", "content": "Thank you, you are so kind! I love jazz."},
                    {"role": "user", "content": "I want to run a marathon."},
                    {"role": "user", "content": "My driving test is tomorrow."},
                ],
                fetch_next_context=False,
            )
            s.end(wait=True)

            mood = agents.get_mood(ava, user_id="ana")
            assert mood["turns"] >= 1 and mood["valence"] > 0 and mood["source"] == "lexicon"
            rel = agents.get_relationships(ava, user_id="ana")
            assert rel["affinity"] > 0 and rel["sessions"] == 1
            goals = agents.get_goals(ava, user_id="ana")["insights"]
            assert any("marathon" in g["text"] for g in goals)
            assert any(
                "jazz" in i["text"] for i in agents.get_interests(ava, user_id="ana")["insights"]
            )
            assert agents.get_habits(ava, user_id="ana")["insights"] == []
            assert "ana" in agents.get_diary(ava)["entries"][0]["user_ids"]
            assert [u["id"] for u in agents.get_users(ava)["users"]] == ["ana"]

            added = agents.memory.bulk_create_facts(
                ava,
                user_id="ana",
                facts=[{"content": "Has a cat named Miso.", "categories": ["pets"]}],
            )["memories"]
            assert added[0]["agent_id"] == ava
            tree = agents.memory.list(ava, user_id="ana")
            assert any(n["category"] == "pets" for n in tree["categories"])
            found = agents.memory.search(ava, query="cat", user_id="ana")["results"]
            assert "Miso" in found[0]["memory"]["content"]
            times = agents.memory.timeline(
                ava, user_id="ana", start_time=datetime.now(UTC) - timedelta(hours=1)
            )["memories"]
            assert added[0]["id"] in {m["id"] for m in times}

            later = datetime.now(UTC) + timedelta(days=2, hours=1)
            made = agents.notifications.run_checks(ava, now=later)["created"]
            follow = [n for n in made if n["check_type"] == "follow_up"]
            assert len(follow) == 1 and follow[0]["status"] == "pending"
            assert [n["id"] for n in agents.notifications.list(ava)["notifications"]] == [
                follow[0]["id"]
            ]
            assert agents.notifications.consume(ava, follow[0]["id"])["status"] == "consumed"
            assert [n["id"] for n in agents.notifications.history(ava)["notifications"]] == [
                follow[0]["id"]
            ]

            state = agents.custom_states.upsert(
                ava, "quest", scope="user", user_id="ana", value={"level": 3, "items": ["map"]}
            )
            assert state["content_type"] == "application/json"
            got = agents.custom_states.get_by_key(ava, "quest", scope="user", user_id="ana")
            assert got["value"] == {"level": 3, "items": ["map"]}
            agents.custom_states.create(ava, "world", text="rain")
            with pytest.raises(ConflictError):
                agents.custom_states.create(ava, "world", text="snow")
            keys = {(x["key"], x["scope"]) for x in agents.custom_states.list(ava)["states"]}
            assert keys == {("quest", "user"), ("world", "global")}
            agents.custom_states.delete_by_key(ava, "world")
            with pytest.raises(NotFoundError):
                agents.custom_states.get_by_key(ava, "world")
            with pytest.raises(InvalidArgumentError):
                agents.custom_states.upsert(ava, "quest", scope="user", text="no user")

            ins = agents.instances.create(ava, display_name="beta")
            assert ins["id"].startswith("ins_")
            assert [i["id"] for i in agents.instances.list(ava)["instances"]] == [ins["id"]]
            assert agents.instances.reset(ava, ins["id"], user_id="ana")["reset_time"]
            agents.instances.delete(ava, ins["id"])
            assert agents.instances.list(ava)["instances"] == []

    await asyncio.to_thread(body)


async def test_agent_state_async(aclient: AsyncMemgrpcClient) -> None:
    agents = aclient.agents
    ava = (await agents.create(display_name="Ava"))["id"]
    mood = await agents.get_mood(ava, user_id="bo")
    assert (mood["label"], mood["turns"]) == ("neutral", 0)
    ins = await agents.instances.create(ava, display_name="beta")
    await agents.custom_states.upsert(ava, "k", instance_id=ins["id"], text="v")
    listed = await agents.custom_states.list(ava, instance_id=ins["id"])
    assert [s["text"] for s in listed["states"]] == ["v"]
    with pytest.raises(NotFoundError):
        await agents.get_relationships("agt_missing", user_id="bo")
