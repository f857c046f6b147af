"""Serving backends: make a real-time endpoint serve a model version and query it.

Both backends speak the MLflow scoring protocol, so the same client and smoke test work on each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import dagster as dg

from iris_assets.resources.settings import SettingsResource


@dataclass(frozen=True)
class Deployment:
    url: str
    version: str
    detail: dict[str, Any]


class ServingBackend(dg.ConfigurableResource, ABC):
    settings: SettingsResource

    @abstractmethod
    def deploy(self, model_name: str, version: str) -> Deployment:
        """Serve ``version`` of ``model_name``; return once the endpoint answers with it."""

    @abstractmethod
    def url(self) -> str:
        """The scoring URL (``.../invocations``) clients send requests to."""

    @abstractmethod
    def served_version(self) -> str | None:
        """The model version the endpoint serves now, or None when it is down."""

    def predict(self, records: list[dict[str, float]]) -> dict[str, Any]:
        from iris_assets.serving.client import predict

        return predict(self.url(), {"dataframe_records": records})


class LocalServingBackend(ServingBackend):
    """A serving process on this machine, owned by this IRIS_HOME (started on first deploy)."""

    def _process(self):
        from iris_assets.serving.process import ServingProcess

        settings = self.settings.get()
        return ServingProcess(
            settings.serving_dir,
            settings.serving_host,
            settings.serving_port,
            endpoint_name=settings.endpoint_name,
        )

    def deploy(self, model_name, version):
        settings = self.settings.get()
        base = self._process().ensure_serving(model_name, str(version), settings.step_env())
        return Deployment(url=self.url(), version=str(version), detail={"server": base})

    def url(self) -> str:
        return self.settings.get().serving_url + "/invocations"

    def served_version(self):
        from iris_assets.serving.client import version

        answer = version(self.settings.get().serving_url)
        return str(answer["version"]) if answer else None
