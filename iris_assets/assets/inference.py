"""Batch inference: each day's newly collected flowers scored by the champion, on a schedule."""

from datetime import timedelta

import dagster as dg

from iris_assets.assets.promotion import champion_alias
from iris_assets.resources import StepRunner

INFERENCE_GROUP = "inference"
daily = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC", end_offset=1)

new_flowers = dg.AssetSpec(
    "new_flowers",
    group_name=INFERENCE_GROUP,
    kinds={"parquet"},
    partitions_def=daily,
    description=(
        "Landing area of unlabelled flower measurements, one folder per observed day. "
        "Written by collectors (locally: `iris simulate --rows N --date YYYY-MM-DD`)."
    ),
)


@dg.asset(
    group_name=INFERENCE_GROUP,
    kinds={"python", "delta"},
    partitions_def=daily,
    deps=[new_flowers, champion_alias],
    check_specs=[
        dg.AssetCheckSpec(
            "inference_output_valid",
            asset="inference_table",
            partitions_def=daily,  # each result belongs to the day it checked
            blocking=True,
            description="Scored + rejected = landing rows; unique ids; probabilities in [0, 1].",
        ),
        dg.AssetCheckSpec(
            "feature_drift",
            asset="inference_table",
            partitions_def=daily,
            description="Warns when a feature's distribution moved away from the training data.",
        ),
    ],
)
def inference_table(context: dg.AssetExecutionContext, step_runner: StepRunner):
    """The day's predictions by the champion; bad rows go to the rejects table with a reason."""
    yield from step_runner.run(context, "score", {"date": context.partition_key})


inference_job = dg.define_asset_job(
    "inference_job",
    selection=dg.AssetSelection.assets(inference_table),
    partitions_def=daily,
    description="Score one day of new flowers with the champion.",
)


@dg.schedule(
    job=inference_job,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 01:00 UTC, score the day that just ended.",
)
def daily_inference_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"inference-{day}", partition_key=day)
