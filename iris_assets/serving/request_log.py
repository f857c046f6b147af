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
# The share of max_bytes a frame (rows being sent, and their marshal copy) may take: 1/4.
FRAME_SHARE = 4
# A writer that dies is replaced after 0.5 s, then 1, 2, 4, 8 s while replacements die before
# committing anything; after that many in a row the log is off (and says so in /health).
MAX_WRITER_RESTARTS = 5
RESTART_BACKOFF_SECONDS = 0.5

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
        self._queued_out = 0  # forwarder: bytes ever released (sent to the writer, or lost)
        # A frame holds a marshal copy of its rows: frames are at most this many bytes of rows,
        # and rows may use only the rest of max_bytes, so rows queued + rows in flight + the copy
        # stay under max_bytes together.
        self.frame_bytes = max(max_bytes // FRAME_SHARE, 1)
        self._row_bytes = max_bytes - self.frame_bytes
        self.sent = 0  # forwarder
        self.committed = 0  # report reader
        self.failed = 0  # report reader
        self.last_commit_version: int | None = None
        self.last_error: str | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._abandoned = threading.Event()  # close() gave up on the writer
        self._reported_drops = 0
        self.lost = 0  # forwarder: rows taken off the queue that will never be committed
        self.writer_restarts = 0  # forwarder
        self.writer_gave_up = False  # forwarder: MAX_WRITER_RESTARTS starts in a row failed
        self._failed_starts = 0  # writers in a row that died before committing anything
        self._command = [sys.executable, "-m", WRITER_MODULE, "--table", str(self.table_path)]
        self._command += ["--model-name", model_name]
        if endpoint:
            self._command += ["--endpoint", endpoint]
        self._start_writer()
        self._forwarder = threading.Thread(target=self._forward, name="request-log", daemon=True)
        self._forwarder.start()

    def _start_writer(self) -> None:
        # Rows sent to this writer, and what it reported: a writer that dies has lost the rest.
        self._writer_sent = 0
        self._writer_reports = {"committed": 0, "failed": 0}
        self._writer = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the server's own log
            env={k: v for k, v in os.environ.items() if k != "IRIS_SERVING_ADMIN_TOKEN"},
            # Its own session, so its own scheduling group: with Linux's autogroup scheduling a
            # child in the server's session is paid from the server's share of a busy machine's
            # CPUs, and the log would slow the answers it records.
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read_reports,
            args=(self._writer, self._writer_reports),
            name="request-log-reports",
            daemon=True,
        )
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
        pending = self._queued_in - self._queued_out
        if len(self._queue) >= self.max_rows or pending + cost > self._row_bytes:
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
        if len(self._queue) == self.batch_rows or (
            pending < self.frame_bytes <= pending + cost  # a frame's bytes are waiting
        ):
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
            "lost": self.lost,
            "writer_pid": self._writer.pid,
            "writer_running": self.writer_running,
            "writer_restarts": self.writer_restarts,
        }

    @property
    def writer_running(self) -> bool:
        return not self.writer_gave_up and self._writer.poll() is None

    # --- shutdown --------------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> dict[str, Any]:
        """Send what is queued, let the writer commit it and exit (killed after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        self._closing.set()
        self._wake.set()
        self._forwarder.join(timeout)
        if self._forwarder.is_alive():  # blocked on a stuck writer's pipe
            log.error("request log: the writer did not take the last batches; stopping it")
            self._abandoned.set()
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
        # Everything recorded and not committed (or reported failed) is lost by now: rows a dead
        # writer held, rows no writer took, rows a stuck writer was killed with.
        self.lost = max(self.recorded - self.committed - self.failed, self.lost)
        stats = self.stats()
        lost = self.lost
        log.info(
            "request log closed: %d requests recorded, %d committed, %d dropped, %d lost",
            self.recorded,
            self.committed,
            self.dropped,
            lost,
        )
        return stats

    # --- threads ---------------------------------------------------------------------------------
    def _forward(self) -> None:
        queue = self._queue
        try:
            while True:
                closing = self._closing.is_set()
                if not closing and len(queue) < self.batch_rows:
                    self._wake.wait(self.flush_seconds)
                    self._wake.clear()
                    closing = self._closing.is_set()
                if (
                    not self._abandoned.is_set()
                    and not self.writer_gave_up
                    and (not self._reader.is_alive() or self._writer.poll() is not None)
                ):
                    self._replace_writer()  # died while idle (killed, crashed): a new one now
                while queue:
                    rows, size = self._take_batch()
                    count, sent = len(rows), self._send(rows)
                    del rows  # then the bytes count as released
                    self._queued_out += size
                    if not sent:
                        self.lost += count
                        continue
                    if not closing and not self._full_batch_waiting():
                        break  # a partial batch waits for the next tick
                if closing:
                    return
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._writer.stdin.close()

    def _full_batch_waiting(self) -> bool:
        pending = self._queued_in - self._queued_out
        return len(self._queue) >= self.batch_rows or pending >= self.frame_bytes

    def _take_batch(self) -> tuple[list[tuple[Any, ...]], int]:
        """Up to ``batch_rows`` rows and ``frame_bytes`` bytes (at least one row) off the queue.

        They keep counting against the byte bound until they are sent (``_queued_out``).
        """
        queue, rows, size = self._queue, [], 0
        while queue and len(rows) < self.batch_rows:
            cost = queue[0][-1]
            if rows and size + cost > self.frame_bytes:
                break
            rows.append(queue.popleft())
            size += cost
        return rows, size

    def _send(self, rows: list[tuple[Any, ...]]) -> bool:
        """Send one frame, to a new writer if the current one is gone; False if none takes it."""
        frame = encode_frame(self.dropped, rows)
        while not self.writer_gave_up:  # (lost rows are counted by the caller)
            try:
                self._writer.stdin.write(frame)
                self._writer.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                if self._abandoned.is_set():  # close() stopped a stuck writer: no new one
                    return False
                self._replace_writer()
                continue
            self._writer_sent += len(rows)
            self.sent += len(rows)
            return True
        return False

    def _replace_writer(self) -> None:
        """Count what the dead writer lost, and start another after a backoff (bounded)."""
        old = self._writer
        with contextlib.suppress(OSError):
            old.kill()  # a writer whose pipe broke may still be alive (it closed its stdin)
        old.wait()
        self._reader.join(5.0)  # its stdout ends with it: every report it made is counted
        reports = self._writer_reports
        lost = self._writer_sent - reports["committed"] - reports["failed"]
        self.lost += max(lost, 0)
        if reports["committed"]:
            self._failed_starts = 0
        log.error(
            "request log: the writer (pid %d) exited with %s; %d rows it held are lost",
            old.pid,
            old.returncode,
            max(lost, 0),
        )
        if self._failed_starts >= MAX_WRITER_RESTARTS:
            self.writer_gave_up = True
            log.error(
                "request log: %d writers in a row died before committing; the log is off and "
                "every further request is counted as lost",
                self._failed_starts,
            )
            return
        delay = RESTART_BACKOFF_SECONDS * 2**self._failed_starts
        self._failed_starts += 1
        self._closing.wait(delay)  # a closing server restarts at once, to send what is queued
        self._start_writer()
        self.writer_restarts += 1
        log.warning("request log: writer restarted (pid %d)", self._writer.pid)

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

    def _read_reports(self, writer: subprocess.Popen, counts: dict[str, int]) -> None:
        for line in writer.stdout:
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if "committed" in report:
                counts["committed"] += report["committed"]
                self.committed += report["committed"]
                self.last_commit_version = report.get("version")
            else:
                counts["failed"] += report.get("failed", 0)
                self.failed += report.get("failed", 0)
                self.last_error = report.get("error")
                log.error("request log: a batch failed: %s", self.last_error)
        if not self._closing.is_set():
            self._wake.set()  # the writer is gone: the forwarder replaces it now, not next tick


def disabled_stats() -> dict[str, Any]:
    return {"enabled": False}
