"""Evaluate step: score the challenger (and the champion) on the held-out split and judge it.

The verdict is written to the challenger's model-version tags, where promotion reads it, and
reported as the blocking ``evaluation_passed`` check.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from iris_assets.core.evaluation import (
    Scores,
    Thresholds,
    comparison_markdown,
    confusion_markdown,
    confusion_png,
    held_out_rows,
    judge,
    per_class_markdown,
    score_model,
)
from iris_assets.core.mlflow_links import links
from iris_assets.core.registry import (
    EVALUATION_REASON_TAG,
    EVALUATION_TAG,
    ModelRegistry,
    RegistryError,
    VersionInfo,
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
    test_rows = held_out_rows(store.read(settings.feature_table))
    new = score_model(load_estimator(challenger), test_rows)
    old: Scores | None = score_model(load_estimator(champion), test_rows) if champion else None
    verdict = judge(new, old, thresholds)

    labels = (f"challenger v{challenger.version}", f"champion v{champion.version}" if old else "")
    comparison = comparison_markdown(new, old, labels)
    registry.set_tags(
        challenger.version,
        {
            EVALUATION_TAG: "passed" if verdict.passed else "failed",
            EVALUATION_REASON_TAG: verdict.summary,
            "evaluated_at": utc_now_iso(),
            "evaluated_against": champion.version if champion else "none",
            **{f"test_{name}": value for name, value in new.metrics.items()},
        },
    )
    log_to_training_run(registry, challenger, new)
    step.log(f"challenger v{challenger.version} evaluation {verdict.summary}")

    metadata = {
        "challenger_version": challenger.version,
        "champion_version": champion.version if champion else "none",
        "held_out_rows": new.rows,
        "verdict": verdict.summary,
        "comparison": md(comparison),
        "per_class": md(per_class_markdown(new)),
        "confusion_matrix": md(confusion_markdown(new)),
        "thresholds": json_value(thresholds.__dict__),
        **{name: float(value) for name, value in new.metrics.items()},
        **url_values(mlflow_links(registry, challenger)),
    }
    step.pipes.report_asset_check(
        "evaluation_passed",
        passed=verdict.passed,
        severity="ERROR",
        metadata={
            "verdict": verdict.summary,
            "challenger_version": challenger.version,
            "comparison": md(comparison),
        },
    )
    step.pipes.report_asset_materialization(
        metadata=metadata,
        data_version=f"v{challenger.version}-{'pass' if verdict.passed else 'fail'}",
    )


def mlflow_links(registry: ModelRegistry, version: VersionInfo) -> dict[str, str]:
    run = registry.client.get_run(version.run_id) if version.run_id else None
    experiment_id = run.info.experiment_id if run else None
    return links(registry.settings, version.version, experiment_id, version.run_id)


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
