"""load_model_version against a real sqlite registry."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import pytest

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.serving.model import ModelLoadError, load_model_version

if TYPE_CHECKING:
    from conftest import Registry


def test_loads_the_estimator_with_signature_columns(mlflow_env: Registry) -> None:
    loaded = load_model_version(mlflow_env.model_name, "2")
    assert loaded.version == "2"
    assert loaded.model_name == mlflow_env.model_name
    assert loaded.columns == FEATURE_COLUMNS
    assert loaded.describe()["loaded_at"].endswith("+00:00")


@pytest.mark.parametrize("version", ["1", "2"])
def test_numpy_predictions_equal_dataframe_predictions(mlflow_env: Registry, version) -> None:
    loaded = load_model_version(mlflow_env.model_name, version)
    X = mlflow_env.X
    expected = mlflow_env.estimators[version].predict(X).tolist()
    assert loaded.predict(X[list(loaded.columns)].to_numpy()) == expected
    assert all(type(p) is int for p in loaded.predict(X.to_numpy()[:3]))


def test_each_version_disagrees_with_the_previous_one_somewhere(registry: Registry) -> None:
    # The swap and promotion tests rely on it to tell which version answered.
    predictions = [registry.estimators[v].predict(registry.X) for v in ("1", "2", "3", "4")]
    assert all((a != b).any() for a, b in pairwise(predictions))


def test_unknown_version_is_a_load_error(mlflow_env: Registry) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_model_version(mlflow_env.model_name, "99")


def test_registry_must_be_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ModelLoadError, match="MLFLOW_TRACKING_URI"):
        load_model_version("any", "1")
