"""Promotion: the approved, evaluated challenger becomes champion; rollback goes back explicitly.

Approval is a model-version tag ``approval=approved`` (the MLflow 3 deployment-job convention),
set in Catalog Explorer on Databricks or with ``iris approve N --by NAME`` locally. Whether it
counts is decided by ``core/gate.py`` from the evaluation record, the same way here and in
``champion_approval_sensor`` (``assets/lifecycle_sensor.py``).
"""

import dagster as dg
from pydantic import Field

from iris_assets.assets.training import evaluation_report
from iris_assets.resources import ModelRegistryResource

PROMOTION_GROUP = "deployment"
FEATURES_KEY = dg.AssetKey("iris_features")


class ChampionConfig(dg.Config):
    version: str = Field(
        default="",
        description=(
            "Expected challenger version (the sensor pins what it decided on); empty = the "
            "version aliased `challenger` now. Any other version is refused: only the challenger "
            "is promoted."
        ),
    )
    rollback: bool = Field(
        default=False,
        description="Go back to a former champion instead (what rollback_job sets).",
    )
    to: str = Field(
        default="", description="Rollback: the former champion to restore; empty = the previous."
    )
    by: str = Field(default="", description="Rollback: who rolls back (recorded).")
    reason: str = Field(default="", description="Rollback: why (recorded).")


def feature_table_version(settings, instance: dg.DagsterInstance) -> str | None:
    """The feature table's current Delta version, to tell a stale evaluation from a current one.

    Locally the table store reads it (deltalake, no Spark). On Databricks the orchestrator has
    no Spark, and ``iris_features`` is the table's only writer, so its latest materialization's
    ``delta_version`` is the current version.
    """
    if not settings.is_databricks:
        from iris_assets.core.tables import current_version
        from iris_assets.steps.stores import table_store

        return current_version(table_store(settings), settings.feature_table)
    event = instance.get_latest_materialization_event(FEATURES_KEY)
    materialization = event.asset_materialization if event else None
    value = materialization.metadata.get("delta_version") if materialization else None
    return str(value.value) if value is not None else None


def former_champions(instance: dg.DagsterInstance, model_name: str) -> set[str]:
    """The versions champion_alias has made champion, from Dagster's event log (not from tags),
    each as ``champion_key`` (number and training run): a model deleted and re-created reuses
    version numbers, never training runs."""
    from iris_assets.core.registry import champion_key

    records = instance.fetch_materializations(dg.AssetKey("champion_alias"), limit=1000).records
    versions = set()
    for record in records:
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        model, run = metadata.get("model_name"), metadata.get("model_run_id")
        if "champion_version" in metadata and model and run and model.value == model_name:
            versions.add(champion_key(str(metadata["champion_version"].value), run.value))
    return versions


def waiting_message(version: str) -> str:
    return (
        f"waiting for approval: run `iris approve {version} --by NAME` (or tag approval=approved)"
    )


@dg.asset(
    group_name=PROMOTION_GROUP,
    kinds={"mlflow"},
    deps=[evaluation_report],
    output_required=False,
)
def champion_alias(
    context: dg.AssetExecutionContext, config: ChampionConfig, registry: ModelRegistryResource
):
    """Alias `champion` on the approved, evaluated challenger; refuses anything else.

    With no approval yet it does not fail: it keeps the current champion (or, on a fresh home,
    materializes nothing, so serving_endpoint and inference_table are skipped) and says how to
    approve. With ``rollback`` it restores a former champion instead.
    """
    from iris_assets.core.gate import decide
    from iris_assets.core.registry import (
        APPROVED_AT_TAG,
        APPROVED_BY_TAG,
        CHAMPION_SINCE_TAG,
        PREVIOUS_CHAMPION_TAG,
        PROMOTED_AT_TAG,
        RegistryError,
        utc_now_stamp,
    )
    from iris_assets.settings import CHAMPION_ALIAS, separate_duties

    models = registry.get()
    if config.rollback:
        try:
            old, target = models.rollback(
                config.to or None,
                by=config.by,
                reason=config.reason,
                former=former_champions(context.instance, models.name),
            )
        except RegistryError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from None
        context.log.info(
            f"{models.name}: champion rolled back from {old.version} to {target.version}"
        )
        yield dg.MaterializeResult(
            metadata={
                "champion_version": target.version,
                "model_name": models.name,
                "model_run_id": target.run_id or "",
                "rolled_back_from": old.version,
                "rolled_back_by": config.by,
                "rolled_back_reason": config.reason,
                "rolled_back_at": target.tags["reinstated_at"],
                "changed": True,
            },
            data_version=dg.DataVersion(target.version),
        )
        return

    challenger = models.challenger()
    if challenger is None:
        raise dg.Failure(
            description=f"{models.name} has no challenger to promote: materialize challenger_model"
        )
    if config.version and config.version != challenger.version:
        raise dg.Failure(
            description=(
                f"version {config.version} is not the challenger (version {challenger.version} "
                "is): only the challenger is promoted. To go back to a former champion use "
                f"rollback_job or `iris rollback --to {config.version} --by NAME --reason TEXT`"
            ),
            allow_retries=False,
        )
    champion = models.champion()
    if champion is not None and champion.version == challenger.version:
        context.log.info(f"version {challenger.version} is already {CHAMPION_ALIAS}")
        yield unchanged(champion.version, "already champion")
        return
    settings = registry.settings.get()
    decision = decide(
        models,
        challenger,
        champion,
        feature_table_version(settings, context.instance),
        separate_duties(settings),
    )
    if decision.waiting_for_approval:
        message = waiting_message(challenger.version)
        context.log.warning(f"{decision.reason}; {message}")
        if champion is not None:
            yield unchanged(champion.version, message)
        # On a fresh home there is no champion: nothing is materialized, downstream is skipped.
        return
    if not decision.may_promote:
        raise dg.Failure(
            description=decision.reason,
            metadata={"version": challenger.version, "model": models.name},
            allow_retries=False,
        )
    candidate = models.bind_approval(challenger, decision.record.run_id)
    promoted_at = utc_now_stamp()
    models.set_alias(CHAMPION_ALIAS, candidate.version)
    models.set_tags(
        candidate.version,
        {
            PROMOTED_AT_TAG: promoted_at,
            CHAMPION_SINCE_TAG: promoted_at,
            PREVIOUS_CHAMPION_TAG: champion.version if champion else "none",
            "promoted_by_run": context.run_id,
        },
    )
    context.log.info(f"{models.name} version {candidate.version} is now {CHAMPION_ALIAS}")
    yield dg.MaterializeResult(
        metadata={
            "champion_version": candidate.version,
            "model_name": models.name,
            "model_run_id": candidate.run_id or "",
            "previous_champion": champion.version if champion else "none",
            "approved_by": candidate.tags.get(APPROVED_BY_TAG, "unknown"),
            "approved_at": candidate.tags.get(APPROVED_AT_TAG, "unknown"),
            "evaluation_run_id": decision.record.run_id,
            "evaluation": decision.record.verdict.summary,
            "promoted_at": promoted_at,
            "changed": True,
        },
        data_version=dg.DataVersion(candidate.version),
    )


def unchanged(version: str, note: str) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"champion_version": version, "changed": False, "note": note},
        data_version=dg.DataVersion(version),
    )


@dg.asset_check(
    asset=champion_alias,
    description="The champion exists and is still approved (not rejected after promotion).",
)
def champion_is_approved(registry: ModelRegistryResource) -> dg.AssetCheckResult:
    from iris_assets.core.registry import REJECTED, REJECTION_REASON_TAG

    models = registry.get()
    champion = models.champion()
    if champion is None:
        return dg.AssetCheckResult(
            passed=False,
            metadata={"problem": "no champion", "what to do": "approve a challenger"},
        )
    if champion.approval == REJECTED:
        return dg.AssetCheckResult(
            passed=False,
            metadata={
                "champion_version": champion.version,
                "problem": f"the champion was rejected: "
                f"{champion.tags.get(REJECTION_REASON_TAG, 'no reason given')}",
                "what to do": "there is no earlier champion to roll back to: train, evaluate "
                "and approve a new challenger (`iris approve N --by NAME`); it serves until then",
            },
        )
    return dg.AssetCheckResult(passed=True, metadata={"champion_version": champion.version})


promotion_job = dg.define_asset_job(
    "promotion_job",
    selection=dg.AssetSelection.assets("champion_alias", "serving_endpoint"),
    description="Promote the approved challenger to champion and serve it.",
)

rollback_job = dg.define_asset_job(
    "rollback_job",
    selection=dg.AssetSelection.assets("champion_alias", "serving_endpoint"),
    description=(
        "Move champion back to a former champion (to = empty: the previous one), serve it, and "
        "record who, why and from which version. Fill in by and reason."
    ),
    config={
        "ops": {"champion_alias": {"config": {"rollback": True, "to": "", "by": "", "reason": ""}}}
    },
)

serving_job = dg.define_asset_job(
    "serving_job",
    selection=dg.AssetSelection.assets("serving_endpoint"),
    description="Make the endpoint serve the champion again (the sensor runs it on a mismatch).",
)

lifecycle_checks_job = dg.define_asset_job(
    "lifecycle_checks_job",
    selection=dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey("champion_alias"), "champion_is_approved"),
        dg.AssetCheckKey(dg.AssetKey("serving_endpoint"), "serving_matches_champion"),
    ),
    description="Re-run the champion and serving checks without materializing anything.",
)
