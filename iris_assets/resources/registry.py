"""The model registry as a Dagster resource (MLflow locally, Unity Catalog on Databricks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from iris_assets.resources.settings import SettingsResource

if TYPE_CHECKING:
    from iris_assets.core.registry import ModelRegistry


class ModelRegistryResource(dg.ConfigurableResource):
    settings: SettingsResource

    def get(self) -> ModelRegistry:
        from iris_assets.core.registry import ModelRegistry

        return ModelRegistry(self.settings.get())
