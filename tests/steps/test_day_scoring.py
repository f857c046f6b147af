"""Scoring a day locally in chunks: same outcome as one batch, and all-or-nothing writes."""

from collections import Counter

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


def write_csv(landing: LandingArea, frame, day=DAY):
    return landing.write_batch(frame, day, fmt="csv")


def test_a_corpus_of_bad_landing_data_loses_no_row(tmp_path, model):
    import pandas as pd

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing, store = LandingArea(settings.landing_dir), DeltaTableStore(settings.warehouse)
    good = simulate_flowers(40, DAY, seed=21)
    landing.write_batch(good, DAY)
    bad = good.iloc[:10].astype(str).reset_index(drop=True)
    bad.loc[0, "petal_width_cm"] = ""  # null
    bad.loc[1, "sepal_length_cm"] = "long"  # text
    bad.loc[2, "sepal_width_cm"] = "-3.1"  # negative
    bad.loc[3, "petal_length_cm"] = "1e6"  # absurd
    bad.loc[4, "petal_length_cm"] = "inf"  # infinity
    bad.loc[5, "flower_id"] = "12.5"  # not an id
    bad.loc[6, "flower_id"] = bad.loc[7, "flower_id"]  # duplicate within the batch
    # rows 7-9 repeat flowers of the first file: duplicates across batches
    write_csv(landing, bad.assign(colour="blue"))  # an extra column is ignored
    write_csv(landing, good.iloc[:5].drop(columns=["petal_width_cm"]).assign(flower_id=range(5)))

    result = score_day_locally(store, settings, DAY, CHAMPION, model, batch_rows=16)
    assert result.landing_rows == 55
    assert result.rows_scored + result.rows_rejected == 55
    assert result.rows_scored == 40
    rejects = store.read(settings.rejects_table)
    reasons = Counter(rejects["reason"])
    assert reasons["petal_width_cm is missing"] == 6, "a file without the column: every row"
    assert reasons["duplicate flower_id"] == 4
    for reason in (
        "sepal_length_cm is not a number",
        "sepal_width_cm must be positive",
        "petal_length_cm exceeds 50 cm",
        "petal_length_cm is not finite",
        "flower_id is not a non-negative integer",
    ):
        assert reasons[reason] == 1, (reason, reasons)
    assert '"colour":"blue"' in " ".join(rejects["record"]), "the record keeps extra columns"
    assert pd.Series(rejects["record"]).str.len().gt(10).all()


def test_an_empty_day_replaces_the_partition_with_nothing(tmp_path, model):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    store = DeltaTableStore(settings.warehouse)
    result = score_day_locally(store, settings, DAY, CHAMPION, model)
    assert (result.landing_rows, result.rows_scored, result.written.rows) == (0, 0, 0)


def test_concurrent_days_do_not_disturb_each_other_and_a_same_day_race_fails_clearly(
    tmp_path, model
):
    import threading

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = LandingArea(settings.landing_dir)
    days = [f"2026-11-0{d}" for d in range(1, 5)]
    for seed, day in enumerate(days):
        landing.write_batch(simulate_flowers(3000, day, seed=seed), day)
    errors = []

    def score(day):
        store = DeltaTableStore(settings.warehouse)
        try:
            score_day_locally(store, settings, day, CHAMPION, model, batch_rows=500)
        except TableError as error:
            errors.append((day, str(error)))

    score(days[0])  # creates the tables, so the runs below race only on their writes
    threads = [threading.Thread(target=score, args=(day,)) for day in [*days, *days]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for day, message in errors:
        assert "conflicted with a concurrent write" in message and "run it again" in message, day
    store = DeltaTableStore(settings.warehouse)
    assert store.group_counts(settings.inference_table, "observed_date") == dict.fromkeys(
        days, 3000
    )
    assert store.aggregate(settings.inference_table, "COUNT(DISTINCT flower_id) AS n")["n"] == 12000
