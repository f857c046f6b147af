"""The request log is compacted between batches: rows kept, files fewer, old versions readable.

Real Delta tables written by the writer's own code (``run`` over encoded frames, ``DeltaAppender``)
and a second appender in a thread, as a second server on the same log would be.
"""

from __future__ import annotations

import io
import threading
import time

import pytest
from deltalake import DeltaTable

from iris_assets.serving.log_writer import (
    BatchConverter,
    DeltaAppender,
    LogMaintenance,
    compact_log,
    encode_frame,
    run,
)


def queued_rows(n: int, start: float) -> list[tuple]:
    body = b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}'
    return [
        (start + i, 0.001, "/invocations", 200, b"X-Model-Version: 3\r\n", body, len(body),
         "application/json", b'{"predictions": [0]}', 0)
        for i in range(n)
    ]  # fmt: skip


def frames(batches: int, rows: int) -> io.BytesIO:
    start = time.time()
    return io.BytesIO(
        b"".join(encode_frame(0, queued_rows(rows, start + b * rows)) for b in range(batches))
    )


def count(table: str, version: int | None = None) -> int:
    return DeltaTable(table, version=version).to_pyarrow_table().num_rows


def test_the_writer_compacts_every_n_commits_and_keeps_every_row(tmp_path):
    table = str(tmp_path / "iris_serving_log")
    converter = BatchConverter("iris_model", "iris-test")
    maintenance = LogMaintenance(table, every=10, min_files=8)
    written, failed = run(table, converter, frames(25, 7), io.StringIO(), maintenance)
    assert (written, failed) == (175, 0)
    assert count(table) == 175, "compaction rewrites rows, never drops them"
    files = len(DeltaTable(table).file_uris())
    assert files <= 6, f"25 batch files were compacted twice, {files} files left"
    # Time travel within the retention still works: version 4 held 5 batches.
    assert count(table, version=4) == 35
    ids = DeltaTable(table).to_pyarrow_table().column("databricks_request_id").to_pylist()
    assert len(set(ids)) == 175


def test_compaction_below_the_file_threshold_commits_nothing(tmp_path):
    table = str(tmp_path / "log")
    run(table, BatchConverter("m", None), frames(3, 2), io.StringIO(), LogMaintenance(table, 0))
    version = DeltaTable(table).version()
    assert compact_log(table, min_files=8) is None
    assert DeltaTable(table).version() == version


def test_appends_made_while_compacting_are_not_lost(tmp_path):
    table = str(tmp_path / "log")
    converter = BatchConverter("iris_model", "a")
    run(table, converter, frames(20, 5), io.StringIO(), LogMaintenance(table, every=0))
    other = BatchConverter("iris_model", "b")
    appender, errors = DeltaAppender(table), []

    def append_forever():
        try:
            for b in range(30):
                appender.commit(other.table(queued_rows(3, time.time() + b)), 0)
        except Exception as exc:  # the assertion below shows it
            errors.append(exc)

    writer = threading.Thread(target=append_forever)
    writer.start()
    outcomes = []
    while writer.is_alive():
        try:
            outcomes.append(compact_log(table, min_files=2))
        except Exception as exc:  # a compaction that lost the race is retried, nothing else
            outcomes.append(type(exc).__name__)
    writer.join()
    assert not errors, errors
    assert count(table) == 100 + 90, outcomes
    assert any(isinstance(o, dict) for o in outcomes), outcomes


def test_a_retention_shorter_than_the_tables_is_refused(tmp_path):
    table = str(tmp_path / "log")
    run(table, BatchConverter("m", None), frames(4, 2), io.StringIO(), LogMaintenance(table, 0))
    with pytest.raises(Exception, match="(?i)retention"):
        compact_log(table, min_files=2, retention_hours=1)
    assert count(table) == 8
