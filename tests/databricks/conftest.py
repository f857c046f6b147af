"""Fixtures for the Databricks runner: a fake workspace with the bundle deployed, and definitions.

The steps run with this test's settings (IRIS_TARGET=local: deltalake tables and the sqlite
registry under a tmp IRIS_HOME); what is Databricks here is the transport and the job submission.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from iris_assets.assets.training import challenger_model, evaluation_report, iris_features
from iris_assets.version import SHA_VARIABLE, project_version
from tests.databricks.fake_workspace import (
    HOST,
    TOKEN,
    USER,
    WORKSPACES,
    FakeWorkspace,
    FakeWorkspaceRunner,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def short_pipes_grace(monkeypatch):
    """Pipes readers wait 10 s for late messages from a process that never said goodbye (a killed
    or cancelled task); the fake's files are written synchronously, so 1 s is plenty here."""
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)


@pytest.fixture
def workspace(settings, tmp_path, monkeypatch):
    # A deploy fixes the wheel's version once: pin it to the commit, so that editing the tree
    # while the tests run (a new .dirty<hash>) cannot make the runner ask for another wheel.
    monkeypatch.setenv(SHA_VARIABLE, project_version().partition("+g")[2][:12] or "0")
    monkeypatch.setenv("DATABRICKS_HOST", HOST)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    monkeypatch.delenv("DATABRICKS_CLIENT_ID", raising=False)
    fake = FakeWorkspace(
        root=tmp_path / "databricks",
        host=HOST,
        token=TOKEN,
        user=USER,
        volumes=[settings.pipes_volume],
        key=tmp_path.name,
    )
    fake.deploy_bundle(f"/Workspace/Users/{USER}/.bundle/iris-assets/{settings.env}", ROOT)
    WORKSPACES[fake.key] = fake
    yield fake
    fake.close()
    del WORKSPACES[fake.key]


@pytest.fixture
def databricks_defs(settings, workspace) -> dg.Definitions:
    return dg.Definitions(
        assets=[iris_features, challenger_model, evaluation_report],
        resources={"step_runner": FakeWorkspaceRunner.for_workspace(settings, workspace)},
    )


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance
