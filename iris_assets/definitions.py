"""The Dagster definitions: the only place that picks the local or the Databricks implementation.

Importing this module must stay light (no mlflow, sklearn, pyspark or dagster_databricks), so the
UI, the daemon and the sensor start fast; resources import those lazily when they run.
"""

from __future__ import annotations

import os

import dagster as dg

from iris_assets.assets.inference import (
    daily_inference_schedule,
    inference_job,
    inference_table,
    landing_files_sensor,
    new_flowers,
)
from iris_assets.assets.monitoring import (
    flower_labels,
    labels_files_sensor,
    model_performance,
    performance_job,
)
from iris_assets.assets.notifications import (
    DEFAULT_DAGSTER_URL,
    NotifierResource,
    notification_sensor,
)
from iris_assets.assets.promotion import (
    champion_alias,
    champion_is_approved,
    lifecycle_checks_job,
    promotion_job,
    rollback_job,
    serving_job,
)
from iris_assets.assets.promotion_sensor import champion_approval_sensor
from iris_assets.assets.retraining import RetrainingPolicy, retraining_sensor
from iris_assets.assets.serving import (
    endpoint_round_trip,
    serving_endpoint,
    serving_matches_champion,
)
from iris_assets.assets.training import challenger_model, evaluation_report, iris_features
from iris_assets.resources import (
    DatabricksServingBackend,
    DatabricksStepRunner,
    LocalServingBackend,
    LocalStepRunner,
    ModelRegistryResource,
    SettingsResource,
)
from iris_assets.resources.run_executor import warm_run_executor
from iris_assets.settings import Settings, load_settings

NOTIFY_URL_ENV = "IRIS_NOTIFY_URL"

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.assets(iris_features, challenger_model, evaluation_report),
    description="Ingest, train a challenger and evaluate it against the champion.",
)


def resources_for(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The one place that picks local or Databricks implementations; assets never branch."""
    settings_resource = SettingsResource.from_settings(settings)
    registry = ModelRegistryResource(settings=settings_resource)
    monitoring = {
        # The webhook is often a secret itself: an EnvVar, so Dagster shows only its name.
        "notifier": NotifierResource(
            url=dg.EnvVar(NOTIFY_URL_ENV) if os.environ.get(NOTIFY_URL_ENV) else None,
            # `iris dev` sets it to the UI it starts (its --host/--port): links point there.
            dagster_url=os.environ.get("IRIS_DAGSTER_URL", DEFAULT_DAGSTER_URL),
        ),
        "retraining": RetrainingPolicy(),
    }
    if settings.is_databricks:
        # Credentials stay environment variables (dg.EnvVar): never values in config or logs.
        return {
            "step_runner": DatabricksStepRunner.from_env(settings_resource),
            "registry": registry,
            "settings": settings_resource,
            "serving": DatabricksServingBackend.from_env(settings_resource),
            **monitoring,
        }
    return {
        "step_runner": LocalStepRunner(settings=settings_resource),
        "registry": registry,
        "settings": settings_resource,
        "serving": LocalServingBackend(settings=settings_resource),
        **monitoring,
    }


GROUP = "iris"


def one_group(spec: dg.AssetSpec) -> dg.AssetSpec:
    """Every asset in one group, so the UI's first page shows the whole graph, not collapsed
    groups; the stage (training, deployment, inference) stays as the tag ``stage``."""
    return spec.replace_attributes(group_name=GROUP).merge_attributes(
        tags={"stage": spec.group_name}
    )


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    assets = [
        new_flowers,
        iris_features,
        challenger_model,
        evaluation_report,
        champion_alias,
        serving_endpoint,
        inference_table,
        flower_labels,
        model_performance,
    ]
    return dg.Definitions(
        assets=dg.map_asset_specs(one_group, assets),
        asset_checks=[endpoint_round_trip, serving_matches_champion, champion_is_approved],
        jobs=[
            training_job,
            promotion_job,
            rollback_job,
            serving_job,
            lifecycle_checks_job,
            inference_job,
            performance_job,
        ],
        sensors=[
            champion_approval_sensor,
            landing_files_sensor,
            labels_files_sensor,
            retraining_sensor,
            notification_sensor,
        ],
        schedules=[daily_inference_schedule],
        resources=resources_for(settings),
        # Databricks runs its steps as serverless tasks: no local worker to start ahead.
        executor=None if settings.is_databricks else warm_run_executor,
    )


defs = build_definitions()
