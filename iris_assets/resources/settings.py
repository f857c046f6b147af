"""The environment's settings as a Dagster resource, so runs record which env they ran in."""

from __future__ import annotations

import dagster as dg

from iris_assets.settings import Settings, load_settings


class SettingsResource(dg.ConfigurableResource):
    """Names and paths of one environment; build it with ``SettingsResource.from_settings``."""

    env: str
    target: str
    home: str
    catalog: str
    schema_name: str
    serving_host: str
    serving_port: int
    mlflow_ui_port: int = 0  # 0: the env's default (settings.MLFLOW_UI_PORT)

    @classmethod
    def from_settings(cls, settings: Settings) -> SettingsResource:
        return cls(
            env=settings.env,
            target=settings.target,
            home=str(settings.home),
            catalog=settings.catalog,
            schema_name=settings.schema,
            serving_host=settings.serving_host,
            serving_port=settings.serving_port,
            mlflow_ui_port=settings.mlflow_ui_port,
        )

    def get(self) -> Settings:
        return load_settings(
            {
                "IRIS_ENV": self.env,
                "IRIS_TARGET": self.target,
                "IRIS_HOME": self.home,
                "IRIS_CATALOG": self.catalog,
                "IRIS_SCHEMA": self.schema_name,
                "IRIS_SERVING_HOST": self.serving_host,
                "IRIS_SERVING_PORT": str(self.serving_port),
                **({"IRIS_MLFLOW_PORT": str(self.mlflow_ui_port)} if self.mlflow_ui_port else {}),
            }
        )
