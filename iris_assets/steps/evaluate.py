"""Evaluate step: score the challenger (and the champion) on the held-out split and judge it.

The evaluation is recorded as its own MLflow run (``core/evidence.py``), which promotion reads;
the verdict is also written to the challenger's tags for people, with ``evaluation_run_id``
pointing at the record, and reported as the blocking ``evaluation_passed`` check. An approval
given on an earlier evaluation is carried over only when the verdict, the champion compared
against and the feature-table version are the same; otherwise it must be given again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from iris_assets.core.confusion_thumbnail import confusion_image_markdown
from iris_assets.core.evaluation import (
    Scores,
    Thresholds,
    comparison_markdown,
    confusion_png,
    held_out_rows,
    judge,
    per_class_markdown,
    score_model,
)
from iris_assets.core.evidence import (
    EvaluationRecord,
    RecordError,
    read_record,
    split_identity,
    write_record,
)
from iris_assets.core.held_out import (
    CHAMPION_TRAINED_EXCLUDED,
    COPIES_EXCLUDED,
    held_out_rows_at,
    trained_on_version,
    without_rows_trained_at,
)
from iris_assets.core.mlflow_links import links
from iris_assets.core.registry import (
    APPROVAL_RUN_TAG,
    APPROVED,
    EVALUATION_REASON_TAG,
    EVALUATION_RUN_TAG,
    EVALUATION_TAG,
    ModelRegistry,
    RegistryError,
    VersionInfo,
    ensure_experiment,
    utc_now_iso,
)
from iris_assets.settings import CHALLENGER_ALIAS
from iris_assets.steps.bootstrap import Step, json_value, md, open_step, url_values
from iris_assets.steps.stores import table_store


def load_estimator(version: VersionInfo):
    import mlflow.sklearn

    return mlflow.sklearn.load_model(version.uri)


def evaluate(step: Step) -> None:
    settings = step.settings
    thresholds = Thresholds(**step.config.get("thresholds", {}))
    registry = ModelRegistry(settings)
    challenger = registry.challenger()
    if challenger is None:
        raise RegistryError(
            f"{settings.model_name} has no {CHALLENGER_ALIAS!r} version: "
            "materialize challenger_model"
        )
    champion = registry.champion()
    if champion is not None and champion.version == challenger.version:
        champion = None  # re-evaluating the serving champion: compare against the bar only

    store = table_store(settings)
    # The split as the challenger saw it: both models are scored on rows neither trained on,
    # and the record names that version (what the gate compares with the table's current one).
    feature_version = trained_on_version(challenger.tags, f"challenger v{challenger.version}")
    held_out = held_out_rows_at(store, settings.feature_table, feature_version)
    copies_excluded = held_out.attrs[COPIES_EXCLUDED]  # test rows equal to a training row
    champion_trained_excluded = 0
    if champion is not None:
        # Both are scored on rows neither trained on: the champion's train side at its version.
        trained_at = trained_on_version(champion.tags, f"champion v{champion.version}")
        held_out = without_rows_trained_at(store, settings.feature_table, held_out, trained_at)
        champion_trained_excluded = held_out.attrs[CHAMPION_TRAINED_EXCLUDED]
    test_rows = held_out_rows(held_out)
    new = score_model(load_estimator(challenger), test_rows)
    old: Scores | None = score_model(load_estimator(champion), test_rows) if champion else None
    verdict = judge(new, old, thresholds)

    labels = (f"challenger v{challenger.version}", f"champion v{champion.version}" if old else "")
    comparison = comparison_markdown(new, old, labels)
    record = write_record(
        registry.client,
        ensure_experiment(settings),
        {
            "model_name": settings.model_name,
            "model_version": challenger.version,
            "model_run_id": challenger.run_id or "",
            "champion_version": champion.version if champion else "none",
            "feature_table": settings.feature_table,
            "feature_table_version": str(feature_version),
            "held_out_rows": new.rows,
            "held_out_sha256": split_identity(test_rows["flower_id"]),
            "thresholds": thresholds,
            "challenger_metrics": new.metrics,
            "champion_metrics": old.metrics if old else None,
        },
        run_name=f"evaluate-v{challenger.version}-{step.run_id[:8]}",
        tags={"dagster_run_id": step.run_id, "verdict": verdict.summary[:5000]},
        metrics={
            **{f"test_{name}": value for name, value in new.metrics.items()},
            **(
                {f"champion_test_{name}": value for name, value in old.metrics.items()}
                if old
                else {}
            ),
        },
    )
    approval = carry_approval(registry, challenger, record)
    registry.set_tags(
        challenger.version,
        {
            EVALUATION_TAG: "passed" if verdict.passed else "failed",
            EVALUATION_REASON_TAG: verdict.summary,
            EVALUATION_RUN_TAG: record.run_id,
            "evaluated_at": utc_now_iso(),
            "evaluated_against": record.champion_version,
            **{f"test_{name}": value for name, value in new.metrics.items()},
        },
    )
    log_to_training_run(registry, challenger, new)
    step.log(f"challenger v{challenger.version} evaluation {verdict.summary}")

    metadata = {
        "challenger_version": challenger.version,
        "champion_version": champion.version if champion else "none",
        "held_out_rows": new.rows,
        "held_out_sha256": record.held_out_sha256,
        COPIES_EXCLUDED: copies_excluded,
        CHAMPION_TRAINED_EXCLUDED: champion_trained_excluded,
        "feature_table_version": feature_version,
        "evaluation_run_id": record.run_id,
        "approval": approval,
        "verdict": verdict.summary,
        "comparison": md(comparison),
        "per_class": md(per_class_markdown(new)),
        # An image Dagster shows inline (core/confusion_thumbnail.py); the full PNG is in MLflow.
        "confusion_matrix": md(confusion_image_markdown(new.confusion)),
        "thresholds": json_value(thresholds.__dict__),
        **{name: float(value) for name, value in new.metrics.items()},
        **url_values(mlflow_links(registry, challenger, record.run_id)),
    }
    step.pipes.report_asset_check(
        "evaluation_passed",
        passed=verdict.passed,
        severity="ERROR",
        metadata={
            "verdict": verdict.summary,
            "challenger_version": challenger.version,
            "evaluation_run_id": record.run_id,
            "comparison": md(comparison),
        },
    )
    step.pipes.report_asset_materialization(
        metadata=metadata,
        data_version=f"v{challenger.version}-{'pass' if verdict.passed else 'fail'}",
    )


def carry_approval(registry: ModelRegistry, version: VersionInfo, record: EvaluationRecord) -> str:
    """Bind the version's approval to ``record`` only if it was given on equivalent evidence.

    An approval without a binding (set in Catalog Explorer since the last evaluation) is taken as
    given on the previous record, or on nothing when there was none. Returns what happened.
    """
    if version.approval != APPROVED:
        return "not approved"
    previous_id = version.tags.get(EVALUATION_RUN_TAG)
    bound = version.tags.get(APPROVAL_RUN_TAG) or previous_id or "none"
    previous = None
    if bound == previous_id and previous_id:
        try:
            previous = read_record(registry.client, previous_id, None)
        except RecordError:
            previous = None
    same = previous is not None and (
        previous.verdict.passed,
        previous.champion_version,
        previous.feature_table_version,
    ) == (record.verdict.passed, record.champion_version, record.feature_table_version)
    registry.set_tags(version.version, {APPROVAL_RUN_TAG: record.run_id if same else bound})
    return "carried over (same verdict, champion and data)" if same else "void: approve again"


def mlflow_links(
    registry: ModelRegistry, version: VersionInfo, evaluation_run_id: str
) -> dict[str, str]:
    """``mlflow_run``: this evaluation's own record run; ``mlflow_training_run``: the model's."""
    evaluation = registry.client.get_run(evaluation_run_id)
    found = links(
        registry.settings, version.version, evaluation.info.experiment_id, evaluation_run_id
    )
    if version.run_id:
        training = registry.client.get_run(version.run_id)
        trained = links(
            registry.settings, version.version, training.info.experiment_id, version.run_id
        )
        if "mlflow_run" in trained:
            found["mlflow_training_run"] = trained["mlflow_run"]
    return found


def log_to_training_run(registry: ModelRegistry, version: VersionInfo, scores: Scores) -> None:
    """Held-out metrics and the confusion matrix go beside the model in its MLflow run."""
    if not version.run_id:
        return
    for name, value in scores.metrics.items():
        registry.client.log_metric(version.run_id, f"test_{name}", value)
    with tempfile.TemporaryDirectory() as folder:
        png = confusion_png(
            scores, Path(folder) / "confusion_matrix.png", f"v{version.version} held-out"
        )
        registry.client.log_artifact(version.run_id, str(png), artifact_path="evaluation")


def main() -> None:
    with open_step() as step:
        evaluate(step)


if __name__ == "__main__":
    main()
