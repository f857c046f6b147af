"""Fixtures for the serving tests: a real sqlite MLflow registry with four versions of a real
model, and real server subprocesses on free ports.

A server costs ~4-5 CPU s to start cold, nearly all of it importing MLflow, scikit-learn, pandas
and pyarrow. So the servers are forked from the pytest worker's warm worker, the one its steps
fork from (``resources.warm_steps``, the demo's mechanism), which has imported them and forks
``python -m iris_assets.serving.server`` per test:
a process of its own with the test's argv, env, cwd and stdout/stderr, the signal dispositions a
fresh interpreter has, in the pytest worker's process group as a ``Popen`` child would be, seen
through a ``Popen``-like handle (pid, poll, wait, send_signal, kill, returncode), so tests that
SIGTERM or SIGKILL it and check how it exited do just that. It still loads its model itself.
Tests whose subject is start-up (``ServingProcess``, ``iris serve``) start cold processes, and so
does ``_start_server(cold=True)`` or ``IRIS_WARM_STEPS=0``; ``warm_launcher`` hands the same
worker to a ``ServingProcess`` whose start is not the test's subject, as the orchestrator's warm
worker is handed to the ``serving_endpoint`` asset's.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.resources.warm_steps import (
    WarmStep,
    WarmWorker,
    WorkerUnavailable,
    launch_detached,
    warm_steps_enabled,
)

MODEL_NAME = "iris_test.ml.iris_model"
REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token-0123456789"
SERVER_MODULE = "iris_assets.serving.server"


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    model_name: str
    estimators: dict[str, Pipeline]  # registered version -> the estimator that was logged
    X: pd.DataFrame

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_REGISTRY_URI": self.tracking_uri}


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Made by the first worker that needs it, once per session; the serving tests only read it
    (servers load versions from it), so every worker shares the one registry."""
    from tests.conftest import session_folder
    from tests.databricks.serverless_env import locked

    root = session_folder(tmp_path_factory) / "serving-registry"
    with locked(root.with_suffix(".lock")):
        if not (root / ".complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            estimators = log_versions(root)
            # The fitted estimators as logged, for the workers that did not log them.
            with open(root / "estimators.pickle", "wb") as out:
                pickle.dump(estimators, out)
            (root / ".complete").touch()
    with open(root / "estimators.pickle", "rb") as logged:
        estimators = pickle.load(logged)
    iris = load_iris()
    X = pd.DataFrame(iris.data, columns=list(FEATURE_COLUMNS))
    return Registry(
        tracking_uri=registry_uri(root), model_name=MODEL_NAME, estimators=estimators, X=X
    )


def registry_uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def log_versions(root: Path) -> dict[str, Pipeline]:
    """Four versions of a real model logged into a fresh registry under ``root``."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    uri = registry_uri(root)
    iris = load_iris()
    X = pd.DataFrame(iris.data, columns=list(FEATURE_COLUMNS))
    y = iris.target
    estimators: dict[str, Pipeline] = {}
    # The environment is set only while building, so other test folders never see this registry.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        env.setenv("MLFLOW_REGISTRY_URI", uri)
        experiment_id = mlflow.create_experiment(
            "serving-tests", artifact_location=(root / "artifacts").as_uri()
        )
        # Each version disagrees with the one before it on some rows (9 to 18 of 150), so an
        # answer shows which version produced it. The promotion test walks through all four.
        for C in (1.0, 0.01, 0.1, 100.0):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500))
            model.fit(X, y)
            with mlflow.start_run(experiment_id=experiment_id):
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(X, model.predict(X)),
                    input_example=X.head(2),
                    pip_requirements=["scikit-learn"],
                    registered_model_name=MODEL_NAME,
                    serialization_format="skops",
                )
            estimators[str(info.registered_model_version)] = model
    return estimators


@pytest.fixture
def mlflow_env(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    for name, value in registry.env().items():
        monkeypatch.setenv(name, value)
    return registry


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(registry: Registry, token: str | None = ADMIN_TOKEN) -> dict[str, str]:
    env = {**os.environ, **registry.env()}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.pop("IRIS_SERVING_ADMIN_TOKEN", None)
    if token is not None:
        env["IRIS_SERVING_ADMIN_TOKEN"] = token
    return env


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes] | WarmStep
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _start_server(
    registry: Registry,
    workdir: Path,
    version: str = "1",
    token: str | None = ADMIN_TOKEN,
    extra_args: tuple[str, ...] = (),
    cold: bool = False,
) -> RunningServer:
    port = free_port()
    log = workdir / f"server-{port}.log"
    argv = [
        "--model-name",
        registry.model_name,
        "--version",
        version,
        "--port",
        str(port),
        "--state-dir",
        str(workdir),
        *extra_args,
    ]
    env = server_env(registry, token)
    with open(log, "wb") as out:
        process = None if cold else _fork_server(argv, env, workdir, out.fileno())
        if process is None:
            process = subprocess.Popen(
                [sys.executable, "-m", SERVER_MODULE, *argv],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    server = RunningServer(process, port, log)
    deadline = time.monotonic() + 180  # generous: a loaded machine takes a minute to import
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{server.log_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"server did not become healthy in 180 s:\n{server.log_text()}")


def _fork_server(argv: list[str], env: dict[str, str], cwd: Path, log: int) -> WarmStep | None:
    """The server forked from this pytest worker's warm worker, the one its steps fork from (so
    MLflow and scikit-learn are imported once per worker, not once for steps and once for
    servers), or None to start it cold: warm steps off, or no worker can be reached even after a
    restart."""
    if not warm_steps_enabled(env):
        return None
    for _ in range(2):
        worker = WarmWorker.for_python(sys.executable)
        # What a Popen child would have: this process's stdin, the log as stdout and stderr.
        stdio = [_inherited_stdin(), os.dup(log), os.dup(log)]
        try:
            return worker.launch(SERVER_MODULE, env, str(cwd), argv=argv, stdio=stdio)
        except WorkerUnavailable:
            WarmWorker.forget(worker)
    return None


def _inherited_stdin() -> int:
    try:
        return os.dup(0)
    except OSError:  # closed: Popen's child would have none either; /dev/null is the closest
        return os.open(os.devnull, os.O_RDONLY)


def _stop_server(server: RunningServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the read-only HTTP tests; tests that swap or stop start their own."""
    running = _start_server(registry, tmp_path_factory.mktemp("server"))
    yield running
    _stop_server(running)


@pytest.fixture
def start_server(registry: Registry, tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """A factory of private servers (for swaps and shutdowns); all are stopped afterwards."""
    started: list[RunningServer] = []

    def start(
        version: str = "1",
        token: str | None = ADMIN_TOKEN,
        extra_args: tuple[str, ...] = (),
        cold: bool = False,
    ) -> RunningServer:
        running = _start_server(registry, tmp_path, version, token, extra_args, cold)
        started.append(running)
        return running

    yield start
    for running in started:
        _stop_server(running)


@pytest.fixture
def warm_launcher() -> Callable[[str, list[str], dict[str, str], str, int], int | None]:
    """The ``serving_endpoint`` asset's launcher (``launch_detached``: the server forked detached
    from this process's warm worker, or None to start it cold), with that worker started if this
    pytest worker has none yet."""
    if warm_steps_enabled(os.environ):
        WarmWorker.for_python(sys.executable)
    return functools.partial(launch_detached, sys.executable)


@pytest.fixture
def unused_port() -> int:
    """A port nothing listens on (free a moment ago)."""
    return free_port()
