"""Quarantine: rows that failed validation, kept with their reason in the rejects table.

Each stage owns its slice of the table (``stage`` + ``partition``), so re-running a stage for the
same partition replaces its rejects instead of piling them up.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from iris_assets.core.schema import PRIMARY_KEY, REJECTS_TABLE_SCHEMA
from iris_assets.core.tables import TableStore, sql_string

# What a rejects row says; rejected_at and run_id say when and by whom, not what.
_CONTENT = [PRIMARY_KEY, "reason", "record"]


def rejects_slice(stage: str, partition: str) -> str:
    """The predicate that selects one stage's rejects for one partition."""
    return f"stage = {sql_string(stage)} AND partition = {sql_string(partition)}"


def rejects_rows(
    rejects: pd.DataFrame, stage: str, partition: str, run_id: str | None = None
) -> pd.DataFrame:
    """Shape validation rejects as rows of the rejects table, tagged with the writing run."""
    frame = pd.DataFrame(
        {
            "stage": stage,
            "partition": partition,
            PRIMARY_KEY: rejects[PRIMARY_KEY].astype("object"),
            "reason": rejects["reason"],
            "record": rejects["record"],
            "rejected_at": pd.Timestamp(datetime.now(UTC)),
            "run_id": run_id,
        },
        index=rejects.index,
    )
    return frame[REJECTS_TABLE_SCHEMA.names].reset_index(drop=True)


def _content(frame: pd.DataFrame) -> list[tuple]:
    values = frame[_CONTENT].astype("object").where(frame[_CONTENT].notna(), None)
    return sorted(tuple(str(v) if v is not None else "" for v in row) for row in values.values)


def replace_slice_if_changed(
    store: TableStore, table: str, rows: pd.DataFrame, stage: str, partition: str
) -> bool:
    """Replace the slice with ``rows`` unless it already says the same; True when committed.

    Re-running a stage on unchanged input then commits nothing to the rejects table either.
    """
    predicate = rejects_slice(stage, partition)
    if _content(store.read(table, _CONTENT, predicate)) == _content(rows):
        return False
    store.replace_where(table, rows, predicate)
    return True
