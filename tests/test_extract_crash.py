"""kill -9 during extraction: the job's writes were cut halfway (new facts in, the version and
the reinforcement not yet); after a restart the dead job is failed by the sweeper, processing
the session again completes it, and nothing is duplicated."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import grpc
import pytest

from memgrpc.v1 import memory_pb2 as mpb
from memgrpc.v1 import sessions_pb2 as spb
from memgrpc.v1 import users_pb2 as upb
from tests.helpers import md
from tests.intelhelpers import Conv
from tests.procs import free_port, start_memgrpc, stop_server, wait_serving

ADMIN_KEY = "mgk_extract_crash_test_key_0123456789"
USER = "crash-user"


async def _until(check: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


@pytest.mark.timeout(300)
async def test_kill_9_mid_extraction_then_rerun_completes_without_duplicates(
    tmp_path: Path,
) -> None:
    data, log = str(tmp_path / "data"), tmp_path / "server.log"
    port = free_port()
    addr = f"127.0.0.1:{port}"

    # 1. a first session, processed normally
    proc = start_memgrpc(data, port, log, ADMIN_KEY)
    try:
        await wait_serving(addr, proc)
        async with grpc.aio.insecure_channel(addr) as ch:
            conv = Conv(ch, ADMIN_KEY)
            await conv.talk(USER, "I live in Leeds.", "I play the oboe.")
            first = await conv.profile(USER)
            assert first["location"].value == "Leeds"
    finally:
        stop_server(proc)

    # 2. the second session's job pauses after its inserts: kill -9 there
    proc = start_memgrpc(data, port, log, ADMIN_KEY, MEMGRPC_TEST_EXTRACT_PAUSE_S="60")
    try:
        await wait_serving(addr, proc)
        async with grpc.aio.insecure_channel(addr) as ch:
            conv = Conv(ch, ADMIN_KEY)
            s = await conv.session(
                USER, "We moved to York in May.", "I play the oboe.", "I have a parrot named Kiwi."
            )
            job = await conv.sessions.ProcessSession(
                spb.ProcessSessionRequest(session_id=s.id), metadata=md(ADMIN_KEY)
            )

            async def inserted() -> bool:
                return bool(await conv.matching(USER, "Kiwi"))

            await _until(inserted)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # 3. restart: the sweeper fails the dead job; processing again completes it
    proc = start_memgrpc(data, port, log, ADMIN_KEY, MEMGRPC_JOB_STALE_AFTER="1")
    try:
        await wait_serving(addr, proc)
        async with grpc.aio.insecure_channel(addr) as ch:
            conv = Conv(ch, ADMIN_KEY)
            # cut halfway: the new fact is there, the move and the reinforcement are not
            assert (await conv.profile(USER))["location"].value == "Leeds"
            assert (await conv.matching(USER, "oboe"))[0].mention_count == 1

            async def failed() -> bool:
                got = await conv.sessions.GetSession(
                    spb.GetSessionRequest(id=s.id), metadata=md(ADMIN_KEY)
                )
                return got.status == spb.SESSION_STATUS_FAILED

            await _until(failed)
            dead = await conv.sessions.GetJob(spb.GetJobRequest(id=job.id), metadata=md(ADMIN_KEY))
            assert dead.state == spb.JOB_STATE_FAILED and "abandoned" in dead.error
            rerun = await conv.process(s.id)
            assert rerun.state == spb.JOB_STATE_DONE, rerun.error
            assert rerun.stats.facts_added == 0  # the crashed run's insert is found, not redone
            assert rerun.stats.versions_made == 1 and rerun.stats.facts_reinforced == 1

            memories = await conv.extracted(USER)
            contents = [m.content for m in memories]
            assert len(contents) == len(set(contents)), contents
            assert len({m.id for m in memories}) == len(memories)
            profile = await conv.profile(USER)
            assert profile["location"].value == "York"
            assert profile["location"].memory_id == first["location"].memory_id
            versions = await conv.versions(profile["location"].memory_id)
            assert [v.version for v in versions] == [2, 1]
            assert versions[1].expire_reason == "SUPERSEDED"
            oboe = await conv.matching(USER, "oboe")
            assert len(oboe) == 1 and oboe[0].mention_count == 2
            assert len(await conv.matching(USER, "Kiwi")) == 1

            # and once more with force: nothing changes
            before = {m.id: (m.version, m.mention_count) for m in memories}
            again = await conv.process(s.id, force=True)
            assert again.state == spb.JOB_STATE_DONE
            after = {m.id: (m.version, m.mention_count) for m in await conv.extracted(USER)}
            assert after == before
            listed = await conv.memories.ListMemories(
                mpb.ListMemoriesRequest(user_id=USER, page_size=1000), metadata=md(ADMIN_KEY)
            )
            summaries = [m for m in listed.memories if m.type == mpb.MEMORY_TYPE_SUMMARY]
            assert len(summaries) == 2  # one per session
            await conv.users.GetUser(upb.GetUserRequest(id=USER), metadata=md(ADMIN_KEY))
    finally:
        stop_server(proc)
