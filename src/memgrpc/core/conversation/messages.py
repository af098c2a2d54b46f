"""Messages of a session: each is stored and, in the same call, indexed as a memory.

Write order makes a crash harmless: the messages and their memories (one embedding batch, one
commit) are committed side by side, then the session's counters (written behind, see
core/conversation/session_store.py). A crash before the counters
leaves memories without messages or messages past `message_count` without their memory; the
next write to the session deletes the first and indexes the second (`_heal`). Readers of
messages never need the memory.

The session's last messages are cached while only this process writes them (a chat turn reads
them as its history; see core/kernel/rowcache.py).

The next `seq` of a session is cached per process and trusted only while it equals the stored
message_count, so a write costs no count query, and a crash, a failed write or another
replica's write is noticed and healed. (Concurrent writes to one session from several replicas
are not serialised: their seqs may tie; order then falls back to message id.)
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import structlog

from memgrpc.core.conversation.records import (
    DEFAULT_ROLE,
    Message,
    Session,
    due_time,
    message_from_row,
    message_row,
)
from memgrpc.core.conversation.session_store import SessionStore, session_key
from memgrpc.core.kernel import paging, validation
from memgrpc.core.kernel.errors import AlreadyExists, FailedPrecondition, Violations
from memgrpc.core.kernel.ids import new_id
from memgrpc.core.kernel.paging import Cursor, Page, PageRequest
from memgrpc.core.kernel.rowcache import OwnWritesCache
from memgrpc.core.memory.model import Memory
from memgrpc.core.memory.service import MemoryService, embed_text
from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.memories import scope_alternatives
from memgrpc.store.tables import Row, Table, chunks

log = structlog.get_logger(__name__)

MAX_MESSAGES = 1000
# sessions whose next seq this process remembers (each entry saves a count per write)
_SEQ_CACHE = 10_000
DEFAULT_RECENT = 10
TAIL = 32  # the last messages of a session kept by the tail cache
MAX_RECENT = 100
_CLOSED = {"processing": "SESSION_PROCESSING", "processed": "SESSION_PROCESSED"}
# told about the messages stored in a session that talks to an agent (the context engine's
# TurnHook.observe_turn); it must be idempotent per message
TurnObserver = Callable[[str, Session, Sequence[Message]], Awaitable[object]]
# added to "now" for messages stored without a time in this context: a simulation dates each
# session's messages (chat turns included, whose tasks copy the context) on its own clock
TIME_SHIFT: contextvars.ContextVar[timedelta] = contextvars.ContextVar(
    "message_time_shift", default=timedelta(0)
)


@dataclass(frozen=True)
class Tail:
    """Every message of one session from position `start` on, in order."""

    user_id: str
    start: int
    messages: tuple[Message, ...]

    def extended(self, more: Sequence[Message]) -> Tail:
        known = {m.id for m in self.messages}  # idempotent: `more` may be loaded already
        kept = (*self.messages, *(m for m in more if m.id not in known))[-TAIL:]
        user_id = self.user_id or (kept[-1].user_id if kept else "")
        return Tail(user_id, kept[0].seq if kept else self.start, kept)


class AddHooks:
    """A caller's part in one `MessageService.add`, between its steps; this base takes none.

    A caller that acts on the commit of the message rows, or holds their memories back, passes
    a subclass overriding what it needs.
    """

    # the ids were minted by `new_id` for this write (unique by construction): no clash lookup
    fresh_ids: bool = False

    def committed(self, messages: Sequence[Message]) -> None:
        """The message rows are committed; their memories and the session's counters may still
        be in flight (what a crash leaves undone, `_heal` completes)."""

    async def before_indexing(self) -> None:
        """Awaited before the memories are committed (say, until other work of the caller that
        their commit would slow is done); raising fails the add after the messages' commit."""


NO_HOOKS = AddHooks()


def check_message(v: Violations, m: Message, prefix: str) -> None:
    validation.check_id(v, f"{prefix}.id", m.id, required=False)
    validation.check_content(v, f"{prefix}.content", m.content)
    validation.check_id(v, f"{prefix}.role", m.role, required=False)
    validation.check_id(v, f"{prefix}.name", m.name, required=False)
    validation.check_metadata(v, f"{prefix}.metadata", m.metadata)


class MessageService:
    def __init__(self, store: Store, memories: MemoryService, sessions: SessionStore) -> None:
        self._msgs = Table(store, "messages")
        self._mems = Table(store, "memories")
        self._memories = memories
        self._sessions = sessions
        # session key -> next seq; trusted only while it equals the row's message_count
        self._next_seq: OrderedDict[str, int] = OrderedDict()
        self._tails: OwnWritesCache[Tail] = OwnWritesCache(
            self._msgs, store.config.read_consistency_s
        )
        # every path that stores messages (AddMessages, chat turns, SubmitTurn) comes through
        # `add`, so observing here moves an agent's mood exactly once per message
        self.observers: builtins.list[TurnObserver] = []

    @staticmethod
    def _in_session(project_id: str, session_id: str) -> Where:
        return Where().eq("project_id", project_id).eq("session_id", session_id)

    # -- add ----------------------------------------------------------------------------------
    def _prepare(self, v: Violations, messages: Sequence[Message]) -> builtins.list[Message]:
        if not messages:
            v.add("messages", "must not be empty")
        elif len(messages) > MAX_MESSAGES:
            v.add("messages", f"at most {MAX_MESSAGES} messages per call")
        first_of: dict[str, int] = {}
        for i, m in enumerate(messages):
            check_message(v, m, f"messages[{i}]")
            if m.id and m.id in first_of:
                v.add(f"messages[{i}].id", f"duplicates messages[{first_of[m.id]}].id")
            first_of.setdefault(m.id, i)
        v.raise_if_any()
        now = datetime.now(UTC) + TIME_SHIFT.get()
        return [
            replace(
                m,
                id=m.id or new_id("msg"),
                role=m.role or DEFAULT_ROLE,
                create_time=m.create_time or now,
            )
            for m in messages
        ]

    async def add(
        self,
        project_id: str,
        session_id: str,
        messages: Sequence[Message],
        *,
        hooks: AddHooks = NO_HOOKS,
        index: bool = True,
    ) -> builtins.list[Message]:
        """Store the messages in order and index each as a MESSAGE memory; all or nothing
        (`hooks`: the caller's part in it).

        `index=False` stores them without a memory (not searchable; their `memory_id` stays
        empty): for text that holds nothing to recall, like the built-in responder's replies.
        """
        v = Violations()
        validation.check_id(v, "session_id", session_id, required=True)
        ready = self._prepare(v, messages)
        client_ids = [] if hooks.fresh_ids else [m.id for m in messages if m.id]
        key = session_key(project_id, session_id)
        async with self._sessions.locks.hold(key):
            s = await self._sessions.require(project_id, session_id, "session_id")
            if s.status in _CLOSED:
                raise FailedPrecondition(
                    f"session {session_id} is {s.status}: it takes no more messages",
                    reason=_CLOSED[s.status],
                    metadata={"session_id": session_id, "status": s.status},
                )
            base = self._next_seq.get(key)
            if base is None or base != s.message_count:
                base = await self._heal(project_id, session_id, s.message_count)
            # an empty session holds no ids yet: no query needed
            taken = await self._taken(project_id, session_id, client_ids) if base else set()
            if taken:
                i = next(i for i, m in enumerate(ready) if m.id in taken)
                raise AlreadyExists(
                    f"messages[{i}].id: message {ready[i].id} already exists in the session",
                    reason="MESSAGE_ALREADY_EXISTS",
                    metadata={"field": f"messages[{i}].id", "id": ready[i].id},
                )
            ready = [
                replace(
                    m,
                    session_id=s.id,
                    user_id=s.user_id,
                    agent_id=s.agent_id,
                    instance_id=s.instance_id,
                    seq=base + i,
                )
                for i, m in enumerate(ready)
            ]
            try:
                await self._write(project_id, s, ready, hooks, index)
            except BaseException:
                self._next_seq.pop(key, None)  # the next call re-counts and heals
                raise
            self._remember(key, base + len(ready))
        if s.agent_id and any(m.role == DEFAULT_ROLE for m in ready):
            await self._observe(project_id, s, ready)
        return ready

    async def _observe(self, project_id: str, s: Session, ready: Sequence[Message]) -> None:
        """After the commit and outside the session's lock; a failing observer is logged, never
        fails the add (the messages are stored)."""
        for observe in self.observers:
            try:
                await observe(project_id, s, ready)
            except Exception as exc:
                log.warning("turn_observer_failed", session_id=s.id, error=str(exc))

    async def _write(
        self,
        project_id: str,
        s: Session,
        ready: builtins.list[Message],
        hooks: AddHooks,
        index: bool,
    ) -> None:
        # validated and given ids up front: the messages row names its memory
        made = (
            self._memories.prepare_many([_as_memory(m) for m in ready], prefix="messages")
            if index
            else []
        )
        for m, mem in zip(ready if made else [], made, strict=True):
            m.memory_id = mem.id
        now = datetime.now(UTC)
        counters = {
            "id": s.id,
            "message_count": ready[-1].seq + 1,
            "active_time": now,
            "auto_process_at": due_time(now, s.auto_process_after),
            "update_time": now,
        }

        async def store_messages() -> None:
            key = session_key(project_id, s.id)
            async with self._tails.writing(key) as settle:
                await self._msgs.writer.insert([message_row(project_id, m) for m in ready])
                tail = self._tails.peek(key)
                settle(tail.extended(ready) if tail is not None else None)
            hooks.committed(ready)

        async def store_memories() -> None:
            if not made:
                return
            await hooks.before_indexing()
            await self._memories.insert_prepared(project_id, made)

        results = await asyncio.gather(
            store_memories(),
            store_messages(),
            return_exceptions=True,
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r
        # the counters last, written behind: what a crash loses `_heal` repairs
        self._sessions.patch_behind(project_id, counters)

    def created(self, project_id: str, session_id: str) -> None:
        """A session this process just created starts at seq 0 (its first write skips `_heal`)."""
        self._remember(session_key(project_id, session_id), 0)

    def _remember(self, key: str, next_seq: int) -> None:
        self._next_seq[key] = next_seq
        self._next_seq.move_to_end(key)
        while len(self._next_seq) > _SEQ_CACHE:
            self._next_seq.popitem(last=False)

    async def _heal(self, project_id: str, session_id: str, counted: int) -> int:
        """Count the session's messages and repair what a crash or failure between its commits
        left: delete memories of messages that never committed, index messages past `counted`
        (the stored message_count) whose memory never committed. Returns the next seq. Runs on
        the first write to a session in this process, and after any failed or foreign write."""
        found, indexed = await asyncio.gather(
            self._msgs.rows(self._in_session(project_id, session_id), ["id", "seq", "memory_id"]),
            self._mems.rows(
                self._in_session(project_id, session_id).eq("type", "message"),
                ["id", "source_message_ids", "seq"],
            ),
        )
        committed = {r["id"] for r in found}
        # only AddMessages sets a memory's seq: memories made through the memory API are kept
        orphans = [
            r["id"]
            for r in indexed
            if r["seq"] is not None and not committed.intersection(r["source_message_ids"] or [])
        ]
        if orphans:
            log.info("orphan_memories_deleted", session_id=session_id, count=len(orphans))
            await self._memories.delete_many(project_id, orphans)
        # messages already counted keep their memory's fate (a client may have deleted it)
        have = {r["id"] for r in indexed}
        unindexed = {
            r["id"]
            for r in found
            if r["seq"] >= counted and r["memory_id"] and r["memory_id"] not in have
        }
        if unindexed:
            log.info("unindexed_messages_indexed", session_id=session_id, count=len(unindexed))
            await self._index(project_id, session_id, unindexed)
        return len(committed)

    async def _index(self, project_id: str, session_id: str, ids: set[str]) -> None:
        """Make the memories of stored messages, under the ids their rows already name."""
        msgs = [m for m in await self.all_in_session(project_id, session_id) if m.id in ids]
        made = self._memories.prepare_many([_as_memory(m) for m in msgs], prefix="messages")
        await self._memories.insert_prepared(
            project_id,
            [replace(mem, id=m.memory_id) for m, mem in zip(msgs, made, strict=True)],
        )

    async def _taken(self, project_id: str, session_id: str, ids: Sequence[str]) -> set[str]:
        """Which of the client ids already name a message of the session."""
        out: set[str] = set()
        for part in chunks(ids):
            where = self._in_session(project_id, session_id).is_in("id", list(part))
            out |= {r["id"] for r in await self._msgs.rows(where, ["id"])}
        return out

    # -- read ---------------------------------------------------------------------------------
    async def list(self, project_id: str, session_id: str, page: PageRequest) -> Page[Message]:
        """Messages in session order (seq), keyset-paged, with the session's total."""
        v = Violations()
        size = paging.page_size(v, page.size)
        v.raise_if_any()
        await self._sessions.require(project_id, session_id, "session_id")
        where = self._in_session(project_id, session_id)

        async def read(after: Cursor[int] | None, limit: int) -> tuple[list[Row], int]:
            return await asyncio.gather(
                self._msgs.page(where, "seq", "id", desc=False, after=after, limit=limit),
                self._msgs.count(where),
            )

        fp = paging.fingerprint(project_id, session_id, "messages")
        return await paging.fetch(
            size, page.token, fp, read, order=("seq", "id"), kind=int, item=message_from_row
        )

    async def recent(
        self, project_id: str, user_id: str, n: int, *, agent_id: str = "", instance_id: str = ""
    ) -> builtins.list[Message]:
        """The last `n` messages of the user across sessions, newest last; with `agent_id`, only
        those of sessions with that agent (instance, or its default state) or with no agent."""
        where = Where().eq("project_id", project_id).eq("user_id", user_id)
        scope = scope_alternatives(agent_id, instance_id)
        if scope is not None:
            where.either(*scope)
        order = [("create_time", True), ("seq", True), ("pk", True)]
        pks = await self._msgs.sorted_keys(where, order, "pk", n)
        found = await self._msgs.by_keys(where, "pk", pks)
        return [message_from_row(r) for r in reversed(found)]

    async def since(self, project_id: str, session_id: str, seq: int) -> builtins.list[Message]:
        """The session's messages from position `seq` on, in order: one bounded read of its tail
        (none while the cached tail is current and reaches back to `seq`)."""
        key = session_key(project_id, session_id)
        cached = self._tails.peek(key)
        if cached is not None and cached.start > seq:  # it does not reach back that far
            self._tails.drop(key)

        async def load() -> Tail:
            where = self._in_session(project_id, session_id).cmp("seq", ">=", seq)
            found = sorted(
                (message_from_row(r) for r in await self._msgs.rows(where)),
                key=lambda m: (m.seq, m.id),
            )
            user_id = found[0].user_id if found else ""
            return Tail(user_id, found[0].seq if found else seq, tuple(found))

        tail = await self._tails.get(key, load)
        assert tail is not None  # load() always returns one
        return [m for m in tail.messages if m.seq >= seq]

    def forget_user(self, project_id: str, user_id: str) -> None:
        """The user's messages were rewritten behind the cache (purge, rename; "" = every
        user's: an agent purge)."""
        self._tails.forget(
            lambda key, tail: (
                key.startswith(f"{project_id}/") and (not user_id or tail.user_id in ("", user_id))
            )
        )

    async def all_in_session(self, project_id: str, session_id: str) -> builtins.list[Message]:
        rows = await self._msgs.rows(self._in_session(project_id, session_id))
        return sorted((message_from_row(r) for r in rows), key=lambda m: (m.seq, m.id))

    async def ids_in_session(self, project_id: str, session_id: str) -> set[str]:
        rows = await self._msgs.rows(self._in_session(project_id, session_id), ["id"])
        return {r["id"] for r in rows}

    async def delete_session(self, project_id: str, session_id: str) -> None:
        key = session_key(project_id, session_id)
        self._next_seq.pop(key, None)
        async with self._tails.writing(key) as settle:
            await self._msgs.writer.delete(str(self._in_session(project_id, session_id)))
            settle(None)


def embedded_text(m: Message) -> str:
    """The text a message's memory is embedded from (lets a caller embed it ahead of time)."""
    return embed_text(_as_memory(m))


def _as_memory(m: Message) -> Memory:
    """The MESSAGE memory that makes a message searchable."""
    return Memory(
        user_id=m.user_id,
        session_id=m.session_id,
        content=m.content,
        type="message",
        origin="message",
        metadata=dict(m.metadata),
        source_message_ids=[m.id],
        event_time=m.create_time,
        speaker=m.speaker,
        seq=m.seq,
        agent_id=m.agent_id,
        instance_id=m.instance_id,
    )
