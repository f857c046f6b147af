"""The performance step on the Spark table store, against a local SparkSession, and locally.

Delta's jars cannot be fetched here, so the tables are Parquet tables of the local catalog and
the Delta-only statements (``INSERT ... REPLACE WHERE``, ``DESCRIBE HISTORY``) are done by
``LocalSparkStore`` with plain Spark: every frame the step hands the store still becomes a Spark
DataFrame through the store's own conversion and is inserted under Spark's store-assignment
rules, and everything the step reads back comes through Spark's ``toPandas``. A type the Spark
path gets wrong, an empty frame Spark cannot take, a read dtype the join does not expect: each
fails here. Both engines must then agree on every number the step computes.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.schema import INFERENCE_TABLE, SPECIES_NAMES
from iris_assets.core.spark_tables import SparkTableStore, create_table_sql, table_ref
from iris_assets.core.tables import DeltaTableStore, TableError
from iris_assets.steps import performance as performance_step
from iris_assets.steps.bootstrap import Step
from tests import local_spark

DAY = "2026-11-24"


@pytest.fixture(scope="module")
def spark():
    return local_spark.session(shuffle_partitions=1)


class LocalSparkStore(SparkTableStore):
    """``SparkTableStore`` on Parquet tables: only what needs Delta is done with plain Spark."""

    def __init__(self, spark):
        super().__init__(spark)
        self.commits = 0

    def ensure_table(self, name, schema, **_layout):
        sql = create_table_sql(name, schema).replace("USING DELTA", "USING PARQUET")
        self.spark.sql(sql)

    def replace_where(self, name, data, predicate, tags=None):
        view = self._view(data, self._columns(name), table=name)
        [outside] = self.spark.sql(
            f"SELECT COUNT(*) AS n FROM {view} WHERE NOT ({predicate})"
        ).collect()
        if outside.n:  # what Delta's REPLACE WHERE refuses
            raise TableError(f"{outside.n} rows written to {name} do not match {predicate}")
        kept = self.spark.sql(f"SELECT * FROM {table_ref(name)} WHERE NOT ({predicate})")
        kept = self.spark.createDataFrame(kept.toPandas(), self.spark.table(name).schema)
        kept.createOrReplaceTempView("kept")
        self.spark.sql(f"INSERT OVERWRITE {table_ref(name)} SELECT * FROM kept")
        # The step's rows go in by themselves: Spark's store assignment checks their own types.
        self.spark.sql(f"INSERT INTO {table_ref(name)} SELECT * FROM {view}")
        self.commits += 1
        return self.commits

    def _last_commit(self, name):
        return {"version": self.commits, "operationMetrics": {}}

    def compact_if_fragmented(self, name, max_files=64):
        return None


class Reports:
    """The Pipes context the step reports to: what it reported, by kind."""

    def __init__(self, day):
        self.partition_key, self.checks, self.materializations = day, {}, []
        self.log = SimpleNamespace(info=lambda message: None)

    def report_asset_check(self, name, passed, severity, metadata):
        self.checks[name] = (passed, metadata)

    def report_asset_materialization(self, metadata, data_version=None):
        self.materializations.append(metadata)


def scored_day(rows=80):
    flowers = simulate_flowers(rows, DAY, seed=3)
    rng = np.random.default_rng(3)
    prediction = rng.integers(0, 3, size=rows)
    return pd.DataFrame(
        {
            "flower_id": flowers["flower_id"].astype("int64"),
            "observed_date": DAY,
            "observed_at": pd.Timestamp("2026-11-24T08:00:00Z"),
            **{c: flowers[c].astype("float64") for c in INFERENCE_TABLE.schema.names[3:7]},
            "prediction": prediction,
            "species_name": [SPECIES_NAMES[p] for p in prediction],
            "probability": 0.9,
            "model_name": "iris_model",
            "model_version": np.where(np.arange(rows) < rows // 2, "1", "2"),
            "predicted_at": pd.Timestamp("2026-11-24T09:00:00Z"),
            "run_id": "run-1",
        }
    )


def land_labels(settings, scored):
    """Good labels for half the day (by species name and by index), plus rows that must fail."""
    labels = pd.DataFrame(
        {
            "flower_id": scored["flower_id"].iloc[:40].astype(str),
            "species": [
                SPECIES_NAMES[p] if i % 2 else str(p)
                for i, p in enumerate(scored["prediction"].iloc[:40])
            ],
        }
    )
    bad = pd.DataFrame(
        {
            "flower_id": ["1.5", str(scored["flower_id"].iloc[0]), "999", ""],
            "species": ["setosa", "virginica", "setosa", "setosa"],
        }
    )
    LandingArea(settings.labels_landing_dir).write_batch(labels, DAY, fmt="csv")
    LandingArea(settings.labels_landing_dir).write_batch(bad, DAY, fmt="csv")


def run(settings, store, monkeypatch):
    monkeypatch.setattr(performance_step, "table_store", lambda _settings: store)
    reports = Reports(DAY)
    performance_step.performance(Step(pipes=reports, settings=settings, config={}))
    return reports


def comparable(
    frame: pd.DataFrame, drop=("computed_at", "labelled_at", "rejected_at")
) -> pd.DataFrame:
    frame = frame.drop(columns=[c for c in drop if c in frame.columns])
    keys = [c for c in ("observed_date", "model_version", "flower_id", "reason") if c in frame]
    frame = frame.sort_values(keys).reset_index(drop=True)
    return frame.astype({c: "float64" for c in frame.select_dtypes("number").columns})


def test_the_performance_step_writes_and_judges_the_same_on_spark_and_locally(
    settings, spark, monkeypatch
):
    on_spark = dataclasses.replace(settings, catalog="spark_catalog", schema="default")
    spark_store = LocalSparkStore(spark)
    INFERENCE_TABLE.ensure(spark_store, on_spark.inference_table)
    spark_store.replace_partition(on_spark.inference_table, scored_day(), "observed_date", DAY)
    local_store = DeltaTableStore(settings.warehouse)
    INFERENCE_TABLE.ensure(local_store, settings.inference_table)
    local_store.replace_partition(settings.inference_table, scored_day(), "observed_date", DAY)
    land_labels(settings, scored_day())

    spark_reports = run(on_spark, spark_store, monkeypatch)
    local_reports = run(settings, local_store, monkeypatch)

    for check in ("labels_accounted", "live_accuracy"):
        assert spark_reports.checks[check][0] == local_reports.checks[check][0], check
    passed, accounted = spark_reports.checks["labels_accounted"]
    assert passed and accounted["labelled_rows"] == 40 and accounted["rows_rejected"] == 4
    for table in ("labels_table", "performance_table", "rejects_table"):
        on_spark_rows = spark_store.read(getattr(on_spark, table))
        local_rows = local_store.read(getattr(settings, table))
        pd.testing.assert_frame_equal(
            comparable(on_spark_rows), comparable(local_rows), check_dtype=False, obj=table
        )
    [spark_meta], [local_meta] = spark_reports.materializations, local_reports.materializations
    for key in ("scored_rows", "labelled_rows", "coverage", "accuracy", "by_version", "verdict"):
        assert spark_meta[key] == local_meta[key], key

    # Re-running on Spark replaces the day: the same rows, none piled up.
    again = run(on_spark, spark_store, monkeypatch)
    assert spark_store.count(on_spark.labels_table) == 40
    assert spark_store.count(on_spark.performance_table) == 2, "one row per model version"
    assert again.checks["labels_accounted"][0]


def test_a_day_with_no_labels_or_only_a_quarantined_file_is_written_on_spark(
    settings, spark, monkeypatch
):
    on_spark = dataclasses.replace(settings, catalog="spark_catalog", schema="quiet")
    spark.sql("CREATE DATABASE IF NOT EXISTS spark_catalog.quiet")
    store = LocalSparkStore(spark)
    INFERENCE_TABLE.ensure(store, on_spark.inference_table)
    store.replace_partition(on_spark.inference_table, scored_day(), "observed_date", DAY)
    reports = run(on_spark, store, monkeypatch)
    passed, accounted = reports.checks["labels_accounted"]
    assert passed and accounted["labelled_rows"] == 0
    assert store.count(on_spark.rejects_table) == 0

    # Only a file quarantined whole: its rejects row has no flower_id at all.
    folder = LandingArea(settings.labels_landing_dir).day_dir(DAY)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "batch-20261125T000000000000Z-0badf11e.csv").write_bytes(b"flower_id,species\n\xff\n")
    reports = run(on_spark, store, monkeypatch)
    passed, accounted = reports.checks["labels_accounted"]
    [reject] = store.read(on_spark.rejects_table).to_dict("records")
    assert passed and accounted["files_quarantined"] and pd.isna(reject["flower_id"])
    assert store.count(on_spark.performance_table) == 2
    assert reports.checks["live_accuracy"][1]["judged"] is False
