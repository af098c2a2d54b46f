"""client.memory against the real server: every method, sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from memgrpc.client import AsyncMemgrpcClient, MemgrpcClient, NotFoundError

MakeClient = Callable[..., MemgrpcClient]


def test_constructing_a_client_makes_no_connection() -> None:
    # nothing listens on port 1: construction and close still succeed
    with MemgrpcClient("127.0.0.1:1", api_key="k", max_retries=0) as client:
        assert client.address == "127.0.0.1:1" and client.timeout == 30.0
        assert client.sessions.from_id("ses_x").id == "ses_x"
    view = MemgrpcClient("https://example.invalid:443").with_options(timeout=None)
    assert view.timeout is None and view.address == "example.invalid:443"


async def test_memory_crud_sync(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            mem = client.memory.create(
                {
                    "user_id": "alice",
                    "content": "User prefers dark mode",
                    "type": "preference",
                    "tags": ["ui", "settings"],
                    "metadata": {"confidence": 0.95, "ticket": 12345},
                    "event_time": "2024-05-01T10:00:00Z",
                }
            )
            assert mem["id"].startswith("mem_") and mem["type"] == "preference"
            assert mem["metadata"] == {"confidence": 0.95, "ticket": 12345}
            assert mem["event_time"] == "2024-05-01T10:00:00Z" and mem["version"] == 1
            assert mem["create_time"].endswith("Z") and mem["importance"] == 0.5

            assert client.memory.get(mem["id"]) == mem

            # PATCH: only the keys given change
            upd = client.memory.update(mem["id"], {"tags": ["ui", "settings", "theme"]})
            assert upd["tags"] == ["ui", "settings", "theme"] and upd["content"] == mem["content"]
            assert upd["version"] == 1
            # a content change is a new version; keyword style; archived=False is still applied
            upd = client.memory.update(
                mem["id"], content="User prefers light mode", archived=False, reason="CORRECTED"
            )
            assert upd["version"] == 2 and upd["archived"] is False
            versions = client.memory.versions(mem["id"])["versions"]
            assert [v["version"] for v in versions] == [2, 1]
            assert (
                versions[0]["expire_time"] is None and versions[1]["expire_reason"] == "CORRECTED"
            )

            # PUT: unset fields are cleared
            rep = client.memory.replace(mem["id"], {"content": "Dark mode, always", "type": "fact"})
            assert rep["type"] == "fact" and rep["tags"] == [] and rep["metadata"] == {}

            client.memory.delete(mem["id"])
            with pytest.raises(NotFoundError):
                client.memory.get(mem["id"])

    await asyncio.to_thread(body)


async def test_list_search_batch_sync(make_client: MakeClient, key: str) -> None:
    def body() -> None:
        with make_client(key) as client:
            contents = ["Likes green tea", "Allergic to peanuts", "Works in Berlin"]
            created = [
                client.memory.create(user_id="bob", content=c, type="fact", tags=["profile"])
                for c in contents
            ]
            page = client.memory.list({"user_id": "bob", "page_size": 2})
            assert len(page["memories"]) == 2 and page["total_size"] == 3
            rest = client.memory.list(
                user_id="bob", page_size=2, page_token=page["next_page_token"]
            )
            assert len(rest["memories"]) == 1 and rest["next_page_token"] == ""
            ids = {m["id"] for m in page["memories"] + rest["memories"]}
            assert ids == {m["id"] for m in created}
            by_type = client.memory.list(user_id="bob", type="preference")
            assert by_type["memories"] == [] and by_type["total_size"] == 0

            hits = client.memory.search("what does bob drink?", user_id="bob", limit=3)["results"]
            assert hits and hits[0]["memory"]["content"] == "Likes green tea"
            assert 0.0 < hits[0]["score"] <= 1.0
            keyword = client.memory.search(
                {"query": "peanuts", "user_id": "bob", "mode": "keyword"}
            )
            assert [h["memory"]["content"] for h in keyword["results"]] == ["Allergic to peanuts"]
            filtered = client.memory.search(user_id="bob", tags=["profile"], limit=10)
            assert len(filtered["results"]) == 3

            out = client.memory.batch(
                [
                    {"op": "create", "data": {"user_id": "bob", "content": "Has a cat"}},
                    {"op": "update", "id": created[0]["id"], "data": {"tags": ["drinks"]}},
                    {"op": "delete", "id": created[1]["id"]},
                    {"op": "delete", "id": "mem_doesnotexist"},
                ]
            )
            assert out["summary"] == {"succeeded": 3, "failed": 1}
            codes = [r["code"] for r in out["results"]]
            assert codes[:3] == [0, 0, 0] and codes[3] == 5  # NOT_FOUND
            assert out["results"][0]["memory"]["type"] == "observation"
            assert out["results"][1]["memory"]["tags"] == ["drinks"]

    await asyncio.to_thread(body)


async def test_memory_async(aclient: AsyncMemgrpcClient) -> None:
    mem = await aclient.memory.create(
        user_id="carol", content="Prefers email over SMS", type="preference", tags=["notify"]
    )
    assert (await aclient.memory.get(mem["id"]))["content"] == "Prefers email over SMS"
    upd = await aclient.memory.update(mem["id"], {"metadata": {"channel": "email"}})
    assert upd["metadata"] == {"channel": "email"} and upd["tags"] == ["notify"]
    rep = await aclient.memory.replace(mem["id"], content="Prefers email", tags=["x"])
    assert rep["tags"] == ["x"] and rep["metadata"] == {}
    versions = await aclient.memory.versions(mem["id"])
    assert len(versions["versions"]) == 2
    listed = await aclient.memory.list(user_id="carol")
    assert [m["id"] for m in listed["memories"]] == [mem["id"]]
    found = await aclient.memory.search("how to contact carol", user_id="carol")
    assert found["results"][0]["memory"]["id"] == mem["id"]
    out = await aclient.memory.batch(
        {"operations": [{"op": "create", "data": {"user_id": "carol", "content": "Owns a bike"}}]}
    )
    assert out["summary"]["succeeded"] == 1
    await aclient.memory.delete(mem["id"])
    with pytest.raises(NotFoundError) as info:
        await aclient.memory.get(mem["id"])
    assert info.value.reason == "MEMORY_NOT_FOUND"


async def test_create_is_idempotent_with_a_request_id(aclient: AsyncMemgrpcClient) -> None:
    first = await aclient.memory.create(user_id="dan", content="Once", request_id="req-dan-1")
    again = await aclient.memory.create(user_id="dan", content="Once", request_id="req-dan-1")
    assert again["id"] == first["id"]
    assert (await aclient.memory.list(user_id="dan"))["total_size"] == 1
