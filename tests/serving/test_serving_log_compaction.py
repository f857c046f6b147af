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
    table_retention_hours,
    vacuum_log,
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
        vacuum_log(table, retention_hours=1)
    assert count(table) == 8


def logged(table: str, batches: int = 40) -> str:
    run(
        table,
        BatchConverter("m", None),
        frames(batches, 2),
        io.StringIO(),
        LogMaintenance(table, 0),
    )
    return table


def test_a_table_keeping_files_longer_than_a_week_is_compacted_and_vacuumed_with_its_own(
    tmp_path,
):
    """deletedFileRetentionDuration 30 days: vacuum(168 h) would be refused; the log vacuums
    with the table's 720 h instead, and compaction is reported as done, not as failed."""
    table = logged(str(tmp_path / "log"))
    DeltaTable(table).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 30 days"}
    )
    maintenance = LogMaintenance(table, every=1, min_files=8)
    report = maintenance.after_commit()
    assert "compaction_failed" not in report and "vacuum_failed" not in report, report
    assert report["compaction"]["files_compacted"] == 40
    assert len(DeltaTable(table).file_uris()) == 1
    assert vacuum_log(table)["retention_hours"] == 720
    assert count(table, version=5) == 12  # the compacted-away files are kept for 30 days


def test_the_log_keeps_vacuuming_on_rounds_with_nothing_to_compact(tmp_path):
    table = logged(str(tmp_path / "log"))
    # A table whose own retention is 0 hours, so this test need not wait a week for a vacuum.
    DeltaTable(table).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 0 hours"}
    )
    DeltaTable(table).optimize.compact()  # compacted earlier (by a round, or by hand)
    on_disk = len(list((tmp_path / "log").rglob("*.parquet")))
    maintenance = LogMaintenance(table, every=1, min_files=8, retention_hours=0)
    report = maintenance.after_commit()
    assert "compaction" not in report, "one file left: nothing to compact"
    assert report["vacuum"]["files_vacuumed"] == on_disk - 1, report
    assert count(table) == 80
    assert maintenance.after_commit() is None  # nothing left to do: nothing reported


def test_a_failed_compaction_does_not_stop_the_vacuum(tmp_path, monkeypatch):
    import iris_assets.serving.log_writer as log_writer

    table = logged(str(tmp_path / "log"))
    DeltaTable(table).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 0 hours"}
    )
    DeltaTable(table).optimize.compact()

    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(log_writer, "compact_log", full_disk)
    report = LogMaintenance(table, every=1, min_files=1, retention_hours=0).after_commit()
    assert report["compaction_failed"].startswith("OSError")
    assert report["vacuum"]["files_vacuumed"] > 0


@pytest.mark.parametrize(
    ("value", "hours"),
    [
        ("interval 30 days", 720),
        ("interval 1 week", 168),
        ("INTERVAL 168 HOURS", 168),
        ("interval 90 minutes", 1.5),
        ("interval 0 hours", 0),
        ("30 days", None),
        ("interval 3 fortnights", None),
        (None, None),
    ],
)
def test_the_tables_retention_is_read_from_its_property(value, hours):
    configuration = {} if value is None else {"delta.deletedFileRetentionDuration": value}
    assert table_retention_hours(configuration) == hours
