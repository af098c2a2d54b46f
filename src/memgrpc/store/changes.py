"""The change feed's table: per project, sequences 1, 2, 3... with no duplicate and no gap a
reader could skip past, whichever replicas write them.

LanceDB has no unique key: two processes merge-inserting the same new key at once both insert it
(measured: two processes allocating max+1 produced 66 duplicates in 200 commits). What it has is
conflict detection between commits that rewrite the same row: the loser's merge runs again on
the newer version. So every commit of changes is ONE merge_insert of three rows:

- the anchor row, which every commit rewrites: any two commits conflict, so they serialise;
- the project's head row (its last sequence), rewritten only while it still holds the sequence
  read before the commit (`target.last_sequence = source.expect`): the compare-and-set;
- the batch row, keyed by project and first sequence, holding the changes as JSON.

A merge that lost the race runs again and finds the winner's batch row under its key (both read
the same head, so both chose the same first sequence) and the head moved on: it inserts nothing,
and the caller reads the head again and retries. Each commit starts from the version of the one
before it, so every version a reader opens holds a prefix of the sequences: a reader never sees
s+1 without s, and may advance past whatever it has read.

The cost: commits of changes are serialised across replicas (Lance serialises a table's commits
anyway; here a lost race is a re-read and a second merge rather than a rebase), each commit
rewrites two small rows (deletion files that compaction folds), and the changes of one commit
share a row, so a watcher of one user reads the project's rows and filters them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import structlog

from memgrpc.store.db import Store
from memgrpc.store.filters import Where
from memgrpc.store.schemas import CHANGE_ANCHOR_PK, MEMORY_CHANGES

log = structlog.get_logger(__name__)

TABLE = "memory_changes"
# a merge updates the anchor always, a head only while it holds the sequence the writer read,
# and a batch row never (its key taken means the race was lost)
_CAS = f"target.pk = '{CHANGE_ANCHOR_PK}' OR target.last_sequence = source.expect"
MAX_TRIES = 50
HEAD_CACHE_S = 60.0  # how long a committed head is trusted without reading it again


class ChangeRaceLost(RuntimeError):
    """Every try to commit lost to other writers (a pathological write rate across replicas)."""


def _contended(exc: RuntimeError) -> bool:
    """Lance's own commit retries ran out under other writers (retryable by us)."""
    text = str(exc)
    return "Too many concurrent writers" in text or "Retryable commit conflict" in text


def _head_pk(project_id: str) -> str:
    return f"{project_id}/head"


def _batch_pk(project_id: str, first: int) -> str:
    return f"{project_id}/{first:020d}"


class ChangeTable:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.commits = 0
        self.races_lost = 0
        # project -> (the head this process last committed, when): the next commit starts from
        # it without reading the head again. A stale one (another replica committed since) loses
        # the compare-and-set like any race and is read afresh; kept briefly, so a batch it
        # would collide with can never have been pruned (retention is days)
        self._heads: dict[str, tuple[int, float]] = {}

    @property
    def _tbl(self) -> Any:
        return self._store.table(TABLE)  # looked up each time: a session renewal swaps it

    async def head(self, project_id: str, *, latest: bool = False) -> int:
        """The project's last sequence (0 before its first change); `latest`: as committed now,
        not as of this process's last look (other replicas' commits included)."""
        tbl = self._tbl
        if latest:
            await tbl.checkout_latest()
        found = (
            await tbl.query()
            .where(str(Where().eq("pk", _head_pk(project_id))))
            .select(["last_sequence"])
            .to_list()
        )
        return max((int(r["last_sequence"]) for r in found), default=0)

    async def append(self, project_id: str, changes: list[dict[str, Any]]) -> int:
        """Commit `changes` (JSON-ready) as the project's next sequences; returns the first.
        Returns once they are committed (durable)."""
        for attempt in range(MAX_TRIES):
            cached = self._heads.pop(project_id, None)
            fresh = cached is not None and time.monotonic() - cached[1] < HEAD_CACHE_S
            head = cached[0] if fresh and cached else await self.head(project_id, latest=True)
            first, last = head + 1, head + len(changes)
            now = datetime.now(UTC)
            rows = [
                _row(CHANGE_ANCHOR_PK, "", 0, 0, -1, None, now),
                _row(_head_pk(project_id), project_id, 0, last, head, None, now),
                _row(_batch_pk(project_id, first), project_id, first, last, -1, changes, now),
            ]
            data = pa.Table.from_pylist(rows, schema=MEMORY_CHANGES)
            writer = self._store.writer(TABLE)
            # through the table's writer, between its commits: never racing this process's
            # compaction of the table (which every commit here would otherwise preempt)
            try:
                res = await writer.exclusive(functools.partial(self._merge, data))
            except RuntimeError as exc:
                if not _contended(exc):
                    raise
                res = None  # Lance gave up retrying its own commit: a lost race like any other
            if res is None:
                self.races_lost += 1
                self._heads.pop(project_id, None)
                log.info("change_commit_contended", attempt=attempt + 1)
                await asyncio.sleep(random.uniform(0.0, 0.01 * min(attempt + 1, 10)))
                continue
            writer.versions.record(getattr(res, "version", None))
            # each try is a commit (fragments and deletion files): the maintainer compacts
            # on this pressure as it does for the writer's own commits
            writer.commits_since_compaction += 1
            if writer.on_pressure is not None:
                writer.on_pressure(writer.commits_since_compaction)
            if int(res.num_inserted_rows):
                self.commits += 1
                self._heads[project_id] = (last, time.monotonic())
                return first
            self.races_lost += 1
            log.info("change_race_lost", attempt=attempt + 1, sequence=first)
            await asyncio.sleep(random.uniform(0.0, 0.01 * min(attempt + 1, 10)))
        raise ChangeRaceLost(f"no change committed after {MAX_TRIES} tries")

    async def _merge(self, data: pa.Table) -> Any:
        merge = self._tbl.merge_insert("pk").when_matched_update_all(where=_CAS)
        return await merge.when_not_matched_insert_all().execute(data)

    async def read(
        self, project_id: str, after: int, window: int
    ) -> list[tuple[int, list[dict[str, Any]]]]:
        """The batches holding sequences after `after` up to about `after + window`, in order,
        as (first sequence, changes)."""
        where = (
            Where()
            .eq("project_id", project_id)
            .cmp("first_sequence", ">", 0)
            .cmp("last_sequence", ">", after)
            .cmp("first_sequence", "<=", after + window)
        )
        found = (
            await self._tbl.query()
            .where(str(where))
            .select(["first_sequence", "changes"])
            .to_list()
        )
        batches = [(int(r["first_sequence"]), json.loads(r["changes"] or "[]")) for r in found]
        return sorted(batches, key=lambda b: b[0])

    async def scrub_user(self, project_id: str, user_id: str) -> int:
        """Drop the memory snapshots of a purged user's changes (their sequences, kinds and ids
        stay, so the feed keeps no gap); returns how many batches were rewritten."""
        where = Where().eq("project_id", project_id).cmp("first_sequence", ">", 0)
        found = await self._tbl.query().where(str(where)).select(["pk", "changes"]).to_list()
        patched = []
        for r in found:
            changes = json.loads(r["changes"] or "[]")
            mine = [c for c in changes if c.get("user_id") == user_id and c.get("memory")]
            if mine:
                for c in mine:
                    c["memory"] = None
                patched.append({"pk": r["pk"], "changes": json.dumps(changes)})
        if patched:
            await self._store.writer(TABLE).patch(patched)
        return len(patched)

    async def prune(self, before: datetime) -> int:
        """Drop batches committed before `before` (heads and the anchor stay)."""
        where = str(Where().cmp("first_sequence", ">", 0).cmp("time", "<", before))
        n = int(await self._tbl.count_rows(where))
        if n:
            await self._store.writer(TABLE).delete(where)
        return n


def _row(
    pk: str,
    project_id: str,
    first: int,
    last: int,
    expect: int,
    changes: list[dict[str, Any]] | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "pk": pk,
        "project_id": project_id,
        "first_sequence": first,
        "last_sequence": last,
        "expect": expect,
        "changes": None if changes is None else json.dumps(changes, separators=(",", ":")),
        "time": now,
    }
