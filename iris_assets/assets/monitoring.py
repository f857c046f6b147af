"""Monitoring: late labels (``flower_labels``) and the live performance they reveal.

``model_performance`` is re-computed by ``labels_files_sensor`` whenever a day's label folder
changes (a batch landed) or the day was scored again. A sensor rather than declarative
automation: ``flower_labels`` is files outside Dagster that nobody materializes, so an
``AutomationCondition`` (which reacts to materializations) would never see a label arrive; the
sensor fingerprints the folder exactly as ``landing_files_sensor`` does for ``new_flowers``, and
adds the day's latest ``inference_table`` materialization so a re-scored day is judged again.
On Databricks the folder is a Unity Catalog volume: the sensor lists it through the SDK's Files
API (``volume_fingerprints``) with the step runner's workspace credentials.
"""

import hashlib
import json
import re

import dagster as dg
from pydantic import Field

from iris_assets.assets.inference import daily, inference_table
from iris_assets.assets.run_keys import unused_run_key
from iris_assets.assets.training import EvaluationConfig
from iris_assets.resources import SettingsResource, StepRunner

MONITORING_GROUP = "monitoring"

flower_labels = dg.AssetSpec(
    "flower_labels",
    group_name=MONITORING_GROUP,
    kinds={"parquet"},
    partitions_def=daily,
    description=(
        "Landing area of late ground truth: flower_id and species of flowers already scored, one "
        "folder per observed day (`iris label --date D --file F`, `iris simulate --labels`)."
    ),
)


class PerformanceConfig(dg.Config):
    """Bounds checked before the run reads or writes anything (``DecayPolicy`` checks them
    again in the step, which may be run without Dagster's config)."""

    min_accuracy: float = Field(
        default=EvaluationConfig.model_fields["min_accuracy"].default,
        gt=0.0,
        le=1.0,
        description="The evaluation bar (evaluation_report's min_accuracy, its default here).",
    )
    margin: float = Field(
        default=0.05, ge=0.0, lt=1.0, description="How far under the bar counts as decay."
    )
    min_labelled: int = Field(default=30, ge=1, description="Fewer labelled rows: no verdict.")
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="Of the one-sided Wilson upper bound."
    )


@dg.asset(
    group_name=MONITORING_GROUP,
    kinds={"python", "delta"},
    partitions_def=daily,
    deps=[flower_labels, inference_table],
    check_specs=[
        dg.AssetCheckSpec(
            "labels_accounted",
            asset="model_performance",
            partitions_def=daily,
            blocking=True,
            description="Labelled + rejected = label rows in the day's landing files.",
        ),
        dg.AssetCheckSpec(
            "live_accuracy",
            asset="model_performance",
            partitions_def=daily,
            description=(
                "Warns when live accuracy is, with 95% confidence (one-sided Wilson bound), "
                "more than the margin below the evaluation bar, on enough labelled rows."
            ),
        ),
    ],
)
def model_performance(
    context: dg.AssetExecutionContext, config: PerformanceConfig, step_runner: StepRunner
):
    """The day's predictions judged against the labels that arrived: accuracy, macro F1,
    per-class recall and coverage per model version; a trend of the last days."""
    yield from step_runner.run(
        context, "performance", {"date": context.partition_key, "policy": config.model_dump()}
    )


performance_job = dg.define_asset_job(
    "performance_job",
    selection=dg.AssetSelection.assets(model_performance),
    partitions_def=daily,
    description="Judge one day's predictions against the labels that have arrived.",
)


def latest_scoring(instance: dg.DagsterInstance, day: str) -> int | None:
    """The storage id of ``inference_table``'s latest materialization of ``day``, if any."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=inference_table.key, asset_partitions=[day]), limit=1
    )
    return result.records[0].storage_id if result.records else None


_DAY_FOLDER = re.compile(r"^observed_date=(\d{4}-\d{2}-\d{2})$")


def volume_fingerprints(workspace, root: str) -> dict[str, str]:
    """Day -> fingerprint of a labels landing in a Unity Catalog volume, via the Files API.

    The same rule as ``LandingArea.fingerprint``: every entry of the day folder that is not in
    flight (``.``/``_`` names), by name, size and modification time; days with no entry are left
    out. A landing root that does not exist yet holds no day; a volume that does not exist (or
    these credentials cannot read) is a ``LookupError`` saying so, never an empty landing.
    """
    from databricks.sdk.errors import PermissionDenied

    try:
        return _day_fingerprints(workspace, root)
    except PermissionDenied as denied:  # 403: the volume is there, these credentials lack a grant
        volume = "/".join(root.rstrip("/").split("/")[:5])
        raise LookupError(
            f"these credentials cannot read the labels landing volume {volume}: grant them READ "
            f"VOLUME on it ({denied})"
        ) from None


def _day_fingerprints(workspace, root: str) -> dict[str, str]:
    from databricks.sdk.errors import NotFound

    try:
        folders = list(workspace.files.list_directory_contents(root))
    except NotFound:
        volume = "/".join(root.rstrip("/").split("/")[:5])  # /Volumes/<catalog>/<schema>/<volume>
        try:
            workspace.files.get_directory_metadata(volume)
        except NotFound:
            raise LookupError(
                f"the labels landing volume {volume} does not exist or these credentials cannot "
                "read it: create it (the bundle's landing volume) or grant READ VOLUME"
            ) from None
        return {}
    found = {}
    for folder in sorted(folders, key=lambda e: e.name or ""):
        match = _DAY_FOLDER.match(folder.name or "")
        if not (folder.is_directory and match):
            continue
        entries = sorted(
            (e for e in workspace.files.list_directory_contents(folder.path)),
            key=lambda e: e.name or "",
        )
        parts = [
            f"{e.name}:{e.file_size}:{e.last_modified}"
            for e in entries
            if not (e.name or "").startswith((".", "_"))
        ]
        if parts:
            found[match.group(1)] = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return found


@dg.sensor(
    job=performance_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-computes model_performance for a day when labels land or it is re-scored.",
)
def labels_files_sensor(
    context: dg.SensorEvaluationContext, settings: SettingsResource, step_runner: StepRunner
):
    from iris_assets.core.landing import LandingArea

    current = settings.get()
    if current.is_databricks:
        workspace = step_runner.workspace_client()
        try:
            fingerprints = volume_fingerprints(workspace, str(current.labels_landing_dir))
        except LookupError as missing:
            return dg.SkipReason(str(missing))
    else:
        landing = LandingArea(current.labels_landing_dir)
        fingerprints = {day: landing.fingerprint(day) for day in landing.days()}
    known = _read_cursor(context.cursor)
    valid_days = set(daily.get_partition_keys(dynamic_partitions_store=context.instance))
    requests, given_up = [], []
    # A day seen before whose last batch was deleted has no folder entry left: it is judged
    # again too, so its retracted labels leave the labels table and the labelled flowers.
    for day in sorted(set(fingerprints) | set(known)):
        if day not in valid_days:
            continue
        fingerprint = f"{fingerprints.get(day, '')}-{latest_scoring(context.instance, day)}"
        seen = known.get(day, {})
        if seen.get("fingerprint") == fingerprint:
            if not _failed(context.instance, seen.get("run_key")):
                continue
            if seen.get("retries", 0) >= MAX_RETRIES:
                given_up.append(day)
                continue
            retries = seen.get("retries", 0) + 1
        else:
            retries = 0
        # The daemon skips a run key it has seen: a retracting delete returns the folder to an
        # earlier fingerprint, so the key also counts the day's requests.
        run_key, count = unused_run_key(
            context.instance, f"performance-{day}", seen.get("count", 0) + 1, fingerprint
        )
        known[day] = {"fingerprint": fingerprint, "count": count, "run_key": run_key}
        if retries:
            known[day]["retries"] = retries
        requests.append(dg.RunRequest(run_key=run_key, partition_key=day))
    context.update_cursor(json.dumps(known, sort_keys=True))
    # Said on the tick itself: a skip reading "nothing changed" hid a day that keeps failing.
    stuck = (
        f"model_performance failed {MAX_RETRIES + 1} times on the same labels for "
        f"{', '.join(given_up)}: not retried until its label folder changes or the day is "
        "scored again; see the failed runs' logs"
        if given_up
        else ""
    )
    if stuck:
        context.log.warning(stuck)
    if requests:
        return requests
    return dg.SkipReason(stuck or "no label folder changed and no labelled day was re-scored")


MAX_RETRIES = 3
"""A failed run of a day is requested again this often on unchanged labels, then left alone."""


def _read_cursor(cursor: str | None) -> dict[str, dict]:
    """Day -> {fingerprint, count, run_key[, retries]}; cursors of earlier releases held
    {day: fingerprint} (their run keys named the fingerprint, so counting starts afresh)."""
    known = json.loads(cursor) if cursor else {}
    return {
        day: value if isinstance(value, dict) else {"fingerprint": value}
        for day, value in known.items()
    }


def _failed(instance: dg.DagsterInstance, run_key: str | None) -> bool:
    """Whether the run the sensor last requested under ``run_key`` ended in failure."""
    if not run_key:
        return False
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1
    )
    return bool(records) and records[0].dagster_run.status == dg.DagsterRunStatus.FAILURE
