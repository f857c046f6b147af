"""Review 13e: label batches a careless collector writes; every row must end in the labels table
or the rejects table, never take the day's run down with it."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iris_assets.core.labels import copy_label_file, read_labelled_day
from iris_assets.core.schema import FEATURE_COLUMNS

DAY = "2026-11-22"


def scored(ids):
    return pd.DataFrame(
        {
            "flower_id": pd.Series(ids, dtype="int64"),
            **{c: [1.0] * len(ids) for c in FEATURE_COLUMNS},
            "prediction": pd.Series([0] * len(ids), dtype="int64"),
            "model_version": "1",
        }
    )


@pytest.mark.xfail(
    strict=True,
    reason="review13e: a Parquet label batch whose optional labelled_at column is boolean is "
    "accepted by `iris label`, then validate_labels raises TypeError (pandas gives a naive NaT "
    "column, compared with an aware now): model_performance fails for the whole day, so none "
    "of its labels, good batches included, reach the labels or the rejects table",
)
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
