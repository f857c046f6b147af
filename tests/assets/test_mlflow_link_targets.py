"""Dagster's MLflow links open what they name: fetched through a real MLflow server's REST API.

The UI's ``#/`` routes answer 200 for any id, so the ids in each link are looked up through
``/api/2.0/mlflow``: the run (and its experiment) and the registered model version. The server
is `iris mlflow` itself with IRIS_MLFLOW_PORT moved off its default, which must move the links.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from iris_assets.definitions import build_definitions
from tests.assets.helpers import materialization_metadata, materialize, step_failure_messages
from tests.conftest import free_port
from tests.processes import stop_group

IRIS = str(Path(sys.executable).with_name("iris"))
RUN_LINK = re.compile(r"^(http://127\.0\.0\.1:\d+)/#/experiments/([^/]+)/runs/([0-9a-f]+)$")
VERSION_LINK = re.compile(r"^(http://127\.0\.0\.1:\d+)/#/models/([^/]+)/versions/(\d+)$")


def rest(base: str, path: str, **query: str) -> dict:
    url = f"{base}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def linked_run(url: str, port: int) -> dict:
    base, experiment_id, run_id = RUN_LINK.match(url).groups()
    assert base == f"http://127.0.0.1:{port}", url
    run = rest(base, "runs/get", run_id=run_id)["run"]
    assert run["info"]["experiment_id"] == experiment_id
    return run


def linked_version(url: str, port: int) -> dict:
    base, name, version = VERSION_LINK.match(url).groups()
    assert base == f"http://127.0.0.1:{port}", url
    name = urllib.parse.unquote(name)
    return rest(base, "model-versions/get", name=name, version=version)["model_version"]


@pytest.fixture
def mlflow_ui(settings, monkeypatch, tmp_path):
    """`iris mlflow` (no --port) on this home, with IRIS_MLFLOW_PORT moved to a free port."""
    port = free_port()
    monkeypatch.setenv("IRIS_MLFLOW_PORT", str(port))
    log = tmp_path / "mlflow.log"
    process = subprocess.Popen(
        [IRIS, "mlflow"],
        env=dict(os.environ),
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                rest(f"http://127.0.0.1:{port}", "experiments/search", max_results="1")
                break
            except OSError:
                assert time.monotonic() < deadline, "iris mlflow did not answer in 120 s"
                time.sleep(0.2)  # poll often: the wait ends as soon as it answers
        yield dataclasses.replace(settings, mlflow_ui_port=port), port
    finally:
        stop_group(process)


def test_every_mlflow_link_names_a_run_and_version_the_mlflow_server_has(mlflow_ui):
    import dagster as dg

    settings, port = mlflow_ui
    with dg.instance_for_test() as instance:
        defs = build_definitions(settings)
        result = materialize(
            defs, instance, "iris_features", "challenger_model", "evaluation_report"
        )
        assert result.success, step_failure_messages(result)
        challenger = materialization_metadata(result, "challenger_model")
        evaluation = materialization_metadata(result, "evaluation_report")

    training = linked_run(challenger["mlflow_run"], port)
    assert training["info"]["run_id"] == challenger["mlflow_run_id"]
    version = linked_version(challenger["mlflow_model_version"], port)
    assert version["run_id"] == training["info"]["run_id"]

    record = linked_run(evaluation["mlflow_run"], port)
    assert record["info"]["run_id"] == evaluation["evaluation_run_id"]
    assert record["info"]["run_id"] != training["info"]["run_id"]
    trained = linked_run(evaluation["mlflow_training_run"], port)
    assert trained["info"]["run_id"] == training["info"]["run_id"]
    evaluated = linked_version(evaluation["mlflow_model_version"], port)
    assert evaluated["version"] == str(evaluation["challenger_version"])
