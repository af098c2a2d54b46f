"""The version log the row caches check: own commits, adopted versions, maintenance passes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memgrpc.store import versionlog
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.versionlog import MAINTENANCE_GRACE_S, VersionLog


def test_only_own_versions_since_a_point() -> None:
    log = VersionLog()
    for v in (3, 4, None, 6):
        log.record(v)
    assert log.only_own_since(2, 4) and log.only_own_since(4, 4)
    assert not log.only_own_since(2, 6)  # 5 is another process's
    log.adopt([5])  # e.g. a compaction made here
    assert log.only_own_since(2, 6)
    assert not log.only_own_since(2, 7)


def test_the_log_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versionlog, "_OWN_VERSIONS", 3)
    log = VersionLog()
    log.adopt(range(1, 6))
    assert log.own_versions == {3, 4, 5}
    assert log.only_own_since(2, 5) and not log.only_own_since(1, 5)


def test_maintaining_holds_back_for_the_grace_period_only() -> None:
    log = VersionLog()
    assert not log.in_maintenance and not log.maintaining_lately()
    with log.maintaining():
        assert log.in_maintenance and log.maintaining_lately()
        assert not log.maintaining_lately(time.monotonic() + MAINTENANCE_GRACE_S)
    assert not log.in_maintenance and not log.maintaining_lately()


async def test_the_writer_records_its_commits(tmp_path: Path) -> None:
    store = Store(StoreConfig(uri=str(tmp_path / "db"), dim=8))
    await store.open()
    try:
        writer, tbl = store.writer("projects"), store.table("projects")
        before = int(await tbl.version())
        await writer.insert([{"id": "a", "display_name": "A"}])
        await writer.upsert([{"id": "a", "display_name": "B"}])
        after = int(await tbl.version())
        assert after == before + 2
        assert writer.versions.only_own_since(before, after)
    finally:
        await store.close()
