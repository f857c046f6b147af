"""``champion_approval_sensor``: one lifecycle decision per tick, from the registry's state.

In order: a rejected champion is rolled back (``rollback_job``); an approved challenger with a
current, passing evaluation record is promoted (``promotion_job``); an endpoint that does not
serve the champion is re-pointed (``serving_job``). Each request carries an ``iris/request`` tag
naming what it is for (the evidence and the approval, or the champion and since when); the
Dagster runs with that tag are the sensor's memory, so there is no cursor: a failed run is
retried up to ``MAX_ATTEMPTS`` times (run key ``<request>-<attempt>``), then the sensor skips
and shows the last failure. The tag hashes the model's name and the evaluation run id, so keys
of a model re-created at version 1 never collide with the old ones.

It runs in the orchestrator: it imports mlflow (through the registry resource) and deltalake,
never scikit-learn or pyspark.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import dagster as dg

from iris_assets.assets.promotion import (
    feature_table_version,
    former_champions,
    lifecycle_checks_job,
    promotion_job,
    rollback_job,
    serving_job,
    waiting_message,
)
from iris_assets.resources import ModelRegistryResource, ServingBackend

MAX_ATTEMPTS = 3
REQUEST_TAG = "iris/request"
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def request_id(kind: str, *parts: str) -> str:
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    return f"{kind}-{digest}"


@dataclass(frozen=True)
class Attempts:
    count: int
    failures_since_success: int
    succeeded: bool
    in_progress: bool
    last_error: str | None


def attempts(instance: dg.DagsterInstance, request: str) -> Attempts:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_TAG: request}))
    error = None
    failed = [run for run in runs if run.status == dg.DagsterRunStatus.FAILURE]
    if failed:  # get_runs is newest first
        error = failure_text(instance, failed[0].run_id)
    since_success = 0
    for run in runs:
        if run.status == dg.DagsterRunStatus.SUCCESS:
            break
        since_success += run.status == dg.DagsterRunStatus.FAILURE
    return Attempts(
        count=len(runs),
        failures_since_success=since_success,
        succeeded=any(run.status == dg.DagsterRunStatus.SUCCESS for run in runs),
        in_progress=any(run.status in IN_PROGRESS for run in runs),
        last_error=error,
    )


def failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.event_specific_data.error
        if error is not None:
            return f"run {run_id[:8]}: {error.message.strip()[:300]}"
    return f"run {run_id[:8]} failed"


def bounded_request(
    instance: dg.DagsterInstance, request: str, what: str, once: bool = True, **kwargs
) -> dg.RunRequest | dg.SkipReason:
    """The next attempt at ``request``, unless it is running, done, or failed too often.

    ``once=False`` (re-pointing the endpoint): a success does not end the request, only
    ``MAX_ATTEMPTS`` failures in a row do.
    """
    history = attempts(instance, request)
    if history.in_progress:
        return dg.SkipReason(f"{what}: a run is in progress")
    if once and history.succeeded:
        return dg.SkipReason(f"{what}: done already (request {request})")
    failures = history.count if once else history.failures_since_success
    if failures >= MAX_ATTEMPTS:
        return dg.SkipReason(
            f"{what}: failed {failures} times, not retrying (last: {history.last_error}); "
            "fix the cause, then approve again or launch the job by hand"
        )
    tags = {**kwargs.pop("tags", {}), REQUEST_TAG: request}
    if history.last_error:
        tags["iris/retry_of"] = history.last_error[:200]
    return dg.RunRequest(run_key=f"{request}-{history.count + 1}", tags=tags, **kwargs)


def revoked_champion_request(models, instance, champion) -> dg.RunRequest | dg.SkipReason | None:
    from iris_assets.core.registry import (
        APPROVED_BY_TAG,
        CHAMPION_SINCE_TAG,
        REJECTED,
        REJECTION_REASON_TAG,
        RegistryError,
    )

    if champion is None or champion.approval != REJECTED:
        return None
    reason = champion.tags.get(REJECTION_REASON_TAG, "no reason given")
    since = champion.tags.get(CHAMPION_SINCE_TAG, "")
    try:
        _, target = models.rollback_target(None, former_champions(instance, models.name))
    except RegistryError as error:
        request = request_id("revoked", models.name, champion.version, since)
        decision = bounded_request(
            instance,
            request,
            f"champion version {champion.version} was rejected ({reason}) and {error}",
            job_name=lifecycle_checks_job.name,
            tags={"iris/model": models.name, "iris/model_version": champion.version},
        )
        return decision
    return bounded_request(
        instance,
        request_id("rollback", models.name, champion.version, since),
        f"rolling back rejected champion version {champion.version} to {target.version}",
        job_name=rollback_job.name,
        run_config={
            "ops": {
                "champion_alias": {
                    "config": {
                        "rollback": True,
                        "to": "",
                        "by": champion.tags.get(APPROVED_BY_TAG, "someone") + " (rejection)",
                        "reason": f"champion version {champion.version} was rejected: {reason}",
                    }
                }
            }
        },
        tags={"iris/model": models.name, "iris/model_version": target.version},
    )


def promotion_request(models, instance, settings) -> dg.RunRequest | dg.SkipReason:
    """Promote the challenger if the gate lets it through; otherwise say why not."""
    from iris_assets.core.gate import decide
    from iris_assets.core.registry import APPROVAL_BOUND_AT_TAG
    from iris_assets.settings import separate_duties

    challenger = models.challenger()
    if challenger is None:
        return dg.SkipReason(f"{models.name} has no challenger yet")
    champion = models.champion()
    if champion is not None and champion.version == challenger.version:
        return dg.SkipReason(f"challenger version {challenger.version} is already champion")
    decision = decide(
        models,
        challenger,
        champion,
        feature_table_version(settings, instance),
        separate_duties(settings),
    )
    if decision.waiting_for_approval:
        return dg.SkipReason(f"{decision.reason} ({waiting_message(challenger.version)})")
    if not decision.may_promote:
        return dg.SkipReason(decision.reason)
    candidate = models.bind_approval(challenger, decision.record.run_id)
    request = request_id(
        "promote",
        models.name,
        candidate.version,
        decision.record.run_id,
        candidate.tags.get(APPROVAL_BOUND_AT_TAG, ""),
    )
    return bounded_request(
        instance,
        request,
        f"promotion of version {candidate.version}",
        job_name=promotion_job.name,
        run_config={"ops": {"champion_alias": {"config": {"version": candidate.version}}}},
        tags={
            "iris/model": models.name,
            "iris/model_version": candidate.version,
            "iris/evaluation_run_id": decision.record.run_id,
            "iris/trigger": "approval",
        },
    )


def serving_request(models, instance, serving: ServingBackend) -> dg.RunRequest | dg.SkipReason:
    from iris_assets.core.registry import CHAMPION_SINCE_TAG, PROMOTED_AT_TAG

    champion = models.champion()
    if champion is None:
        return dg.SkipReason("no champion to serve")
    try:
        served = serving.served_version()
    except Exception as error:  # an endpoint that cannot be asked is one to re-point
        served = f"unknown ({type(error).__name__})"
    if served == champion.version:
        return dg.SkipReason(f"the endpoint serves champion version {champion.version}")
    since = champion.tags.get(CHAMPION_SINCE_TAG) or champion.tags.get(PROMOTED_AT_TAG, "")
    return bounded_request(
        instance,
        request_id("serve", models.name, champion.version, since),
        f"the endpoint serves {served or 'nothing'}, not champion version {champion.version}",
        once=False,
        job_name=serving_job.name,
        tags={"iris/model": models.name, "iris/model_version": champion.version},
    )


def lifecycle_decision(
    models, instance: dg.DagsterInstance, settings, serving: ServingBackend
) -> dg.RunRequest | dg.SkipReason:
    busy = instance.get_runs(
        filters=dg.RunsFilter(tags={"iris/model": models.name}, statuses=IN_PROGRESS), limit=1
    )
    if busy:
        return dg.SkipReason(f"run {busy[0].run_id[:8]} ({busy[0].job_name}) is in progress")
    revoked = revoked_champion_request(models, instance, models.champion())
    if revoked is not None:
        return revoked
    promotion = promotion_request(models, instance, settings)
    if isinstance(promotion, dg.RunRequest):
        return promotion
    reconcile = serving_request(models, instance, serving)
    if isinstance(reconcile, dg.RunRequest):
        return reconcile
    return dg.SkipReason(f"{promotion.skip_message}; {reconcile.skip_message}")


@dg.sensor(
    jobs=[promotion_job, rollback_job, serving_job, lifecycle_checks_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Promotes the approved challenger once its evaluation record passes, rolls back a "
        "rejected champion, and re-points the endpoint when it does not serve the champion."
    ),
)
def champion_approval_sensor(
    context: dg.SensorEvaluationContext, registry: ModelRegistryResource, serving: ServingBackend
):
    from iris_assets.core.registry import no_registry_yet

    settings = registry.settings.get()
    if no_registry_yet(settings):  # no champion, no challenger: nothing to promote or serve
        return dg.SkipReason(
            f"no registry yet at {settings.mlflow_db}: materialize challenger_model (or run "
            "`iris demo`) to register the first version"
        )
    return lifecycle_decision(registry.get(), context.instance, settings, serving)
