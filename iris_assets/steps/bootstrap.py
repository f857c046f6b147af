"""Pipes bootstrap shared by every step: where the step runs decides how it talks to Dagster.

On Databricks the context comes from a Unity Catalog volume, messages go back through the same
volume, and the Pipes bootstrap parameters come from the task's command-line arguments
(``--dagster-pipes-context``/``--dagster-pipes-messages``, which ``PipesDatabricksServerlessClient``
appends to the task's parameters). Every step file runs as such a task: ``python <step>.py ...``.
Locally the defaults of ``open_dagster_pipes`` (env vars, temp files) apply.

Check results are held back until their asset's materialization is reported: Dagster records a
check against the latest materialization (and partition) it knows when the result arrives, so a
check reported first would be recorded against the previous run's materialization.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dagster_pipes import PipesContext, open_dagster_pipes

from iris_assets.core.registry import configure_mlflow
from iris_assets.settings import Settings, load_settings


def on_databricks() -> bool:
    """Databricks sets this in every task (serverless: ``client.<version>``); the fake does too."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def _open() -> PipesContext:
    if on_databricks():
        from dagster_pipes import (
            PipesCliArgsParamsLoader,
            PipesUnityCatalogVolumesContextLoader,
            PipesUnityCatalogVolumesMessageWriter,
        )

        params = PipesCliArgsParamsLoader()
        if not params.is_dagster_pipes_process():
            # Without this, open_dagster_pipes returns a mock and the step "runs" on nothing.
            raise SystemExit(
                "this step runs under Dagster Pipes and got no --dagster-pipes-context argument: "
                "materialize its asset from Dagster with IRIS_TARGET=databricks"
            )
        return open_dagster_pipes(
            context_loader=PipesUnityCatalogVolumesContextLoader(),
            message_writer=PipesUnityCatalogVolumesMessageWriter(),
            params_loader=params,
        )
    return open_dagster_pipes()


class ChecksAfterMaterialization:
    """A Pipes context whose check results reach Dagster after their asset's materialization."""

    def __init__(self, pipes: PipesContext) -> None:
        self._pipes = pipes
        self._held: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipes, name)

    def report_asset_check(self, *args: Any, **kwargs: Any) -> None:
        self._held.append((args, kwargs))

    def report_asset_materialization(self, *args: Any, **kwargs: Any) -> None:
        self._pipes.report_asset_materialization(*args, **kwargs)
        self.flush()

    def flush(self) -> None:
        held, self._held = self._held, []
        for args, kwargs in held:
            self._pipes.report_asset_check(*args, **kwargs)


@dataclass(frozen=True)
class Step:
    """What a step receives: the Pipes context, this environment's settings and its config."""

    pipes: PipesContext  # a ChecksAfterMaterialization in open_step
    settings: Settings
    config: Mapping[str, Any]

    @property
    def run_id(self) -> str:
        return self.pipes.run_id

    def log(self, message: str) -> None:
        self.pipes.log.info(message)


@contextmanager
def open_step() -> Iterator[Step]:
    """Open Pipes; an error is also sent as a custom message so the asset can show its text."""
    with _open() as pipes:
        try:
            extras = pipes.extras
            settings = load_settings(extras.get("settings") or os.environ)
            configure_mlflow(settings)
            reporter = ChecksAfterMaterialization(pipes)
            yield Step(pipes=reporter, settings=settings, config=extras.get("config") or {})
            reporter.flush()  # checks of a step that reported no materialization
        except Exception as error:
            pipes.report_custom_message({"error": str(error), "error_type": type(error).__name__})
            raise


def md(text: str) -> dict[str, str]:
    return {"raw_value": text, "type": "md"}


def json_value(value: Any) -> dict[str, Any]:
    return {"raw_value": value, "type": "json"}


def url_values(urls: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Links Dagster shows as links (``MetadataValue.url``)."""
    return {name: {"raw_value": url, "type": "url"} for name, url in urls.items()}


def path_value(value: str) -> dict[str, str]:
    return {"raw_value": value, "type": "path"}
