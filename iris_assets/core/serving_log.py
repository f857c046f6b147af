"""The endpoint's request log, ``iris_serving_log``: its schema, and its rows as features.

Locally the model server appends a row per scored request (``serving/log_writer.py``); on
Databricks the endpoint's AI Gateway inference table does the same into
``{serving_log_table}_payload``. Column names follow the AI Gateway inference table where the two
mean the same thing (``request_date``, ``request_time``, ``databricks_request_id``,
``status_code``, ``execution_duration_ms``, ``request``, ``response``), so one reader serves both.

``request`` holds the body as the client sent it, for answered requests (status 200) only: a
refused request keeps its status and the (input-free) error response, never its body. Bodies over
``MAX_LOGGED_REQUEST_BYTES`` are not kept either (AI Gateway has such a limit too); the row says so
in ``logging_error``.

``served_features`` turns a day's answered requests back into feature rows with the server's own
parser and the batch's validation, so the drift check sees what the endpoint scored next to what
the batch scored; ``served_share_cap`` is the rule for how much the served rows may count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from iris_assets.core.schema import FEATURE_COLUMNS, PRIMARY_KEY
from iris_assets.core.tables import TableStore, sql_string
from iris_assets.settings import Settings

MAX_LOGGED_REQUEST_BYTES = 1024 * 1024
MAX_DRIFT_REQUESTS = 100_000
# As many served rows as the batch side samples (core.drift.SAMPLE_ROWS).
MAX_DRIFT_ROWS = 100_000
# AI Gateway names its table after the prefix it is given, with this suffix.
DATABRICKS_PAYLOAD_SUFFIX = "_payload"

SERVING_LOG_SCHEMA = pa.schema(
    [
        pa.field("request_date", pa.date32(), nullable=False),
        pa.field("request_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("databricks_request_id", pa.string(), nullable=False),
        pa.field("endpoint", pa.string()),
        pa.field("path", pa.string(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string()),
        pa.field("status_code", pa.int32(), nullable=False),
        pa.field("execution_duration_ms", pa.float64(), nullable=False),
        pa.field("request_content_type", pa.string()),
        pa.field("request_bytes", pa.int64(), nullable=False),
        pa.field("request", pa.string()),
        pa.field("response", pa.string(), nullable=False),
        pa.field("logging_error", pa.string()),
    ]
)
PARTITION_COLUMN = "request_date"


def served_table(settings: Settings) -> str:
    """The table the endpoint's requests land in: the local log, or AI Gateway's payload table."""
    if settings.is_databricks:
        return settings.serving_log_table + DATABRICKS_PAYLOAD_SUFFIX
    return settings.serving_log_table


def inference_table_prefix(settings: Settings) -> str:
    """The ``table_name_prefix`` given to AI Gateway (the table's last name part)."""
    return settings.serving_log_table.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class ServedFeatures:
    """A day's served feature rows for the drift check, and what was left out of them.

    ``features``: valid rows (the batch's measurement rules), a uniform sample of at most
    ``max_rows``. ``rows_answered``: the rows the read requests held; ``rows_invalid``: those the
    rules refused (negative, zero, over ``MAX_MEASUREMENT_CM``), never in ``features``.
    """

    features: pd.DataFrame
    requests: int
    rows_answered: int
    rows_invalid: int


def served_features(
    store: TableStore,
    table: str,
    day: str,
    max_requests: int = MAX_DRIFT_REQUESTS,
    max_rows: int = MAX_DRIFT_ROWS,
) -> ServedFeatures:
    """The valid feature rows of the requests the endpoint answered on ``day`` (UTC).

    The endpoint answers any finite numbers, so every row passes the batch's own validation
    (``core.validation.validate_measurements``) before it may count: a client cannot steer drift
    (and so retraining) with rows the batch path would quarantine. A day with more than
    ``max_requests`` answered requests gives an evenly spaced subset of them (parsing is ~10 us a
    request); more than ``max_rows`` valid rows gives a uniform sample of them (``in_sample`` on
    the row's position), so one request with many rows weighs no more than its rows. A request
    that cannot be parsed again (it was answered, so only a changed parser could make it so) is
    skipped rather than failing the drift check.
    """
    from iris_assets.core.validation import validate_measurements
    from iris_assets.serving.protocol import BadRequest, parse_request

    columns_out = list(FEATURE_COLUMNS)
    empty = pd.DataFrame({column: pd.Series(dtype="float64") for column in FEATURE_COLUMNS})
    if not store.exists(table):
        return ServedFeatures(empty, 0, 0, 0)
    day = date.fromisoformat(day).isoformat()
    predicate = (
        f"request_date = DATE {sql_string(day)} AND status_code = 200 AND request IS NOT NULL"
    )
    columns = ["request"]
    has_content_type = "request_content_type" in _columns(store, table)
    if has_content_type:
        columns.append("request_content_type")
    rows = store.read(table, columns=columns, predicate=predicate)
    if len(rows) > max_requests:
        step = len(rows) / max_requests
        rows = rows.iloc[[int(i * step) for i in range(max_requests)]].reset_index(drop=True)
    matrices = []
    for position, body in enumerate(rows["request"]):
        content_type = (
            rows["request_content_type"].iat[position] if has_content_type else None
        ) or "application/json"
        try:
            matrices.append(parse_request(str(body).encode(), content_type, FEATURE_COLUMNS))
        except BadRequest:
            continue
    if not matrices:
        return ServedFeatures(empty, len(rows), 0, 0)
    matrix = np.concatenate(matrices)
    answered = len(matrix)
    # Sample before validating, so the cost is bounded by max_rows whatever the day held.
    sample = uniform_rows(answered, max_rows)
    frame = pd.DataFrame(matrix[sample], columns=columns_out)
    frame.insert(0, PRIMARY_KEY, sample.astype(np.int64))
    checked = validate_measurements(frame, check_duplicates=False)
    invalid = len(checked.rejects)
    if len(sample) < answered:  # the sample's invalid share, scaled to the day
        invalid = round(invalid * answered / max(len(sample), 1))
    features = checked.valid[columns_out].reset_index(drop=True)
    return ServedFeatures(features, len(rows), answered, invalid)


def _columns(store: TableStore, table: str) -> list[str]:
    return list(store.read(table, predicate="false").columns)


SERVED_RULE = (
    "served rows pass the batch's measurement validation (invalid ones left out, counted in "
    "served_rows_invalid), are a uniform sample, and count at most as many as the batch rows"
)


def uniform_rows(rows: int, limit: int) -> np.ndarray:
    """Positions of ``limit`` of ``rows`` rows (all of them if fewer), a uniform sample.

    ``core.drift.in_sample`` on the positions with some headroom (a hash keeps about, not
    exactly, its share), thinned evenly to exactly ``limit``: never cut at the end, which would
    drop the last rows.
    """
    from iris_assets.core.drift import in_sample

    if rows <= limit:
        return np.arange(rows, dtype=np.int64)
    fraction = min((limit * 1.1 + 50) / rows, 1.0)
    kept = np.flatnonzero(in_sample(np.arange(rows, dtype=np.int64), fraction))
    if len(kept) > limit:
        kept = kept[np.linspace(0, len(kept) - 1, limit).astype(np.int64)]
    return kept


def served_share_cap(batch_rows: int, served_rows: int) -> int:
    """How many served rows the drift check uses next to ``batch_rows`` batch rows.

    At most as many as the batch has: the served side is whatever clients sent (anyone who can
    reach the endpoint), the batch side is the day's landed data, so served rows never make more
    than half of what drift (and so automatic retraining) is judged on.
    """
    return min(served_rows, batch_rows)
