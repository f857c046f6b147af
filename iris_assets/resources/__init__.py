"""Dagster resources: settings, the step runner, the model registry and the serving backend.

Each has a local and a Databricks implementation; heavy libraries (mlflow, sklearn, the
Databricks SDK) load lazily inside the methods, so that importing the definitions stays fast.
"""

from iris_assets.resources.databricks_runner import DatabricksStepRunner
from iris_assets.resources.databricks_serving import DatabricksServingBackend
from iris_assets.resources.registry import ModelRegistryResource
from iris_assets.resources.serving import LocalServingBackend, ServingBackend
from iris_assets.resources.settings import SettingsResource
from iris_assets.resources.step_runner import LocalStepRunner, StepRunner

__all__ = [
    "DatabricksServingBackend",
    "DatabricksStepRunner",
    "LocalServingBackend",
    "LocalStepRunner",
    "ModelRegistryResource",
    "ServingBackend",
    "SettingsResource",
    "StepRunner",
]
