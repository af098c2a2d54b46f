"""SIGTERM while chat streams are running: streams end cleanly, nothing is written half.

A real `memgrpc serve` process streams from a slow OpenAI-compatible fake (tests/llm/fakellm.py).
On SIGTERM the server drains for its grace period; streams that cannot finish in it are cut, and
their replies are stored marked interrupted; the process exits 0. After a restart every turn shows
its user message and exactly one assistant message: complete, or interrupted and a prefix of it.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest

from memgrpc.v1 import chat_pb2, chat_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from tests.helpers import md
from tests.llm.fakellm import SLOW_DELTAS, FakeLLM
from tests.procs import free_port, start_memgrpc, stop_server, wait_serving

KEY = "mgk_stream_shutdown_key_0123456789abcdef"


async def _stream(
    stub: chat_pb2_grpc.ChatServiceStub, i: int, out: dict[int, dict[str, object]]
) -> None:
    rec: dict[str, object] = {"deltas": [], "end": None, "session": ""}
    out[i] = rec
    req = chat_pb2.ChatRequest(
        user_id=f"u{i}", message=f"Tell me story {i}", provider="openai", model="slow"
    )
    try:
        async for ev in stub.Chat(req, metadata=md(KEY)):
            kind = ev.WhichOneof("event")
            if kind == "started":
                rec["session"] = ev.started.session_id
            elif kind == "delta":
                rec["deltas"].append(ev.delta.text)  # type: ignore[attr-defined]
            elif kind in ("done", "error"):
                rec["end"] = kind
        rec["end"] = rec["end"] or "eof"
    except grpc.aio.AioRpcError as e:
        rec["end"] = e.code().name


@pytest.mark.timeout(240)
async def test_sigterm_during_chat_streams(tmp_path: Path) -> None:
    llm = await FakeLLM(slow_interval_s=0.1).start()
    data, log, port = str(tmp_path / "data"), tmp_path / "server.log", free_port()
    env = {"MEMGRPC_OPENAI_BASE_URL": llm.base_url, "MEMGRPC_GRACE_PERIOD": "1.5"}
    proc = start_memgrpc(data, port, log, KEY, **env)
    results: dict[int, dict[str, object]] = {}
    try:
        await wait_serving(f"127.0.0.1:{port}", proc)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = chat_pb2_grpc.ChatServiceStub(ch)
            tasks = [asyncio.create_task(_stream(stub, i, results)) for i in range(4)]
            for _ in range(600):  # until the streams are under way (bounded)
                if sum(len(r["deltas"]) for r in results.values()) >= 8:  # type: ignore[arg-type]
                    break
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        await llm.stop()
    # every stream ended (none hung); the slow ones could not finish inside 1.5 s
    assert all(r["end"] for r in results.values())
    assert any(r["end"] != "done" for r in results.values())

    proc = start_memgrpc(data, port, log, KEY)
    try:
        await wait_serving(f"127.0.0.1:{port}", proc)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            sessions = sessions_pb2_grpc.SessionServiceStub(ch)
            for r in results.values():
                listed = await sessions.ListMessages(
                    sessions_pb2.ListMessagesRequest(session_id=str(r["session"])), metadata=md(KEY)
                )
                user = [m for m in listed.messages if m.role == "user"]
                replies = [m for m in listed.messages if m.role == "assistant"]
                assert len(user) == 1 and len(replies) == 1, listed
                reply = replies[0]
                full = "".join(f"w{j} " for j in range(SLOW_DELTAS))
                if reply.interrupted:
                    assert full.startswith(reply.content)
                    assert reply.content.startswith("".join(r["deltas"]))  # type: ignore[arg-type]
                else:
                    assert reply.content == full and r["end"] == "done"
    finally:
        stop_server(proc)
    text = log.read_text(errors="replace")
    assert "rpc_internal_error" not in text and "Traceback" not in text, text[-3000:]
