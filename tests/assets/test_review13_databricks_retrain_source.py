"""Review 13: on Databricks a retrain never ingests the labelled flowers.

``retraining_sensor`` gives the run ``source_path`` only when ``labelled_flowers.parquet``
``is_file()`` on the orchestrator (assets/retraining.py, ``config = ... if source.is_file()``).
On the Databricks target that path is in the landing volume (``/Volumes/...``), which the
orchestrator cannot see, so every automatic retrain (decay and drift triggers work there)
ingests the bundled Iris only: the labelled flowers never become training rows and retracted
ones are never removed, under a reason that says the model decayed.
"""

import dataclasses

import dagster as dg
import pytest

from iris_assets.assets.retraining import RetrainingPolicy, retraining_sensor
from iris_assets.resources import SettingsResource
from iris_assets.resources.registry import ModelRegistryResource
from iris_assets.steps.performance import labelled_flowers_path

DAY = "2026-11-24"


class _Version:
    version, tags, approval, evaluation = "1", {}, None, "passed"


class _Models:
    def champion(self):
        return _Version()

    def challenger(self):
        return _Version()


@pytest.mark.xfail(
    strict=True,
    reason="review 13: on Databricks the orchestrator cannot stat the volume, so the retrain "
    "run is given no source_path and ingests the bundled Iris only",
)
def test_a_decay_retrain_on_databricks_ingests_the_labelled_flowers(settings, monkeypatch):
    on_databricks = dataclasses.replace(settings, target="databricks")
    monkeypatch.setattr(ModelRegistryResource, "get", lambda self: _Models())
    resource = SettingsResource.from_settings(on_databricks)
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("model_performance"),
                check_name="live_accuracy",
                passed=False,
                partition=DAY,
                metadata={"summary": "v1: live accuracy 0.43 on 200 labels", "judged": True},
            )
        )
        with dg.build_sensor_context(
            instance=instance,
            resources={
                "settings": resource,
                "registry": ModelRegistryResource(settings=resource),
                "retraining": RetrainingPolicy(),
            },
        ) as context:
            request = retraining_sensor(context)
    assert isinstance(request, dg.RunRequest), request
    assert request.tags["iris/retrain_reason"].startswith(f"decay on {DAY}")
    config = request.run_config.get("ops", {}).get("iris_features", {}).get("config", {})
    assert config.get("source_path") == str(labelled_flowers_path(on_databricks))
