"""The real-time endpoint: serves the champion, with a round-trip check on every deploy."""

import dagster as dg

from iris_assets.assets.promotion import PROMOTION_GROUP, champion_alias
from iris_assets.resources import ModelRegistryResource, ServingBackend

# One real flower per species (from the Iris data) for the smoke test.
SMOKE_FLOWERS = [
    (
        {
            "sepal_length_cm": 5.1,
            "sepal_width_cm": 3.5,
            "petal_length_cm": 1.4,
            "petal_width_cm": 0.2,
        },
        0,
    ),
    (
        {
            "sepal_length_cm": 6.4,
            "sepal_width_cm": 3.2,
            "petal_length_cm": 4.5,
            "petal_width_cm": 1.5,
        },
        1,
    ),
    (
        {
            "sepal_length_cm": 6.3,
            "sepal_width_cm": 3.3,
            "petal_length_cm": 6.0,
            "petal_width_cm": 2.5,
        },
        2,
    ),
]


@dg.asset(group_name=PROMOTION_GROUP, kinds={"mlflow"}, deps=[champion_alias])
def serving_endpoint(
    context: dg.AssetExecutionContext, registry: ModelRegistryResource, serving: ServingBackend
) -> dg.MaterializeResult:
    """The endpoint serving the champion version; waits until it answers with that version."""
    models = registry.get()
    champion = models.champion()
    if champion is None:
        raise dg.Failure(
            description=f"{models.name} has no champion to serve: approve a challenger "
            "(`iris approve N --by NAME`) and materialize champion_alias"
        )
    try:
        deployment = serving.deploy(models.name, champion.version)
    except RuntimeError as error:  # ServingProcessError, DatabricksServingError: say why, plainly
        raise dg.Failure(
            description=(
                f"could not serve {models.name} version {champion.version}: {error}. The alias "
                "is already moved: champion_approval_sensor re-runs serving_endpoint "
                "(serving_job) once the cause is fixed"
            ),
            metadata={"champion_version": champion.version},
        ) from error
    context.log.info(f"{deployment.url} serves {models.name} version {deployment.version}")
    return dg.MaterializeResult(
        metadata={
            "url": dg.MetadataValue.url(deployment.url),
            "model_name": models.name,
            "version": deployment.version,
        },
        data_version=dg.DataVersion(deployment.version),
    )


@dg.asset_check(
    asset=serving_endpoint, blocking=True, description="One real prediction per species."
)
def endpoint_round_trip(serving: ServingBackend) -> dg.AssetCheckResult:
    from iris_assets.serving.client import ServingError

    records = [flower for flower, _ in SMOKE_FLOWERS]
    expected = [label for _, label in SMOKE_FLOWERS]
    try:
        answer = serving.predict(records)
    except (ServingError, OSError) as error:
        return dg.AssetCheckResult(
            passed=False, metadata={"url": serving.url(), "error": str(error)}
        )
    predictions = [int(p) for p in answer.get("predictions", [])]
    return dg.AssetCheckResult(
        passed=predictions == expected,
        metadata={
            "url": serving.url(),
            "served_version": serving.served_version() or "unknown",
            "predictions": predictions,
            "expected": expected,
        },
    )


@dg.asset_check(
    asset=serving_endpoint,
    description="The endpoint serves the champion version (the sensor re-points it if not).",
)
def serving_matches_champion(
    registry: ModelRegistryResource, serving: ServingBackend
) -> dg.AssetCheckResult:
    champion = registry.get().champion()
    served = serving.served_version()
    expected = champion.version if champion else None
    return dg.AssetCheckResult(
        passed=expected is not None and served == expected,
        metadata={
            "champion_version": expected or "none",
            "served_version": served or "nothing",
            "what to do": "champion_approval_sensor launches serving_job on a mismatch; or "
            "materialize serving_endpoint",
        },
    )
