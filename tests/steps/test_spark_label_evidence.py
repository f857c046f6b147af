"""The label evidence model_performance reports is the same on the Spark table store (the one
serverless uses) as locally, with iris_features holding corrected and retracted labelled flowers."""

from __future__ import annotations

import dataclasses

import pandas as pd

from iris_assets.core.schema import FEATURE_TABLE, FEATURE_TABLE_SCHEMA, INFERENCE_TABLE
from iris_assets.core.tables import DeltaTableStore
from iris_assets.steps.performance import labelled_source
from tests.steps.test_spark_performance import (  # noqa: F401
    DAY,
    LocalSparkStore,
    land_labels,
    run,
    scored_day,
    spark,
)

EVIDENCE = (
    "new_labelled_flowers",
    "new_labels_hash",
    "retracted_labelled_flowers",
    "corrected_labelled_flowers",
    "stale_labels_hash",
    "labelled_flowers_held",
)


def held_flowers(settings, scored: pd.DataFrame) -> pd.DataFrame:
    """iris_features holding 10 of the day's labelled flowers from the labelled-flowers file, the
    first under another species than its label, plus 2 flowers whose labels are gone."""
    rows = scored.iloc[:10].copy()
    species = rows["prediction"].astype("int64").to_numpy().copy()
    species[0] = (species[0] + 1) % 3
    gone = scored.iloc[:2].assign(flower_id=[9_000_001, 9_000_002])
    rows = pd.concat([rows, gone], ignore_index=True)
    frame = pd.DataFrame(
        {
            "flower_id": rows["flower_id"].astype("int64"),
            **{c: rows[c] for c in FEATURE_TABLE_SCHEMA.names[1:5]},
            "species": [*species, 0, 1],
            "species_name": "setosa",
            "split": "train",
            "source": labelled_source(settings),
            "ingested_at": pd.Timestamp("2026-11-20T10:00:00Z"),
        }
    )
    return frame


def test_the_label_evidence_is_the_same_on_spark_and_locally(settings, spark, monkeypatch):  # noqa: F811
    on_spark = dataclasses.replace(settings, catalog="spark_catalog", schema="evidence")
    spark.sql("CREATE DATABASE IF NOT EXISTS spark_catalog.evidence")
    spark_store, local_store = LocalSparkStore(spark), DeltaTableStore(settings.warehouse)
    for engine, store in ((on_spark, spark_store), (settings, local_store)):
        INFERENCE_TABLE.ensure(store, engine.inference_table)
        store.replace_partition(engine.inference_table, scored_day(), "observed_date", DAY)
        FEATURE_TABLE.ensure(store, engine.feature_table)
        store.replace_where(engine.feature_table, held_flowers(settings, scored_day()), "true")
    land_labels(settings, scored_day())

    [on_spark_meta] = run(on_spark, spark_store, monkeypatch).materializations
    [local_meta] = run(settings, local_store, monkeypatch).materializations
    assert {k: on_spark_meta[k] for k in EVIDENCE} == {k: local_meta[k] for k in EVIDENCE}
    assert (
        local_meta["new_labelled_flowers"],
        local_meta["retracted_labelled_flowers"],
        local_meta["corrected_labelled_flowers"],
        local_meta["labelled_flowers_held"],
    ) == (30, 2, 1, 12)
