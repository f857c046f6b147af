"""Score step: one day of newly collected flowers -> predictions by the champion.

Every landing row ends in exactly one place: the inference table (scored) or the rejects table
(with a reason). Re-running a day replaces that day's rows in both.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from iris_assets.core.drift import feature_drift
from iris_assets.core.landing import LandingArea
from iris_assets.core.quarantine import rejects_rows, rejects_slice
from iris_assets.core.registry import ModelRegistry, RegistryError
from iris_assets.core.schema import (
    FEATURE_COLUMNS,
    INFERENCE_TABLE_SCHEMA,
    PRIMARY_KEY,
    REJECTS_TABLE_SCHEMA,
    TRAIN,
)
from iris_assets.core.scoring import predict_frame
from iris_assets.core.validation import validate_measurements
from iris_assets.settings import CHAMPION_ALIAS
from iris_assets.steps.pipes import Step, json_value, open_step
from iris_assets.steps.stores import table_store


def partition_day(step: Step) -> str:
    day = step.config.get("date") or step.pipes.partition_key
    if not day:
        raise ValueError("inference_table is partitioned by day: give a partition (YYYY-MM-DD)")
    return date.fromisoformat(day).isoformat()


def score(step: Step) -> None:
    import mlflow.sklearn

    settings = step.settings
    day = partition_day(step)
    registry = ModelRegistry(settings)
    champion = registry.champion()
    if champion is None:
        raise RegistryError(
            f"{settings.model_name} has no {CHAMPION_ALIAS!r} version yet: approve a challenger "
            "(`iris approve N --by NAME`) and let champion_approval_sensor promote it"
        )
    model = mlflow.sklearn.load_model(champion.uri)

    raw = LandingArea(settings.landing_dir).read_day(day)
    checked = validate_measurements(raw, passthrough=["observed_at"])
    valid = checked.valid
    predictions = predict_frame(model, valid)
    scored = pd.DataFrame(
        {
            PRIMARY_KEY: valid[PRIMARY_KEY].astype("int64"),
            "observed_date": day,
            "observed_at": pd.to_datetime(valid.get("observed_at"), utc=True, errors="coerce")
            if "observed_at" in valid
            else pd.NaT,
            **{c: valid[c] for c in FEATURE_COLUMNS},
            **{c: predictions[c] for c in predictions.columns},
            "model_name": settings.model_name,
            "model_version": champion.version,
            "predicted_at": pd.Timestamp(datetime.now(UTC)),
        },
        index=valid.index,
    )[INFERENCE_TABLE_SCHEMA.names]

    store = table_store(settings)
    store.ensure_table(
        settings.inference_table, INFERENCE_TABLE_SCHEMA, partition_by=["observed_date"]
    )
    store.ensure_table(settings.rejects_table, REJECTS_TABLE_SCHEMA, partition_by=["stage"])
    version = store.replace_partition(settings.inference_table, scored, "observed_date", day)
    store.replace_where(
        settings.rejects_table,
        rejects_rows(checked.rejects, "inference", day),
        rejects_slice("inference", day),
    )
    step.log(
        f"{day}: {len(raw)} landing rows -> {len(scored)} scored by v{champion.version}, "
        f"{len(checked.rejects)} rejected"
    )

    written = store.read(settings.inference_table, predicate=f"observed_date = '{day}'")
    report_inference_checks(step, raw_rows=len(raw), written=written, rejected=len(checked.rejects))
    training = store.read(settings.feature_table, predicate=f"split = '{TRAIN}'")
    report_drift_check(step, training, valid)

    step.pipes.report_asset_materialization(
        metadata={
            "table": settings.inference_table,
            "partition": day,
            "landing_rows": len(raw),
            "rows_scored": len(scored),
            "rows_rejected": len(checked.rejects),
            "dagster/row_count": len(scored),
            "model_version": champion.version,
            "delta_version": version,
            "prediction_counts": json_value(
                scored["species_name"].value_counts().to_dict() if len(scored) else {}
            ),
            "reject_reasons": json_value(
                checked.rejects["reason"].value_counts().head(10).to_dict()
                if len(checked.rejects)
                else {}
            ),
        },
        data_version=f"{day}-v{champion.version}-{version}",
    )


def report_inference_checks(step: Step, raw_rows: int, written: pd.DataFrame, rejected: int):
    problems = []
    if len(written) + rejected != raw_rows:
        problems.append(f"{len(written)} scored + {rejected} rejected != {raw_rows} landing rows")
    if written[PRIMARY_KEY].duplicated().any():
        problems.append("duplicate flower_id in the partition")
    if not written["probability"].between(0, 1).all():
        problems.append("probability outside [0, 1]")
    if written[["prediction", "species_name", "model_version"]].isna().any().any():
        problems.append("null predictions")
    step.pipes.report_asset_check(
        "inference_output_valid",
        passed=not problems,
        severity="ERROR",
        metadata={
            "rows_scored": len(written),
            "rows_rejected": rejected,
            "landing_rows": raw_rows,
            "problems": json_value(problems),
        },
    )


def report_drift_check(step: Step, training: pd.DataFrame, current: pd.DataFrame) -> None:
    report = feature_drift(training, current)
    if not report.enough_rows:
        note = f"only {report.rows} rows scored: too few to judge drift"
    elif report.drifted:
        note = f"drift in {', '.join(report.drifted)} (PSI above {report.threshold})"
    else:
        note = f"no feature drifted beyond PSI {report.threshold}"
    step.pipes.report_asset_check(
        "feature_drift",
        passed=not report.drifted,
        severity="WARN",
        metadata={"summary": note, "psi": json_value(report.psi), "rows": report.rows},
    )


def main() -> None:
    with open_step() as step:
        score(step)


if __name__ == "__main__":
    main()
