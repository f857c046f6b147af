"""Training assets: the feature table, the challenger model and its evaluation.

Each runs its work as a Pipes step; the step reports metadata and check results back.
"""

import dagster as dg
from pydantic import Field

from iris_assets.resources import StepRunner

TRAINING_GROUP = "training"


class IngestConfig(dg.Config):
    source_path: str = Field(
        default="",
        description="CSV or Parquet file of labelled flowers; empty = scikit-learn's bundled Iris.",
    )
    test_fraction: float = Field(default=0.3, description="Share of flowers held out for testing.")
    retract_missing: bool = Field(
        default=False,
        description=(
            "Delete the flowers this source delivered and no longer offers even when it offers "
            "none or loses most of them (otherwise such a run is refused, nothing written)."
        ),
    )


class TrainConfig(dg.Config):
    C: float = 1.0
    max_iter: int = 500
    seed: int = 42


class EvaluationConfig(dg.Config):
    min_accuracy: float = 0.9
    min_f1_macro: float = 0.9
    max_regression: float = 0.02


@dg.asset(
    group_name=TRAINING_GROUP,
    kinds={"python", "delta"},
    check_specs=[
        dg.AssetCheckSpec(
            "feature_table_valid",
            asset="iris_features",
            blocking=True,
            description="Unique non-null flower_id, no nulls, every species in train and test.",
        ),
        dg.AssetCheckSpec(
            "source_rows_accepted",
            asset="iris_features",
            description="Warns when source rows were quarantined in the rejects table.",
        ),
    ],
)
def iris_features(context: dg.AssetExecutionContext, config: IngestConfig, step_runner: StepRunner):
    """Feature table of labelled Iris measurements, primary key flower_id, MERGE-upserted."""
    yield from step_runner.run(context, "ingest", config.model_dump())


@dg.asset(
    group_name=TRAINING_GROUP, kinds={"python", "mlflow", "scikitlearn"}, deps=[iris_features]
)
def challenger_model(
    context: dg.AssetExecutionContext, config: TrainConfig, step_runner: StepRunner
):
    """A newly trained classifier, registered as a new model version with alias `challenger`."""
    from iris_assets.settings import acting_identity

    trained_by = acting_identity(context.run.tags)  # separation of duties compares the approver
    # Set by retraining_sensor: why this challenger was trained, recorded on its version.
    retrain_reason = context.run.tags.get("iris/retrain_reason", "")
    # And the request's run key: the version answers that request even after the run is
    # deleted from Dagster (retraining_sensor reads the registry for it).
    run_key = ""
    if context.run.tags.get("iris/trigger") == "retraining_sensor":
        run_key = context.run.tags.get("dagster/run_key", "")
    yield from step_runner.run(
        context,
        "train",
        {
            "params": config.model_dump(),
            "trained_by": trained_by,
            "retrain_reason": retrain_reason,
            "retrain_run_key": run_key,
        },
    )


@dg.asset(
    group_name=TRAINING_GROUP,
    kinds={"python", "mlflow"},
    deps=[challenger_model],
    check_specs=[
        dg.AssetCheckSpec(
            "evaluation_passed",
            asset="evaluation_report",
            blocking=True,
            description="The challenger clears the quality bar and does not regress.",
        )
    ],
)
def evaluation_report(
    context: dg.AssetExecutionContext, config: EvaluationConfig, step_runner: StepRunner
):
    """Held-out evaluation of the challenger, side by side with the champion; verdict as tags."""
    yield from step_runner.run(context, "evaluate", {"thresholds": config.model_dump()})
