"""The code location as Dagster loads it: validation, a light import, and the UI's API."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.processes import stop_group

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GRAPH_ASSETS = {
    "new_flowers",
    "iris_features",
    "challenger_model",
    "evaluation_report",
    "champion_alias",
    "serving_endpoint",
    "inference_table",
    "flower_labels",
    "model_performance",
}


def clean_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS_", "MLFLOW_"))}
    env.update(IRIS_HOME=str(tmp_path / "iris"), DAGSTER_HOME=str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    return env


def test_importing_the_definitions_loads_no_heavy_library(tmp_path):
    code = (
        "import sys, time; t = time.perf_counter(); import iris_assets.definitions; "
        "print(round(time.perf_counter() - t, 3)); "
        "print([m for m in ('mlflow', 'sklearn', 'pyspark', 'dagster_databricks') "
        "if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(tmp_path), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    seconds, loaded = out.stdout.strip().splitlines()
    print(f"import iris_assets.definitions: {seconds} s")
    assert loaded == "[]"


def test_dagster_definitions_validate_passes(tmp_path):
    out = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "All code locations passed validation" in out.stderr + out.stdout


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


REPOSITORY_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    assetNodes { assetKey { path } hasAssetChecks dependencyKeys { path } }
    sensors { name sensorState { status } }
    schedules { name scheduleState { status } }
} } } }
"""


@pytest.mark.slow
def test_dagster_dev_serves_the_graph_with_its_sensor_and_schedule(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", str(ROOT / "workspace.yaml"), "-p", str(port)],
        cwd=ROOT,
        env=clean_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "dagster-dev.log", "w"),  # noqa: SIM115
        start_new_session=True,  # `dagster dev` ignores SIGTERM without its own process group
    )
    try:
        deadline, repository = time.monotonic() + 120, None
        while time.monotonic() < deadline and repository is None:
            assert process.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-2000:]
            try:
                repository = graphql(port, REPOSITORY_QUERY)["repositoriesOrError"]["nodes"][0]
            except (OSError, KeyError, TypeError, IndexError):
                time.sleep(0.2)  # poll often: the wait ends as soon as it answers
        assert repository, "dagster dev did not answer within 120 s"
        nodes = {"/".join(n["assetKey"]["path"]): n for n in repository["assetNodes"]}
        assert set(nodes) == GRAPH_ASSETS
        assert {"/".join(d["path"]) for d in nodes["inference_table"]["dependencyKeys"]} == {
            "new_flowers",
            "champion_alias",
        }
        with_checks = {name for name, node in nodes.items() if node["hasAssetChecks"]}
        assert with_checks == {
            "iris_features",
            "champion_alias",
            "evaluation_report",
            "serving_endpoint",
            "inference_table",
            "model_performance",
        }
        assert {"/".join(d["path"]) for d in nodes["model_performance"]["dependencyKeys"]} == {
            "flower_labels",
            "inference_table",
        }
        assert sorted((s["name"], s["sensorState"]["status"]) for s in repository["sensors"]) == [
            ("champion_approval_sensor", "RUNNING"),
            ("labels_files_sensor", "RUNNING"),
            ("landing_files_sensor", "RUNNING"),
            ("notification_sensor", "RUNNING"),
            ("retraining_sensor", "RUNNING"),
        ]
        assert [s["name"] for s in repository["schedules"]] == ["daily_inference_schedule"]
    finally:
        stop_group(process)


def test_the_databricks_target_loads_with_credentials_only_from_the_environment(tmp_path):
    env = clean_env(tmp_path)
    env.update(
        IRIS_TARGET="databricks",
        IRIS_ENV="prod",
        DATABRICKS_HOST="https://example.cloud.databricks.com",
        DATABRICKS_CLIENT_ID="sp-app-id",
        DATABRICKS_CLIENT_SECRET="do-not-print-me",
        IRIS_NOTIFY_URL="https://hooks.example.com/services/secret-hook-token",
    )
    code = (
        "import sys; from iris_assets.definitions import defs; "
        "print({k: type(v).__name__ for k, v in sorted(defs.resources.items())}); "
        "print(repr(defs.resources)); "
        "print([m for m in ('mlflow', 'sklearn', 'dagster_databricks', 'databricks.sdk') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kinds, everything, loaded = out.stdout.strip().splitlines()
    assert kinds == (
        "{'notifier': 'NotifierResource', 'registry': 'ModelRegistryResource', "
        "'retraining': 'RetrainingPolicy', 'serving': 'DatabricksServingBackend', "
        "'settings': 'SettingsResource', 'step_runner': 'DatabricksStepRunner'}"
    )
    assert "do-not-print-me" not in everything + out.stderr
    assert "secret-hook-token" not in everything + out.stderr
    assert loaded == "[]"
    validate = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validate.returncode == 0, validate.stderr[-2000:]
    assert "do-not-print-me" not in validate.stdout + validate.stderr
