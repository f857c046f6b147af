"""Score step: one day of newly collected flowers -> predictions by the champion.

Every landing row ends in exactly one place: the inference table (scored) or the rejects table
(with a reason), and every file of the day folder is read or quarantined with a reason. The
blocking check compares what was written with the rows counted from the files themselves. A day
without landing rows fails before anything is written. Re-running a day replaces that day's rows
in both tables. Locally the day is scored in
pandas; on Databricks with Spark (``steps/spark_scoring.py``), with the same batch function.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from functools import partial
from typing import Any

import pandas as pd

from iris_assets.core.drift import feature_drift
from iris_assets.core.registry import ModelRegistry, RegistryError, VersionInfo
from iris_assets.core.schema import FEATURE_COLUMNS, TRAIN
from iris_assets.core.serving_log import (
    SERVED_RULE,
    ServedFeatures,
    served_features,
    served_share_cap,
    served_table,
    uniform_rows,
)
from iris_assets.settings import CHAMPION_ALIAS, Settings
from iris_assets.steps.bootstrap import Step, json_value, open_step
from iris_assets.steps.day_scoring import ScoredDay, new_run_id, score_day_locally
from iris_assets.steps.local_champion import load_champion, read_champion
from iris_assets.steps.stores import table_store


def partition_day(step: Step) -> str:
    day = step.config.get("date") or step.pipes.partition_key
    if not day:
        raise ValueError("inference_table is partitioned by day: give a partition (YYYY-MM-DD)")
    return date.fromisoformat(day).isoformat()


def require_champion(settings: Settings) -> VersionInfo:
    champion = ModelRegistry(settings).champion()
    if champion is None:
        raise RegistryError(
            f"{settings.model_name} has no {CHAMPION_ALIAS!r} version yet: approve a challenger "
            "(`iris approve N --by NAME`) and let champion_approval_sensor promote it"
        )
    return champion


def champion_loader(settings: Settings) -> tuple[VersionInfo, Callable[[], Any]]:
    """The local champion and how to load it: its skops file read without MLflow
    (``steps.local_champion``) when the registry is one that reader knows, else through MLflow.
    Either way the version named is the version whose files are loaded."""
    found = read_champion(settings)
    if found is not None:
        champion, path = found
        return champion, partial(load_champion, champion, path)
    import mlflow.sklearn

    champion = require_champion(settings)
    return champion, partial(mlflow.sklearn.load_model, champion.uri)


def score(step: Step) -> None:
    settings = step.settings
    day = partition_day(step)
    store = table_store(settings)
    run_id = new_run_id(step.run_id)
    if settings.is_databricks:
        import mlflow.sklearn

        from iris_assets.steps.spark_scoring import score_day_with_spark

        champion = require_champion(settings)
        model = mlflow.sklearn.load_model(champion.uri)
        result = score_day_with_spark(store, settings, day, champion, model, run_id=run_id)
    else:
        champion, load = champion_loader(settings)
        # The model loads (Python: skops) while the day's files are inspected (pyarrow, the
        # GIL released); score_day_locally waits for it before it writes anything.
        with ThreadPoolExecutor(1, thread_name_prefix="iris-model") as loader:
            model = loader.submit(load)
            try:
                result = score_day_locally(store, settings, day, champion, model, run_id=run_id)
            finally:
                model.cancel()
    step.log(
        f"{day}: {result.landing_rows} landing rows -> {result.rows_scored} scored by "
        f"v{champion.version}, {result.rows_rejected} rejected"
    )
    if result.files_ignored:  # markers are not data, but never silently passed over
        step.log(f"{day}: ignored (not data): {', '.join(result.files_ignored)}")

    report_inference_checks(step, result)
    training = store.read(settings.feature_table, predicate=f"split = '{TRAIN}'")
    served = served_features(store, served_table(settings), day)  # the endpoint's requests
    report_drift_check(step, training, result.features_sample, served)
    step.pipes.report_asset_materialization(
        metadata={
            "table": settings.inference_table,
            "partition": day,
            "landing_rows": result.landing_rows,
            "rows_scored": result.rows_scored,
            "rows_rejected": result.rows_rejected,
            "dagster/row_count": result.rows_scored,
            "model_version": champion.version,
            "delta_version": result.table_version,
            "run_id": result.run_id,
            "prediction_counts": json_value(result.prediction_counts),
            "reject_reasons": json_value(result.reject_reasons),
            "files_quarantined": json_value(list(result.files_quarantined)),
            "files_ignored": json_value(list(result.files_ignored)),
        },
        data_version=f"{day}-v{champion.version}-{result.table_version}",
    )


def report_inference_checks(step: Step, result: ScoredDay) -> None:
    # The accounting (scored + rejected = landing rows, both commits by this run) is read back
    # from the tables (core.accounting), so a day another run cut or interleaved fails here.
    written, problems = result.written, list(result.problems)
    if written.duplicate_ids:
        problems.append(f"{written.duplicate_ids} duplicate flower_id in the partition")
    if written.probabilities_out_of_range:
        problems.append(f"{written.probabilities_out_of_range} probabilities outside [0, 1]")
    if written.null_predictions:
        problems.append(f"{written.null_predictions} rows with null predictions")
    step.pipes.report_asset_check(
        "inference_output_valid",
        passed=not problems,
        severity="ERROR",
        metadata={
            "rows_scored": written.rows,
            "rows_rejected": result.rows_rejected,
            "landing_rows": result.landing_rows,
            "landing_rows_counted_from": "the landing files (Parquet footers, CSV records)",
            "run_id": result.run_id,
            "files_quarantined": len(result.files_quarantined),
            "problems": json_value(problems),
        },
    )


def report_drift_check(
    step: Step, training: pd.DataFrame, batch: pd.DataFrame, served: ServedFeatures | None = None
) -> None:
    columns = list(FEATURE_COLUMNS)
    valid_served = served.features if served is not None else batch.iloc[:0][columns]
    # Served rows count at most as much as the batch's (core.serving_log.served_share_cap): a
    # uniform subset, so whoever can reach the endpoint cannot outvote the landed data.
    used = served_share_cap(len(batch), len(valid_served))
    if used < len(valid_served):
        valid_served = valid_served.iloc[uniform_rows(len(valid_served), used)]
    current = pd.concat([batch[columns], valid_served[columns]], ignore_index=True)
    report = feature_drift(training, current)
    if not report.enough_rows:
        note = f"only {report.rows} rows scored: too few to judge drift"
    elif report.drifted:
        note = f"drift in {', '.join(report.drifted)} (PSI above {report.threshold})"
    else:
        note = f"no feature drifted beyond PSI {report.threshold}"
    total = max(len(current), 1)
    step.pipes.report_asset_check(
        "feature_drift",
        passed=not report.drifted,
        severity="WARN",
        metadata={
            "summary": note,
            "psi": json_value(report.psi),
            "rows": report.rows,
            "batch_rows": len(batch),
            "served_rows": len(valid_served),
            "served_rows_answered": served.rows_answered if served is not None else 0,
            "served_rows_invalid": served.rows_invalid if served is not None else 0,
            "batch_share": round(len(batch) / total, 4),
            "served_share": round(len(valid_served) / total, 4),
            "served_rule": SERVED_RULE,
        },
    )


def main() -> None:
    with open_step() as step:
        score(step)


if __name__ == "__main__":
    main()
