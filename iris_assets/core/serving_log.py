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
parser, so the drift check sees what the endpoint scored next to what the batch scored.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow as pa

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.core.tables import TableStore, sql_string
from iris_assets.settings import Settings

MAX_LOGGED_REQUEST_BYTES = 1024 * 1024
MAX_DRIFT_REQUESTS = 100_000
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


def served_features(
    store: TableStore, table: str, day: str, max_requests: int = MAX_DRIFT_REQUESTS
) -> pd.DataFrame:
    """The feature rows of the requests the endpoint answered on ``day`` (UTC), in table order.

    A day with more than ``max_requests`` answered requests gives an evenly spaced subset of
    them (parsing is ~10 us a request), which is what a drift estimate needs. A request that
    cannot be parsed again (it was answered, so only a changed parser could make it so) is
    skipped rather than failing the drift check.
    """
    from iris_assets.serving.protocol import BadRequest, parse_request

    empty = pd.DataFrame({column: pd.Series(dtype="float64") for column in FEATURE_COLUMNS})
    if not store.exists(table):
        return empty
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
    frames = []
    for position, body in enumerate(rows["request"]):
        content_type = (
            rows["request_content_type"].iat[position] if has_content_type else None
        ) or "application/json"
        try:
            matrix = parse_request(str(body).encode(), content_type, FEATURE_COLUMNS)
        except BadRequest:
            continue
        frames.append(pd.DataFrame(matrix, columns=list(FEATURE_COLUMNS)))
    return pd.concat(frames, ignore_index=True) if frames else empty


def _columns(store: TableStore, table: str) -> list[str]:
    return list(store.read(table, predicate="false").columns)
