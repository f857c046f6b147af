"""Batch inference: each day's newly collected flowers scored by the champion.

Two triggers. The 01:00 schedule scores the day that just ended (and fails loudly when that day
has no landing rows, rather than replacing its partition with nothing). ``landing_files_sensor``
watches the landing area and scores a day again whenever its folder changes (a file added,
removed or rewritten: the day's fingerprint of names, sizes and mtimes), so data that arrives
late is never lost. A sensor rather than declarative automation: the trigger is a change in files
outside Dagster, and ``new_flowers`` is an external asset nobody materializes.
"""

import json
from datetime import timedelta

import dagster as dg

from iris_assets.assets.promotion import champion_alias
from iris_assets.resources import SettingsResource, StepRunner

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


@dg.sensor(
    job=inference_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Scores a day again when files land in (or leave) its folder, e.g. late data.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    from iris_assets.core.landing import LandingArea

    current = settings.get()
    if current.is_databricks:
        return dg.SkipReason(
            "the landing area is a Unity Catalog volume the orchestrator cannot list: use a "
            "Databricks file-arrival trigger on it"
        )
    landing = LandingArea(current.landing_dir)
    known = json.loads(context.cursor) if context.cursor else {}
    valid_days = set(daily.get_partition_keys(dynamic_partitions_store=context.instance))
    requests = []
    for day in landing.days():
        fingerprint = landing.fingerprint(day)
        if known.get(day) == fingerprint or day not in valid_days:
            continue
        known[day] = fingerprint
        requests.append(dg.RunRequest(run_key=f"landing-{day}-{fingerprint}", partition_key=day))
    context.update_cursor(json.dumps(known, sort_keys=True))
    return requests or dg.SkipReason("no day folder changed since the last tick")
