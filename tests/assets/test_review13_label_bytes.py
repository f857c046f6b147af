"""Review 13: a Parquet label batch whose flower_id is a binary column of non-UTF-8 bytes.

``iris label`` copies it (``inspect_file`` finds it readable) and then every
``model_performance`` run of that day raises UnicodeDecodeError in
``core.validation._text_array`` (``series.astype(object).astype(str)``): the day's other labels
are never judged, instead of the bad rows being quarantined with a reason. The same validation
reads ``new_flowers`` and ingest sources.
"""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iris_assets.core.labels import copy_label_file, read_labelled_day
from iris_assets.core.schema import FEATURE_COLUMNS

DAY = "2026-11-22"


@pytest.mark.xfail(
    strict=True,
    raises=UnicodeDecodeError,
    reason="review 13: core/validation.py:115 _text_array decodes bytes with astype(str)",
)
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
    ids = pa.array([b"1001", b"\xff\xfe"], pa.binary())
    pq.write_table(pa.table({"flower_id": ids, "species": ["setosa", "setosa"]}), source)
    copy_label_file(source, tmp_path / "landing", DAY)  # accepted: the landing can read it
    day = read_labelled_day(tmp_path / "landing", DAY, scored)
    assert day.rows_rejected == 1 and day.landing_rows == 2
    assert day.labelled["flower_id"].tolist() == [1001]
