"""The train/test split: a stable assignment of each flower to one side, fixed with the table.

Ingestion splits by content (``split_by_measurements``): a flower's side is a hash of its four
measurements, so every re-ingestion, reordering and machine puts it on the same side, and exact
duplicate measurements (Iris flowers 102 and 143) always land on the same side: a model is never
tested on a flower identical to one it was trained on. The fraction and the rule are stored in the
feature table's properties when it is created (``split_properties``); ingesting later with another
fraction is refused (``check_split``) rather than moving flowers between train and test.

``assign_split`` (by id) is the older rule, kept for callers that have ids only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from iris_assets.core.hashing import measurement_hash, mix64
from iris_assets.core.schema import FEATURE_COLUMNS, TEST, TRAIN

__all__ = ["BUCKETS", "assign_split", "check_split", "mix64", "split_by_measurements"]

BUCKETS = 10_000
SPLIT_RULE = "measurements-splitmix64-v1"
FRACTION_PROPERTY = "iris.split.test_fraction"
RULE_PROPERTY = "iris.split.rule"

_SIDES = np.array([TRAIN, TEST], dtype=object)


class SplitError(ValueError):
    """The requested split differs from the one the feature table was created with."""


def _as_int64(flower_ids: pd.Series | np.ndarray) -> np.ndarray:
    if isinstance(flower_ids, pd.Series):
        if flower_ids.isna().any():
            raise ValueError("flower_id must not be null to assign a split")
        flower_ids = flower_ids.to_numpy()
    ids = np.asarray(flower_ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64, copy=False)
    if ids.dtype.kind == "f":
        if not (np.isfinite(ids).all() and (ids == np.floor(ids)).all()):
            raise ValueError("flower_id must be integers to assign a split")
        return ids.astype(np.int64)
    try:
        return ids.astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"flower_id must be integers to assign a split: {exc}") from None


def _check_fraction(test_fraction: float) -> float:
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    return float(test_fraction)


def _sides(digest: np.ndarray, test_fraction: float) -> np.ndarray:
    buckets = digest % np.uint64(BUCKETS)
    is_test = buckets < np.uint64(round(_check_fraction(test_fraction) * BUCKETS))
    return _SIDES[is_test.astype(np.intp)]


def assign_split(flower_ids: pd.Series | np.ndarray, test_fraction: float = 0.3) -> np.ndarray:
    """``"train"`` or ``"test"`` for each id, in order; about ``test_fraction`` of ids are test."""
    return _sides(mix64(_as_int64(flower_ids)), test_fraction)


def split_by_measurements(frame: pd.DataFrame, test_fraction: float = 0.3) -> np.ndarray:
    """``"train"`` or ``"test"`` for each row of ``frame``, from its four measurements only."""
    values = frame[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    return _sides(measurement_hash(values), test_fraction)


def split_properties(test_fraction: float) -> dict[str, str]:
    """The table properties that fix the split when the feature table is created."""
    return {FRACTION_PROPERTY: repr(_check_fraction(test_fraction)), RULE_PROPERTY: SPLIT_RULE}


def check_split(table: str, properties: Mapping[str, str], test_fraction: float) -> float:
    """The table's stored fraction; a SplitError when it differs from ``test_fraction``."""
    stored, rule = properties.get(FRACTION_PROPERTY), properties.get(RULE_PROPERTY)
    if stored is None or rule != SPLIT_RULE:
        raise SplitError(
            f"feature table {table} has no fixed split ({FRACTION_PROPERTY}={stored!r}, "
            f"{RULE_PROPERTY}={rule!r}; expected rule {SPLIT_RULE!r}): it was created by an "
            "older version. Drop it and ingest again to fix a split (then retrain)."
        )
    if float(stored) != _check_fraction(test_fraction):
        raise SplitError(
            f"feature table {table} was created with test_fraction {float(stored):g} (table "
            f"property {FRACTION_PROPERTY}); test_fraction {test_fraction:g} would move flowers "
            f"between train and test. Ingest with test_fraction {float(stored):g}; to start a "
            "new split, drop the feature table, ingest again and retrain."
        )
    return float(stored)
