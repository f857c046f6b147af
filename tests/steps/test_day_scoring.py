"""Scoring a day locally in chunks: same outcome as one batch, and all-or-nothing writes."""

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.registry import VersionInfo
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.core.tables import DeltaTableStore, TableError
from iris_assets.settings import load_settings
from iris_assets.steps.day_scoring import score_day_locally

DAY = "2026-11-23"
CHAMPION = VersionInfo("iris_dev.ml.iris_model", "2", {}, ("champion",), None, None)


@pytest.fixture(scope="module")
def model():
    iris = load_iris(as_frame=True)
    return LogisticRegression(max_iter=300).fit(
        iris.data.set_axis(list(FEATURE_COLUMNS), axis=1), iris.target
    )


class FailsOnThirdChunk:
    """A model that breaks partway through a day, as a crashing step would."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self.classes_ = model.classes_

    def predict_proba(self, rows):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("scoring died halfway")
        return self.model.predict_proba(rows)


@pytest.fixture
def day(tmp_path):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    flowers = simulate_flowers(500, DAY, seed=11)
    landing.write_batch(flowers.iloc[:300], DAY)
    landing.write_batch(flowers.iloc[250:], DAY, fmt="csv")  # 50 ids again, in another file
    return settings, DeltaTableStore(settings.warehouse)


def test_chunks_give_the_same_day_as_one_batch(day, model):
    settings, store = day
    chunked = score_day_locally(store, settings, DAY, CHAMPION, model, batch_rows=64)
    assert (chunked.landing_rows, chunked.rows_scored, chunked.rows_rejected) == (550, 500, 50)
    assert chunked.reject_reasons == {"duplicate flower_id": 50}
    assert chunked.written.rows == 500 and chunked.written.duplicate_ids == 0
    whole = score_day_locally(store, settings, DAY, CHAMPION, model)
    assert whole.prediction_counts == chunked.prediction_counts
    assert store.count(settings.inference_table) == 500, "the re-run replaced the day"
    assert len(chunked.features_sample) == 500


def test_a_day_that_fails_halfway_leaves_the_previous_partition(day, model):
    settings, store = day
    score_day_locally(store, settings, DAY, CHAMPION, model, batch_rows=64)
    before = store.version(settings.inference_table)
    with pytest.raises(TableError, match="scoring died halfway"):
        score_day_locally(store, settings, DAY, CHAMPION, FailsOnThirdChunk(model), batch_rows=64)
    assert store.version(settings.inference_table) == before
    assert store.count(settings.inference_table) == 500
