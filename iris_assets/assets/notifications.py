"""``notification_sensor``: tells a person when they are needed.

The events, read from Dagster's event log (a cursor of storage ids, so each is told once):

- an ``evaluation_report`` materialization whose challenger passed and, when the tick reads the
  registry, is still the challenger with no approval or rejection: it waits for a person (links
  to the evaluation report, the MLflow version, and how to approve);
- an ``evaluation_report`` of a run ``retraining_sensor`` started whose challenger failed: it is
  not approvable, and retraining goes on with the next evidence;
- a ``training_job`` run ``retraining_sensor`` started that failed or was canceled after its
  challenger was registered but before it was evaluated (retraining waits for that evaluation);
  read from the run failure / cancel events. (That retraining gave up on some evidence after
  ``MAX_ATTEMPTS`` runs is told by ``retraining_sensor`` itself, where that is decided: the last
  run may have been deleted, and one run can be the last attempt for only part of its evidence.)
- a failed monitoring check (``live_accuracy``, ``labels_accounted``, ``feature_drift``).

Each message goes to the webhook in ``IRIS_NOTIFY_URL`` (``NotifierResource.url``, a
``dg.EnvVar``: Dagster shows the variable's name, never its value) and is always written to this
tick's log and to the local outbox that ``iris status`` shows. A sensor rather than a hook in the
assets: it sees every run however it was started (UI, schedule, retraining, ``iris demo``), and a
dead webhook can never fail a run; the tick reports it instead.
"""

import json
import time

import dagster as dg

from iris_assets.resources import ModelRegistryResource, SettingsResource

WATCHED_CHECKS = (
    dg.AssetCheckKey(dg.AssetKey("model_performance"), "live_accuracy"),
    dg.AssetCheckKey(dg.AssetKey("model_performance"), "labels_accounted"),
    dg.AssetCheckKey(dg.AssetKey("inference_table"), "feature_drift"),
)
EVALUATION_KEY = dg.AssetKey("evaluation_report")
BATCH = 20
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"  # `iris dev`'s default port
# A tick posts at most this many messages, and starts none after this many seconds (each post
# has its own whole-request deadline, notify.TIMEOUT_SECONDS): a slow webhook delays the
# backlog to later ticks instead of stalling the sensor past Dagster's tick timeout.
MESSAGES_PER_TICK = 10
TICK_BUDGET_SECONDS = 20.0


class NotifierResource(dg.ConfigurableResource):
    """Where notifications go. ``url`` is ``dg.EnvVar("IRIS_NOTIFY_URL")`` when that is set."""

    url: str | None = None
    dagster_url: str = DEFAULT_DAGSTER_URL  # links in messages point here (`iris dev` sets it)


def _value(metadata, key: str, default=None):
    entry = metadata.get(key)
    return default if entry is None else entry.value


def retrain_failed(record, instance: dg.DagsterInstance | None, notifier) -> dict | None:
    """A message when an automatic retrain's challenger failed evaluation, else None."""
    from iris_assets.core.notify import retrain_failed_message

    run = instance.get_run_by_id(record.run_id) if instance is not None else None
    if run is None or run.tags.get("iris/trigger") != "retraining_sensor":
        return None  # a person's own training run: they see its result where they started it
    metadata = record.asset_materialization.metadata
    return retrain_failed_message(
        model=str(_value(metadata, "model_name", "iris_model")),
        version=str(_value(metadata, "challenger_version")),
        verdict=str(_value(metadata, "verdict", "failed")),
        reason=run.tags.get("iris/retrain_reason", "retraining_sensor"),
        links={"evaluation_report": f"{notifier.dagster_url}/assets/{EVALUATION_KEY.path[-1]}"},
        run_url=f"{notifier.dagster_url}/runs/{record.run_id}",
    )


def evaluation_message(record, notifier: NotifierResource, instance=None) -> dict | None:
    from iris_assets.core.notify import approval_message

    materialization = record.asset_materialization
    metadata = materialization.metadata
    data_version = str(materialization.tags.get("dagster/data_version", ""))
    if data_version.endswith("-fail"):
        return retrain_failed(record, instance, notifier)
    if not data_version.endswith("-pass"):
        return None
    if _value(metadata, "approval") not in (None, "not approved", "void: approve again"):
        return None
    version = str(_value(metadata, "challenger_version"))
    links = {"evaluation_report": f"{notifier.dagster_url}/assets/{EVALUATION_KEY.path[-1]}"}
    training_run, record_id = _value(metadata, "mlflow_run"), _value(metadata, "evaluation_run_id")
    model_run = training_run.rsplit("/", 1)[-1] if training_run else None
    if training_run and record_id and model_run:
        links["evaluation_record"] = training_run[: -len(model_run)] + record_id
    if _value(metadata, "mlflow_model_version"):
        links["mlflow_version"] = _value(metadata, "mlflow_model_version")
    return approval_message(
        model=str(_value(metadata, "model_name", "iris_model")),
        version=version,
        verdict=str(_value(metadata, "verdict", "passed")),
        links=links,
        run_url=f"{notifier.dagster_url}/runs/{record.run_id}",
    )


def check_message(record, notifier: NotifierResource) -> dict:
    from iris_assets.core.notify import check_failed_message

    metadata = record.evaluation.metadata if record.evaluation else {}
    summary = _value(metadata, "summary") or _value(metadata, "problems") or "see the check"
    asset = record.key.asset_key.to_user_string()
    return check_failed_message(
        check=record.key.name,
        asset=asset,
        partition=record.partition,
        summary=summary if isinstance(summary, str) else json.dumps(summary),
        links={
            "asset": f"{notifier.dagster_url}/assets/{asset}",
            "dagster_run": f"{notifier.dagster_url}/runs/{record.run_id}",
        },
    )


def still_waiting(models, version: str) -> bool:
    """Whether ``version`` is still the challenger and nobody decided on it yet: an old
    evaluation of a version since approved, rejected or replaced is not news."""
    from iris_assets.core.registry import RegistryError

    try:
        challenger, champion = models.challenger(), models.champion()
    except RegistryError:
        return True  # tell rather than stay silent when the registry cannot say
    if challenger is None or challenger.version != version:
        return False
    return challenger.approval is None and not (champion and champion.version == version)


def _new_check_records(instance: dg.DagsterInstance, key: dg.AssetCheckKey, seen: int):
    """Every execution of ``key`` after ``seen``, oldest first, paging back through the history
    (newest first, ``BATCH`` a page) so that a burst of more than one page loses none."""
    storage = instance.event_log_storage
    found, before = [], None
    while True:
        page = storage.get_asset_check_execution_history(key, limit=BATCH, cursor=before)
        fresh = [record for record in page if record.id > seen]
        found.extend(fresh)
        if len(page) < BATCH or len(fresh) < len(page):
            return sorted(found, key=lambda record: record.id)
        before = min(record.id for record in page)


def _still_running(instance: dg.DagsterInstance, record) -> bool:
    """A check planned by a run still going: it may yet fail. (One planned by a run that ended
    without it never resolves, so it must not hold the stream forever.)"""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    if record.status != AssetCheckExecutionRecordStatus.PLANNED:
        return False
    run = instance.get_run_by_id(record.run_id)
    return run is not None and not run.is_finished


RETRAIN_RUN_ENDINGS = {
    "retrain_run_failure": dg.DagsterEventType.RUN_FAILURE,
    "retrain_run_canceled": dg.DagsterEventType.RUN_CANCELED,
}


def retrain_run_events(instance: dg.DagsterInstance, cursor: dict, notifier, models=None):
    """``(stream, storage id, message or None)`` for every ``training_job`` run that failed or
    was canceled since ``cursor``: a message when ``retraining_sensor`` started it and a person
    is needed (``retrain_run_message``), once per run, read from Dagster's event log."""
    from dagster._core.event_api import RunStatusChangeRecordsFilter

    events = []
    for stream, event_type in RETRAIN_RUN_ENDINGS.items():
        after = cursor.get(stream, 0)
        while True:
            # No `job_names`: Dagster's sqlite storage ignores them and its SQL base storage
            # (Postgres, in memory) refuses them; retrain_run_message tells only a
            # retraining_sensor run (a training_job run) from the rest.
            result = instance.fetch_run_status_changes(
                RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after),
                limit=BATCH,
                ascending=True,
            )
            for record in result.records:
                message = retrain_run_message(instance, record.run_id, notifier, models)
                events.append((stream, record.storage_id, message))
                after = record.storage_id
            if len(result.records) < BATCH:
                break
    return events


def _materialization(instance: dg.DagsterInstance, run_id: str, key: dg.AssetKey):
    events = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=200
    ).records
    for event in events:
        materialization = event.event_log_entry.asset_materialization
        if materialization is not None and materialization.asset_key == key:
            return materialization
    return None


def retrain_run_message(instance, run_id: str, notifier, models=None) -> dict | None:
    """The message for a retrain run that registered a challenger and ended before evaluating
    it: the sensor waits for that evaluation and trains nothing else, so a person must evaluate
    it. Else None (a person's own run, an evaluated one, or one that registered nothing:
    ``retraining_sensor`` retries that by itself, and tells a person when it gives up).

    Only run ids, versions, the reason and commands: never a URL of the webhook or a secret."""
    from iris_assets.assets.retraining import RETRAIN_REASON_RUN_TAG

    run = instance.get_run_by_id(run_id)
    if run is None or run.tags.get("iris/trigger") != "retraining_sensor":
        return None
    challenger = _materialization(instance, run_id, dg.AssetKey("challenger_model"))
    if challenger is None or _materialization(instance, run_id, EVALUATION_KEY) is not None:
        return None  # nothing registered (retried by the sensor), or evaluated (told above)
    version = str(_value(challenger.metadata, "version", ""))
    if models is not None and not _still_unevaluated(models, version):
        return None
    reason = run.tags.get(RETRAIN_REASON_RUN_TAG, "retraining_sensor")
    return {
        "event": "retrained_challenger_not_evaluated",
        "text": f"v{version}, retrained automatically ({reason}), was registered as "
        f"challenger but never evaluated: run {run_id} {run.status.value.lower()} before "
        "evaluation_report. Retraining waits for its evaluation: see the run's logs, fix the "
        "cause, then materialize evaluation_report (training_job, or re-execute the run from its "
        f"failure); or `iris reject {version} --by NAME --reason ...`",
        "version": version,
        "retrain_reason": reason,
        "links": {"dagster_run": f"{notifier.dagster_url}/runs/{run_id}"},
    }


def _still_unevaluated(models, version: str) -> bool:
    """Whether ``version`` is still the challenger with no evaluation: one evaluated or replaced
    since is not news. A registry that cannot say: tell."""
    from iris_assets.core.registry import RegistryError

    try:
        challenger = models.challenger()
    except RegistryError:
        return True
    return challenger is not None and challenger.version == version and not challenger.evaluation


def pending(instance: dg.DagsterInstance, cursor: dict, notifier: NotifierResource, models=None):
    """The events since ``cursor``, oldest first per stream: ``(stream, storage id, message or
    None)``. The caller advances ``cursor[stream]`` to an event's id once it has handled it, so a
    tick that stops early (its budget spent) resumes there: nothing repeats, nothing is lost."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    events = []
    after = cursor.get("evaluation_report", 0)
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=EVALUATION_KEY, after_storage_id=after),
            limit=BATCH,
            ascending=True,
        )
        for record in result.records:
            message = evaluation_message(record, notifier, instance)
            waits = message is not None and message["event"] == "challenger_waiting_for_approval"
            if waits and models is not None and not still_waiting(models, message["version"]):
                message = None
            events.append(("evaluation_report", record.storage_id, message))
            after = record.storage_id
        if len(result.records) < BATCH:
            break
    events.extend(retrain_run_events(instance, cursor, notifier, models))
    for key in WATCHED_CHECKS:
        name = key.to_user_string()
        for record in _new_check_records(instance, key, cursor.get(name, 0)):
            if _still_running(instance, record):
                break  # not decided yet: read it again next tick, and what follows it
            failed = record.status == AssetCheckExecutionRecordStatus.FAILED
            events.append((name, record.id, check_message(record, notifier) if failed else None))
    return events


def delivery_line(message: dict, delivery) -> str:
    """The tick log's line for a message sent (``core.notify.Delivery``): status and detail
    only, never the webhook's URL."""
    line = f"notification ({delivery.status}: {delivery.detail}): {message['text']}"
    if delivery.outbox_error:
        line += f" (not written to the outbox: {delivery.outbox_error})"
    return line


class OpenedOnFirstUse:
    """The registry, opened when a message first asks it something: a tick with nothing new to
    tell (every tick of a fresh home) opens none, and so makes none."""

    def __init__(self, open_registry):
        self._open, self._registry = open_registry, None

    def __getattr__(self, name: str):
        if self._registry is None:
            self._registry = self._open()
        return getattr(self._registry, name)


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts a message (IRIS_NOTIFY_URL) when a challenger waits for approval, a "
    "retrain is stuck or a monitoring check fails; also to the tick log and `iris status`.",
)
def notification_sensor(
    context: dg.SensorEvaluationContext,
    settings: SettingsResource,
    registry: ModelRegistryResource,
    notifier: NotifierResource,
):
    from iris_assets.core.notify import notify

    known = json.loads(context.cursor) if context.cursor else {}
    cursor, started = dict(known), time.monotonic()
    told, failed, held_back, unrecorded = 0, [], 0, []
    models = OpenedOnFirstUse(registry.get)
    for stream, storage_id, message in pending(context.instance, known, notifier, models):
        if message is not None:
            spent = time.monotonic() - started
            if told >= MESSAGES_PER_TICK or spent >= TICK_BUDGET_SECONDS:
                held_back += 1
                continue
            delivery = notify(message, notifier.url, settings.get().env_home)
            told += 1
            line = delivery_line(message, delivery)
            if delivery.outbox_error:
                unrecorded.append(delivery.outbox_error)
            if delivery.status == "failed" or delivery.outbox_error:
                if delivery.status == "failed":
                    failed.append(delivery.detail)
                context.log.warning(line)
            else:
                context.log.info(line)
        if held_back:
            continue  # a stream's cursor never passes a message not yet told
        cursor[stream] = max(cursor.get(stream, 0), storage_id)
        context.update_cursor(json.dumps(cursor, sort_keys=True))
    if not told:
        return dg.SkipReason("nothing to tell: no challenger waiting, no failed monitoring check")
    text = f"{told} notification(s) written to the log and `iris status`"
    if failed:
        text += f"; the webhook failed for {len(failed)}: {failed[-1]}"
    if unrecorded:
        text += f"; the outbox could not be written for {len(unrecorded)}: {unrecorded[-1]}"
    if held_back:
        text += f"; {held_back} more wait for the next tick (at most {MESSAGES_PER_TICK} a tick)"
    return dg.SkipReason(text)
