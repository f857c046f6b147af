"""Promotion: the human-approved challenger becomes champion, gated by the approval sensor.

Approval is a model-version tag ``approval=approved`` (the MLflow 3 deployment-job convention),
set in Catalog Explorer on Databricks or with ``iris approve N --by NAME`` locally.
"""

import dagster as dg
from pydantic import Field

from iris_assets.assets.training import evaluation_report
from iris_assets.resources import ModelRegistryResource

PROMOTION_GROUP = "deployment"


class ChampionConfig(dg.Config):
    version: str = Field(
        default="",
        description="Model version to promote; empty = the version aliased `challenger` now.",
    )


@dg.asset(group_name=PROMOTION_GROUP, kinds={"mlflow"}, deps=[evaluation_report])
def champion_alias(
    context: dg.AssetExecutionContext, config: ChampionConfig, registry: ModelRegistryResource
) -> dg.MaterializeResult:
    """Alias `champion` on the approved, evaluated challenger; refuses anything else."""
    from iris_assets.core.registry import (
        APPROVED_AT_TAG,
        APPROVED_BY_TAG,
        PREVIOUS_CHAMPION_TAG,
        PROMOTED_AT_TAG,
        promotion_blockers,
        utc_now_iso,
    )
    from iris_assets.settings import CHAMPION_ALIAS

    models = registry.get()
    candidate = models.get(config.version) if config.version else models.challenger()
    if candidate is None:
        raise dg.Failure(
            description=f"{models.name} has no challenger to promote: materialize challenger_model"
        )
    previous = models.champion()
    if previous is not None and previous.version == candidate.version:
        context.log.info(f"version {candidate.version} is already {CHAMPION_ALIAS}")
        return dg.MaterializeResult(
            metadata={"champion_version": candidate.version, "changed": False},
            data_version=dg.DataVersion(candidate.version),
        )
    blockers = promotion_blockers(candidate)
    if blockers:
        raise dg.Failure(
            description="; ".join(blockers),
            metadata={"version": candidate.version, "model": models.name},
            allow_retries=False,
        )
    promoted_at = utc_now_iso()
    models.set_alias(CHAMPION_ALIAS, candidate.version)
    models.set_tags(
        candidate.version,
        {
            PROMOTED_AT_TAG: promoted_at,
            PREVIOUS_CHAMPION_TAG: previous.version if previous else "none",
            "promoted_by_run": context.run_id,
        },
    )
    context.log.info(f"{models.name} version {candidate.version} is now {CHAMPION_ALIAS}")
    return dg.MaterializeResult(
        metadata={
            "champion_version": candidate.version,
            "previous_champion": previous.version if previous else "none",
            "approved_by": candidate.tags.get(APPROVED_BY_TAG, "unknown"),
            "approved_at": candidate.tags.get(APPROVED_AT_TAG, "unknown"),
            "promoted_at": promoted_at,
            "evaluation": candidate.tags.get("evaluation_reason", ""),
            "changed": True,
        },
        data_version=dg.DataVersion(candidate.version),
    )


def promotion_request(models) -> dg.RunRequest | dg.SkipReason:
    """What the approval sensor does for the registry's current state (one decision per tick)."""
    from iris_assets.core.registry import promotion_blockers

    challenger = models.challenger()
    if challenger is None:
        return dg.SkipReason(f"{models.name} has no challenger yet")
    champion = models.champion()
    if champion is not None and champion.version == challenger.version:
        return dg.SkipReason(f"challenger version {challenger.version} is already champion")
    blockers = promotion_blockers(challenger)
    if blockers:
        return dg.SkipReason("; ".join(blockers))
    return dg.RunRequest(
        run_key=f"promote-{models.name}-v{challenger.version}",
        run_config={"ops": {"champion_alias": {"config": {"version": challenger.version}}}},
        tags={"iris/model_version": challenger.version, "iris/trigger": "approval"},
    )


promotion_job = dg.define_asset_job(
    "promotion_job",
    selection=dg.AssetSelection.assets("champion_alias", "serving_endpoint"),
    description="Promote the approved challenger to champion and serve it.",
)


@dg.sensor(
    job=promotion_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests promotion when the challenger is approved and passed evaluation.",
)
def champion_approval_sensor(context: dg.SensorEvaluationContext, registry: ModelRegistryResource):
    decision = promotion_request(registry.get())
    if isinstance(decision, dg.RunRequest):
        version = decision.tags["iris/model_version"]
        if context.cursor == version:
            return dg.SkipReason(f"promotion of version {version} was already requested")
        context.update_cursor(version)
    return decision
