"""Ingestion and evaluation as assets: idempotent upserts, quarantine, and the blocking bar."""

import pandas as pd

from iris_assets.core.quarantine import rejects_slice
from iris_assets.core.registry import ModelRegistry
from iris_assets.core.source import load_source
from iris_assets.steps.stores import table_store
from tests.assets.helpers import (
    check_results,
    materialization_metadata,
    materialize,
    step_failure_messages,
)


def ingest(defs, instance, source_path: str = ""):
    config = {"ops": {"iris_features": {"config": {"source_path": source_path}}}}
    result = materialize(defs, instance, "iris_features", run_config=config)
    assert result.success, step_failure_messages(result)
    return result


def test_ingestion_is_idempotent(settings, graph):
    first = ingest(*graph)
    assert materialization_metadata(first, "iris_features")["rows_inserted"] == 150
    second = ingest(*graph)
    metadata = materialization_metadata(second, "iris_features")
    assert (metadata["rows_inserted"], metadata["rows_updated"]) == (0, 150)
    table = table_store(settings).read(settings.feature_table)
    assert len(table) == 150 and table["flower_id"].is_unique
    assert (
        metadata["delta_version"]
        > materialization_metadata(first, "iris_features")["delta_version"]
    )


def test_malformed_source_rows_are_quarantined_with_a_reason(settings, graph, tmp_path):
    source = load_source(None).astype(str)
    source.loc[3, "petal_width_cm"] = "n/a"
    source.loc[4, "sepal_length_cm"] = "-1"
    source.loc[5, "species"] = "daisy"
    path = tmp_path / "flowers.csv"
    source.to_csv(path, index=False)

    result = ingest(*graph, source_path=str(path))
    assert check_results(result) == {"feature_table_valid": True, "source_rows_accepted": False}
    metadata = materialization_metadata(result, "iris_features")
    assert (metadata["rows_ingested"], metadata["rows_rejected"]) == (147, 3)
    rejects = table_store(settings).read(
        settings.rejects_table, predicate=rejects_slice("ingest", str(path))
    )
    reasons = dict(zip(rejects["flower_id"], rejects["reason"], strict=True))
    assert reasons == {
        "4": "petal_width_cm is not a number",
        "5": "sepal_length_cm must be positive",
        "6": "species is not one of 0, 1, 2, setosa, versicolor, virginica",
    }
    again = ingest(*graph, source_path=str(path))
    assert materialization_metadata(again, "iris_features")["rows_rejected"] == 3
    assert table_store(settings).count(settings.rejects_table) == 3, "re-runs replace rejects"


def test_the_blocking_evaluation_check_stops_promotion_in_the_same_run(settings, graph):
    defs, instance = graph
    too_high = {"ops": {"evaluation_report": {"config": {"min_accuracy": 1.01}}}}
    result = materialize(
        defs,
        instance,
        "iris_features",
        "challenger_model",
        "evaluation_report",
        "champion_alias",
        run_config=too_high,
    )
    assert check_results(result)["evaluation_passed"] is False
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "champion_alias" not in materialized
    models = ModelRegistry(settings)
    challenger = models.challenger()
    assert challenger.evaluation == "failed"
    assert "below the minimum 1.01" in challenger.tags["evaluation_reason"]
    assert models.champion() is None
    assert isinstance(pd.Timestamp(challenger.tags["evaluated_at"]), pd.Timestamp)
