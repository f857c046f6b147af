"""Promotion rules: the approval sensor's decisions and champion_alias's refusals."""

import dagster as dg
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from iris_assets.assets.promotion import champion_alias, champion_approval_sensor
from iris_assets.core.registry import (
    EVALUATION_REASON_TAG,
    EVALUATION_TAG,
    ModelRegistry,
    ensure_experiment,
)
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.resources import ModelRegistryResource, SettingsResource
from iris_assets.settings import CHALLENGER_ALIAS, CHAMPION_ALIAS


@pytest.fixture
def models(settings) -> ModelRegistry:
    return ModelRegistry(settings)


@pytest.fixture
def register(settings, models):
    """Register a new model version; optionally alias it challenger and mark its evaluation."""
    import mlflow
    import mlflow.sklearn

    experiment = ensure_experiment(settings)
    data = load_iris(as_frame=True)
    features = data.data.set_axis(list(FEATURE_COLUMNS), axis=1)
    model = LogisticRegression(max_iter=300).fit(features, data.target)

    def _register(evaluation: str | None = "passed") -> str:
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                registered_model_name=settings.model_name,
                serialization_format="skops",
                pip_requirements=["scikit-learn"],
            )
        version = str(info.registered_model_version)
        models.set_alias(CHALLENGER_ALIAS, version)
        if evaluation:
            models.set_tags(
                version, {EVALUATION_TAG: evaluation, EVALUATION_REASON_TAG: evaluation}
            )
        return version

    return _register


@pytest.fixture
def registry_resource(settings) -> ModelRegistryResource:
    return ModelRegistryResource(settings=SettingsResource.from_settings(settings))


def decide(registry_resource, cursor=None):
    with dg.build_sensor_context(
        cursor=cursor, resources={"registry": registry_resource}
    ) as context:
        return champion_approval_sensor(context), context.cursor


def promote(registry_resource, version: str = ""):
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [champion_alias],
            instance=instance,
            resources={"registry": registry_resource},
            run_config={"ops": {"champion_alias": {"config": {"version": version}}}},
            raise_on_error=False,
        )
    failures = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
    return result, " ".join(failures)


def test_sensor_skips_while_there_is_no_model(registry_resource):
    decision, _ = decide(registry_resource)
    assert isinstance(decision, dg.SkipReason) and "no challenger" in decision.skip_message


def test_sensor_skips_an_unapproved_challenger_and_says_how_to_approve(register, registry_resource):
    version = register()
    decision, cursor = decide(registry_resource)
    assert isinstance(decision, dg.SkipReason)
    assert f"iris approve {version}" in decision.skip_message and cursor is None


def test_sensor_skips_a_rejected_challenger_with_the_reason(register, models, registry_resource):
    version = register()
    models.reject(version, by="ana", reason="sepal data from the wrong greenhouse")
    decision, _ = decide(registry_resource)
    assert isinstance(decision, dg.SkipReason)
    assert "rejected by ana: sepal data from the wrong greenhouse" in decision.skip_message


def test_sensor_skips_an_approved_challenger_that_failed_evaluation(
    register, models, registry_resource
):
    version = register(evaluation="failed")
    models.approve(version, by="ana")
    decision, _ = decide(registry_resource)
    assert isinstance(decision, dg.SkipReason) and "no passed evaluation" in decision.skip_message


def test_sensor_requests_one_promotion_per_approved_version(register, models, registry_resource):
    version = register()
    models.set_tags(version, {"approval": "Approved"})  # the value is case-insensitive
    decision, cursor = decide(registry_resource)
    assert isinstance(decision, dg.RunRequest)
    assert decision.run_key == f"promote-{models.name}-v{version}"
    assert decision.run_config["ops"]["champion_alias"]["config"]["version"] == version
    assert cursor == version
    again, _ = decide(registry_resource, cursor=cursor)
    assert isinstance(again, dg.SkipReason) and "already requested" in again.skip_message


def test_sensor_skips_when_the_challenger_is_already_champion(register, models, registry_resource):
    version = register()
    models.set_alias(CHAMPION_ALIAS, version)
    decision, _ = decide(registry_resource)
    assert isinstance(decision, dg.SkipReason) and "already champion" in decision.skip_message


def test_champion_alias_refuses_an_unapproved_version(register, models, registry_resource):
    version = register()
    result, message = promote(registry_resource)
    assert not result.success
    assert f"model version {version} is not approved" in message
    assert f"iris approve {version}" in message
    assert models.champion() is None


def test_champion_alias_refuses_a_rejected_version(register, models, registry_resource):
    version = register()
    models.reject(version, by="ana", reason="too few petals measured")
    result, message = promote(registry_resource)
    assert not result.success and "rejected by ana: too few petals measured" in message
    assert models.champion() is None


def test_champion_alias_refuses_a_failed_evaluation(register, models, registry_resource):
    version = register(evaluation="failed")
    models.approve(version, by="ana")
    result, message = promote(registry_resource)
    assert not result.success and "no passed evaluation" in message
    assert models.champion() is None


def test_champion_alias_promotes_and_records_who_when_and_what_it_replaced(
    register, models, registry_resource
):
    first = register()
    models.approve(first, by="ana")
    assert promote(registry_resource)[0].success
    second = register()
    models.approve(second, by="ben")
    result, _ = promote(registry_resource, version=second)
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["previous_champion"] == first and metadata["approved_by"] == "ben"
    assert models.champion().version == second
    tags = models.get(second).tags
    assert tags["previous_champion"] == first and tags["promoted_at"]
