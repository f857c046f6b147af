"""Drift: how far a day's measurements moved from the training data, per feature.

Population stability index (PSI) over the training data's deciles: below 0.1 is stable,
0.1-0.25 a moderate shift, above 0.25 a real change in the population being scored. The training
split is small (about a hundred rows), so sampling noise alone gives a PSI of about
(bins - 1) * (1/n_reference + 1/n_current); a feature warns only when it exceeds that noise floor
by more than the 0.25 bar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from iris_assets.core.hashing import mix64
from iris_assets.core.schema import FEATURE_COLUMNS

PSI_WARN = 0.25
MIN_ROWS = 50
_EPS = 1e-4


BINS = 10
SAMPLE_ROWS = 100_000


def sample_fraction(rows: int, target: int = SAMPLE_ROWS) -> float:
    """The share of a day's rows the drift sample keeps: all of a small day, ~``target`` else."""
    return 1.0 if rows <= target else target / rows


def in_sample(flower_ids: np.ndarray, fraction: float) -> np.ndarray:
    """Which rows are in the drift sample: a hash of the id below ``fraction`` of its range.

    Uniform over the day (the hash ignores file, order and engine), and the same rows on the
    local and the Spark path: the sample is a property of the ids, not of how they were read.
    """
    if fraction >= 1.0:
        return np.ones(len(flower_ids), dtype=bool)
    top53 = mix64(np.asarray(flower_ids, dtype=np.int64).view(np.uint64)) >> np.uint64(11)
    return top53 < np.uint64(int(fraction * 2**53))


@dataclass(frozen=True)
class DriftReport:
    psi: dict[str, float]
    rows: int
    reference_rows: int

    @property
    def threshold(self) -> float:
        noise = (BINS - 1) * (1 / max(self.reference_rows, 1) + 1 / max(self.rows, 1))
        return round(PSI_WARN + noise, 4)

    @property
    def enough_rows(self) -> bool:
        return self.rows >= MIN_ROWS

    @property
    def drifted(self) -> list[str]:
        if not self.enough_rows:
            return []
        return sorted(c for c, v in self.psi.items() if v > self.threshold)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = BINS) -> float:
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1
    )
    cur_share = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    ref_share = np.clip(ref_share / max(len(reference), 1), _EPS, None)
    cur_share = np.clip(cur_share / max(len(current), 1), _EPS, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame) -> DriftReport:
    scores = {}
    for column in FEATURE_COLUMNS:
        if current.empty:
            scores[column] = 0.0
            continue
        ref = reference[column].to_numpy(dtype="float64")
        cur = current[column].to_numpy(dtype="float64")
        scores[column] = round(psi(ref, cur), 4)
    return DriftReport(psi=scores, rows=len(current), reference_rows=len(reference))
