"""client.agents (sync and async) against the real server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from memgrpc.client import AsyncMemgrpcClient, InvalidArgumentError, MemgrpcClient, NotFoundError
from tests.client.conftest import FAST
from tests.conftest import NewKey, ServerHandle

MakeClient = Callable[..., MemgrpcClient]


async def test_agents_sync(new_key: NewKey, make_client: MakeClient) -> None:
    _, key = await new_key()

    def body() -> None:
        with make_client(key) as client:
            a = client.agents.create(
                display_name="Ava",
                system_prompt="You are Ava.",
                personality={"big_five": {"openness": 0.8}, "dimensions": {"warmth": 7}},
                capabilities={"memory_mode": "async", "remember_name": True},
                metadata={"team": "tutors"},
            )
            assert a["id"].startswith("agt_")
            assert a["personality"]["big_five"]["openness"] == 0.8
            assert a["personality"]["big_five"]["agreeableness"] == 0.5  # unset: the default
            assert a["personality"]["dimensions"] == {"warmth": 7.0}
            assert a["capabilities"]["memory_mode"] == "async"
            assert a["capabilities"]["remember_name"] is True
            assert a["capabilities"]["web_search"] is False
            assert client.agents.get(a["id"]) == a
            assert client.agents.personality(a["id"]) == a["personality"]
            assert client.agents.capabilities(a["id"]) == a["capabilities"]

            caps = client.agents.update_capabilities(a["id"], web_search=True)
            assert caps["web_search"] is True and caps["remember_name"] is True
            assert caps["memory_mode"] == "async"

            renamed = client.agents.update(a["id"], display_name="Ava 2")
            assert renamed["display_name"] == "Ava 2" and renamed["system_prompt"] == "You are Ava."
            cleared = client.agents.update(a["id"], {"system_prompt": ""})
            assert cleared["system_prompt"] == "" and cleared["display_name"] == "Ava 2"

            b = client.agents.create({"display_name": "Bo"})
            listed = client.agents.list(page_size=1)
            assert [x["id"] for x in listed["agents"]] == [b["id"]]
            assert listed["total_size"] == 2 and listed["next_page_token"]
            rest = client.agents.list(page_size=1, page_token=listed["next_page_token"])
            assert [x["id"] for x in rest["agents"]] == [a["id"]]

            with pytest.raises(InvalidArgumentError) as bad:
                client.agents.create(display_name="x", personality={"big_five": {"openness": 1.5}})
            assert bad.value.field_violations[0]["field"] == "agent.personality.big_five.openness"

            client.agents.delete(a["id"])
            with pytest.raises(NotFoundError) as nf:
                client.agents.get(a["id"])
            assert nf.value.reason == "AGENT_NOT_FOUND"

    await asyncio.to_thread(body)


async def test_agents_async(server: ServerHandle, new_key: NewKey) -> None:
    _, key = await new_key()
    async with AsyncMemgrpcClient(server.address, api_key=key, **FAST) as client:
        a = await client.agents.create(display_name="Cy", request_id="mk-1")
        again = await client.agents.create(display_name="Cy", request_id="mk-1")
        assert again == a
        assert (await client.agents.list())["total_size"] == 1
        caps = await client.agents.update_capabilities(a["id"], {"inventory": True})
        assert caps["inventory"] is True and caps["memory_mode"] == "sync"
        assert (await client.agents.capabilities(a["id"])) == caps
        p = await client.agents.personality(a["id"])
        assert p["big_five"]["openness"] == 0.5 and p["dimensions"] == {}
        updated = await client.agents.update(
            a["id"], display_name="Cy 2", metadata={"x": 1}, update_mask=["metadata"]
        )
        assert updated["display_name"] == "Cy" and updated["metadata"] == {"x": 1}
        assert (await client.agents.get(a["id"]))["metadata"] == {"x": 1}
        await client.agents.delete(a["id"])
        with pytest.raises(NotFoundError):
            await client.agents.personality(a["id"])
