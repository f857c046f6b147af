"""The request log's writer process: batches of served requests in, one Delta commit per batch.

The model server (``request_log.py``) starts this process and sends it frames on its stdin: an
8-byte big-endian length, then a pickled ``{"dropped": N, "rows": [...]}``. Each frame becomes one
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
import json
import logging
import pickle
import secrets
import signal
import struct
import sys
import time
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

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
    payload = pickle.dumps({"dropped": dropped, "rows": rows}, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(payload)) + payload


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next frame, or None at the end of the stream (a torn last frame counts as the end)."""
    header = _read_exact(stream, FRAME_HEADER.size)
    if header is None:
        return None
    payload = _read_exact(stream, FRAME_HEADER.unpack(header)[0])
    if payload is None:
        return None
    return pickle.loads(payload)  # the server that started us wrote it: a trusted peer


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class BatchConverter:
    """Turns queued rows into Arrow tables of ``SERVING_LOG_SCHEMA``; numbers rows per run."""

    def __init__(self, model_name: str, endpoint: str | None, run_id: str | None = None):
        self.model_name = model_name
        self.endpoint = endpoint
        self.run_id = run_id or secrets.token_hex(6)
        self.sequence = 0
        self._versions: dict[bytes, str | None] = {}

    def table(self, rows: list[Row]) -> pa.Table:
        n = len(rows)
        (times, latencies, paths, statuses, extras, requests, sizes, types, responses, _) = zip(
            *rows, strict=True
        )
        micros = (np.fromiter(times, dtype="float64", count=n) * 1e6).astype("int64")
        request_time = pa.array(micros, type=pa.timestamp("us", tz="UTC"))
        request_date = pa.array((micros // 86_400_000_000).astype("int32"), pa.int32())
        first = self.sequence
        self.sequence += n
        requests_text, errors = self._requests(requests, statuses)
        columns = {
            "request_date": request_date.cast(pa.date32()),
            "request_time": request_time,
            "databricks_request_id": pa.array(
                [f"{self.run_id}-{i}" for i in range(first, first + n)], pa.string()
            ),
            "endpoint": pa.array([self.endpoint] * n, pa.string()),
            "path": pa.array(paths, pa.string()),
            "model_name": pa.array([self.model_name] * n, pa.string()),
            "model_version": pa.array([self._version(extra) for extra in extras], pa.string()),
            "status_code": pa.array(statuses, pa.int32()),
            "execution_duration_ms": pa.array(
                np.fromiter(latencies, dtype="float64", count=n) * 1e3, pa.float64()
            ),
            "request_content_type": pa.array(types, pa.string()),
            "request_bytes": pa.array(sizes, pa.int64()),
            "request": requests_text,
            "response": pa.array(responses, pa.binary()).cast(pa.string()),
            "logging_error": pa.array(errors, pa.string()),
        }
        return pa.Table.from_pydict(columns, schema=SERVING_LOG_SCHEMA)

    def _requests(
        self, requests: tuple[bytes | None, ...], statuses: tuple[int, ...]
    ) -> tuple[pa.Array, list[str | None]]:
        errors: list[str | None] = [
            None if request is not None else _why_not_logged(status)
            for request, status in zip(requests, statuses, strict=True)
        ]
        binary = pa.array(requests, pa.binary())
        try:
            return binary.cast(pa.string()), errors
        except pa.ArrowInvalid:  # a JSON body in UTF-16 or -32 (json.loads reads those too)
            texts: list[str | None] = []
            for position, request in enumerate(requests):
                try:
                    texts.append(None if request is None else request.decode("utf-8"))
                except UnicodeDecodeError:
                    texts.append(None)
                    errors[position] = NOT_LOGGED_NOT_UTF8
            return pa.array(texts, pa.string()), errors

    def _version(self, extra: bytes) -> str | None:
        if extra not in self._versions:
            version = None
            for line in extra.split(b"\r\n"):
                if line.lower().startswith(_VERSION_HEADER):
                    version = line[len(_VERSION_HEADER) :].strip().decode("latin-1")
            self._versions[extra] = version
        return self._versions[extra]


def _why_not_logged(status: int) -> str:
    return NOT_LOGGED_TOO_LARGE if status == 200 else NOT_LOGGED_REFUSED


def commit(table_path: str, batch: pa.Table, dropped_total: int) -> int:
    """Append ``batch`` in one Delta commit; returns the table version it made."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    write_deltalake(
        table_path,
        batch,
        mode="append",
        partition_by=[PARTITION_COLUMN],
        commit_properties=CommitProperties(
            custom_metadata={DROPPED_METADATA_KEY: str(dropped_total)}
        ),
    )
    return int(DeltaTable(table_path).version())


def run(
    table_path: str, converter: BatchConverter, frames: BinaryIO, reports: Any
) -> tuple[int, int]:
    """Commit every frame read from ``frames`` until it ends; returns (rows written, failed)."""
    written = failed = 0
    while (frame := read_frame(frames)) is not None:
        rows, dropped = frame["rows"], frame["dropped"]
        if not rows:
            continue
        started = time.perf_counter()
        try:
            version = commit(table_path, converter.table(rows), dropped)
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
