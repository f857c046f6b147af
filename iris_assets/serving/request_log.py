"""The server's side of the request log: a bounded queue, a forwarding thread, a writer process.

``RequestLog.record`` is all a request pays: one tuple appended to a ``deque`` on the event loop,
no lock, no I/O, no await. When the queue holds ``max_rows`` rows or ``max_bytes`` bytes of
payload, the row is dropped and counted instead (``dropped``), so a writer that falls behind or
hangs costs memory up to that bound and never time on the request path.

A thread takes up to ``batch_rows`` rows from the queue every ``flush_seconds`` (at once when
more are waiting) and sends them as one frame to the writer process (``log_writer.py``), which
commits each frame as one Delta append. The thread blocks on the pipe when the writer is slow,
with the GIL released; meanwhile the queue fills and then drops. A thread reading the writer's
stdout counts what was committed. ``close`` sends what is queued, closes the pipe and waits for
the writer's last commit.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from iris_assets.core.serving_log import MAX_LOGGED_REQUEST_BYTES
from iris_assets.serving.log_writer import encode_frame

WRITER_MODULE = "iris_assets.serving.log_writer"
DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_BATCH_ROWS = 50_000
DEFAULT_FLUSH_SECONDS = 5.0
# What a queued row costs besides its payload bytes (the tuple, floats, ints): measured ~250.
ROW_OVERHEAD_BYTES = 256

log = logging.getLogger("iris_assets.serving.request_log")


class RequestLog:
    """Requests in (``record``), batches out to a writer process that appends them to Delta."""

    def __init__(
        self,
        table_path: Path,
        model_name: str,
        endpoint: str | None = None,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        max_request_bytes: int = MAX_LOGGED_REQUEST_BYTES,
    ) -> None:
        self.table_path = Path(table_path)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.max_request_bytes = max_request_bytes
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        # Each counter has one writing thread, so reading it from another is safe.
        self.recorded = 0  # event loop
        self.dropped = 0  # event loop
        self._queued_in = 0  # event loop: bytes ever queued
        self._queued_out = 0  # forwarder: bytes ever taken off the queue
        self.sent = 0  # forwarder
        self.unsent = 0  # forwarder: rows lost at close (the writer was stuck or gone)
        self.committed = 0  # report reader
        self.failed = 0  # report reader
        self.last_commit_version: int | None = None
        self.last_error: str | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._reported_drops = 0
        command = [sys.executable, "-m", WRITER_MODULE, "--table", str(self.table_path)]
        command += ["--model-name", model_name]
        if endpoint:
            command += ["--endpoint", endpoint]
        self._writer = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the server's own log
            env={k: v for k, v in os.environ.items() if k != "IRIS_SERVING_ADMIN_TOKEN"},
            # Its own session, so its own scheduling group: with Linux's autogroup scheduling a
            # child in the server's session is paid from the server's share of a busy machine's
            # CPUs, and the log would slow the answers it records.
            start_new_session=True,
        )
        self._forwarder = threading.Thread(target=self._forward, name="request-log", daemon=True)
        self._reader = threading.Thread(target=self._read_reports, name="request-log-reports")
        self._reader.daemon = True
        self._forwarder.start()
        self._reader.start()

    # --- the request path (event loop) ----------------------------------------------------------
    def record(
        self,
        path: str,
        content_type: str | None,
        body: bytes,
        response: tuple[int, bytes, bytes],
        latency: float,
    ) -> None:
        status, payload, extra = response
        size = len(body)
        answered = status == 200
        request = body if answered and size <= self.max_request_bytes else None
        cost = ROW_OVERHEAD_BYTES + len(payload) + (size if request is not None else 0)
        if (
            len(self._queue) >= self.max_rows
            or self._queued_in - self._queued_out + cost > self.max_bytes
        ):
            self.dropped += 1
            return
        self._queued_in += cost
        self.recorded += 1
        self._queue.append(
            (
                time.time(),
                latency,
                path,
                status,
                extra,
                request,
                size,
                content_type if answered else None,  # a refused header is input too
                payload,
                cost,
            )
        )
        if len(self._queue) == self.batch_rows:
            self._wake.set()

    # --- state -----------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "table": str(self.table_path),
            "recorded": self.recorded,
            "dropped": self.dropped,
            "queued_rows": len(self._queue),
            "queued_bytes": self._queued_in - self._queued_out,
            "max_queued_rows": self.max_rows,
            "max_queued_bytes": self.max_bytes,
            "sent": self.sent,
            "committed": self.committed,
            "failed": self.failed,
            "last_commit_version": self.last_commit_version,
            "last_error": self.last_error,
            "writer_pid": self._writer.pid,
            "writer_running": self._writer.poll() is None,
        }

    # --- shutdown --------------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> dict[str, Any]:
        """Send what is queued, let the writer commit it and exit (killed after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        self._closing.set()
        self._wake.set()
        self._forwarder.join(timeout)
        if self._forwarder.is_alive():  # blocked on a stuck writer's pipe
            log.error("request log: the writer did not take the last batches; stopping it")
            self._writer.kill()
            self._forwarder.join(5.0)
        try:
            self._writer.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.error("request log: the writer did not finish its last commit; stopping it")
            self._writer.kill()
            self._writer.wait()
        self._reader.join(5.0)
        self.report_drops()
        stats = self.stats()
        lost = self.recorded - self.committed - self.failed
        log.info(
            "request log closed: %d requests recorded, %d committed, %d dropped, %d lost",
            self.recorded,
            self.committed,
            self.dropped,
            lost,
        )
        return {**stats, "lost": lost}

    # --- threads ---------------------------------------------------------------------------------
    def _forward(self) -> None:
        stream = self._writer.stdin
        queue = self._queue
        try:
            while True:
                closing = self._closing.is_set()
                if not closing and len(queue) < self.batch_rows:
                    self._wake.wait(self.flush_seconds)
                    self._wake.clear()
                    closing = self._closing.is_set()
                while queue:
                    rows = [queue.popleft() for _ in range(min(len(queue), self.batch_rows))]
                    self._queued_out += sum(row[-1] for row in rows)
                    try:
                        stream.write(encode_frame(self.dropped, rows))
                        stream.flush()
                    except (BrokenPipeError, OSError, ValueError):
                        self.unsent += len(rows)
                        if not self._closing.is_set():
                            log.error("request log: the writer is gone; %d rows lost", len(rows))
                        continue
                    self.sent += len(rows)
                    if not closing and len(queue) < self.batch_rows:
                        break  # a partial batch waits for the next tick
                if closing:
                    return
        finally:
            with contextlib.suppress(OSError, ValueError):
                stream.close()

    def report_drops(self) -> None:
        """Log the drop count when it grew (the server calls this once a second)."""
        dropped = self.dropped
        if dropped > self._reported_drops:
            log.warning(
                "request log: %d requests not logged so far (queue full: %d rows, %d bytes max); "
                "answers were not delayed",
                dropped,
                self.max_rows,
                self.max_bytes,
            )
            self._reported_drops = dropped

    def _read_reports(self) -> None:
        for line in self._writer.stdout:
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if "committed" in report:
                self.committed += report["committed"]
                self.last_commit_version = report.get("version")
            else:
                self.failed += report.get("failed", 0)
                self.last_error = report.get("error")
                log.error("request log: a batch failed: %s", self.last_error)


def disabled_stats() -> dict[str, Any]:
    return {"enabled": False}
