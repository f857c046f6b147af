"""The request log's writer process: batches of served requests in, one Delta commit per batch.

The model server (``request_log.py``) starts this process and sends it frames on its stdin: an
8-byte big-endian length, then ``marshal``'s encoding of ``(dropped, rows)`` (the same
interpreter on both ends; twice as fast as pickle for these tuples). Each frame becomes one
append to the ``iris_serving_log`` Delta table (partitioned by ``request_date``), with the
server's running count of dropped requests in the commit's metadata
(``iris.dropped_requests_total``), and one JSON line on stdout saying what happened.

It lives in its own process so that turning rows into Parquet and committing never takes the
server's GIL or event loop, and so that a stuck writer is a process the server can outlive. It
ignores SIGINT and SIGTERM: it stops when its stdin closes (the server stopped or died), after
committing every frame it has read, so a killed server loses only what it had not sent yet.

    python -m iris_assets.serving.log_writer --table PATH --model-name NAME [--endpoint NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import marshal
import math
import re
import secrets
import signal
import struct
import sys
import time
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iris_assets.core.serving_log import PARTITION_COLUMN, SERVING_LOG_SCHEMA

FRAME_HEADER = struct.Struct(">Q")
DROPPED_METADATA_KEY = "iris.dropped_requests_total"
NOT_LOGGED_REFUSED = "the input of a refused request is not logged"
NOT_LOGGED_TOO_LARGE = "request over the logged size limit; not logged"
NOT_LOGGED_NOT_UTF8 = "request is not UTF-8; not logged"
_VERSION_HEADER = b"x-model-version:"

log = logging.getLogger("iris_assets.serving.log_writer")

# One row as the server queues it (see request_log.RequestLog.record).
Row = tuple[float, float, str, int, bytes, bytes | None, int, str | None, bytes, int]


def encode_frame(dropped: int, rows: list[Row]) -> bytes:
    payload = marshal.dumps((dropped, rows))
    return FRAME_HEADER.pack(len(payload)) + payload


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next frame, or None at the end of the stream (a torn last frame counts as the end)."""
    header = _read_exact(stream, FRAME_HEADER.size)
    if header is None:
        return None
    payload = _read_exact(stream, FRAME_HEADER.unpack(header)[0])
    if payload is None:
        return None
    dropped, rows = marshal.loads(payload)  # our own server wrote it, same interpreter
    return {"dropped": dropped, "rows": rows}


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# The queued row as Arrow reads it: one C-level pass turns the whole batch into columns.
_ROW_TYPE = pa.struct(
    [
        ("time", pa.float64()),
        ("latency", pa.float64()),
        ("path", pa.string()),
        ("status", pa.int32()),
        ("extra", pa.binary()),
        ("request", pa.binary()),
        ("size", pa.int64()),
        ("content_type", pa.string()),
        ("response", pa.binary()),
        ("cost", pa.int64()),
    ]
)
_MICROS_PER_DAY = 86_400_000_000


class BatchConverter:
    """Turns queued rows into Arrow tables of ``SERVING_LOG_SCHEMA``; numbers rows per run."""

    def __init__(self, model_name: str, endpoint: str | None, run_id: str | None = None):
        self.model_name = model_name
        self.endpoint = endpoint
        self.run_id = run_id or secrets.token_hex(6)
        self.sequence = 0

    def table(self, rows: list[Row]) -> pa.Table:
        n = len(rows)
        row = pa.array(rows, type=_ROW_TYPE)
        field = {name: row.field(name) for name in _ROW_TYPE.names}
        micros = pc.cast(pc.floor(pc.multiply(field["time"], 1e6)), pa.int64())
        sequence = pa.array(np.arange(self.sequence, self.sequence + n), pa.int64())
        self.sequence += n
        status = field["status"]
        request = field["request"]
        not_kept = pc.if_else(pc.equal(status, 200), NOT_LOGGED_TOO_LARGE, NOT_LOGGED_REFUSED)
        errors = pc.if_else(pc.is_null(request), not_kept, pa.scalar(None, pa.string()))
        request_text, errors = _as_text(request, errors)
        columns = {
            "request_date": pc.cast(pc.divide(micros, _MICROS_PER_DAY), pa.int32()).cast(
                pa.date32()
            ),
            "request_time": micros.cast(pa.timestamp("us", tz="UTC")),
            "databricks_request_id": pc.binary_join_element_wise(
                self.run_id, pc.cast(sequence, pa.string()), "-"
            ),
            "endpoint": pa.array([self.endpoint] * n, pa.string()),
            "path": field["path"],
            "model_name": pa.array([self.model_name] * n, pa.string()),
            "model_version": _versions(field["extra"]),
            "status_code": status,
            "execution_duration_ms": pc.multiply(field["latency"], 1e3),
            "request_content_type": field["content_type"],
            "request_bytes": field["size"],
            "request": request_text,
            "response": field["response"].cast(pa.string()),
            "logging_error": errors,
        }
        return pa.Table.from_pydict(columns, schema=SERVING_LOG_SCHEMA)


def _as_text(request: pa.Array, errors: pa.Array) -> tuple[pa.Array, pa.Array]:
    try:
        return request.cast(pa.string()), errors
    except pa.ArrowInvalid:  # a JSON body in UTF-16 or -32 (json.loads reads those too)
        texts, reasons = [], errors.to_pylist()
        for position, body in enumerate(request.to_pylist()):
            try:
                texts.append(None if body is None else body.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(None)
                reasons[position] = NOT_LOGGED_NOT_UTF8
        return pa.array(texts, pa.string()), pa.array(reasons, pa.string())


def _versions(extras: pa.Array) -> pa.Array:
    """The ``X-Model-Version`` of each response's extra headers (few distinct values a batch)."""
    encoded = extras.dictionary_encode()
    versions = []
    for extra in encoded.dictionary.to_pylist():
        version = None
        for line in (extra or b"").split(b"\r\n"):
            if line.lower().startswith(_VERSION_HEADER):
                version = line[len(_VERSION_HEADER) :].strip().decode("latin-1")
        versions.append(version)
    return pa.array(versions, pa.string()).take(encoded.indices)


def _why_not_logged(status: int) -> str:
    return NOT_LOGGED_TOO_LARGE if status == 200 else NOT_LOGGED_REFUSED


class DeltaAppender:
    """Appends batches to one Delta table, keeping its state between commits (no log re-read)."""

    def __init__(self, table_path: str):
        self.table_path = table_path
        self._table = None

    def commit(self, batch: pa.Table, dropped_total: int) -> int:
        """Append ``batch`` in one Delta commit; returns the table version it made."""
        from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
        from deltalake.exceptions import TableNotFoundError

        if self._table is None:
            with contextlib.suppress(TableNotFoundError):  # else the first batch creates it
                self._table = DeltaTable(self.table_path)
        write_deltalake(
            self._table if self._table is not None else self.table_path,
            batch,
            mode="append",
            partition_by=[PARTITION_COLUMN],
            # LZ4 costs half the CPU of the default Snappy here (30k rows: ~20 ms, not ~35 ms).
            writer_properties=WriterProperties(compression="LZ4_RAW"),
            commit_properties=CommitProperties(
                custom_metadata={DROPPED_METADATA_KEY: str(dropped_total)}
            ),
        )
        if self._table is None:
            self._table = DeltaTable(self.table_path)
        return int(self._table.version())


# Maintenance (``LogMaintenance``): every 5 s batch is a small file and a commit, so the writer
# compacts now and then, between batches. 120 commits is ten minutes of steady traffic.
COMPACT_EVERY_COMMITS = 120
COMPACT_MIN_FILES = 32
# Delta's own default deletedFileRetentionDuration: a vacuum removes only files a commit dropped
# more than a week ago, so reading the log as of any version of the last 7 days still works.
VACUUM_RETENTION_HOURS = 168


def compact_log(table_path: str, min_files: int = COMPACT_MIN_FILES) -> dict[str, int] | None:
    """Compact the log's small files and checkpoint; None when it has fewer than ``min_files``.

    Rows are only rewritten, never dropped: compaction is a Delta commit that swaps files, so an
    append committed meanwhile (another server on the same log) is kept, and a read of an older
    version within the vacuum's retention still finds its files.
    """
    from deltalake import DeltaTable

    table = DeltaTable(table_path)
    files = len(table.file_uris())
    if files < min_files:
        return None
    metrics = table.optimize.compact()
    table.create_checkpoint()
    return {
        "files_before": files,
        "files_after": len(DeltaTable(table_path).file_uris()),
        "files_compacted": int(metrics.get("numFilesRemoved", 0)),
    }


_INTERVAL = re.compile(r"^\s*interval\s+(\d+)\s+([a-z]+?)s?\s*$", re.IGNORECASE)
_UNIT_HOURS = {
    "nanosecond": 1 / 3.6e12,
    "microsecond": 1 / 3.6e9,
    "millisecond": 1 / 3.6e6,
    "second": 1 / 3600,
    "minute": 1 / 60,
    "hour": 1,
    "day": 24,
    "week": 168,
}


def table_retention_hours(configuration: dict[str, str]) -> float | None:
    """The table's own ``delta.deletedFileRetentionDuration`` in hours (None when unset)."""
    value = configuration.get("delta.deletedFileRetentionDuration")
    match = _INTERVAL.match(value or "")
    if not match or match.group(2).lower() not in _UNIT_HOURS:
        return None
    return int(match.group(1)) * _UNIT_HOURS[match.group(2).lower()]


def vacuum_log(table_path: str, retention_hours: int = VACUUM_RETENTION_HOURS) -> dict[str, int]:
    """Delete files the log dropped longer ago than the retention: ``retention_hours``, or the
    table's own ``deletedFileRetentionDuration`` when that is longer (a table that promises 30
    days of time travel keeps them). ``enforce_retention_duration`` refuses a shorter one."""
    from deltalake import DeltaTable

    table = DeltaTable(table_path)
    own = table_retention_hours(table.metadata().configuration)
    hours = max(retention_hours, math.ceil(own)) if own is not None else retention_hours
    vacuumed = table.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=True)
    if vacuumed:  # deltalake lists expired tombstones again until a checkpoint drops them
        table.create_checkpoint()
    return {"files_vacuumed": len(vacuumed), "retention_hours": hours}


class LogMaintenance:
    """Compacts (``compact_log``) and vacuums (``vacuum_log``) after every ``every`` commits of
    the writer (bounded work). Each is reported on its own, and one failing never stops the
    other or the next round: a vacuum runs every round, compacted or not."""

    def __init__(
        self,
        table_path: str,
        every: int = COMPACT_EVERY_COMMITS,
        min_files: int = COMPACT_MIN_FILES,
        retention_hours: int = VACUUM_RETENTION_HOURS,
    ):
        self.table_path, self.every = table_path, every
        self.min_files, self.retention_hours = min_files, retention_hours
        self.commits = 0

    def after_commit(self) -> dict[str, Any] | None:
        self.commits += 1
        if self.every <= 0 or self.commits % self.every:
            return None
        started = time.perf_counter()
        report: dict[str, Any] = {}
        # A conflict or a full disk: the log is as it was; each is tried again next round.
        try:
            if (compacted := compact_log(self.table_path, self.min_files)) is not None:
                report["compaction"] = compacted
        except Exception as exc:
            log.exception("request log: compaction failed")
            report["compaction_failed"] = f"{type(exc).__name__}: {exc}"[:500]
        try:
            vacuumed = vacuum_log(self.table_path, self.retention_hours)
            if vacuumed["files_vacuumed"]:
                report["vacuum"] = vacuumed
        except Exception as exc:
            log.exception("request log: vacuum failed")
            report["vacuum_failed"] = f"{type(exc).__name__}: {exc}"[:500]
        if not report:
            return None
        return {**report, "seconds": round(time.perf_counter() - started, 4)}


def commit(table_path: str, batch: pa.Table, dropped_total: int) -> int:
    """Append ``batch`` to the table at ``table_path`` in one commit (a one-off appender)."""
    return DeltaAppender(table_path).commit(batch, dropped_total)


def run(
    table_path: str,
    converter: BatchConverter,
    frames: BinaryIO,
    reports: Any,
    maintenance: LogMaintenance | None = None,
) -> tuple[int, int]:
    """Commit every frame read from ``frames`` until it ends; returns (rows written, failed).

    ``maintenance`` (default: ``LogMaintenance`` on the table) compacts between commits and
    logs what it did on stderr.
    """
    written = failed = 0
    appender = DeltaAppender(table_path)
    maintenance = maintenance or LogMaintenance(table_path)
    while (frame := read_frame(frames)) is not None:
        rows, dropped = frame["rows"], frame["dropped"]
        if not rows:
            continue
        started = time.perf_counter()
        try:
            version = appender.commit(converter.table(rows), dropped)
        except Exception as exc:  # a full disk, a broken table: report it and keep serving
            failed += len(rows)
            log.exception("request log: %d rows not written", len(rows))
            report = {"failed": len(rows), "error": f"{type(exc).__name__}: {exc}"[:500]}
        else:
            written += len(rows)
            report = {
                "committed": len(rows),
                "version": version,
                "seconds": round(time.perf_counter() - started, 4),
            }
        reports.write(json.dumps(report) + "\n")
        reports.flush()
        # On stderr: stdout carries one report per batch, which the server counts.
        if "committed" in report and (maintained := maintenance.after_commit()):
            log.info("request log maintenance: %s", json.dumps(maintained))
    return written, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iris_assets.serving.log_writer", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--table", required=True, help="the Delta table's folder")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--endpoint")
    args = parser.parse_args(argv)
    # The server decides when the log ends (by closing our stdin), not a signal to the group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    converter = BatchConverter(args.model_name, args.endpoint)
    written, failed = run(args.table, converter, sys.stdin.buffer, sys.stdout)
    log.info("request log closed: %d rows written, %d failed", written, failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
