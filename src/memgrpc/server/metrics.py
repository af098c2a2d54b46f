"""Prometheus metrics: every metric object of the server, and the opt-in /metrics endpoint.

Off unless `--metrics-addr HOST:PORT` (MEMGRPC_METRICS_ADDR) is given; then one `Metrics` per
server owns its own registry (several servers in one process never share counters) and serves
it from prometheus_client's HTTP server thread, so a scrape never waits for the event loop.

- RPCs (recorded by server/telemetry.py, the outermost interceptor, so auth and rate-limit
  rejections count too; a streaming call counts once, from its start to its end):
  grpc_server_started_total, grpc_server_handled_total (with grpc_code) and the
  grpc_server_handling_seconds histogram, labelled grpc_service / grpc_method / grpc_type like
  go-grpc-prometheus. Only registered methods are labels: an unknown method is not recorded.
- Store writers (store/writer.py): rows per commit and commit latency by table and operation
  kind, failed commits, and the queue depth per table (read at scrape time).
- Embedding (embed/batcher.py): texts per batch, batch latency, failed batches, queue depth.
- Store tables: version, retained versions, fragments, small fragments and rows per table. These
  need LanceDB calls, so they are read at scrape time on the server's loop (off the request path),
  at most every `store_refresh_s` seconds; a scrape in between gets the cached values, and
  memgrpc_store_stats_age_seconds says how old they are.
- Recall cache (core/memory/recall_cache.py): users and memories held in memory (read at scrape time);
  with memgrpc_store_cache_bytes, the parts of the RSS that grow with the data by design.
- Process: the usual process_* / python_* collectors.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from memgrpc.core.memory.recall_cache import IndexCache
from memgrpc.embed import BatchingEmbedder
from memgrpc.store.db import Store, list_versions
from memgrpc.store.maintenance import Maintainer

log = structlog.get_logger(__name__)

RPC_LABELS = ("grpc_service", "grpc_method", "grpc_type")
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STORE_REFRESH_S = 10.0
STORE_REFRESH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class TableStats:
    version: int
    versions: int
    fragments: int
    small_fragments: int
    rows: int


class _LiveCollector(Collector):  # type: ignore[misc]
    """Queue depths and maintenance runs, read from memory at scrape time."""

    def __init__(
        self,
        store: Store,
        embedder: BatchingEmbedder,
        maintainer: Maintainer,
        recall: IndexCache | None,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._maintainer = maintainer
        self._recall = recall

    def describe(self) -> Iterable[Any]:
        return self._families(sample=False)

    def collect(self) -> Iterable[Any]:
        return self._families(sample=True)

    def _families(self, *, sample: bool) -> Iterator[Any]:
        depth = GaugeMetricFamily(
            "memgrpc_writer_queue_depth",
            "Write operations queued for the next commit, per table",
            labels=["table"],
        )
        embed = GaugeMetricFamily(
            "memgrpc_embed_queue_depth", "Embedding requests queued for the next batch"
        )
        runs = CounterMetricFamily(
            "memgrpc_maintenance_runs", "Completed maintenance passes (compaction, indexes)"
        )
        renewals = CounterMetricFamily(
            "memgrpc_store_session_renewals",
            "New LanceDB sessions taken to drop the index versions maintenance replaced",
        )
        cache = GaugeMetricFamily(
            "memgrpc_store_cache_bytes",
            "Bytes held by LanceDB's index and metadata caches (bounded by their settings)",
        )
        recall_users = GaugeMetricFamily(
            "memgrpc_recall_cache_users", "Users whose memories the recall cache holds"
        )
        recall_rows = GaugeMetricFamily(
            "memgrpc_recall_cache_rows",
            "Memories held by the recall cache (bounded by MEMGRPC_RECALL_CACHE_ROWS)",
        )
        if sample:
            cache.add_metric([], self._store.session.size_bytes)
            for name, writer in sorted(self._store.writers().items()):
                depth.add_metric([name], writer.pending)
            embed.add_metric([], self._embedder.pending)
            runs.add_metric([], self._maintainer.runs)
            renewals.add_metric([], self._store.session_renewals)
            if self._recall is not None:
                recall_users.add_metric([], self._recall.users)
                recall_rows.add_metric([], self._recall.rows)
        yield from (depth, embed, runs, renewals, cache, recall_users, recall_rows)


class _StoreCollector(Collector):  # type: ignore[misc]
    """Per-table LanceDB stats, refreshed on the server's loop when a scrape finds them old."""

    def __init__(self, store: Store, refresh_s: float) -> None:
        self._store = store
        self.refresh_s = refresh_s  # at most one refresh per this many seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._lock = threading.Lock()
        self._stats: dict[str, TableStats] = {}
        self._updated: float | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def describe(self) -> Iterable[Any]:
        return self._families({}, None)

    def collect(self) -> Iterable[Any]:
        with self._lock:  # one refresh at a time; concurrent scrapes wait and share it
            self._maybe_refresh()
            stats, updated = dict(self._stats), self._updated
        return self._families(stats, updated)

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        loop = self._loop
        if loop is None or loop.is_closed() or threading.get_ident() == self._loop_thread:
            return  # never block the loop on itself
        if self._updated is not None and now - self._updated < self.refresh_s:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._read(), loop)
        except RuntimeError:  # the loop is shutting down
            return
        try:
            self._stats = future.result(STORE_REFRESH_TIMEOUT_S)
            self._updated = time.monotonic()
        except FutureTimeout:
            future.cancel()
            log.warning("metrics_store_stats_timeout", timeout_s=STORE_REFRESH_TIMEOUT_S)
        except Exception as exc:  # e.g. the store is closing; keep the last values
            log.warning("metrics_store_stats_failed", error=str(exc))

    async def _read(self) -> dict[str, TableStats]:
        out: dict[str, TableStats] = {}
        for name in self._store.specs:
            tbl = self._store.table(name)
            stats = await tbl.stats()
            out[name] = TableStats(
                version=int(await tbl.version()),
                versions=len(await list_versions(tbl)),
                fragments=int(stats["fragment_stats"]["num_fragments"]),
                small_fragments=int(stats["fragment_stats"]["num_small_fragments"]),
                rows=int(stats["num_rows"]),
            )
        return out

    @staticmethod
    def _families(stats: dict[str, TableStats], updated: float | None) -> Iterator[Any]:
        gauges = {
            "version": GaugeMetricFamily(
                "memgrpc_store_table_version", "Current version of the table", labels=["table"]
            ),
            "versions": GaugeMetricFamily(
                "memgrpc_store_table_versions",
                "Versions of the table kept on storage (old ones are cleaned up by maintenance)",
                labels=["table"],
            ),
            "fragments": GaugeMetricFamily(
                "memgrpc_store_table_fragments", "Data fragments of the table", labels=["table"]
            ),
            "small_fragments": GaugeMetricFamily(
                "memgrpc_store_table_small_fragments",
                "Small fragments of the table (compaction merges them)",
                labels=["table"],
            ),
            "rows": GaugeMetricFamily(
                "memgrpc_store_table_rows", "Rows in the table", labels=["table"]
            ),
        }
        for table, s in sorted(stats.items()):
            for attr, family in gauges.items():
                family.add_metric([table], getattr(s, attr))
        yield from gauges.values()
        age = GaugeMetricFamily(
            "memgrpc_store_stats_age_seconds", "Age of the memgrpc_store_table_* values"
        )
        if updated is not None:
            age.add_metric([], time.monotonic() - updated)
        yield age


class Metrics:
    """The registry and metric objects of one server, and its HTTP endpoint."""

    def __init__(
        self,
        store: Store,
        embedder: BatchingEmbedder,
        maintainer: Maintainer,
        recall: IndexCache | None = None,
        *,
        store_refresh_s: float = STORE_REFRESH_S,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpc_started = Counter(
            "grpc_server_started", "RPCs started on the server", RPC_LABELS, registry=r
        )
        self.rpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code",
            (*RPC_LABELS, "grpc_code"),
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start to the end of an RPC (a whole stream for streaming RPCs)",
            RPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_rows = Histogram(
            "memgrpc_writer_commit_rows",
            "Rows per store commit (writes coalesced by the table's writer)",
            ("table", "kind"),
            buckets=ROW_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "memgrpc_writer_commit_seconds",
            "Time of one store commit, retries included",
            ("table", "kind"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_failures = Counter(
            "memgrpc_writer_commit_failures",
            "Store commits that failed (every write in them failed)",
            ("table", "kind"),
            registry=r,
        )
        self.embed_texts = Histogram(
            "memgrpc_embed_batch_texts",
            "Texts per embedding batch (concurrent requests share a batch)",
            buckets=TEXT_BUCKETS,
            registry=r,
        )
        self.embed_seconds = Histogram(
            "memgrpc_embed_batch_seconds",
            "Time to embed one batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.embed_failures = Counter(
            "memgrpc_embed_batch_failures", "Embedding batches that failed", registry=r
        )
        r.register(_LiveCollector(store, embedder, maintainer, recall))
        self.store_stats = _StoreCollector(store, store_refresh_s)
        r.register(self.store_stats)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._store = store
        self._embedder = embedder
        self._httpd: Any = None
        self._thread: threading.Thread | None = None
        self.address: str | None = None
        self.port: int | None = None
        self._hook()

    # -- recording ----------------------------------------------------------------------------
    def _hook(self) -> None:
        for name, writer in self._store.writers().items():
            writer.on_commit = self._commit_observer(name)
        self._embedder.on_batch = self._on_batch

    def _commit_observer(self, table: str) -> Any:
        def observe(kind: str, rows: int, seconds: float, ok: bool) -> None:
            if ok:
                self.commit_rows.labels(table, kind).observe(rows)
                self.commit_seconds.labels(table, kind).observe(seconds)
            else:
                self.commit_failures.labels(table, kind).inc()

        return observe

    def _on_batch(self, texts: int, seconds: float, ok: bool) -> None:
        if ok:
            self.embed_texts.observe(texts)
            self.embed_seconds.observe(seconds)
        else:
            self.embed_failures.inc()

    def rpc_start(self, service: str, method: str, kind: str) -> None:
        self.rpc_started.labels(service, method, kind).inc()

    def rpc_done(self, service: str, method: str, kind: str, code: str, seconds: float) -> None:
        self.rpc_handled.labels(service, method, kind, code).inc()
        self.rpc_seconds.labels(service, method, kind).observe(seconds)

    # -- endpoint -----------------------------------------------------------------------------
    async def start(self, addr: str) -> None:
        """Serve /metrics on `addr` (HOST:PORT, port 0 = any free) from a thread of its own."""
        self.store_stats.bind(asyncio.get_running_loop())
        host, port = addr.rsplit(":", 1)
        host = host.removeprefix("[").removesuffix("]")
        try:
            self._httpd, self._thread = start_http_server(int(port), host, self.registry)
        except OSError as exc:
            raise OSError(f"could not bind the metrics endpoint {addr}: {exc.strerror}") from exc
        self.port = int(self._httpd.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        self.address = f"{shown}:{self.port}"
        log.info("metrics_started", address=self.address, path="/metrics")

    async def stop(self) -> None:
        """Stop the endpoint (first thing at close: the store it reads is about to go)."""
        self._embedder.on_batch = None
        for writer in self._store.writers().values():
            writer.on_commit = None
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        # a scrape may be waiting on this loop for store stats: keep the loop free meanwhile
        await asyncio.to_thread(httpd.shutdown)
        httpd.server_close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
            self._thread = None
