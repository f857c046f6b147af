"""Review 13: a Parquet label batch whose flower_id is a binary column of non-UTF-8 bytes.

``iris label`` copies it (``inspect_file`` finds it readable) and then every
``model_performance`` run of that day raises UnicodeDecodeError in
``core.validation._text_array`` (``series.astype(object).astype(str)``): the day's other labels
are never judged, instead of the bad rows being quarantined with a reason. The same validation
reads ``new_flowers`` and ingest sources.
"""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iris_assets.core.labels import copy_label_file, read_labelled_day
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.core.validation import validate_measurements

DAY = "2026-11-22"


def test_non_utf8_binary_ids_are_quarantined_not_raised(tmp_path):
    scored = pd.DataFrame(
        {
            "flower_id": pd.Series([1001], dtype="int64"),
            **{c: [1.0] for c in FEATURE_COLUMNS},
            "prediction": pd.Series([0], dtype="int64"),
            "model_version": "1",
        }
    )
    source = tmp_path / "labels.parquet"
    ids = pa.array([b"1001", b"\xff\xfe", b"1001\xff"], pa.binary())
    species = pa.array([b"setosa", b"setosa", b"\xc3("], pa.binary())
    pq.write_table(pa.table({"flower_id": ids, "species": species}), source)
    copy_label_file(source, tmp_path / "landing", DAY)  # accepted: the landing can read it
    day = read_labelled_day(tmp_path / "landing", DAY, scored)
    assert day.rows_rejected == 2 and day.landing_rows == 3, "every row accounted for"
    assert day.labelled["flower_id"].tolist() == [1001]
    reasons = day.rejects["reason"].tolist()
    assert all(r.startswith("flower_id is not a non-negative integer") for r in reasons)
    assert "species is not one of" in reasons[1], "every reason of the row, not just the first"
    record = json.loads(day.rejects["record"].iloc[0])
    assert "\\xff\\xfe" in record["flower_id"], "the raw bytes stay visible"


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\x80", b"12\xe2\x82"])
def test_non_utf8_bytes_in_any_column_of_a_feature_batch_are_rejected_with_a_reason(bad):
    """new_flowers and ingest validate through the same function."""
    raw = pd.DataFrame(
        {
            "flower_id": pd.Series([b"1", bad, 3, b"4"], dtype=object),
            **{c: pd.Series([1.0, 1.0, bad, 2.0], dtype=object) for c in FEATURE_COLUMNS},
        }
    )
    result = validate_measurements(raw)
    assert result.valid["flower_id"].tolist() == [1, 4]
    assert len(result.valid) + len(result.rejects) == len(raw)
    by_id = dict(zip(result.rejects["flower_id"], result.rejects["reason"], strict=True))
    assert by_id["3"] == "; ".join(f"{c} is not a number" for c in FEATURE_COLUMNS)
    [bad_id] = [k for k in by_id if k != "3"]
    assert by_id[bad_id].startswith("flower_id is not a non-negative integer")
