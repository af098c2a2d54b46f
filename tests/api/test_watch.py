"""WatchMemories through the real server: order, resume, a second replica's writes, expiry,
isolation, a stalled watcher, and the kinds extraction and conflicts record."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from memgrpc.embed import Embedder
from memgrpc.server.app import start
from memgrpc.store.changes import ChangeTable
from memgrpc.v1 import memory_pb2 as pb
from memgrpc.v1 import memory_pb2_grpc
from tests.conftest import NewKey, ServerHandle, make_config
from tests.helpers import md
from tests.intelhelpers import Conv, uid
from tests.procs import free_port, start_memgrpc, stop_server, wait_serving

BUFFER = 16
STALL = 1.0
WAIT_S = 15.0  # for one change
HEARTBEAT = pb.MEMORY_CHANGE_KIND_HEARTBEAT


@pytest.fixture(scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, shared_embedder: Embedder
) -> AsyncIterator[ServerHandle]:
    """The module's server, with a small watch buffer and quick heartbeats and polls."""
    data_dir = tmp_path_factory.mktemp("data")
    admin_key = "mgk_test_" + secrets.token_urlsafe(24)
    config = make_config(
        data_dir,
        admin_key,
        watch_buffer=BUFFER,
        watch_heartbeat_s=0.3,
        watch_poll_s=0.1,
        watch_stall_s=STALL,
    )
    running = await start(config, embedder=shared_embedder)
    try:
        yield ServerHandle(running.address, data_dir, admin_key, running.app, running)
    finally:
        await running.stop(1.0)


class Watcher:
    """One WatchMemories stream, read a change at a time."""

    def __init__(
        self,
        stub: memory_pb2_grpc.MemoryServiceStub,
        key: str,
        after: int = 0,
        user: str = "",
        *,
        from_now: bool = False,
    ) -> None:
        req = pb.WatchMemoriesRequest(user_id=user, after_sequence=after, from_now=from_now)
        self.call = stub.WatchMemories(req, metadata=md(key))
        self.heartbeats = 0

    async def next(self) -> pb.MemoryChange:
        """The next change that is not a heartbeat."""
        while True:
            change: pb.MemoryChange = await asyncio.wait_for(self.call.read(), WAIT_S)
            if change.kind != HEARTBEAT:
                return change
            self.heartbeats += 1

    async def take(self, n: int) -> list[pb.MemoryChange]:
        return [await self.next() for _ in range(n)]

    async def quiet(self, heartbeats: int = 2) -> int:
        """Reads until `heartbeats` heartbeats came with no change between; their sequence."""
        seen = 0
        while True:
            change: pb.MemoryChange = await asyncio.wait_for(self.call.read(), 10)
            assert change.kind == HEARTBEAT, f"unexpected change {change}"
            seen += 1
            if seen == heartbeats:
                return change.sequence

    def cancel(self) -> None:
        self.call.cancel()


async def create(stub: memory_pb2_grpc.MemoryServiceStub, key: str, user: str, text: str) -> str:
    m = await stub.CreateMemory(
        pb.CreateMemoryRequest(memory=pb.Memory(user_id=user, content=text)), metadata=md(key)
    )
    return m.id


async def test_a_watcher_sees_create_update_version_delete_in_order(
    memory_stub: memory_pb2_grpc.MemoryServiceStub, new_key: NewKey
) -> None:
    _, key = await new_key()
    w = Watcher(memory_stub, key)
    try:
        mid = await create(memory_stub, key, "alice", "Alice likes tea")
        await memory_stub.UpdateMemory(
            pb.UpdateMemoryRequest(
                memory=pb.Memory(id=mid, tags=["drinks"]),
                update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
            ),
            metadata=md(key),
        )
        await memory_stub.UpdateMemory(
            pb.UpdateMemoryRequest(
                memory=pb.Memory(id=mid, content="Alice likes green tea"),
                update_mask=field_mask_pb2.FieldMask(paths=["content"]),
            ),
            metadata=md(key),
        )
        await memory_stub.DeleteMemory(pb.DeleteMemoryRequest(id=mid), metadata=md(key))
        got = await w.take(4)
    finally:
        w.cancel()
    assert [c.kind for c in got] == [
        pb.MEMORY_CHANGE_KIND_CREATED,
        pb.MEMORY_CHANGE_KIND_UPDATED,
        pb.MEMORY_CHANGE_KIND_VERSIONED,
        pb.MEMORY_CHANGE_KIND_DELETED,
    ]
    assert [c.sequence for c in got] == [1, 2, 3, 4]
    assert {c.memory_id for c in got} == {mid} and {c.user_id for c in got} == {"alice"}
    assert got[0].memory.content == "Alice likes tea" and got[0].memory.version == 1
    assert list(got[1].memory.tags) == ["drinks"]
    assert got[2].memory.content == "Alice likes green tea" and got[2].memory.version == 2
    assert not got[3].HasField("memory")
    assert all(c.time.seconds > 0 for c in got)


async def test_resume_after_k_gets_exactly_the_changes_after_k(
    memory_stub: memory_pb2_grpc.MemoryServiceStub, new_key: NewKey
) -> None:
    _, key = await new_key()
    ids = [await create(memory_stub, key, "bob", f"fact number {i}") for i in range(6)]
    w = Watcher(memory_stub, key, after=2)
    try:
        got = await w.take(4)
        # then nothing more: heartbeats at the last sequence
        assert await w.quiet() == 6
    finally:
        w.cancel()
    assert [c.sequence for c in got] == [3, 4, 5, 6]
    assert [c.memory_id for c in got] == ids[2:]


async def test_a_user_filter_and_heartbeats_carry_the_cursor(
    memory_stub: memory_pb2_grpc.MemoryServiceStub, new_key: NewKey
) -> None:
    _, key = await new_key()
    await create(memory_stub, key, "carol", "carol one")
    await create(memory_stub, key, "dave", "dave one")
    await create(memory_stub, key, "carol", "carol two")
    w = Watcher(memory_stub, key, user="carol")
    try:
        got = await w.take(2)
        assert await w.quiet() == 3  # dave's change is read past, not sent
    finally:
        w.cancel()
    assert [(c.sequence, c.memory.content) for c in got] == [(1, "carol one"), (3, "carol two")]


async def test_a_change_on_a_second_server_process_reaches_a_watcher_on_the_first(
    server: ServerHandle,
    memory_stub: memory_pb2_grpc.MemoryServiceStub,
    new_key: NewKey,
    tmp_path: Path,
) -> None:
    _, key = await new_key()
    w = Watcher(memory_stub, key)
    port = free_port()
    proc = start_memgrpc(str(server.data_dir), port, tmp_path / "replica.log", server.admin_key)
    try:
        await wait_serving(f"127.0.0.1:{port}", proc)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            other = memory_pb2_grpc.MemoryServiceStub(ch)
            remote = await create(other, key, "erin", "written on the second replica")
            got = await w.next()
            assert got.memory_id == remote and got.sequence == 1
            # both replicas writing at once: one sequence each, no duplicate, no gap
            here = [create(memory_stub, key, "erin", f"here {i}") for i in range(8)]
            there = [create(other, key, "erin", f"there {i}") for i in range(8)]
            made = await asyncio.gather(*here, *there)
            got_all = await w.take(16)
    finally:
        w.cancel()
        stop_server(proc)
    assert [c.sequence for c in got_all] == list(range(2, 18))
    assert sorted(c.memory_id for c in got_all) == sorted(made)


async def test_a_cursor_older_than_the_retention_ends_with_out_of_range(
    server: ServerHandle, memory_stub: memory_pb2_grpc.MemoryServiceStub, new_key: NewKey
) -> None:
    _, key = await new_key()
    for i in range(3):
        await create(memory_stub, key, "frank", f"old {i}")
    # what the maintenance does once the retention has passed
    pruned = await ChangeTable(server.app.store).prune(datetime.now(UTC) + timedelta(seconds=1))
    assert pruned >= 3
    w = Watcher(memory_stub, key, after=1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await w.next()
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert _reason(err.value) == "CURSOR_EXPIRED"
    # from the feed's last sequence (from_now), the watch goes on
    w = Watcher(memory_stub, key, after=1, from_now=True)
    try:
        assert await w.quiet(1) == 3
        await create(memory_stub, key, "frank", "new")
        got = await w.next()
    finally:
        w.cancel()
    assert got.sequence == 4 and got.memory.content == "new"


async def test_a_cursor_past_the_feed_is_invalid(
    memory_stub: memory_pb2_grpc.MemoryServiceStub, new_key: NewKey
) -> None:
    _, key = await new_key()
    w = Watcher(memory_stub, key, after=99)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await w.next()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "after_sequence" in (err.value.details() or "")


async def test_a_watcher_never_sees_another_projects_changes(
    memory_stub: memory_pb2_grpc.MemoryServiceStub, new_key: NewKey
) -> None:
    _, key_a = await new_key()
    _, key_b = await new_key()
    w = Watcher(memory_stub, key_a)
    try:
        for i in range(3):
            await create(memory_stub, key_b, "gina", f"project b {i}")
        mine = await create(memory_stub, key_a, "gina", "project a")
        got = await w.next()
        assert await w.quiet() == 1
    finally:
        w.cancel()
    assert (got.sequence, got.memory_id) == (1, mine)


async def test_a_stalled_watcher_neither_slows_writers_nor_grows_and_is_told_to_resume(
    server: ServerHandle, memory_stub: memory_pb2_grpc.MemoryServiceStub, new_key: NewKey
) -> None:
    # the stalled client's own channel: a fixed 64 KiB window, which gRPC would grow otherwise
    async with grpc.aio.insecure_channel(
        server.address, options=[("grpc.http2.bdp_probe", 0)]
    ) as ch:
        await _stalled_watcher(server, memory_stub, memory_pb2_grpc.MemoryServiceStub(ch), new_key)


async def _stalled_watcher(
    server: ServerHandle,
    memory_stub: memory_pb2_grpc.MemoryServiceStub,
    watch_stub: memory_pb2_grpc.MemoryServiceStub,
    new_key: NewKey,
) -> None:
    changes = server.app.memories.changes
    _, key = await new_key()
    big = "x" * 20_000  # a few changes fill gRPC's window: the stream's writes then block

    async def write(n: int, tag: str) -> tuple[int, int]:
        """n writes one after another; the feed's commits and lost races they took."""
        commits, lost = changes.table.commits, changes.table.races_lost
        for i in range(n):
            await create(memory_stub, key, "hal", f"{tag} {i} {big}")
        return changes.table.commits - commits, changes.table.races_lost - lost

    alone = await write(60, "alone")
    stalled = Watcher(watch_stub, key, after=60)  # opened, never read until the end
    lagging_before = changes.lagging_ends
    with_watcher = await write(60, "watched")
    # the writers did the same work with the stalled watcher as without it
    assert alone == with_watcher == (60, 0)
    deadline = asyncio.get_running_loop().time() + 10
    while changes.lagging_ends == lagging_before:
        assert asyncio.get_running_loop().time() < deadline, "the watcher never overflowed"
        await asyncio.sleep(0.05)
    # reading now: what was buffered, then the lagging end naming where to resume
    got: list[pb.MemoryChange] = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        while True:
            got.append(await stalled.next())
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert _reason(err.value) == "WATCH_LAGGING"
    resume = int(_metadata(err.value)["resume_after_sequence"])
    print("stalled watcher got", len(got), "of 60 before WATCH_LAGGING")
    assert 0 < len(got) < 60 and [c.sequence for c in got] == list(range(61, 61 + len(got)))
    assert resume == got[-1].sequence
    # resuming there gets the rest, exactly
    w = Watcher(memory_stub, key, after=resume)
    try:
        rest = await w.take(120 - resume)
        assert await w.quiet() == 120
    finally:
        w.cancel()
    assert [c.sequence for c in rest] == list(range(resume + 1, 121))


async def test_extraction_and_conflicts_record_their_kinds(
    channel: grpc.aio.Channel, memory_stub: memory_pb2_grpc.MemoryServiceStub, new_key: NewKey
) -> None:
    _, key = await new_key()
    conv = Conv(channel, key)
    user = uid("feed")
    w = Watcher(memory_stub, key)
    kinds: list[int] = []
    try:
        await conv.talk(user, "I live in Leeds.")
        await conv.talk(user, "We moved to Bristol last year.")  # a new version of the location
        await conv.talk(user, "I'm vegetarian.")
        await conv.talk(user, "I'm pescatarian these days.")  # a conflict
        (conflict,) = await conv.conflicts(user)
        await conv.resolve(conflict, "pescatarian")
        while pb.MEMORY_CHANGE_KIND_CONFLICT_RESOLVED not in kinds:
            kinds.append((await w.next()).kind)
    finally:
        w.cancel()
    assert pb.MEMORY_CHANGE_KIND_CREATED in kinds
    assert pb.MEMORY_CHANGE_KIND_VERSIONED in kinds
    opened = kinds.index(pb.MEMORY_CHANGE_KIND_CONFLICT_OPENED)
    assert opened < kinds.index(pb.MEMORY_CHANGE_KIND_CONFLICT_RESOLVED)


async def test_deleting_a_user_is_one_user_deleted_change(
    channel: grpc.aio.Channel, memory_stub: memory_pb2_grpc.MemoryServiceStub, new_key: NewKey
) -> None:
    from memgrpc.v1 import users_pb2, users_pb2_grpc

    _, key = await new_key()
    for i in range(3):
        await create(memory_stub, key, "ivan", f"ivan {i}")
    w = Watcher(memory_stub, key, after=3)
    try:
        await users_pb2_grpc.UserServiceStub(channel).DeleteUser(
            users_pb2.DeleteUserRequest(id="ivan"), metadata=md(key)
        )
        got = await w.next()
        assert await w.quiet() == 4
    finally:
        w.cancel()
    assert (got.kind, got.user_id, got.sequence) == (pb.MEMORY_CHANGE_KIND_USER_DELETED, "ivan", 4)
    # the feed keeps the sequences, not the purged user's content
    w = Watcher(memory_stub, key)
    try:
        earlier = await w.take(4)
    finally:
        w.cancel()
    assert [c.sequence for c in earlier] == [1, 2, 3, 4]
    assert [c.HasField("memory") for c in earlier] == [False] * 4
    assert earlier[0].kind == pb.MEMORY_CHANGE_KIND_CREATED and earlier[0].memory_id


def _details(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for d in status.details:
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo")


def _reason(err: grpc.aio.AioRpcError) -> str:
    return str(_details(err).reason)


def _metadata(err: grpc.aio.AioRpcError) -> dict[str, str]:
    return dict(_details(err).metadata)
