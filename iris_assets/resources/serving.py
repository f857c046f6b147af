"""Serving backends: make a real-time endpoint serve a model version and query it.

Both backends speak the MLflow scoring protocol, so the same client and smoke test work on each.
"""

from __future__ import annotations

import functools
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field

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


REQUEST_LOG_SETTING = "IRIS_SERVING_LOG"
_OFF = ("0", "false", "no", "off")


class LocalServingBackend(ServingBackend):
    """A serving process on this machine, owned by this IRIS_HOME (started on first deploy).

    It logs every scoring request into ``Settings.serving_log_table`` unless ``request_log`` is
    False or, when that is left unset, ``IRIS_SERVING_LOG`` is ``off``.
    """

    request_log: bool | None = Field(
        default=None,
        description="Log requests to iris_serving_log; default: on unless IRIS_SERVING_LOG=off.",
    )

    def request_log_enabled(self) -> bool:
        if self.request_log is not None:
            return self.request_log
        return os.environ.get(REQUEST_LOG_SETTING, "on").strip().lower() not in _OFF

    def _process(self):
        from iris_assets.resources.warm_steps import launch_detached
        from iris_assets.serving.process import ServingProcess

        settings = self.settings.get()
        table = settings.table_path(settings.serving_log_table)
        return ServingProcess(
            settings.serving_dir,
            settings.serving_host,
            settings.serving_port,
            endpoint_name=settings.endpoint_name,
            request_log=table if self.request_log_enabled() else None,
            # Forked from this process's warm worker when it has one (the demo does): the
            # server then finds scikit-learn and MLflow imported instead of importing them anew.
            launcher=functools.partial(launch_detached, sys.executable),
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
