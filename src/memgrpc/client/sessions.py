"""`client.sessions` and `client.jobs`: conversations, their messages and their processing.

`client.sessions.create(...)` / `get(id)` return a Session handle; `from_id(id)` makes one
without a network call. A handle is a read-only mapping of the session's last known fields
(`session["title"]`, `session.data` for the plain dict) with methods that act on the session:
add_message(s), messages, context, chat, process, refresh, update, delete, link_memory.

The per-turn loop (Sonzai sessions.start / turn / status / end), for apps that run their own
LLM: `s = client.sessions.start(user_id=..., agent_id=...)`, then per turn
`s.turn([{"role": "user", ...}, {"role": "assistant", ...}])` (stores them, moves the agent's
mood, extracts facts in the background and returns the next context), `s.turn_status()` (the
last turn's extraction job; `status` stays the session's status) and, at the end,
`s.end(total_messages=..., duration_seconds=..., wait=True)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from typing import Any, Literal, overload

from google.protobuf import empty_pb2

from memgrpc.client import _convert as cv
from memgrpc.client import chat as chat_mod
from memgrpc.client import context as context_mod
from memgrpc.client._channel import Unary, method_path, new_request_id
from memgrpc.client._transport import AsyncCaller, Caller
from memgrpc.client.errors import invalid_argument
from memgrpc.v1 import memory_pb2
from memgrpc.v1 import sessions_pb2 as pb

_SERVICE = pb.DESCRIPTOR.services_by_name["SessionService"]
_SESSION = pb.Session.DESCRIPTOR

Params = Mapping[str, Any] | None
Messages = Sequence[Mapping[str, Any]] | Mapping[str, Any]


def _path(name: str) -> str:
    return method_path(_SERVICE, name)


def _none(_: empty_pb2.Empty) -> None:
    return None


def _messages_request(
    session_id: str, messages: Messages, request_id: str | None
) -> pb.AddMessagesRequest:
    """A list of message dicts, or GUMem's `{"messages": [...]}`."""
    if isinstance(messages, Mapping):
        extra = set(messages) - {"messages", "request_id"}
        if extra:
            raise invalid_argument("add_messages", f"unknown keys {sorted(extra)}")
        request_id = request_id or messages.get("request_id")
        messages = messages.get("messages") or []
    if isinstance(messages, str):
        raise invalid_argument("messages", "expected a list of message dicts", wrong_type=True)
    request = pb.AddMessagesRequest(
        session_id=session_id, request_id=request_id or new_request_id()
    )
    for i, message in enumerate(messages):
        cv.fill(request.messages.add(), message, f"messages[{i}]")
    return request


class Calls:
    @staticmethod
    def create(data: dict[str, Any]) -> Unary[pb.Session, dict[str, Any]]:
        rid = cv.pop_request_id(data) or new_request_id()
        request = pb.CreateSessionRequest(
            session=cv.build(pb.Session, data, "session"), request_id=rid
        )
        return Unary(_path("CreateSession"), request, pb.Session, cv.to_dict, rid)

    @staticmethod
    def get(session_id: str) -> Unary[pb.Session, dict[str, Any]]:
        return Unary(
            _path("GetSession"), pb.GetSessionRequest(id=session_id), pb.Session, cv.to_dict
        )

    @staticmethod
    def update(
        session_id: str,
        data: dict[str, Any],
        update_mask: Sequence[str] | str | None,
        request_id: str | None,
    ) -> Unary[pb.Session, dict[str, Any]]:
        rid = request_id or new_request_id()
        fields = cv.canonical(_SESSION, data, "session")
        if fields.pop("id", session_id) != session_id:
            raise invalid_argument("session.id", "differs from the session id argument")
        session = cv.build(pb.Session, fields, "session")
        session.id = session_id
        request = pb.UpdateSessionRequest(session=session, request_id=rid)
        cv.set_update_mask(request, fields, update_mask)
        return Unary(_path("UpdateSession"), request, pb.Session, cv.to_dict, rid)

    @staticmethod
    def delete(session_id: str, request_id: str | None) -> Unary[empty_pb2.Empty, None]:
        rid = request_id or new_request_id()
        request = pb.DeleteSessionRequest(id=session_id, request_id=rid)
        return Unary(_path("DeleteSession"), request, empty_pb2.Empty, _none, rid)

    @staticmethod
    def list(data: dict[str, Any]) -> Unary[pb.ListSessionsResponse, dict[str, Any]]:
        request = cv.build(pb.ListSessionsRequest, data, "list")
        return Unary(_path("ListSessions"), request, pb.ListSessionsResponse, cv.to_dict)

    @staticmethod
    def add_messages(
        session_id: str, messages: Messages, request_id: str | None
    ) -> Unary[pb.AddMessagesResponse, dict[str, Any]]:
        request = _messages_request(session_id, messages, request_id)
        return Unary(
            _path("AddMessages"), request, pb.AddMessagesResponse, cv.to_dict, request.request_id
        )

    @staticmethod
    def messages(
        session_id: str, page_size: int | None, page_token: str | None
    ) -> Unary[pb.ListMessagesResponse, dict[str, Any]]:
        request = pb.ListMessagesRequest(
            session_id=session_id, page_size=page_size or 0, page_token=page_token or ""
        )
        return Unary(_path("ListMessages"), request, pb.ListMessagesResponse, cv.to_dict)

    @staticmethod
    def process(
        session_id: str, wait: bool, request_id: str | None, force: bool = False
    ) -> Unary[pb.Job, dict[str, Any]]:
        rid = request_id or new_request_id()
        request = pb.ProcessSessionRequest(
            session_id=session_id, wait=wait, request_id=rid, force=force
        )
        return Unary(_path("ProcessSession"), request, pb.Job, cv.to_dict, rid)

    @staticmethod
    def submit_turn(
        session_id: str, messages: Messages, options: dict[str, Any]
    ) -> Unary[pb.SubmitTurnResponse, dict[str, Any]]:
        rid = cv.pop_request_id(options) or new_request_id()
        fetch = options.get("fetch_next_context")
        if isinstance(fetch, Mapping):  # Sonzai: fetch_next_context={"query": ...}
            extra = set(fetch) - {"query", "token_budget"}
            if extra:
                raise invalid_argument("fetch_next_context", f"unknown keys {sorted(extra)}")
            options = {**options, "fetch_next_context": True}
            if "query" in fetch:
                options["next_context_query"] = fetch["query"]
            if "token_budget" in fetch:
                options["token_budget"] = fetch["token_budget"]
        built = _messages_request(session_id, messages, rid)
        request = cv.build(pb.SubmitTurnRequest, options, "turn")
        request.session_id, request.request_id = session_id, rid
        request.messages.extend(built.messages)
        return Unary(_path("SubmitTurn"), request, pb.SubmitTurnResponse, cv.to_dict, rid)

    @staticmethod
    def end(
        session_id: str, options: dict[str, Any]
    ) -> Unary[pb.EndSessionResponse, dict[str, Any]]:
        rid = cv.pop_request_id(options) or new_request_id()
        if "duration_seconds" in options:  # Sonzai's name
            options = {**options}
            options["duration"] = options.pop("duration_seconds")
        request = cv.build(pb.EndSessionRequest, options, "end")
        request.session_id, request.request_id = session_id, rid
        return Unary(_path("EndSession"), request, pb.EndSessionResponse, cv.to_dict, rid)

    @staticmethod
    def get_job(job_id: str) -> Unary[pb.Job, dict[str, Any]]:
        return Unary(_path("GetJob"), pb.GetJobRequest(id=job_id), pb.Job, cv.to_dict)

    @staticmethod
    def link_memory(session_id: str, memory_id: str) -> Unary[memory_pb2.Memory, dict[str, Any]]:
        request = pb.LinkMemoryRequest(session_id=session_id, memory_id=memory_id)
        return Unary(_path("LinkMemory"), request, memory_pb2.Memory, cv.to_dict)


def _context_params(
    session_id: str, user_id: str | None, query: str | None, options: Mapping[str, Any]
) -> dict[str, Any]:
    data = cv.params({"session_id": session_id, "query": query}, options, "context")
    data.setdefault("user_id", user_id)
    return data


class _SessionData(Mapping[str, Any]):
    """The mapping half of a handle: the session's last known fields."""

    def __init__(self, session_id: str, data: Mapping[str, Any] | None = None) -> None:
        if not session_id:
            raise invalid_argument("session_id", "a session id is required")
        self._data: dict[str, Any] = dict(data) if data else {"id": session_id}
        self._last_job = ""  # the last turn's extraction job (status())

    @property
    def id(self) -> str:
        value: str = self._data["id"]
        return value

    @property
    def data(self) -> dict[str, Any]:
        """The session as a plain dict (only `id` for a handle from `from_id` until refresh)."""
        return dict(self._data)

    @property
    def user_id(self) -> str | None:
        value: str | None = self._data.get("user_id")
        return value

    @property
    def title(self) -> str | None:
        value: str | None = self._data.get("title")
        return value

    @property
    def status(self) -> str | None:
        value: str | None = self._data.get("status")
        return value

    @property
    def metadata(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._data.get("metadata")
        return value

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, status={self.status!r})"

    def _set(self, data: dict[str, Any]) -> None:
        self._data = data


class Session(_SessionData):
    """A session handle of the sync client."""

    def __init__(
        self, caller: Caller, session_id: str, data: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(session_id, data)
        self._c = caller

    def refresh(self) -> Session:
        """Fetch the session's current fields (status, message_count, ...)."""
        self._set(self._c.unary(Calls.get(self.id)))
        return self

    def update(
        self,
        changes: Params = None,
        /,
        *,
        update_mask: Sequence[str] | str | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> Session:
        """Change title, metadata, auto_process_after (only the keys given)."""
        data = cv.params(changes, fields, "session")
        self._set(self._c.unary(Calls.update(self.id, data, update_mask, request_id)))
        return self

    def delete(self, *, request_id: str | None = None) -> None:
        """Delete the session, its messages and the memories made from them."""
        self._c.unary(Calls.delete(self.id, request_id))

    def add_message(
        self, message: Params = None, /, *, request_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Store one message (`role`, `content`, `name`, `metadata`, `create_time`, `id`);
        returns it as stored (with its `memory_id`)."""
        one = cv.params(message, fields, "message")
        reply = self._c.unary(Calls.add_messages(self.id, [one], request_id))
        stored: dict[str, Any] = reply["messages"][0]
        return stored

    def add_messages(
        self, messages: Messages, /, *, request_id: str | None = None
    ) -> dict[str, Any]:
        """Store messages (a list, or `{"messages": [...]}`); returns `{"messages": [...]}`."""
        return self._c.unary(Calls.add_messages(self.id, messages, request_id))

    def messages(
        self, *, page_size: int | None = None, page_token: str | None = None
    ) -> dict[str, Any]:
        """`{"messages": [...], "next_page_token", "total_size"}`, oldest first."""
        return self._c.unary(Calls.messages(self.id, page_size, page_token))

    def context(self, query: str | None = None, **options: Any) -> dict[str, Any]:
        """client.context.get for this session (and its user): strategy, min_top_k, max_top_k,
        memory_threshold, last_n_messages, token_budget, timezone, ..."""
        if "user_id" not in options and self.user_id is None:
            self.refresh()  # a handle from from_id learns its user once
        data = _context_params(self.id, self.user_id, query, options)
        return self._c.unary(context_mod.Calls.get(data))

    @overload
    def chat(
        self, message: str, *, stream: Literal[True] = ..., **options: Any
    ) -> Iterator[chat_mod.Event]: ...
    @overload
    def chat(self, message: str, *, stream: Literal[False], **options: Any) -> dict[str, Any]: ...
    def chat(
        self, message: str, *, stream: bool = True, **options: Any
    ) -> Iterator[chat_mod.Event] | dict[str, Any]:
        """A chat turn in this session: events as they happen (stream=True), else the whole
        reply `{"response": "...", "assistant_message_id": ..., ...}`."""
        request = chat_mod.chat_request(message, {**options, "session_id": self.id})
        if stream:
            return chat_mod.stream_events(self._c, request)
        return chat_mod.collect(self._c, request)

    def process(
        self, *, wait: bool = True, force: bool = False, request_id: str | None = None
    ) -> dict[str, Any]:
        """Summarise the session and extract facts from it (it becomes 'processed'); returns
        the job (`state` 'done' when wait=True, else poll `client.jobs.get(job["id"])`), with
        `stats`. `force=True` processes a processed session again (adds no duplicates)."""
        return self._c.unary(Calls.process(self.id, wait, request_id, force))

    def link_memory(self, memory_id: str) -> dict[str, Any]:
        """Attach an existing memory to this session; returns the memory."""
        return self._c.unary(Calls.link_memory(self.id, memory_id))

    def turn(
        self, messages: Messages, /, *, fetch_next_context: Any = True, **options: Any
    ) -> dict[str, Any]:
        """One turn of the loop: store `messages` (the user's and the agent's), move the
        agent's mood, extract facts in the background; returns `{"messages", "mood",
        "extraction_job_id", "next_context": {"context", "memories", "token_count"}}`.
        Options: next_context_query, token_budget, request_id."""
        options["fetch_next_context"] = fetch_next_context
        reply = self._c.unary(Calls.submit_turn(self.id, messages, options))
        self._last_job = reply.get("extraction_job_id") or self._last_job
        return reply

    def turn_status(self, job_id: str | None = None) -> dict[str, Any] | None:
        """A turn's extraction job (Sonzai session.status): `job_id`, or this handle's last
        turn's; `state` queued, running, done or failed, with `stats`. None when there is
        none (no turn yet, or extraction off)."""
        job_id = job_id or self._last_job
        return self._c.unary(Calls.get_job(job_id)) if job_id else None

    def end(self, **options: Any) -> dict[str, Any]:
        """End the session: `total_messages`, `duration` or `duration_seconds`, `wait`,
        `request_id`; returns `{"session", "job"}` (ending twice returns the same job)."""
        reply: dict[str, Any] = self._c.unary(Calls.end(self.id, options))
        self._set(reply["session"])
        return reply


class AsyncSession(_SessionData):
    """A session handle of the async client."""

    def __init__(
        self, caller: AsyncCaller, session_id: str, data: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(session_id, data)
        self._c = caller

    async def refresh(self) -> AsyncSession:
        self._set(await self._c.unary(Calls.get(self.id)))
        return self

    async def update(
        self,
        changes: Params = None,
        /,
        *,
        update_mask: Sequence[str] | str | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> AsyncSession:
        data = cv.params(changes, fields, "session")
        self._set(await self._c.unary(Calls.update(self.id, data, update_mask, request_id)))
        return self

    async def delete(self, *, request_id: str | None = None) -> None:
        await self._c.unary(Calls.delete(self.id, request_id))

    async def add_message(
        self, message: Params = None, /, *, request_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        one = cv.params(message, fields, "message")
        reply = await self._c.unary(Calls.add_messages(self.id, [one], request_id))
        stored: dict[str, Any] = reply["messages"][0]
        return stored

    async def add_messages(
        self, messages: Messages, /, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.add_messages(self.id, messages, request_id))

    async def messages(
        self, *, page_size: int | None = None, page_token: str | None = None
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.messages(self.id, page_size, page_token))

    async def context(self, query: str | None = None, **options: Any) -> dict[str, Any]:
        if "user_id" not in options and self.user_id is None:
            await self.refresh()
        data = _context_params(self.id, self.user_id, query, options)
        return await self._c.unary(context_mod.Calls.get(data))

    @overload
    def chat(
        self, message: str, *, stream: Literal[True] = ..., **options: Any
    ) -> AsyncIterator[chat_mod.Event]: ...
    @overload
    def chat(
        self, message: str, *, stream: Literal[False], **options: Any
    ) -> Awaitable[dict[str, Any]]: ...
    def chat(
        self, message: str, *, stream: bool = True, **options: Any
    ) -> AsyncIterator[chat_mod.Event] | Awaitable[dict[str, Any]]:
        """`async for ev in session.chat("hi")`, or `await session.chat("hi", stream=False)`."""
        request = chat_mod.chat_request(message, {**options, "session_id": self.id})
        if stream:
            return chat_mod.astream_events(self._c, request)
        return chat_mod.acollect(self._c, request)

    async def process(
        self, *, wait: bool = True, force: bool = False, request_id: str | None = None
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.process(self.id, wait, request_id, force))

    async def link_memory(self, memory_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.link_memory(self.id, memory_id))

    async def turn(
        self, messages: Messages, /, *, fetch_next_context: Any = True, **options: Any
    ) -> dict[str, Any]:
        options["fetch_next_context"] = fetch_next_context
        reply = await self._c.unary(Calls.submit_turn(self.id, messages, options))
        self._last_job = reply.get("extraction_job_id") or self._last_job
        return reply

    async def turn_status(self, job_id: str | None = None) -> dict[str, Any] | None:
        job_id = job_id or self._last_job
        if not job_id:
            return None
        return await self._c.unary(Calls.get_job(job_id))

    async def end(self, **options: Any) -> dict[str, Any]:
        reply: dict[str, Any] = await self._c.unary(Calls.end(self.id, options))
        self._set(reply["session"])
        return reply


class SessionsResource:
    """`client.sessions`."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def create(self, session: Params = None, /, **fields: Any) -> Session:
        """`create(user_id="user_123", title="Support chat", metadata={...},
        auto_process_after=1800)` -> a Session handle (the user is created if new)."""
        data = self._c.unary(Calls.create(cv.params(session, fields, "session")))
        return Session(self._c, data["id"], data)

    def start(self, session: Params = None, /, **fields: Any) -> Session:
        """Sonzai sessions.start: `start(user_id=..., agent_id=..., instance_id=...,
        provider=..., model=...)` -> a Session handle for turn() / status() / end()."""
        return self.create(session, **fields)

    def from_id(self, session_id: str) -> Session:
        """A handle for an existing session; no network call."""
        return Session(self._c, session_id)

    def get(self, session_id: str) -> Session:
        data = self._c.unary(Calls.get(session_id))
        return Session(self._c, data["id"], data)

    def update(
        self,
        session_id: str,
        changes: Params = None,
        /,
        *,
        update_mask: Sequence[str] | str | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> Session:
        return self.from_id(session_id).update(
            changes, update_mask=update_mask, request_id=request_id, **fields
        )

    def delete(self, session_id: str, *, request_id: str | None = None) -> None:
        self._c.unary(Calls.delete(session_id, request_id))

    def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        """`{"sessions": [...], "next_page_token", "total_size"}`; user_id, metadata_filter,
        user_metadata_filter, statuses ('active', 'processed', ...), page_size, page_token."""
        return self._c.unary(Calls.list(cv.params(params, fields, "list")))

    def add_messages(
        self, session_id: str, messages: Messages, /, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return self._c.unary(Calls.add_messages(session_id, messages, request_id))

    def messages(
        self, session_id: str, *, page_size: int | None = None, page_token: str | None = None
    ) -> dict[str, Any]:
        return self._c.unary(Calls.messages(session_id, page_size, page_token))

    def process(
        self,
        session_id: str,
        *,
        wait: bool = True,
        force: bool = False,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        return self._c.unary(Calls.process(session_id, wait, request_id, force))

    def link_memory(self, session_id: str, memory_id: str) -> dict[str, Any]:
        return self._c.unary(Calls.link_memory(session_id, memory_id))


class AsyncSessionsResource:
    """`client.sessions` of the async client."""

    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    async def create(self, session: Params = None, /, **fields: Any) -> AsyncSession:
        data = await self._c.unary(Calls.create(cv.params(session, fields, "session")))
        return AsyncSession(self._c, data["id"], data)

    async def start(self, session: Params = None, /, **fields: Any) -> AsyncSession:
        return await self.create(session, **fields)

    def from_id(self, session_id: str) -> AsyncSession:
        """A handle for an existing session; no network call (and no await)."""
        return AsyncSession(self._c, session_id)

    async def get(self, session_id: str) -> AsyncSession:
        data = await self._c.unary(Calls.get(session_id))
        return AsyncSession(self._c, data["id"], data)

    async def update(
        self,
        session_id: str,
        changes: Params = None,
        /,
        *,
        update_mask: Sequence[str] | str | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> AsyncSession:
        return await self.from_id(session_id).update(
            changes, update_mask=update_mask, request_id=request_id, **fields
        )

    async def delete(self, session_id: str, *, request_id: str | None = None) -> None:
        await self._c.unary(Calls.delete(session_id, request_id))

    async def list(self, params: Params = None, /, **fields: Any) -> dict[str, Any]:
        return await self._c.unary(Calls.list(cv.params(params, fields, "list")))

    async def add_messages(
        self, session_id: str, messages: Messages, /, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.add_messages(session_id, messages, request_id))

    async def messages(
        self, session_id: str, *, page_size: int | None = None, page_token: str | None = None
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.messages(session_id, page_size, page_token))

    async def process(
        self,
        session_id: str,
        *,
        wait: bool = True,
        force: bool = False,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        return await self._c.unary(Calls.process(session_id, wait, request_id, force))

    async def link_memory(self, session_id: str, memory_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.link_memory(session_id, memory_id))


class JobsResource:
    """`client.jobs`: the processing jobs of sessions."""

    def __init__(self, caller: Caller) -> None:
        self._c = caller

    def get(self, job_id: str) -> dict[str, Any]:
        """`{"id", "session_id", "state": "queued"|"running"|"done"|"failed", "error", ...}`."""
        return self._c.unary(Calls.get_job(job_id))


class AsyncJobsResource:
    def __init__(self, caller: AsyncCaller) -> None:
        self._c = caller

    async def get(self, job_id: str) -> dict[str, Any]:
        return await self._c.unary(Calls.get_job(job_id))
