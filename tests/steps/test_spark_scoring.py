"""Scoring a day with Spark (local SparkSession) gives the same outcome as the pandas path.

Delta's Spark jars cannot be fetched here, so table writes are covered by the SQL tests of
``SparkTableStore``; this test runs the distributed part for real: reading the day's files,
marking duplicates across files and validating and scoring inside ``mapInPandas``.
"""

import os
import sys
from collections import Counter

import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from iris_assets.core.batch_scoring import score_batch
from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.registry import VersionInfo
from iris_assets.core.schema import FEATURE_COLUMNS, INFERENCE_TABLE_SCHEMA
from iris_assets.settings import load_settings
from iris_assets.steps.spark_scoring import KIND, score_frame

DAY = "2026-11-24"


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def model():
    iris = load_iris(as_frame=True)
    return LogisticRegression(max_iter=300).fit(
        iris.data.set_axis(list(FEATURE_COLUMNS), axis=1), iris.target
    )


def landing_day(root):
    landing = LandingArea(root)
    good = simulate_flowers(30, DAY, seed=5)
    landing.write_batch(good, DAY)
    bad = simulate_flowers(4, DAY, seed=6).astype(str)
    bad.loc[0, "flower_id"] = str(good["flower_id"].iloc[0])  # seen in the parquet file
    bad.loc[1, "petal_length_cm"] = ""
    bad.loc[2, "sepal_width_cm"] = "wide"
    landing.write_batch(bad, DAY, fmt="csv")
    return landing


def test_spark_scoring_matches_the_pandas_path(spark, model, tmp_path):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    landing = landing_day(settings.landing_dir)
    champion = VersionInfo("iris_dev.ml.iris_model", "4", {}, ("champion",), None, None)

    rows, outcome = score_frame(spark, settings, DAY, champion, model)
    result = outcome.toPandas()
    scored = result[result[KIND] == "scored"]
    rejected = result[result[KIND] == "rejected"]

    local = score_batch(
        landing.read_day(DAY),
        model,
        day=DAY,
        model_name=settings.model_name,
        model_version="4",
        predicted_at=pd.Timestamp("2026-11-24T00:00:00Z"),
    )
    assert rows == 34 == len(scored) + len(rejected)
    assert sorted(scored["flower_id"]) == sorted(local.scored["flower_id"])
    assert (
        Counter(rejected["reason"])
        == Counter(local.rejects["reason"])
        == Counter(
            {
                "duplicate flower_id": 1,
                "petal_length_cm is missing": 1,
                "sepal_width_cm is not a number": 1,
            }
        )
    )
    merged = scored.merge(local.scored, on="flower_id", suffixes=("_spark", "_local"))
    assert (merged["prediction_spark"] == merged["prediction_local"]).all()
    assert set(scored["model_version"]) == {"4"}
    assert list(scored.columns[: len(INFERENCE_TABLE_SCHEMA)]) == INFERENCE_TABLE_SCHEMA.names


def test_a_day_without_files_has_nothing_to_score(spark, model, tmp_path):
    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    champion = VersionInfo("m", "1", {}, (), None, None)
    assert score_frame(spark, settings, DAY, champion, model) == (0, None)
