"""Numpy-only ``predict`` for the estimators this project trains, equal to scikit-learn's.

Owns recognising a fitted ``StandardScaler`` -> ``LogisticRegression`` pipeline (or a bare
``LogisticRegression``), turning it into a function that does the same arithmetic in the same
order as scikit-learn (copy, ``-= mean_``, ``/= scale_``, ``X @ coef_.T + intercept_``, argmax or
``> 0``, ``classes_.take``), and proving the two agree on probe rows before the server may use it.

Why: a one-row ``Pipeline.predict`` costs ~200 us, nearly all of it input validation and
dispatch that ``protocol.parse_request`` has already done (a finite float64 matrix with the
columns in fitted order); the arithmetic is ~5 us. Anything else (another estimator type, a
subclass, sparse coefficients, a probe that disagrees) gets None and keeps scikit-learn's predict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import config_context
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

Predict = Callable[[np.ndarray], np.ndarray]

_PROBE_SEED = 20261126
_PROBE_ROWS = 4096


def compile_predict(estimator: Any, n_features: int) -> Predict | None:
    """A numpy predict equal to ``estimator.predict`` on float64 input, or None."""
    steps = _steps(estimator)
    if steps is None:
        return None
    *scalers, classifier = steps
    try:
        predict = _build(scalers, classifier)
    except (AttributeError, TypeError, ValueError):
        return None
    return predict if _agrees(estimator, predict, scalers, n_features) else None


def _steps(estimator: Any) -> list[Any] | None:
    if type(estimator) is Pipeline:
        steps = [step for _, step in estimator.steps if step not in (None, "passthrough")]
    else:
        steps = [estimator]
    # Exact types only: a subclass may override what it computes.
    if not steps or type(steps[-1]) is not LogisticRegression:
        return None
    if any(type(step) is not StandardScaler for step in steps[:-1]):
        return None
    return steps


def _build(scalers: list[StandardScaler], classifier: LogisticRegression) -> Predict:
    shifts = []
    for scaler in scalers:
        mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
        scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None
        shifts.append((mean, scale))
    coef = classifier.coef_
    intercept = classifier.intercept_
    classes = classifier.classes_
    if not isinstance(coef, np.ndarray) or coef.ndim != 2:
        raise TypeError("sparse or unusual coefficients")
    binary = coef.shape[0] == 1

    def predict(X: np.ndarray) -> np.ndarray:
        X = np.array(X, dtype=np.float64)  # a copy in X's layout, like check_array(copy=True)
        for mean, scale in shifts:
            if mean is not None:
                X -= mean
            if scale is not None:
                X /= scale
        scores = X @ coef.T + intercept
        indices = (scores[:, 0] > 0).astype(np.intp) if binary else scores.argmax(axis=1)
        return classes.take(indices, axis=0)

    return predict


def _agrees(estimator: Any, predict: Predict, scalers: list[Any], n_features: int) -> bool:
    """Same labels as ``estimator.predict`` on one-row calls and on a spread of probe rows."""
    rng = np.random.default_rng(_PROBE_SEED)
    if scalers and scalers[0].with_mean and scalers[0].with_std:
        center = np.asarray(scalers[0].mean_, dtype=np.float64)
        spread = np.asarray(scalers[0].scale_, dtype=np.float64)
    else:
        center, spread = np.zeros(n_features), np.ones(n_features)
    probes = [
        center + spread * width * rng.standard_normal((_PROBE_ROWS // 4, n_features))
        for width in (0.1, 1.0, 3.0, 30.0)
    ]
    probes.append(np.round(probes[1], 1))  # values with one decimal, like measurements
    batch = np.concatenate(probes)
    try:
        with config_context(assume_finite=True):
            if not np.array_equal(predict(batch), estimator.predict(batch)):
                return False
            return all(
                np.array_equal(predict(row), estimator.predict(row)) for row in batch[:64, None]
            )
    except Exception:
        return False
