"""`memgrpc export` / `memgrpc import` as subprocesses against in-process servers.

The commands run with asyncio's subprocess API so this event loop keeps serving their calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from memgrpc.embed import Embedder
from memgrpc.server.app import start
from memgrpc.transfer_cli import Progress, record_from_obj
from memgrpc.v1 import admin_pb2_grpc, memory_pb2_grpc
from memgrpc.v1 import memory_pb2 as pb
from tests import conftest
from tests.conftest import ServerHandle, make_config
from tests.helpers import md
from tests.memhelpers import mem
from tests.server.test_tls import Pki
from tests.server.test_tls import pki as pki  # the test PKI fixture


async def cli(
    *args: str, key: str | None = None, stdin: bytes | None = None
) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MEMGRPC_API_KEY"}
    if key is not None:
        env["MEMGRPC_API_KEY"] = key
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "memgrpc",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture(scope="module")
async def other(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[ServerHandle]:
    data_dir = tmp_path_factory.mktemp("other")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    running = await start(make_config(data_dir, admin_key), embedder=shared_embedder)
    try:
        yield ServerHandle(running.address, data_dir, admin_key, running.app, running)
    finally:
        await running.stop(1.0)


@pytest.fixture(scope="module")
async def other_stubs(other: ServerHandle):  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(other.address) as ch:
        yield memory_pb2_grpc.MemoryServiceStub(ch), admin_pb2_grpc.AdminServiceStub(ch)


async def contents(stub: memory_pb2_grpc.MemoryServiceStub, key: str) -> dict[str, pb.Memory]:
    resp = await stub.ListMemories(
        pb.ListMemoriesRequest(include_archived=True, page_size=1000), metadata=md(key)
    )
    return {m.id: m for m in resp.memories}


async def test_export_import_round_trip(
    server, memory_stub, new_key, other, other_stubs, tmp_path: Path
) -> None:
    _, key_a = await new_key()
    ids = []
    for i, text in enumerate(
        ["The user's cat is called Miso", "User works night shifts", "Ünïcödé ✓"]
    ):
        req = mem("alice" if i < 2 else "bob", text, tags=[f"t{i}"], metadata={"i": i, "x": "y"})
        ids.append((await memory_stub.CreateMemory(req, metadata=md(key_a))).id)
    await memory_stub.UpdateMemory(
        pb.UpdateMemoryRequest(memory=pb.Memory(id=ids[1], content="User works day shifts")),
        metadata=md(key_a),
    )
    await memory_stub.UpdateMemory(
        pb.UpdateMemoryRequest(memory=pb.Memory(id=ids[2], archived=True)), metadata=md(key_a)
    )
    dump = tmp_path / "a.jsonl"
    code, out, err = await cli(
        "export", "--addr", server.address, "--vectors", "--versions", "-o", str(dump), key=key_a
    )
    assert code == 0, err
    assert out == ""
    assert "exported 3/3 memories" in err
    lines = [json.loads(x) for x in dump.read_text("utf-8").splitlines()]
    assert sorted(x["id"] for x in lines) == sorted(ids)  # archived ones too
    assert all(len(x["vector"]) == 384 and x["model"] == "all-MiniLM-L6-v2-int8" for x in lines)
    assert {x["id"]: len(x["versions"]) for x in lines}[ids[1]] == 2
    assert not (tmp_path / "a.jsonl.partial").exists()
    assert dump.stat().st_mode & 0o777 == 0o600

    stub_b, admin_b = other_stubs
    _, key_b = await conftest.new_key.__wrapped__(admin_b, other.admin_key)()
    texts = other.app.embedder.texts
    code, out, err = await cli("import", str(dump), "--addr", other.address, key=key_b)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["imported"], summary["skipped"], summary["failed"]) == (3, 0, 0)
    assert summary["embedded"] == 0 and summary["errors"] == []
    assert "imported 3, skipped 0 (already there), failed 0 of 3 sent" in err
    assert other.app.embedder.texts == texts
    assert await contents(stub_b, key_b) == await contents(memory_stub, key_a)

    # the target's export is the same file, line for line
    code, out, err = await cli(
        "export", "--addr", other.address, "--vectors", "--versions", "--quiet", key=key_b
    )
    assert code == 0 and err == ""
    again = sorted(json.loads(x)["id"] for x in out.splitlines())
    assert again == sorted(ids)
    assert sorted(out.splitlines()) == sorted(dump.read_text("utf-8").splitlines())
    assert '"metadata":{"i":0.0,"x":"y"}' in out  # keys sorted: same data, same line

    # re-import: nothing new, and the progress line says so (not "imported 3")
    code, out, err = await cli("import", str(dump), "--addr", other.address, key=key_b)
    assert code == 0
    summary = json.loads(out)
    assert (summary["imported"], summary["skipped"]) == (0, 3)
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("imported 0, skipped 3 (already there), failed 0 of 3 sent")
    ), err
    assert "imported 3" not in err
    assert len(await contents(stub_b, key_b)) == 3

    # filters: one user, no archived
    code, out, _ = await cli(
        "export", "--addr", server.address, "--user", "bob", "--exclude-archived", key=key_a
    )
    assert code == 0 and out == ""
    code, out, _ = await cli("export", "--addr", server.address, "--user", "alice", key=key_a)
    assert sorted(json.loads(x)["id"] for x in out.splitlines()) == sorted(ids[:2])
    assert all("vector" not in json.loads(x) for x in out.splitlines())


MEM0 = [
    {
        "id": "0b9c6c3e-5f0e-4a8e-9d4b-2f1f3c1c2a11",
        "memory": "Is a vegetarian and allergic to nuts",
        "hash": "8f2c",
        "metadata": {"food": True},
        "categories": ["food", "health"],
        "created_at": "2024-07-20T01:30:36.275141-07:00",
        "updated_at": "2024-07-21T09:00:00-07:00",
        "user_id": "alex",
    },
    {
        "memory": "Likes to play tennis on weekends",
        "metadata": None,
        "created_at": "2024-07-22T10:00:00Z",
        "user_id": "alex",
        "run_id": "chat-42",
        "agent_id": "coach",
    },
    {"memory": "Prefers window seats", "created_at": "2024-07-23 08:00:00"},
]


@pytest.mark.parametrize("wrap", ["array", "results"])
async def test_mem0_import(server, memory_stub, new_key, tmp_path: Path, wrap: str) -> None:
    _, key = await new_key()
    doc = MEM0 if wrap == "array" else {"results": MEM0}
    path = tmp_path / "mem0.json"
    path.write_text(json.dumps(doc, indent=2 if wrap == "results" else None), "utf-8")
    args = ("import", str(path), "--addr", server.address, "--user", "fallback")
    code, out, err = await cli(*args, key=key)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["imported"], summary["failed"], summary["embedded"]) == (3, 0, 3)
    got = {m.content: m for m in (await contents(memory_stub, key)).values()}
    veg = got["Is a vegetarian and allergic to nuts"]
    if wrap == "array":  # the first project on this server with these ids keeps them
        assert veg.id == MEM0[0]["id"] and summary["renamed"] == 0
    else:  # the second one gets ids derived from them (stable, see the re-import below)
        assert veg.id.startswith("mem_") and summary["renamed"] == 3
    assert veg.user_id == "alex"
    assert dict(veg.metadata) == {"food": True}
    assert list(veg.categories) == ["food", "health"]
    assert veg.create_time.ToJsonString() == "2024-07-20T08:30:36.275141Z"
    assert veg.update_time.ToJsonString() == "2024-07-21T16:00:00Z"
    assert veg.event_time == veg.create_time
    tennis = got["Likes to play tennis on weekends"]
    assert tennis.session_id == "chat-42" and dict(tennis.metadata) == {"agent_id": "coach"}
    assert tennis.id.startswith("mem_")
    seat = got["Prefers window seats"]
    assert seat.user_id == "fallback"
    assert seat.create_time.ToJsonString() == "2024-07-23T08:00:00Z"
    # semantic search works on the imported text
    found = await memory_stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id="alex", query="does the user eat meat?"), metadata=md(key)
    )
    assert found.results[0].memory.id == veg.id
    # again: ids kept (or derived from the content), so nothing is duplicated
    code, out, _ = await cli(*args, key=key)
    assert code == 0
    assert (json.loads(out)["imported"], json.loads(out)["skipped"]) == (0, 3)


async def test_bad_lines_are_reported_with_line_numbers(
    server, memory_stub, new_key, tmp_path: Path
) -> None:
    _, key = await new_key()
    lines = [
        json.dumps({"id": "a1", "user_id": "u", "content": "first fine line"}),
        "{not json",
        json.dumps({"id": "a2", "user_id": "u", "content": "x", "colour": "blue"}),
        "",
        json.dumps({"id": "a3", "user_id": "u", "content": ""}),
        json.dumps({"id": "a4", "userId": "u", "content": "camelCase names work too"}),
        json.dumps({"id": "a5", "user_id": "u", "content": "y", "vector": ["a"], "model": "m"}),
        json.dumps({"memory": {"id": "a6", "user_id": "u", "content": "a MemoryRecord mapping"}}),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    code, out, _ = await cli("import", str(path), "--addr", server.address, key=key)
    assert code == 1
    summary = json.loads(out)
    assert (summary["imported"], summary["failed"]) == (3, 4)
    assert [(e["line"], e["reason"]) for e in summary["errors"]] == [
        (2, "UNREADABLE"),
        (3, "UNREADABLE"),
        (5, "INVALID_ARGUMENT"),
        (7, "UNREADABLE"),
    ]
    assert summary["errors"][2]["id"] == "a3"
    assert sorted(await contents(memory_stub, key)) == ["a1", "a4", "a6"]
    # stdin works too
    code, out, _ = await cli(
        "import", "-", "--addr", server.address, key=key, stdin=path.read_bytes()
    )
    assert json.loads(out)["skipped"] == 3


async def test_errors_and_exit_codes(server, tmp_path: Path) -> None:
    code, _, err = await cli("export", "--addr", server.address)
    assert code == 2 and "MEMGRPC_API_KEY" in err
    code, _, err = await cli("export", "--addr", server.address, "--api-key", "mgk_nope_0123456789")
    assert code == 1 and "UNAUTHENTICATED" in err
    code, _, err = await cli("import", str(tmp_path / "missing.jsonl"), key="k")
    assert code == 2 and "no such file" in err


def test_record_parsing_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    r = record_from_obj({"id": "x", "user_id": "u", "content": "c", "seq": 4, "vector": [1, 0.5]})
    assert (r.memory.id, r.seq, list(r.vector)) == ("x", 4, [1.0, 0.5])
    r = record_from_obj({"memory": "mem0 text"}, default_user="d")
    assert (r.memory.content, r.memory.user_id) == ("mem0 text", "d")
    with pytest.raises(TypeError):
        record_from_obj(["not", "an", "object"])
    p = Progress("imported", total=200)
    p.add(50)
    assert p._line(p._start + 2.0).startswith(
        "[#######-----------------------]  25%  imported 50/200"
    )
    p.close()
    assert "imported 50/200 memories" in capsys.readouterr().err


# -- TLS --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def mtls(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder, pki: Pki
) -> AsyncIterator[ServerHandle]:
    """A server that serves TLS only and requires client certificates of the test CA."""
    data_dir = tmp_path_factory.mktemp("mtls")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    tls = {
        "tls_cert": str(pki.server.cert_file),
        "tls_key": str(pki.server.key_file),
        "tls_client_ca": str(pki.ca.cert_file),
    }
    running = await start(make_config(data_dir, admin_key, **tls), embedder=shared_embedder)
    try:
        yield ServerHandle(running.address, data_dir, admin_key, running.app, running)
    finally:
        await running.stop(1.0)


async def test_export_and_import_over_mutual_tls(mtls, pki: Pki, tmp_path: Path) -> None:
    flags = ("--addr", mtls.address, "--tls-ca", str(pki.ca.cert_file))
    client = ("--tls-cert", str(pki.client.cert_file), "--tls-key", str(pki.client.key_file))
    creds = grpc.ssl_channel_credentials(pki.ca.cert_pem, pki.client.key_pem, pki.client.cert_pem)
    async with grpc.aio.secure_channel(mtls.address, creds) as ch:
        stub, admin = memory_pb2_grpc.MemoryServiceStub(ch), admin_pb2_grpc.AdminServiceStub(ch)
        _, key_a = await conftest.new_key.__wrapped__(admin, mtls.admin_key)()
        _, key_b = await conftest.new_key.__wrapped__(admin, mtls.admin_key)()
        for text in ("Tea at four", "Coffee never"):
            await stub.CreateMemory(mem("tls-user", text), metadata=md(key_a))

        dump = tmp_path / "tls.jsonl"
        code, _, err = await cli("export", *flags, *client, "-o", str(dump), key=key_a)
        assert code == 0, err
        assert len(dump.read_text("utf-8").splitlines()) == 2
        code, out, err = await cli("import", str(dump), *flags, *client, key=key_b)
        assert code == 0, err
        assert json.loads(out)["imported"] == 2
        texts = [{m.content for m in (await contents(stub, k)).values()} for k in (key_a, key_b)]
        assert texts[0] == texts[1] == {"Tea at four", "Coffee never"}

    # without the client certificate, or without TLS, the server is not reached
    code, _, err = await cli("export", *flags, "-o", str(tmp_path / "x.jsonl"), key=key_a)
    assert code == 1 and "UNAVAILABLE" in err, err
    code, _, err = await cli("import", str(dump), "--addr", mtls.address, key=key_a)
    assert code == 1 and "UNAVAILABLE" in err, err
    code, _, err = await cli("export", *flags, "--tls-cert", str(pki.client.cert_file), key=key_a)
    assert code == 2 and "--tls-cert and --tls-key go together" in err
    code, _, err = await cli("export", "--tls-ca", str(tmp_path / "none.pem"), key=key_a)
    assert code == 2 and "--tls-ca" in err
