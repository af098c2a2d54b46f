"""`memgrpc export` and `memgrpc import`: JSONL files to and from a running server, over gRPC.

The file format is JSON Lines, one memory per line: the Memory message in the proto's JSON
mapping (field names as in the .proto), plus `vector` and `model` (exports with --vectors),
`versions` (with --versions) and `seq` (memories made from messages) when there are any.
`import` also reads mem0-style exports: a JSON array, or an object with a `results` (or
`memories`) array, of objects with `memory` (the text), `user_id`, `metadata`, `created_at`,
`updated_at`, `id`, `categories` (`run_id` becomes the session, `agent_id`, `actor_id` and `role`
go into metadata). The format is detected from the content.

The connection is the Python client's (memgrpc.client): plaintext, or TLS with --tls / --tls-ca
(and a client certificate with --tls-cert / --tls-key), the API key and an x-request-id on each
call; the calls themselves go through the generated stubs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import grpc
import numpy as np
from google.protobuf import json_format, timestamp_pb2

from memgrpc.client._channel import (
    CallOptions,
    Settings,
    Stream,
    Unary,
    method_path,
    new_request_id,
)
from memgrpc.client._retry import RetryPolicy
from memgrpc.client._transport import SyncTransport
from memgrpc.client.errors import MemgrpcError, error_from_rpc
from memgrpc.core.kernel.ids import derived_id

DEFAULT_ADDR = "127.0.0.1:50051"
API_KEY_ENV = "MEMGRPC_API_KEY"
# a request of the import stream: at most this many records or bytes (below server limits)
SEND_RECORDS = 500
SEND_BYTES = 1024 * 1024
MAX_REPORTED_ERRORS = 100
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 * 1024 * 1024)]


class UsageError(Exception):
    """A problem with the command line or the input file as a whole (exit code 2)."""


# -- command line -----------------------------------------------------------------------------
def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export",
        help="write a project's memories to a JSONL file",
        description="Export the memories of the API key's project as JSON Lines (one memory per "
        "line), archived ones included, from a running server.",
        epilog=f"The API key comes from --api-key or ${API_KEY_ENV} (preferred: flags show in ps).",
    )
    _client_flags(export)
    export.add_argument("--user", default="", help="only this user's memories (default: all)")
    export.add_argument("--vectors", action="store_true", help="include each memory's embedding")
    export.add_argument("--versions", action="store_true", help="include each memory's versions")
    export.add_argument("--exclude-archived", action="store_true", help="leave archived ones out")
    export.add_argument(
        "-o", "--output", default="-", help="file to write (default: stdout); written atomically"
    )
    imp = commands.add_parser(
        "import",
        help="load memories from a JSONL (or mem0 JSON) file",
        description="Import memories into the API key's project of a running server. Ids are "
        "kept: memories the project already has are skipped, so a re-import does not duplicate. "
        "Prints a JSON summary on stdout; exits 1 if any record failed.",
        epilog=f"The API key comes from --api-key or ${API_KEY_ENV} (preferred: flags show in ps).",
    )
    imp.add_argument("file", help="a memgrpc JSONL export or a mem0 JSON export ('-' = stdin)")
    _client_flags(imp)
    imp.add_argument("--user", default="", help="user id for records that have none")
    imp.add_argument(
        "--format", choices=("auto", "jsonl", "mem0"), default="auto", help="default: detect"
    )


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--addr",
        default=DEFAULT_ADDR,
        help=f"server HOST:PORT ({DEFAULT_ADDR}); https://HOST:PORT means TLS",
    )
    p.add_argument("--api-key", default=None, help=f"API key (default: ${API_KEY_ENV})")
    p.add_argument("--tls", action="store_true", help="connect with TLS (the system's CAs)")
    p.add_argument(
        "--tls-ca", metavar="PEM", help="CA bundle that signed the server certificate (implies TLS)"
    )
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate chain, for mutual TLS")
    p.add_argument("--tls-key", metavar="PEM", help="client private key, for mutual TLS")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    try:
        key = args.api_key or os.environ.get(API_KEY_ENV, "")
        if not key:
            raise UsageError(f"no API key: pass --api-key or set {API_KEY_ENV}")
        settings = _settings(args, key)
        if args.command == "export":
            return _export(args, settings)
        return _import(args, settings)
    except UsageError as exc:
        print(f"memgrpc {args.command}: {exc}", file=sys.stderr)
        return 2
    except MemgrpcError as exc:
        print(f"memgrpc {args.command}: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        print(f"memgrpc {args.command}: {code}: {details}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"memgrpc {args.command}: {exc}", file=sys.stderr)
        return 1


def _settings(args: argparse.Namespace, key: str) -> Settings:
    """The Python client's connection settings from the command line."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    pem = {name: _read_pem(getattr(args, name), flag) for name, flag in _PEM_FLAGS}
    try:
        return Settings.create(
            args.addr,
            api_key=key,
            tls=args.tls,
            root_certificates=pem["tls_ca"],
            retry=RetryPolicy(),
            channel_options=_CHANNEL_OPTIONS,
            private_key=pem["tls_key"],
            certificate_chain=pem["tls_cert"],
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


_PEM_FLAGS = (("tls_ca", "--tls-ca"), ("tls_cert", "--tls-cert"), ("tls_key", "--tls-key"))


def _read_pem(path: str | None, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: {exc.strerror or exc}") from None


# -- progress -----------------------------------------------------------------------------------
class Progress:
    """Count, rate and (when the total is known) a bar on stderr, for runs over a second.

    On a terminal the line redraws in place; otherwise a line is printed every 10 s.
    """

    def __init__(self, verb: str, *, total: int | None = None, quiet: bool = False) -> None:
        self.verb = verb
        self.total = total
        self.count = 0
        self.fraction: float | None = None
        self._stream: IO[str] = sys.stderr
        self._quiet = quiet
        self._tty = self._stream.isatty()
        self._start = self._last = time.monotonic()
        self._drawn = False

    def add(self, n: int = 1, *, fraction: float | None = None) -> None:
        self.count += n
        if fraction is not None:
            self.fraction = fraction
        now = time.monotonic()
        if now - self._start >= 1.0 and now - self._last >= (0.2 if self._tty else 10.0):
            self._last = now
            self._draw(now)

    def _line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        frac = self.fraction
        if frac is None and self.total:
            frac = min(self.count / self.total, 1.0)
        counted = f"{self.count:,}" + (f"/{self.total:,}" if self.total is not None else "")
        text = f"{self.verb} {counted} memories  {self.count / elapsed:,.0f}/s  {elapsed:.1f}s"
        if frac is None:
            return text
        filled = int(frac * 30)
        return f"[{'#' * filled}{'-' * (30 - filled)}] {frac * 100:3.0f}%  {text}"

    def _draw(self, now: float) -> None:
        if self._quiet:
            return
        if self._tty:
            self._stream.write("\r" + self._line(now) + "\x1b[K")
        else:
            self._stream.write(self._line(now) + "\n")
        self._stream.flush()
        self._drawn = True

    def close(self, outcome: str | None = None) -> None:
        """The final line (always, unless quiet); `outcome` says what became of the items."""
        if self._quiet:
            return
        if self._tty and self._drawn:
            self._stream.write("\r\x1b[K")
        now = time.monotonic()
        line = self._line(now)
        if outcome is not None:
            line = f"{outcome} of {self.count:,} {self.verb}  {now - self._start:.1f}s"
        self._stream.write(line + "\n")
        self._stream.flush()


# -- export ---------------------------------------------------------------------------------------
def _export(args: argparse.Namespace, settings: Settings) -> int:
    """Through the client's transport: both calls are retried while the server is unavailable
    (the stream only before its first response)."""
    from memgrpc.v1 import memory_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["MemoryService"]
    archived = not args.exclude_archived
    no_deadline = CallOptions(timeout=None)
    transport = SyncTransport(settings)
    try:
        count = Unary(
            method_path(service, "ListMemories"),
            pb.ListMemoriesRequest(user_id=args.user, page_size=1, include_archived=archived),
            pb.ListMemoriesResponse,
            lambda r: r.total_size,
        )
        total = transport.unary(count, no_deadline)
        request = pb.ExportMemoriesRequest(
            user_id=args.user,
            include_archived=archived,
            include_vectors=args.vectors,
            include_versions=args.versions,
        )
        call = Stream(method_path(service, "ExportMemories"), request, pb.ExportMemoriesResponse)
        return _write_export(args, transport.stream(call, no_deadline), total)
    finally:
        transport.close()


def _write_export(args: argparse.Namespace, responses: Iterator[Any], total: int) -> int:
    progress = Progress("exported", total=total, quiet=args.quiet)
    to_stdout = args.output == "-"
    target = Path(args.output)
    partial = target.with_name(target.name + ".partial")
    # memories are user data: the file is the owner's only (like admin.key)
    out = sys.stdout.buffer if to_stdout else _private_file(partial)
    try:
        for response in responses:
            for record in response.records:
                out.write(record_to_line(record).encode("utf-8") + b"\n")
            progress.add(len(response.records))
        out.flush()
    except BaseException:
        if not to_stdout:
            out.close()
            partial.unlink(missing_ok=True)
        raise
    if not to_stdout:
        out.close()
        os.replace(partial, target)
    progress.close()
    return 0


def _private_file(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "wb")


def record_to_line(record: Any) -> str:
    """One JSONL line: the memory's JSON mapping plus vector, model, versions and seq."""
    out = _sorted_metadata(
        json_format.MessageToDict(record.memory, preserving_proto_field_name=True)
    )
    if len(record.vector):
        # float32 values in their shortest exact spelling (half the size of float64 digits)
        out["vector"] = [float(str(x)) for x in np.asarray(record.vector, dtype=np.float32)]
        out["model"] = record.model
    if len(record.versions):
        out["versions"] = [
            _sorted_metadata(json_format.MessageToDict(v, preserving_proto_field_name=True))
            for v in record.versions
        ]
    if record.HasField("seq"):
        out["seq"] = record.seq
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def _sorted_metadata(d: dict[str, Any]) -> dict[str, Any]:
    """Metadata keys in sorted order (a Struct's order is arbitrary): same data, same line."""
    if isinstance(d.get("metadata"), dict):
        d["metadata"] = json.loads(json.dumps(d["metadata"], sort_keys=True))
    return d


# -- import ---------------------------------------------------------------------------------------
@dataclass
class _Source:
    """Records read from the input: (where, record or the reason it could not be read)."""

    unit: str  # "line" (JSONL) or "item" (JSON array)
    items: Iterator[tuple[int, Any]]
    fraction: Any = None  # () -> share of the input read so far, when known


@dataclass
class _Local:
    errors: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0

    def fail(self, unit: str, where: int, memory_id: str, reason: str, message: str) -> None:
        self.failed += 1
        self.errors.append({unit: where, "id": memory_id, "reason": reason, "message": message})


def _import(args: argparse.Namespace, settings: Settings) -> int:
    """A client stream: not retried (its records cannot be replayed), but a re-run completes an
    interrupted import, as records the project already has are skipped."""
    from memgrpc.v1 import memory_pb2 as pb
    from memgrpc.v1 import memory_pb2_grpc

    source = _open_source(args.file, args.format)
    local = _Local()
    sent_at: list[int] = []  # stream index -> line or item
    # the server says what became of the records only at the end: until then, they are "sent"
    progress = Progress("sent", quiet=args.quiet)

    def requests() -> Iterator[Any]:
        batch: list[Any] = []
        size = 0
        for where, obj in source.items:
            try:
                if isinstance(obj, Exception):
                    raise obj
                record = record_from_obj(obj, args.user)
            except (ValueError, TypeError, json_format.ParseError) as exc:
                local.fail(source.unit, where, _id_of(obj), "UNREADABLE", str(exc))
                continue
            sent_at.append(where)
            batch.append(record)
            size += record.ByteSize()
            if len(batch) >= SEND_RECORDS or size >= SEND_BYTES:
                yield pb.ImportMemoriesRequest(records=batch)
                progress.add(len(batch), fraction=source.fraction() if source.fraction else None)
                batch, size = [], 0
        if batch:
            yield pb.ImportMemoriesRequest(records=batch)
            progress.add(len(batch), fraction=source.fraction() if source.fraction else None)

    request_id = new_request_id()
    metadata = CallOptions().metadata(settings, request_id)
    with settings.sync_channel() as channel:
        stub = memory_pb2_grpc.MemoryServiceStub(channel)
        try:
            summary = stub.ImportMemories(requests(), metadata=metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, request_id=request_id) from exc
    failed = summary.failed + local.failed
    progress.close(
        f"imported {summary.imported:,}, skipped {summary.skipped:,} (already there), "
        f"failed {failed:,}"
    )
    errors = list(local.errors)
    for e in summary.errors:
        where = sent_at[e.index] if 0 <= e.index < len(sent_at) else -1
        errors.append({source.unit: where, "id": e.id, "reason": e.reason, "message": e.message})
    errors.sort(key=lambda e: int(e[source.unit]))
    report = {
        "imported": summary.imported,
        "skipped": summary.skipped,
        "failed": failed,
        "embedded": summary.embedded,
        "renamed": summary.renamed,
        "model": summary.model,
        "errors": errors[:MAX_REPORTED_ERRORS],
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 1 if failed else 0


def _id_of(obj: Any) -> str:
    return str(obj.get("id") or "") if isinstance(obj, dict) else ""


def _open_source(path: str, fmt: str) -> _Source:
    if path == "-":
        data = sys.stdin.buffer.read()
        return _from_bytes(data, fmt)
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such file")
    with p.open("rb") as f:
        head = f.read(1 << 16).lstrip()
        first_line = head.split(b"\n", 1)[0]
    if fmt == "mem0" or (fmt == "auto" and _whole_json(head[:1], first_line)):
        parsed = _parse_whole(p.read_bytes())
        if parsed is not None:
            return parsed
        if fmt == "mem0":
            raise UsageError(f"{path}: not a JSON array or an object with a results array")
    return _jsonl(p)


def _from_bytes(data: bytes, fmt: str) -> _Source:
    head = data.lstrip()
    if fmt == "mem0" or (fmt == "auto" and _whole_json(head[:1], head.split(b"\n", 1)[0])):
        parsed = _parse_whole(data)
        if parsed is not None:
            return parsed
    return _Source("line", _lines(iter(data.splitlines(keepends=True))))


def _whole_json(first: bytes, first_line: bytes) -> bool:
    """An array, or an object that is not a complete single-line record (pretty-printed)."""
    if first == b"[":
        return True
    if first != b"{":
        return False
    try:
        obj = json.loads(first_line)
    except ValueError:
        return True
    return isinstance(obj, dict) and isinstance(obj.get("results", obj.get("memories")), list)


def _parse_whole(data: bytes) -> _Source | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if isinstance(doc, dict):
        doc = doc.get("results", doc.get("memories"))
    if not isinstance(doc, list):
        return None
    return _Source("item", iter(enumerate(doc, start=1)))


def _jsonl(path: Path) -> _Source:
    f = path.open("rb")
    total = max(path.stat().st_size, 1)

    def items() -> Iterator[tuple[int, Any]]:
        with f:
            yield from _lines(f)

    return _Source(
        "line", items(), fraction=lambda: min(f.tell() / total, 1.0) if not f.closed else 1.0
    )


def _lines(lines: Iterator[bytes]) -> Iterator[tuple[int, Any]]:
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            yield n, json.loads(raw)
        except ValueError as exc:
            yield n, ValueError(f"not valid JSON: {exc}")


def record_from_obj(obj: Any, default_user: str = "") -> Any:
    """A MemoryRecord from one parsed object: a memgrpc line, a MemoryRecord mapping or mem0."""
    from memgrpc.v1 import memory_pb2 as pb

    if not isinstance(obj, dict):
        raise TypeError("expected a JSON object")
    if isinstance(obj.get("memory"), str) and "content" not in obj:
        return _mem0_record(obj, default_user)
    record = pb.MemoryRecord()
    if isinstance(obj.get("memory"), dict):  # MessageToJson(MemoryRecord)
        json_format.ParseDict(obj, record)
    else:
        obj = dict(obj)
        vector = obj.pop("vector", None)
        model = obj.pop("model", "")
        versions = obj.pop("versions", None) or []
        seq = obj.pop("seq", None)
        json_format.ParseDict(obj, record.memory)
        if vector is not None:
            if not isinstance(vector, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in vector
            ):
                raise TypeError("vector must be a list of numbers")
            record.vector.extend(vector)
        if not isinstance(model, str):
            raise TypeError("model must be a string")
        record.model = model
        if not isinstance(versions, list):
            raise TypeError("versions must be a list")
        for v in versions:
            json_format.ParseDict(v, record.versions.add())
        if seq is not None:
            if isinstance(seq, bool) or not isinstance(seq, int | str):
                raise TypeError("seq must be a whole number")
            record.seq = int(seq)
    if not record.memory.user_id and default_user:
        record.memory.user_id = default_user
    return record


def _mem0_record(obj: dict[str, Any], default_user: str) -> Any:
    from memgrpc.v1 import memory_pb2 as pb

    m = pb.Memory(content=obj["memory"], user_id=str(obj.get("user_id") or default_user))
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise TypeError("metadata must be an object")
    extra = {k: obj[k] for k in ("agent_id", "actor_id", "role") if obj.get(k) is not None}
    meta = {**extra, **meta}
    if meta:
        m.metadata.update(meta)
    if obj.get("run_id"):
        m.session_id = str(obj["run_id"])
    categories = obj.get("categories") or []
    if not isinstance(categories, list):
        raise TypeError("categories must be a list")
    m.categories.extend(str(c) for c in categories)
    created = obj.get("created_at")
    if created:
        m.create_time.CopyFrom(_timestamp(created, "created_at"))
    updated = obj.get("updated_at")
    if updated:
        m.update_time.CopyFrom(_timestamp(updated, "updated_at"))
    # no id: one derived from the content, so importing the same file again still skips it
    m.id = str(obj.get("id") or derived_id("mem", "mem0", m.user_id, m.content, str(created)))
    return pb.MemoryRecord(memory=m)


def _timestamp(value: Any, name: str) -> timestamp_pb2.Timestamp:
    if isinstance(value, int | float) and not isinstance(value, bool):
        dt = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not an ISO 8601 time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
    else:
        raise TypeError(f"{name} must be an ISO 8601 string or a Unix time")
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt.astimezone(UTC))
    return ts
