"""Every check result is recorded against the materialization (and partition) it checked.

Read back through Dagster's own storage API, the way the UI's check pane and GraphQL
``assetCheckExecutions`` read them: one execution per run, for this run's materialization, for
the run's partition, and no PLANNED/SKIPPED leftovers.
"""

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from iris_assets.core.confusion_thumbnail import INLINE_LIMIT
from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.registry import ModelRegistry
from iris_assets.settings import CHAMPION_ALIAS
from tests.assets.helpers import materialize, run_job, step_failure_messages

CHECKS = {
    "iris_features": ("feature_table_valid", "source_rows_accepted"),
    "evaluation_report": ("evaluation_passed",),
    "inference_table": ("inference_output_valid", "feature_drift"),
}


def executions(instance: dg.DagsterInstance, asset: str, check: str) -> list[tuple]:
    """(run, status, partition, target materialization's run, its partition), oldest first."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    rows = []
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=20):
        evaluation = record.event.dagster_event.event_specific_data if record.event else None
        target = evaluation.target_materialization_data if evaluation else None
        target_partition = None
        if target is not None:
            [materialization] = instance.fetch_materializations(
                dg.AssetRecordsFilter(dg.AssetKey(asset), storage_ids=[target.storage_id]), limit=1
            ).records
            target_partition = materialization.partition_key
        rows.append(
            (
                record.run_id,
                record.status,
                record.partition,
                target.run_id if target else None,
                target_partition,
            )
        )
    return rows[::-1]


def assert_mlflow_links(result, settings) -> None:
    """Both MLflow assets link (MetadataValue.url) to the local MLflow UI's run and version."""
    for asset in ("challenger_model", "evaluation_report"):
        [event] = [
            e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]
        ]
        metadata = event.materialization.metadata
        run, version = metadata["mlflow_run"], metadata["mlflow_model_version"]
        assert isinstance(run, dg.UrlMetadataValue) and isinstance(version, dg.UrlMetadataValue)
        assert run.url.startswith(f"{settings.mlflow_ui_url}/#/experiments/")
        assert version.url == f"{settings.mlflow_ui_url}/#/models/{settings.model_name}/versions/1"
    # evaluation_report's mlflow_run is its own record run (tests/assets/test_mlflow_link_targets).
    run_id = result.asset_materializations_for_node("evaluation_report")[0].metadata
    assert run.url.endswith(f"/runs/{run_id['evaluation_run_id'].value}")


def assert_confusion_image(result) -> None:
    """evaluation_report's confusion matrix is an image short enough for the UI to show inline."""
    [materialization] = result.asset_materializations_for_node("evaluation_report")
    confusion = materialization.metadata["confusion_matrix"]
    assert isinstance(confusion, dg.MarkdownMetadataValue)
    assert confusion.md_str.startswith("![confusion matrix](data:image/png;base64,")
    assert len(confusion.md_str) < INLINE_LIMIT


def test_check_results_target_this_runs_materialization_and_partition(settings, graph):
    defs, instance = graph
    first = materialize(defs, instance, "iris_features", "challenger_model", "evaluation_report")
    assert first.success, step_failure_messages(first)
    assert_mlflow_links(first, settings)
    assert_confusion_image(first)
    # A second run: a check recorded against the latest materialization it knew *before* this
    # run's would point at the first run.
    second = materialize(defs, instance, "iris_features", "evaluation_report")
    assert second.success, step_failure_messages(second)
    passed = AssetCheckExecutionRecordStatus.SUCCEEDED
    for asset in ("iris_features", "evaluation_report"):
        for check in CHECKS[asset]:
            assert executions(instance, asset, check) == [
                (run.run_id, passed, None, run.run_id, None) for run in (first, second)
            ], (asset, check)

    ModelRegistry(settings).set_alias(CHAMPION_ALIAS, "1")
    landing = LandingArea(settings.landing_dir)
    runs = []
    for day in ("2026-11-20", "2026-11-21", "2026-11-20"):  # a day re-run after another day
        landing.write_batch(simulate_flowers(20, day, seed=len(runs)), day)
        result = run_job(defs, instance, "inference_job", partition_key=day)
        assert result.success, step_failure_messages(result)
        runs.append((result.run_id, day))
    for check in CHECKS["inference_table"]:
        assert executions(instance, "inference_table", check) == [
            (run_id, passed, day, run_id, day) for run_id, day in runs
        ], check
