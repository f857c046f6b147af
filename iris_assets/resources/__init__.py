"""Dagster resources: settings, the step runner, the model registry and the serving backend.

Each has a local implementation here; heavy libraries (mlflow, sklearn) load lazily inside the
methods so that importing the definitions stays fast.
"""

from iris_assets.resources.registry import ModelRegistryResource
from iris_assets.resources.serving import LocalServingBackend, ServingBackend
from iris_assets.resources.settings import SettingsResource
from iris_assets.resources.step_runner import LocalStepRunner, StepRunner

__all__ = [
    "LocalServingBackend",
    "LocalStepRunner",
    "ModelRegistryResource",
    "ServingBackend",
    "SettingsResource",
    "StepRunner",
]
