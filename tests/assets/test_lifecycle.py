"""The whole graph, materialized in-process with real steps, registry, tables and server."""

import dagster as dg
import pytest

from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.registry import ModelRegistry
from iris_assets.serving.client import version as served_version
from tests.assets.helpers import (
    check_results,
    materialization_metadata,
    run_job,
    sensor_decision,
    step_failure_messages,
)

DAY = "2026-11-20"


def promote_through_sensor(defs, instance, version: str):
    decision, _ = sensor_decision(defs, instance)
    assert isinstance(decision, dg.RunRequest), decision
    assert decision.tags["iris/model_version"] == version
    result = run_job(
        defs, instance, "promotion_job", run_config=decision.run_config, tags=decision.tags
    )
    assert result.success, [
        (e.check_name, {k: v.value for k, v in e.metadata.items()})
        for e in result.get_asset_check_evaluations()
    ]
    return result


@pytest.mark.sqlite_instance  # the whole lifecycle on the storage `dagster dev` keeps
def test_the_whole_lifecycle_then_a_second_training_round(settings, graph):
    defs, instance = graph
    LandingArea(settings.landing_dir).write_batch(simulate_flowers(120, DAY, seed=7), DAY)
    models = ModelRegistry(settings)

    training = run_job(defs, instance, "training_job")
    assert training.success, step_failure_messages(training)
    assert check_results(training) == {
        "feature_table_valid": True,
        "source_rows_accepted": True,
        "evaluation_passed": True,
    }
    features = materialization_metadata(training, "iris_features")
    assert features["dagster/row_count"] == 150 and features["rows_rejected"] == 0
    report = materialization_metadata(training, "evaluation_report")
    assert report["challenger_version"] == "1" and report["champion_version"] == "none"
    assert report["accuracy"] >= 0.9

    waiting, _ = sensor_decision(defs, instance)
    assert isinstance(waiting, dg.SkipReason)
    assert "iris approve 1" in waiting.skip_message

    models.approve("1", by="tester")
    promotion = promote_through_sensor(defs, instance, "1")
    assert check_results(promotion) == {
        "champion_is_approved": True,
        "endpoint_round_trip": True,
        "serving_matches_champion": True,
    }
    assert models.champion().version == "1"
    assert served_version(settings.serving_url)["version"] == "1"
    already, _ = sensor_decision(defs, instance)
    assert "already champion" in already.skip_message

    inference = run_job(defs, instance, "inference_job", partition_key=DAY)
    assert inference.success, step_failure_messages(inference)
    assert check_results(inference) == {"inference_output_valid": True, "feature_drift": True}
    scored = materialization_metadata(inference, "inference_table")
    assert scored["rows_scored"] == 120 and scored["model_version"] == "1"

    second = run_job(
        defs,
        instance,
        "training_job",
        run_config={"ops": {"challenger_model": {"config": {"C": 0.5}}}},
    )
    assert second.success, step_failure_messages(second)
    report = materialization_metadata(second, "evaluation_report")
    assert (report["challenger_version"], report["champion_version"]) == ("2", "1")
    assert "| metric | challenger v2 | champion v1 | delta |" in report["comparison"]
    assert models.champion().version == "1", "a new challenger never replaces the champion alone"

    models.approve("2", by="tester")
    promote_through_sensor(defs, instance, "2")
    assert served_version(settings.serving_url)["version"] == "2"
    assert models.get("2").tags["previous_champion"] == "1"
