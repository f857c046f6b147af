"""``notification_sensor``: tells a person when they are needed.

Two events, read from Dagster's event log (a cursor of storage ids, so each is told once):

- an ``evaluation_report`` materialization whose challenger passed and, when the tick reads the
  registry, is still the challenger with no approval or rejection: it waits for a person (links
  to the evaluation report, the MLflow version, and how to approve);
- a failed monitoring check (``live_accuracy``, ``labels_accounted``, ``feature_drift``).

Each message goes to the webhook in ``IRIS_NOTIFY_URL`` (``NotifierResource.url``, a
``dg.EnvVar``: Dagster shows the variable's name, never its value) and is always written to this
tick's log and to the local outbox that ``iris status`` shows. A sensor rather than a hook in the
assets: it sees every run however it was started (UI, schedule, retraining, ``iris demo``), and a
dead webhook can never fail a run; the tick reports it instead.
"""

import json

import dagster as dg

from iris_assets.resources import ModelRegistryResource, SettingsResource

WATCHED_CHECKS = (
    dg.AssetCheckKey(dg.AssetKey("model_performance"), "live_accuracy"),
    dg.AssetCheckKey(dg.AssetKey("model_performance"), "labels_accounted"),
    dg.AssetCheckKey(dg.AssetKey("inference_table"), "feature_drift"),
)
EVALUATION_KEY = dg.AssetKey("evaluation_report")
BATCH = 20


class NotifierResource(dg.ConfigurableResource):
    """Where notifications go. ``url`` is ``dg.EnvVar("IRIS_NOTIFY_URL")`` when that is set."""

    url: str | None = None
    dagster_url: str = "http://127.0.0.1:3000"  # `iris dev`; links in messages point here


def _value(metadata, key: str, default=None):
    entry = metadata.get(key)
    return default if entry is None else entry.value


def evaluation_message(record, notifier: NotifierResource) -> dict | None:
    from iris_assets.core.notify import approval_message

    materialization = record.asset_materialization
    metadata = materialization.metadata
    if not str(materialization.tags.get("dagster/data_version", "")).endswith("-pass"):
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


def pending(instance: dg.DagsterInstance, cursor: dict, notifier: NotifierResource, models=None):
    """(messages, new cursor) for the events since ``cursor``, oldest first."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    messages, cursor = [], dict(cursor)
    after = cursor.get("evaluation_report", 0)
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=EVALUATION_KEY, after_storage_id=after),
        limit=BATCH,
        ascending=True,
    )
    for record in result.records:
        message = evaluation_message(record, notifier)
        if message and (models is None or still_waiting(models, message["version"])):
            messages.append(message)
        cursor["evaluation_report"] = max(cursor.get("evaluation_report", 0), record.storage_id)
    for key in WATCHED_CHECKS:
        name = key.to_user_string()
        seen = cursor.get(name, 0)
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=BATCH)
        for record in sorted(history, key=lambda r: r.id):
            if record.id <= seen:
                continue
            if record.status == AssetCheckExecutionRecordStatus.FAILED:
                messages.append(check_message(record, notifier))
            cursor[name] = max(cursor.get(name, 0), record.id)
    return messages, cursor


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts a message (IRIS_NOTIFY_URL) when a challenger waits for approval or a "
    "monitoring check fails; also to the tick log and `iris status`.",
)
def notification_sensor(
    context: dg.SensorEvaluationContext,
    settings: SettingsResource,
    registry: ModelRegistryResource,
    notifier: NotifierResource,
):
    from iris_assets.core.notify import notify

    known = json.loads(context.cursor) if context.cursor else {}
    messages, cursor = pending(context.instance, known, notifier, registry.get())
    failed = []
    for message in messages:
        delivery = notify(message, notifier.url, settings.get().env_home)
        line = f"notification ({delivery.status}: {delivery.detail}): {message['text']}"
        if delivery.status == "failed":
            failed.append(delivery.detail)
            context.log.warning(line)
        else:
            context.log.info(line)
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    if not messages:
        return dg.SkipReason("nothing to tell: no challenger waiting, no failed monitoring check")
    text = f"{len(messages)} notification(s) written to the log and `iris status`"
    if failed:
        text += f"; the webhook failed for {len(failed)}: {failed[-1]}"
    return dg.SkipReason(text)
