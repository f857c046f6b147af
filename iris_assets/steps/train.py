"""Train step: fit on the feature table's train split, log to MLflow, register, alias challenger.

The version is registered first and aliased last, so a step that dies halfway leaves at most an
un-aliased version that nothing uses.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from iris_assets.core.mlflow_links import links
from iris_assets.core.registry import (
    ModelRegistry,
    ensure_experiment,
    utc_now_iso,
)
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.core.training import TrainingParams, train_classifier, train_rows
from iris_assets.settings import CHALLENGER_ALIAS, acting_identity
from iris_assets.steps.bootstrap import Step, json_value, open_step, url_values
from iris_assets.steps.failpoints import failpoint
from iris_assets.steps.stores import table_store


def git_sha() -> str | None:
    """The commit of the code being run: from IRIS_GIT_SHA (CI, Databricks) or a local checkout."""
    if os.environ.get("IRIS_GIT_SHA"):
        return os.environ["IRIS_GIT_SHA"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def pip_requirements() -> list[str]:
    # Pinned explicitly: MLflow's own inference of requirements costs ~2.5 s a call.
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("scikit-learn", "skops", "pandas", "numpy")]


def log_and_register(model, example, settings) -> str:
    """Log ``model`` in the active MLflow run and register it as a new version; its number."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(example, model.predict(example)),
        input_example=example,
        pip_requirements=pip_requirements(),
        serialization_format="skops",
        registered_model_name=settings.model_name,
    )
    return str(info.registered_model_version)


def train(step: Step) -> None:
    import mlflow

    settings = step.settings
    params = TrainingParams(**{k: v for k, v in step.config.get("params", {}).items()})
    store = table_store(settings)
    # Read at a pinned version: evaluation reads the same version back through this tag.
    feature_version = store.version(settings.feature_table)
    features = store.read(settings.feature_table, version=feature_version)
    rows = train_rows(features)
    model = train_classifier(features, params)

    experiment_id = ensure_experiment(settings)
    lineage = {
        "feature_table": settings.feature_table,
        "feature_table_version": str(feature_version),
        "dagster_run_id": step.run_id,
        "trained_at": utc_now_iso(),
        "trained_by": step.config.get("trained_by") or acting_identity(),
    }
    if sha := git_sha():
        lineage["git_sha"] = sha
    if reason := step.config.get("retrain_reason"):
        lineage["retrain_reason"] = reason[:4000]  # who or what asked for this model
    if run_key := step.config.get("retrain_run_key"):
        lineage["retrain_run_key"] = run_key[:250]  # the retraining request it answers

    example = rows[list(FEATURE_COLUMNS)].head(3).reset_index(drop=True)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train-{step.run_id[:8]}", tags=lineage
    ) as run:
        mlflow.log_params(params.as_dict())
        mlflow.log_metric("train_rows", len(rows))
        mlflow.log_metric(
            "train_accuracy", float(model.score(rows[list(FEATURE_COLUMNS)], rows["species"]))
        )
        version = log_and_register(model, example, settings)
    failpoint("train:registered")
    registry = ModelRegistry(settings)
    registry.set_tags(version, lineage)
    failpoint("train:tagged")
    registry.set_alias(CHALLENGER_ALIAS, version)
    step.log(f"registered {settings.model_name} version {version} with alias {CHALLENGER_ALIAS}")

    step.pipes.report_asset_materialization(
        metadata={
            "model_name": settings.model_name,
            "version": version,
            "alias": CHALLENGER_ALIAS,
            "model_uri": f"models:/{settings.model_name}/{version}",
            "mlflow_run_id": run.info.run_id,
            "train_rows": len(rows),
            "feature_table_version": feature_version,
            "params": json_value(params.as_dict()),
            "lineage": json_value(lineage),
            **url_values(links(settings, version, experiment_id, run.info.run_id)),
        },
        data_version=version,
    )


def main() -> None:
    with open_step() as step:
        train(step)


if __name__ == "__main__":
    main()
