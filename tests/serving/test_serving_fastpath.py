"""The numpy fast path: the same labels as scikit-learn, and only where it is proven."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from iris_assets.serving import fastpath
from iris_assets.serving.fastpath import compile_predict
from iris_assets.serving.model import load_model_version

if TYPE_CHECKING:
    from conftest import Registry

X, Y = load_iris(return_X_y=True)
RNG = np.random.default_rng(7)
# Real rows, one-decimal rows near them, and rows far outside anything seen in training.
PROBES = np.concatenate(
    [X, np.round(X + RNG.normal(0, 0.3, X.shape), 1), RNG.normal(0, 50, (300, 4))]
)


def assert_same_labels(estimator, predict) -> None:
    assert predict is not None
    np.testing.assert_array_equal(predict(PROBES), estimator.predict(PROBES))
    for row in PROBES[:40]:
        np.testing.assert_array_equal(predict(row[None, :]), estimator.predict(row[None, :]))


@pytest.mark.parametrize("version", ["1", "2", "3", "4"])
def test_every_registered_version_gets_the_fast_path(mlflow_env: Registry, version) -> None:
    loaded = load_model_version(mlflow_env.model_name, version)
    assert loaded.describe()["predictor"] == "numpy"
    assert_same_labels(mlflow_env.estimators[version], loaded.fast_predict)
    expected = mlflow_env.estimators[version].predict(mlflow_env.X).tolist()
    assert loaded.predict(mlflow_env.X.to_numpy()) == expected


SUPPORTED = {
    "scaler + logistic regression": lambda: make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=500)
    ),
    "bare logistic regression": lambda: LogisticRegression(max_iter=1000),
    "two scalers, a passthrough": lambda: Pipeline(
        [
            ("a", StandardScaler(with_mean=False)),
            ("skip", "passthrough"),
            ("b", StandardScaler(with_std=False)),
            ("clf", LogisticRegression(C=0.05, max_iter=500)),
        ]
    ),
}


@pytest.mark.parametrize("case", list(SUPPORTED))
@pytest.mark.parametrize("labels", ["multiclass", "binary", "strings"])
def test_supported_shapes_predict_like_scikit_learn(case: str, labels: str) -> None:
    y = {"multiclass": Y, "binary": (Y == 2).astype(int), "strings": np.array(["a", "b", "c"])[Y]}
    estimator = SUPPORTED[case]().fit(X, y[labels])
    predict = compile_predict(estimator, X.shape[1])
    assert_same_labels(estimator, predict)
    assert predict(PROBES[:3]).tolist() == estimator.predict(PROBES[:3]).tolist()


class TweakedRegression(LogisticRegression):
    def predict(self, X):
        return super().predict(X)


def sparse_coefficients():
    return LogisticRegression(max_iter=500).fit(X, Y).sparsify()


UNSUPPORTED = {
    "another model": lambda: RandomForestClassifier(n_estimators=3, random_state=0).fit(X, Y),
    "another transformer": lambda: make_pipeline(
        MinMaxScaler(), LogisticRegression(max_iter=500)
    ).fit(X, Y),
    "a subclass": lambda: TweakedRegression(max_iter=500).fit(X, Y),
    "sparse coefficients": sparse_coefficients,
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_anything_else_keeps_scikit_learn(case: str) -> None:
    assert compile_predict(UNSUPPORTED[case](), X.shape[1]) is None


def test_a_fast_path_that_disagrees_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y)
    honest = fastpath._build

    def off_by_a_little(scalers, classifier):
        predict = honest(scalers, classifier)
        return lambda rows: np.where(rows[:, 0] > 7.5, 0, predict(rows))

    monkeypatch.setattr(fastpath, "_build", off_by_a_little)
    assert compile_predict(estimator, X.shape[1]) is None
