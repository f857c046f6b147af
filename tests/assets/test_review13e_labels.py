"""Review 13e: label batches a careless collector writes; every row must end in the labels table
or the rejects table, never take the day's run down with it."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iris_assets.core.labels import copy_label_file, read_labelled_day
from tests.assets.test_review13_labelled_at import DAY, scored


def test_a_boolean_labelled_at_is_rejected_not_raised(tmp_path):
    offered = tmp_path / "labels.parquet"
    table = pa.table(
        {
            "flower_id": pa.array([1, 2, 3], pa.int64()),
            "species": pa.array(["setosa", "versicolor", "virginica"]),
            "labelled_at": pa.array([True, False, True]),  # a collector meant "labelled: yes"
        }
    )
    pq.write_table(table, offered)
    root = tmp_path / "flower_labels"
    _, rows = copy_label_file(offered, root, DAY)  # `iris label --date DAY --file ...`
    assert rows == 3, "the landing accepted the batch"
    day = read_labelled_day(root, DAY, scored([1, 2, 3]))
    assert len(day.labelled) + day.rows_rejected == day.landing_rows == 3
    assert day.rows_rejected == 3, "True is no time: each row is quarantined, none accepted"
    assert all("labelled_at" in reason for reason in day.rejects["reason"]), day.rejects


@pytest.mark.parametrize(
    "column",
    [pa.array([1, 2, 3], pa.int64()), pa.array([1.5, 2.0, 3.0])],
    ids=["int", "double"],
)
def test_a_numeric_labelled_at_is_no_epoch(tmp_path, column):
    """A number is refused as a time, not read as seconds (or nanoseconds) since 1970."""
    offered = tmp_path / "labels.parquet"
    ids = pa.array([1, 2, 3], pa.int64())
    pq.write_table(
        pa.table({"flower_id": ids, "species": ["setosa"] * 3, "labelled_at": column}), offered
    )
    root = tmp_path / "flower_labels"
    copy_label_file(offered, root, DAY)
    day = read_labelled_day(root, DAY, scored([1, 2, 3]))
    assert day.rows_rejected == 3 and len(day.labelled) == 0
