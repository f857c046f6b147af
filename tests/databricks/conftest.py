"""Fixtures for the Databricks runner: a fake workspace with the bundle deployed, and definitions.

The steps run with this test's settings (IRIS_TARGET=local: deltalake tables and the sqlite
registry under a tmp IRIS_HOME, served to the task venv by the fake's platform stand-ins); what
is Databricks here is the transport, the job submission and the task's environment, built from
the submitted spec on the environment's Python (3.12, from pyenv). Without that Python the tests
that run a task skip (fail under CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from iris_assets import databricks_env
from iris_assets import version as version_module
from iris_assets.assets.training import challenger_model, evaluation_report, iris_features
from iris_assets.version import SHA_VARIABLE, wheel_name
from tests.conftest import new_instance, session_folder
from tests.databricks.fake_workspace import (
    HOST,
    TOKEN,
    USER,
    WORKSPACES,
    FakeWorkspace,
    FakeWorkspaceRunner,
)
from tests.databricks.serverless_env import built_version, deployed_sha, python312, shared_wheel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def short_pipes_grace(monkeypatch):
    """Pipes readers wait 10 s for late messages from a process that never said goodbye (a killed
    or cancelled task, one that never started); the fake reports a run terminated only once its
    task process has exited, so reading for one more second after the session closed is plenty
    here (Dagster compares whole seconds: 0 means more than 0). Not for an interrupted Dagster
    run: the client stops at TERMINATING, which the fake reports when it signals the task, and
    the task may write for ``cancel_grace_seconds`` more; no test reads what a task says then.

    The readers also sleep 1 s a loop, so a step's result reached its test up to a second after
    its closed message; 0.05 s here. While a task runs they still download at most once a
    second (their own interval); only that last second reads every loop. tests/databricks on 3
    workers took 55.0 s before, 41.6 s after, with busy CPU 60 and 56 s (2026-12-07)."""
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 0)
    monkeypatch.setattr("dagster._core.pipes.utils.DEFAULT_SLEEP_INTERVAL", 0.05)


# A deploy fixes the wheel's version once: the commit of this checkout (the runner's version is
# frozen at the deploy's too, `frozen_at_deploy`, so that editing the tree while the tests run
# cannot make the runner ask for another wheel).
DEPLOYED_SHA = deployed_sha()


@pytest.fixture(scope="session")
def environment_python() -> Path:
    """The Python of the serverless environment version the runner submits."""
    python = python312()
    if python is None:
        message = f"no Python {databricks_env.PYTHON} here (pyenv install {databricks_env.PYTHON})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.fixture(scope="session")
def deployed_wheel(tmp_path_factory) -> Path:
    """This checkout's wheel as `databricks bundle deploy` builds it, once per session (shared by
    the test workers, read-only: a test that changes a wheel forges its own copy)."""
    wheel = shared_wheel(session_folder(tmp_path_factory), DEPLOYED_SHA)
    deployed = built_version(wheel)  # git_version as the build started, maybe minutes ago
    assert wheel.name == wheel_name(deployed), "the runner asks for the wheel the deploy built"
    return wheel


def frozen_at_deploy(deployed: str, current):
    """``project_version`` as of the deploy: the same commit gives the deployed version even when
    the tree was edited since (a new ``.dirty<hash>`` while the tests run); another commit still
    gives its own, so a runner of another commit than the deploy's asks for a missing wheel."""

    def project_version() -> str:
        version = current()
        return (
            deployed
            if version.partition(".dirty")[0] == deployed.partition(".dirty")[0]
            else version
        )

    return project_version


@pytest.fixture
def workspace(settings, tmp_path, monkeypatch, environment_python, deployed_wheel):
    monkeypatch.setenv(SHA_VARIABLE, DEPLOYED_SHA)
    monkeypatch.setattr(
        version_module,
        "project_version",
        frozen_at_deploy(deployed_wheel.name.split("-")[1], version_module.project_version),
    )
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
        python=environment_python,
    )
    fake.deploy_bundle(
        f"/Workspace/Users/{USER}/.bundle/iris-assets/{settings.env}", ROOT, deployed_wheel
    )
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
def instance(tmp_path):
    with new_instance(tmp_path / "dagster") as instance:
        yield instance
