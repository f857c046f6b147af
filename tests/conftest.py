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
