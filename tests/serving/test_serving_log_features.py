"""``core.serving_log.served_features``: a day's answered requests back as feature rows.

Rows are written by the writer process's own code (``BatchConverter`` + ``commit``) into a real
Delta table and read through the real table store.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.core.serving_log import SERVING_LOG_SCHEMA, served_features, served_table
from iris_assets.core.tables import DeltaTableStore
from iris_assets.serving.log_writer import BatchConverter, commit
from iris_assets.settings import load_settings

TABLE = "iris_dev.ml.iris_serving_log"
VERSION = b"X-Model-Version: 1\r\n"
OK = b'{"predictions":[0]}'


def at(day: str, hour: int = 12) -> float:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00").timestamp()


def row(when: float, body: bytes | None, status: int = 200, content_type="application/json"):
    size = len(body or b"")
    return (when, 0.0001, "/invocations", status, VERSION, body, size, content_type, OK, 0)


def records(*values: list[float]) -> bytes:
    return json.dumps(
        {"dataframe_records": [dict(zip(FEATURE_COLUMNS, v, strict=True)) for v in values]}
    ).encode()


@pytest.fixture
def store(tmp_path):
    return DeltaTableStore(tmp_path / "warehouse")


def write(store: DeltaTableStore, rows) -> None:
    commit(str(store.path(TABLE)), BatchConverter("m", "iris-dev").table(rows), dropped_total=0)


def test_a_days_answered_requests_come_back_as_feature_rows_in_every_form(store):
    day, other = "2026-11-21", "2026-11-22"
    split = {"columns": list(FEATURE_COLUMNS)[::-1], "data": [[4.0, 3.0, 2.0, 1.0]]}
    csv = (",".join(FEATURE_COLUMNS) + "\n5,6,7,8\n").encode()
    write(
        store,
        [
            row(at(day, 0), records([1, 2, 3, 4], [1.5, 2.5, 3.5, 4.5])),
            row(at(day, 23), json.dumps({"dataframe_split": split}).encode()),
            row(at(day, 6), csv, content_type="text/csv"),
            row(at(day, 7), None, status=400),  # refused: no input kept, no feature row
            row(at(day, 8), None, status=200),  # over the logged size: nothing to read back
            row(at(other, 0), records([9, 9, 9, 9])),  # another day
        ],
    )

    served = served_features(store, TABLE, day).features

    assert list(served.columns) == list(FEATURE_COLUMNS)
    assert sorted(map(tuple, served.to_numpy().tolist())) == [
        (1.0, 2.0, 3.0, 4.0),
        (1.0, 2.0, 3.0, 4.0),  # dataframe_split with columns in another order
        (1.5, 2.5, 3.5, 4.5),
        (5.0, 6.0, 7.0, 8.0),
    ]
    assert served_features(store, TABLE, other).features.to_numpy().tolist() == [
        [9.0, 9.0, 9.0, 9.0]
    ]


def test_no_table_or_no_requests_is_an_empty_frame_not_an_error(store):
    assert served_features(store, TABLE, "2026-11-21").features.empty
    write(store, [row(at("2026-11-20"), records([1, 2, 3, 4]))])
    empty = served_features(store, TABLE, "2026-11-21").features
    assert empty.empty and list(empty.columns) == list(FEATURE_COLUMNS)
    with pytest.raises(ValueError):
        served_features(store, TABLE, "2026-11-21' OR '1'='1")


def test_a_busy_day_is_read_as_an_evenly_spaced_subset(store):
    day = "2026-11-21"
    write(store, [row(at(day) + i, records([1 + i / 100, 1, 1, 1])) for i in range(1000)])
    served = served_features(store, TABLE, day, max_requests=100).features
    assert len(served) == 100
    firsts = sorted(served[FEATURE_COLUMNS[0]].tolist())
    assert firsts[0] < 1.2 and firsts[-1] > 10.8  # spread over the day, not its first hour


def test_databricks_inference_table_rows_without_a_content_type_read_as_json(store):
    # AI Gateway's payload table has no request_content_type column; requests are JSON there.
    schema = pa.schema(
        [SERVING_LOG_SCHEMA.field(n) for n in ("request_date", "status_code", "request")]
    )
    day = datetime(2026, 11, 21, tzinfo=UTC).date()
    table = pa.table(
        {
            "request_date": [day, day],
            "status_code": [200, 500],
            "request": [records([1, 2, 3, 4]).decode(), records([7, 7, 7, 7]).decode()],
        },
        schema=schema,
    )
    write_deltalake(str(store.path("c.s.iris_serving_log_payload")), table)
    served = served_features(store, "c.s.iris_serving_log_payload", "2026-11-21").features
    assert served.to_numpy().tolist() == [[1.0, 2.0, 3.0, 4.0]]


def test_the_served_table_is_the_log_locally_and_ai_gateways_payload_table_on_databricks():
    local = load_settings({"IRIS_ENV": "dev"})
    remote = load_settings({"IRIS_ENV": "prod", "IRIS_TARGET": "databricks"})
    assert served_table(local) == "iris_dev.ml.iris_serving_log"
    assert served_table(remote) == "iris_prod.ml.iris_serving_log_payload"


# The reviewer's poison: any finite numbers are answered, but not one is an iris flower.
POISON = [-1000.0, 1e12, -0.0001, 5e9]


def test_rows_the_batch_would_reject_never_reach_the_drift_rows(store):
    day = "2026-11-21"
    poison = records(*[POISON] * 1000)
    valid = records([5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5])
    edge = records([0, 1, 1, 1], [1, 1, 1, 50.0001], [1, 1, 1, 50])  # zero, over 50 cm, at 50
    write(store, [*(row(at(day, h), poison) for h in range(5)), row(at(day, 6), valid)])
    write(store, [row(at(day, 7), edge)])

    served = served_features(store, TABLE, day)

    assert sorted(map(tuple, served.features.to_numpy().tolist())) == [
        (1.0, 1.0, 1.0, 50.0),
        (5.1, 3.5, 1.4, 0.2),
        (6.0, 2.9, 4.5, 1.5),
    ]
    assert served.rows_answered == 5005
    assert served.rows_invalid == 5002
    assert served.requests == 7


def test_one_request_with_many_rows_is_sampled_to_the_row_bound_uniformly(store):
    day = "2026-11-21"
    many = records(*([1 + i / 1000, 1, 1, 1] for i in range(5000)))
    write(store, [row(at(day), many)])
    served = served_features(store, TABLE, day, max_rows=500)
    assert len(served.features) == 500
    firsts = sorted(served.features[FEATURE_COLUMNS[0]].tolist())
    assert firsts[0] < 1.1 and firsts[-1] > 5.9  # the whole request, not its first rows
    assert served.rows_answered == 5000 and served.rows_invalid == 0


class _Pipes:
    def __init__(self):
        self.checks = {}

    def report_asset_check(self, name, passed, severity, metadata):
        self.checks[name] = (passed, metadata)


class _Step:
    def __init__(self):
        self.pipes = _Pipes()


def test_served_rows_never_outweigh_the_batch_in_the_drift_check(store):
    # Valid but all-identical served rows (a client repeating one flower) against a calm batch:
    # they may count only as much as the batch, and the check says how much each side weighed.
    import numpy as np
    import pandas as pd

    from iris_assets.steps.score import report_drift_check

    rng = np.random.default_rng(3)
    training = pd.DataFrame(rng.uniform(1, 8, (200, 4)), columns=list(FEATURE_COLUMNS))
    batch = pd.DataFrame(rng.uniform(1, 8, (200, 4)), columns=list(FEATURE_COLUMNS))
    day = "2026-11-21"
    write(store, [row(at(day, h), records(*[[49, 49, 49, 49]] * 1000)) for h in range(5)])
    write(store, [row(at(day, 6), records(*[POISON] * 1000))])
    step = _Step()

    report_drift_check(step, training, batch, served_features(store, TABLE, day))

    _, metadata = step.pipes.checks["feature_drift"]
    assert metadata["served_rows"] == 200
    assert metadata["batch_rows"] == 200
    assert metadata["served_rows_invalid"] == 1000
    assert metadata["served_rows_answered"] == 6000
    assert metadata["batch_share"] == metadata["served_share"] == 0.5
    assert "at most as many as the batch rows" in metadata["served_rule"]
