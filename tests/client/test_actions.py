"""client.users.record_action (GUMem's names), ListMemories' include options, categories
(client.admin.categories and filter errors) through the Python client: sync and async."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from memgrpc.client import AsyncMemgrpcClient, InvalidArgumentError, MemgrpcClient

MakeClient = Callable[..., MemgrpcClient]


async def test_record_action_sync(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            s = client.sessions.create(user_id="alice")
            got = client.users.record_action(
                {
                    "user_id": "alice",
                    "timestamp": "2024-05-01T10:30:00+02:00",
                    "content": "User viewed the Berlin hotels page",
                    "log_id": "evt-1",
                    "session_id": s.id,
                    "event_type": "page_view",
                    "page": "/hotels/berlin",
                    "anchors": {"city": "Berlin"},
                    "metadata": {"ab": "b"},
                    "entities": ["Berlin"],
                }
            )
            m = got["memory"]
            assert got["duplicate"] is False
            assert m["origin"] == "action" and m["type"] == "observation"
            assert m["event_time"] == "2024-05-01T08:30:00Z"
            assert m["metadata"]["anchor.city"] == "Berlin" and m["metadata"]["ab"] == "b"
            again = client.users.record_action(
                user_id="alice",
                timestamp=datetime(2024, 5, 1, tzinfo=UTC),
                content="whatever",
                log_id="evt-1",
            )
            assert again["duplicate"] is True and again["memory"]["id"] == m["id"]
            listed = client.memory.list(metadata={"anchor.city": "Berlin"}, origins=["action"])[
                "memories"
            ]
            assert [x["id"] for x in listed] == [m["id"]]
            with pytest.raises(InvalidArgumentError) as info:
                client.users.record_action(user_id="alice", content="no time")
            assert info.value.field_violations[0]["field"] == "timestamp"

    await asyncio.to_thread(body)


async def test_record_action_and_list_options_async(aclient: AsyncMemgrpcClient) -> None:
    got = await aclient.users.record_action(
        user_id="bob",
        timestamp=datetime(2024, 5, 1, 9, tzinfo=UTC),
        content="User switched the theme to dark",
        event_type="preference_update",
        entities=["theme"],
    )
    assert got["memory"]["type"] == "preference"
    first = await aclient.memory.create(user_id="bob", content="likes the dark theme")
    await aclient.memory.update(
        first["id"], {"content": "loves the dark theme", "entities": ["theme"]}
    )
    listed = await aclient.memory.list(
        user_id="bob", include_previous_versions=True, include_connected_memories=True
    )
    by_content = {m["content"]: m for m in listed["memories"]}
    loved = by_content["loves the dark theme"]
    assert [v["content"] for v in loved["previous_versions"]] == ["likes the dark theme"]
    assert [c["id"] for c in loved["connected_memories"]] == [got["memory"]["id"]]
    with pytest.raises(InvalidArgumentError) as info:
        await aclient.memory.list(categories=["no_such_category"])
    assert info.value.reason == "INVALID_CATEGORIES"
    assert json.loads(info.value.metadata["invalid_categories"]) == ["no_such_category"]


async def test_categories_sync_and_async(
    make_client: MakeClient, key: str, aclient: AsyncMemgrpcClient
) -> None:
    def body() -> list[dict[str, object]]:
        with make_client(key) as client:
            assert client.admin.categories.list()[0]["name"] == "personal_info"
            client.memory.create(user_id="u", content="x", categories=["misc"])
            return client.admin.categories.set(["travel", {"name": "work", "description": "jobs"}])

    chosen = await asyncio.to_thread(body)
    assert chosen == [
        {"name": "travel", "description": "", "from_memories": False},
        {"name": "work", "description": "jobs", "from_memories": False},
        {"name": "misc", "description": "", "from_memories": True},
    ]
    assert await aclient.admin.categories.list() == chosen
    with pytest.raises(InvalidArgumentError) as info:
        await aclient.admin.categories.set(["Bad Name"])
    assert info.value.field_violations[0]["field"] == "categories[0].name"
