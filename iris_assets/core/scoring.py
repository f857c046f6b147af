"""Scoring: predictions with species names and class probabilities for validated measurements."""

from __future__ import annotations

import numpy as np
import pandas as pd

from iris_assets.core.schema import FEATURE_COLUMNS, SPECIES_NAMES


def predict_frame(model, features: pd.DataFrame) -> pd.DataFrame:
    """Return ``prediction``, ``species_name`` and ``probability`` aligned with ``features``."""
    if features.empty:
        return pd.DataFrame(
            {
                "prediction": pd.Series(dtype="int64"),
                "species_name": pd.Series(dtype="object"),
                "probability": pd.Series(dtype="float64"),
            }
        )
    probabilities = model.predict_proba(features[list(FEATURE_COLUMNS)])
    best = probabilities.argmax(axis=1)
    classes = np.asarray(model.classes_).astype("int64")[best]
    return pd.DataFrame(
        {
            "prediction": classes,
            # Categorical: three names shared by millions of rows, converted to Arrow in C.
            "species_name": pd.Categorical.from_codes(classes, categories=list(SPECIES_NAMES)),
            "probability": np.take_along_axis(probabilities, best[:, None], axis=1)[:, 0].round(6),
        },
        index=features.index,
    )
