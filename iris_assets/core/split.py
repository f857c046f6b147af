"""The train/test split: a stable assignment of each flower to one side, derived from its id.

The split depends on nothing but ``flower_id`` and the test fraction, so every model, every
re-ingestion and every machine puts the same flower on the same side, whatever else is in the
batch. The hash is splitmix64's finaliser written with numpy, not Python's ``hash()``, which is
salted per process.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from iris_assets.core.schema import TEST, TRAIN

BUCKETS = 10_000

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_SIDES = np.array([TRAIN, TEST], dtype=object)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 of each value: uint64 in, well-spread uint64 out."""
    z = np.asarray(values).astype(np.uint64) + _GOLDEN
    # Unsigned overflow is the point of the mixing: arithmetic is modulo 2**64.
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX_1
        z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


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


def assign_split(flower_ids: pd.Series | np.ndarray, test_fraction: float = 0.3) -> np.ndarray:
    """``"train"`` or ``"test"`` for each id, in order; about ``test_fraction`` of ids are test."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    buckets = mix64(_as_int64(flower_ids)) % np.uint64(BUCKETS)
    is_test = buckets < np.uint64(round(test_fraction * BUCKETS))
    return _SIDES[is_test.astype(np.intp)]
