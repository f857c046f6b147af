"""Training: turn the train split of the feature table into a fitted, reproducible classifier."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from iris_assets.core.schema import FEATURE_COLUMNS, LABEL, TRAIN


@dataclass(frozen=True)
class TrainingParams:
    """Classifier hyper-parameters (defaults live in the asset config); logged to MLflow."""

    C: float
    max_iter: int
    seed: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


class TrainingError(ValueError):
    """The data cannot train a classifier (too few rows or classes)."""


def train_rows(features: pd.DataFrame) -> pd.DataFrame:
    return features[features["split"] == TRAIN].sort_values("flower_id")


def train_classifier(features: pd.DataFrame, params: TrainingParams) -> Pipeline:
    """Fit on the train split only, in a fixed row order, so a re-run gives the same model."""
    rows = train_rows(features)
    classes = rows[LABEL].nunique()
    if len(rows) < 10 or classes < 2:
        raise TrainingError(
            f"the train split has {len(rows)} rows and {classes} species; "
            "at least 10 rows of 2 species are needed"
        )
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "classify",
                LogisticRegression(C=params.C, max_iter=params.max_iter, random_state=params.seed),
            ),
        ]
    )
    model.fit(rows[list(FEATURE_COLUMNS)], rows[LABEL].astype("int64"))
    return model
