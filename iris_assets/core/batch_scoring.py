"""Batch scoring: one batch of landing rows -> inference rows and quarantined rows.

The same function scores a whole day locally and each Arrow batch of a Spark ``mapInPandas`` on
Databricks, so both targets validate and predict with one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from iris_assets.core.schema import FEATURE_COLUMNS, INFERENCE_TABLE_SCHEMA, PRIMARY_KEY
from iris_assets.core.scoring import predict_frame
from iris_assets.core.validation import validate_measurements


@dataclass(frozen=True)
class ScoredBatch:
    scored: pd.DataFrame  # rows of the inference table
    rejects: pd.DataFrame  # flower_id (raw text), reason, record

    @property
    def rows(self) -> int:
        return len(self.scored) + len(self.rejects)


def score_batch(
    raw: pd.DataFrame,
    model,
    *,
    day: str,
    model_name: str,
    model_version: str,
    predicted_at: pd.Timestamp,
    seen_column: str | None = None,
) -> ScoredBatch:
    checked = validate_measurements(raw, passthrough=["observed_at"], seen_column=seen_column)
    valid = checked.valid
    predictions = predict_frame(model, valid)
    observed_at = (
        pd.to_datetime(valid["observed_at"], utc=True, errors="coerce")
        if "observed_at" in valid
        else pd.Series(pd.NaT, index=valid.index, dtype="datetime64[us, UTC]")
    )
    scored = pd.DataFrame(
        {
            PRIMARY_KEY: valid[PRIMARY_KEY].astype("int64"),
            "observed_date": day,
            "observed_at": observed_at,
            **{c: valid[c] for c in FEATURE_COLUMNS},
            **{c: predictions[c] for c in predictions.columns},
            "model_name": model_name,
            "model_version": str(model_version),
            "predicted_at": predicted_at,
        },
        index=valid.index,
    )[INFERENCE_TABLE_SCHEMA.names]
    return ScoredBatch(scored=scored, rejects=checked.rejects)
