"""Links from Dagster to MLflow's pages: a training run and a registered model version.

Locally they open the MLflow UI of ``iris mlflow`` (``Settings.mlflow_ui_url``); on Databricks the
workspace's own pages (the experiment run, and the model version in Catalog Explorer). No mlflow
import: the URLs are built from ids.
"""

from __future__ import annotations

import os
from urllib.parse import quote

from iris_assets.settings import Settings


def workspace_url(environ=None) -> str | None:
    """The workspace's URL inside a Databricks task or with DATABRICKS_HOST set, else None."""
    environ = os.environ if environ is None else environ
    host = environ.get("DATABRICKS_HOST", "").strip()
    if not host:
        try:  # serverless tasks have no DATABRICKS_HOST; MLflow knows the workspace there
            from mlflow.utils.databricks_utils import get_workspace_url

            host = get_workspace_url() or ""
        except Exception:
            return None
    if not host:
        return None
    host = host if host.startswith("https://") else f"https://{host.removeprefix('http://')}"
    return host.rstrip("/")


def run_url(settings: Settings, experiment_id: str, run_id: str, host: str | None) -> str | None:
    if settings.is_databricks:
        return f"{host}/ml/experiments/{experiment_id}/runs/{run_id}" if host else None
    return f"{settings.mlflow_ui_url}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(settings: Settings, version: str, host: str | None) -> str | None:
    if settings.is_databricks:
        if not host:
            return None
        path = "/".join(quote(part, safe="") for part in settings.model_name.split("."))
        return f"{host}/explore/data/models/{path}/version/{version}"
    name = quote(settings.model_name, safe="")
    return f"{settings.mlflow_ui_url}/#/models/{name}/versions/{version}"


def links(
    settings: Settings, version: str, experiment_id: str | None, run_id: str | None
) -> dict[str, str]:
    """``{"mlflow_run": url, "mlflow_model_version": url}``, leaving out what cannot be linked."""
    host = workspace_url() if settings.is_databricks else None
    found = {"mlflow_model_version": model_version_url(settings, version, host)}
    if experiment_id and run_id:
        found["mlflow_run"] = run_url(settings, experiment_id, run_id, host)
    return {name: url for name, url in found.items() if url}
