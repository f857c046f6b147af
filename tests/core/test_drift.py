import numpy as np
import pandas as pd

from iris_assets.core.drift import feature_drift
from iris_assets.core.schema import FEATURE_COLUMNS


def frame(rng, n, shift=0.0):
    return pd.DataFrame({c: rng.normal(5 + shift, 1, n) for c in FEATURE_COLUMNS})


def test_same_distribution_does_not_drift():
    rng = np.random.default_rng(0)
    report = feature_drift(frame(rng, 105), frame(rng, 200))
    assert report.drifted == []


def test_shifted_distribution_drifts_on_every_shifted_feature():
    rng = np.random.default_rng(0)
    report = feature_drift(frame(rng, 105), frame(rng, 200, shift=1.5))
    assert report.drifted == sorted(FEATURE_COLUMNS)
    assert all(v > report.threshold for v in report.psi.values())


def test_too_few_rows_never_warn():
    rng = np.random.default_rng(0)
    report = feature_drift(frame(rng, 105), frame(rng, 10, shift=3))
    assert not report.enough_rows and report.drifted == []
