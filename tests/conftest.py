"""Shared fixtures: a private IRIS_HOME per test with a real sqlite MLflow registry.

A fresh sqlite registry spends about a second migrating its schema, so one migrated template is
made per session and copied into each test's home.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from iris_assets.settings import Settings, load_settings

SETTINGS_VARS = ("IRIS_ENV", "IRIS_TARGET", "IRIS_CATALOG", "IRIS_SCHEMA", "IRIS_SERVING_HOST")

# The files that take longest (`pytest --durations`: a venv to build, `iris demo`, `dagster dev`,
# the MLflow UI, many training runs), longest first. They are collected first, so xdist's
# loadfile scheduling hands them out before the short files, which then fill the other workers;
# collected last, one of them could still be running alone when everything else is done.
SLOW_FILES_FIRST = (
    "tests/databricks/test_serverless_env.py",
    "tests/databricks/test_databricks_runner.py",
    "tests/assets/test_promotion.py",
    "tests/test_cli.py",
    "tests/steps/test_spark_scoring.py",
    "tests/serving/test_serving_http.py",
    "tests/assets/test_training_assets.py",
    "tests/test_definitions.py",
    "tests/serving/test_serving_parity.py",
    "tests/serving/test_serving_databricks_path.py",
    "tests/assets/test_lifecycle.py",
    "tests/test_dg.py",
    "tests/test_mlflow_ui.py",
    "tests/assets/test_faults.py",
    "tests/serving/test_serving_lifecycle.py",
    "tests/assets/test_check_targets.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(SLOW_FILES_FIRST)}
    # A stable sort: each file keeps its tests in order, the other files keep theirs.
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory) -> Path:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("mlflow-template")
    db = folder / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{db}", str(folder / "artifacts")).engine.dispose()
    return db


@pytest.fixture
def settings(tmp_path, monkeypatch, mlflow_db_template) -> Settings:
    """This test's environment: IRIS_HOME in tmp, a free serving port, a migrated registry."""
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IRIS_HOME", str(tmp_path / "iris-home"))
    monkeypatch.setenv("IRIS_SERVING_PORT", str(free_port()))
    current = load_settings()
    current.env_home.mkdir(parents=True)
    shutil.copy(mlflow_db_template, current.mlflow_db)
    for key, value in current.step_env().items():
        monkeypatch.setenv(key, value)
    yield current
    from iris_assets.serving.process import ServingProcess

    ServingProcess(current.serving_dir, current.serving_host, current.serving_port).stop()
