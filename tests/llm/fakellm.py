"""A real (small) OpenAI-compatible HTTP server on 127.0.0.1:0 that streams chat completions
as server-sent events, for provider and chat tests.

It speaks plain HTTP/1.1 over asyncio streams so it can see exactly when a client closes its
connection mid-stream. The `model` of a request picks the behaviour:

  fast       5 deltas at once, usage, [DONE]
  (a streamed answer closes its connection afterwards; errors keep it alive)
  slow       40 deltas `w0 `, `w1 `, ... one every `slow_interval_s`, usage, [DONE]
  nousage    2 deltas, no usage chunk
  auth       401 {"error": {"message": "Incorrect API key provided"}}
  ratelimit  429 with Retry-After: 7
  stall      200 headers, then silence for 10 s
  broken     500
  garbage    a data line that is not JSON
  inband     an {"error": ...} chunk after one delta
  tools      one text delta, then two tool calls streamed OpenAI-style (`delta.tool_calls`:
             id and name first, the arguments split over several chunks, interleaved by
             index), finish_reason `tool_calls`, usage, [DONE]

`GET /models` lists the models. With `keys` set (BYOK tests), every request must carry
`Authorization: Bearer <one of them>`, else 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

SLOW_DELTAS = 40
FAST_TEXT = ["Hello", " from", " the", " fake", " model."]
# what the `tools` model calls, as the client must see them once joined
TOOL_CALLS = [
    ("call_w1", "get_weather", '{"city": "Paris", "unit": "c"}'),
    ("call_t2", "get_time", '{"zone": "Europe/Paris"}'),
]


def _tool_part(index: int, **kw: Any) -> str:
    part: dict[str, Any] = {"index": index}
    if "id" in kw:
        part |= {"id": kw["id"], "type": "function"}
    part["function"] = {k: kw[k] for k in ("name", "arguments") if k in kw}
    return json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [part]}}]})


TOOL_CHUNKS = [
    _tool_part(0, id="call_w1", name="get_weather", arguments=""),
    _tool_part(0, arguments='{"city": '),
    _tool_part(1, id="call_t2", name="get_time", arguments='{"zone": '),
    _tool_part(0, arguments='"Paris", "unit": "c"}'),
    _tool_part(1, arguments='"Europe/Paris"}'),
    json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
]


@dataclass
class Seen:
    """One request the server received, and what became of its connection."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    chunks_sent: int = 0
    closed_at: float | None = None  # when the client closed the connection mid-stream
    finished: bool = False


class FakeLLM:
    def __init__(self, slow_interval_s: float = 0.1) -> None:
        self.slow_interval_s = slow_interval_s
        self.seen: list[Seen] = []
        self.keys: set[str] | None = None  # accepted bearer keys; None = any (or none)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> FakeLLM:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def last(self, model: str) -> Seen:
        return next(s for s in reversed(self.seen) if s.body.get("model") == model)

    # -- HTTP ---------------------------------------------------------------------------------
    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: several requests per connection
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                _, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)
                }
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(path, headers, json.loads(raw) if raw else {})
                self.seen.append(seen)
                if not await self._respond(seen, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    @staticmethod
    async def _plain(writer: asyncio.StreamWriter, status: str, body: Any, **extra: str) -> None:
        data = json.dumps(body).encode()
        hdrs = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in extra.items())
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{hdrs}\r\n".encode()
            + data
        )
        await writer.drain()

    async def _respond(
        self, seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection is done."""
        model = seen.body.get("model", "")
        if self.keys is not None:
            auth = seen.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.keys:
                await self._plain(
                    writer, "401 Unauthorized", {"error": {"message": "Incorrect API key provided"}}
                )
                return True
        if seen.path.endswith("/models"):
            models = [{"id": m, "object": "model"} for m in ("fast", "slow")]
            await self._plain(writer, "200 OK", {"object": "list", "data": models})
            return True
        if not seen.path.endswith("/chat/completions"):
            await self._plain(writer, "404 Not Found", {"error": {"message": "no such route"}})
            return True
        if model == "auth":
            await self._plain(
                writer, "401 Unauthorized", {"error": {"message": "Incorrect API key provided"}}
            )
            return True
        if model == "ratelimit":
            await self._plain(
                writer,
                "429 Too Many Requests",
                {"error": {"message": "Rate limit reached"}},
                Retry_After="7",
            )
            return True
        if model == "broken":
            await self._plain(writer, "500 Internal Server Error", {"error": "model crashed"})
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        watcher = asyncio.ensure_future(reader.read(1))  # b"" = the client closed
        try:
            for event in self._script(model):
                if isinstance(event, float):
                    await asyncio.wait({watcher}, timeout=event)
                    if watcher.done():
                        seen.closed_at = time.monotonic()
                        return False
                    continue
                chunk = f"data: {event}\n\n".encode()
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await writer.drain()
                seen.chunks_sent += 1
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            seen.finished = True
            return False  # a stream ends its connection: the watcher may have read past it
        except ConnectionError:
            seen.closed_at = time.monotonic()
            return False
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await watcher

    def _script(self, model: str) -> list[str | float]:
        """SSE data payloads (str) and pauses (float seconds)."""

        def delta(text: str) -> str:
            return json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})

        usage = json.dumps({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5}})
        role = json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        if model == "slow":
            out: list[str | float] = [role]
            for i in range(SLOW_DELTAS):
                out += [delta(f"w{i} "), self.slow_interval_s]
            return [*out, usage, "[DONE]"]
        if model == "stall":
            return [10.0]
        if model == "nousage":
            return [delta("two"), delta(" words"), "[DONE]"]
        if model == "garbage":
            return [delta("ok"), "{not json", "[DONE]"]
        if model == "tools":
            return [role, delta("Let me check."), *TOOL_CHUNKS, usage, "[DONE]"]
        if model == "inband":
            return [delta("partial"), json.dumps({"error": {"message": "upstream overloaded"}})]
        return [role, *(delta(t) for t in FAST_TEXT), usage, "[DONE]"]
