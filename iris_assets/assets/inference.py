"""Batch inference: each day's newly collected flowers scored by the champion.

Two triggers. The 01:00 schedule scores the day that just ended (and fails loudly when that day
has no landing rows, rather than replacing its partition with nothing). ``landing_files_sensor``
watches the landing area and scores a day again whenever its folder changes (a file added,
removed or written to: ``LandingArea.fingerprint`` of names, sizes, mtimes, ctimes and inodes,
so a rewrite that keeps size and mtime counts too), so data that arrives late is never lost.
A day is compared with its cursor and, when the cursor does not know it (a fresh ``iris dev``
after ``make demo``, a reset cursor), with the fingerprint its partition commit recorded: a day
already scored from exactly these files is not scored twice. The same sensor repairs a day
whose tables disagree (a run stopped between the partition commit and the rejects commit,
``core.accounting``): it asks for the day again unless a run is scoring it right now, or its
files hold no readable row (a run could not repair it: it warns, naming the day, instead).
A sensor rather than declarative automation: the trigger is a change in files outside Dagster,
and ``new_flowers`` is an external asset nobody materializes.
"""

import hashlib
import json
from datetime import timedelta

import dagster as dg

from iris_assets.assets.promotion import champion_alias
from iris_assets.assets.run_keys import unused_run_key
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
    cursor = json.loads(context.cursor) if context.cursor else {}
    # Older cursors were {day: fingerprint}.
    known = cursor.get("files", {}) if "files" in cursor else cursor
    audited = cursor.get("audited", {})
    counts = cursor.get("requests", {})
    valid_days = set(daily.get_partition_keys(dynamic_partitions_store=context.instance))
    days = [d for d in landing.days() if d in valid_days]
    requests = []
    scored: dict[str, str] | None = None  # read only when a day is not in the cursor as it is
    for day in days:
        fingerprint = landing.fingerprint(day)
        if known.get(day) == fingerprint:
            continue
        if day in known and known[day] == landing.mtime_fingerprint(day):
            known[day] = fingerprint  # a cursor of an earlier release, files unchanged since
            continue
        if scored is None:
            scored = _scored_fingerprints(context, current)
        known[day] = fingerprint
        if scored.get(day) == fingerprint:
            continue  # its partition was scored from exactly these files
        # The daemon skips a run key it has seen, and deleting a late batch returns the folder
        # to an earlier fingerprint: the key also counts the day's requests. Not scoring an
        # unchanged day twice is the check above and the run's own (docs/batch.md).
        run_key, counts[day] = unused_run_key(
            context.instance, f"landing-{day}", counts.get(day, 0) + 1, fingerprint
        )
        requests.append(dg.RunRequest(run_key=run_key, partition_key=day))
    requested = {r.partition_key for r in requests}
    try:
        repairs, stuck, failed = _days_to_repair(current, days, requested, audited)
    except Exception as error:  # an unreadable table must not stop the late-data requests
        context.log.warning(f"could not audit the scored days: {error}")
        repairs, stuck, failed = [], [], []
    for day, error in failed:
        context.log.warning(f"could not audit {day} (the other days were audited): {error}")
    for day, problems in stuck:
        context.log.warning(
            f"{day} does not add up ({'; '.join(problems)}) and its files hold no readable row "
            "(unreadable ones are in the rejects table): a run refuses such a day and keeps its "
            "partition, so scoring it again cannot repair it; restore or fix its files, and "
            "the day is scored again"
        )
    for day, state in repairs:
        requests.append(
            dg.RunRequest(
                run_key=f"repair-{day}-{known.get(day, '')}-{state}",
                partition_key=day,
                tags={"iris/repair": "the partition and the rejects of the day disagree"},
            )
        )
    context.update_cursor(
        json.dumps({"files": known, "audited": audited, "requests": counts}, sort_keys=True)
    )
    return requests or dg.SkipReason("no day folder changed and no scored day needs repair")


def _scored_fingerprints(context, settings) -> dict[str, str]:
    """Day -> the landing fingerprint its partition commit recorded ({} when unreadable)."""
    from iris_assets.core.accounting import scored_fingerprints
    from iris_assets.steps.stores import table_store

    store = table_store(settings)
    try:
        if not store.exists(settings.inference_table):
            return {}
        return scored_fingerprints(store, settings.inference_table)
    except Exception as error:  # scoring a day again is safe; missing a change is not
        context.log.warning(f"could not read what the scored days were scored from: {error}")
        return {}


def _days_to_repair(settings, days: list[str], requested: set[str], audited: dict[str, str]):
    """([(day, state)] to repair, [(day, problems)] that no run can repair, [(day, error)]
    whose audit failed: one day's unreadable folder does not stop the audit of the others).

    Repaired: each scored day whose tables do not add up and that no run holds. A day whose
    files hold no readable row cannot be repaired by scoring it (the run refuses such a day),
    so it is reported instead of being asked for again at every change of its tables.
    A day is audited (its landing rows counted) only when what the tables hold for it changed
    since its last audit: ``audited`` remembers that state per day.
    """
    from iris_assets.core.accounting import read_accounts
    from iris_assets.core.landing import LandingArea
    from iris_assets.steps.stores import table_store

    store = table_store(settings)
    if not store.exists(settings.inference_table):
        return [], [], []
    accounts = read_accounts(store, settings.inference_table, settings.rejects_table)
    landing = LandingArea(settings.landing_dir)
    repairs, stuck, failed = [], [], []
    for day in days:
        account = accounts.get(day)
        if account is None or day in requested:
            continue
        try:
            outcome = _audit_day(settings, landing, day, account, audited)
        except Exception as error:  # audited again at the next tick (``audited`` not updated)
            failed.append((day, error))
            continue
        if outcome is not None:
            (repairs if outcome[0] == "repair" else stuck).append(outcome[1:])
    return repairs, stuck, failed


def _audit_day(settings, landing, day, account, audited):
    """("repair", day, state), ("stuck", day, problems) or None for one scored day."""
    from iris_assets.core.accounting import day_problems, run_problems
    from iris_assets.core.day_lock import day_is_locked

    state = [account.partition_runs, account.rejects_runs, account.replaced_by]
    state = json.dumps(state, sort_keys=True)
    state = hashlib.sha256(state.encode()).hexdigest()[:16]
    if audited.get(day) == state or day_is_locked(settings.env_home, day):
        return None
    files = landing.scan_day(day)
    rows = sum(f.rows or 0 for f in files if f.readable)
    problems = day_problems(account, rows, sum(not f.readable for f in files))
    outcome = None
    if problems and not rows:
        outcome = ("stuck", day, problems)
    elif run_problems(account):
        return ("repair", day, state)  # not marked audited: asked for until a run repairs it
    elif problems:
        # Counts off with one run's tokens: a lost rejects commit, repaired once per set of
        # files (the run key repeats), so a day that never adds up is not re-run forever.
        outcome = ("repair", day, "counts")
    audited[day] = state  # audited again only once the tables change (the repair's commits)
    return outcome
