"""`iris mlflow` and the links from Dagster metadata to MLflow's pages, on both targets."""

import json
import os
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest

from iris_assets.core.mlflow_links import links, workspace_url
from iris_assets.settings import load_settings
from tests.conftest import free_port
from tests.processes import stop_group

IRIS = str(Path(sys.executable).with_name("iris"))


def test_local_links_open_the_local_mlflow_ui():
    settings = load_settings({"IRIS_HOME": "/tmp/h"})
    assert links(settings, "3", "1", "abc") == {
        "mlflow_model_version": "http://127.0.0.1:5125/#/models/iris_dev.ml.iris_model/versions/3",
        "mlflow_run": "http://127.0.0.1:5125/#/experiments/1/runs/abc",
    }
    assert links(load_settings({"IRIS_ENV": "prod"}), "3", None, None) == {
        "mlflow_model_version": "http://127.0.0.1:5126/#/models/iris_prod.ml.iris_model/versions/3"
    }


def test_databricks_links_open_the_workspace_pages(monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "adb-123.azuredatabricks.net/")
    settings = load_settings({"IRIS_TARGET": "databricks", "IRIS_ENV": "prod"})
    host = "https://adb-123.azuredatabricks.net"
    assert links(settings, "7", "42", "r1") == {
        "mlflow_model_version": f"{host}/explore/data/models/iris_prod/ml/iris_model/version/7",
        "mlflow_run": f"{host}/ml/experiments/42/runs/r1",
    }


def test_no_workspace_host_means_no_link_rather_than_a_wrong_one(monkeypatch):
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    assert workspace_url({}) is None  # outside Databricks MLflow knows no workspace either
    settings = load_settings({"IRIS_TARGET": "databricks"})
    assert links(settings, "7", "42", "r1") == {}


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS_", "MLFLOW_"))}
    env.update(IRIS_HOME=str(tmp_path / "home"))
    return env


def test_iris_mlflow_on_a_fresh_clone_says_what_to_run_and_creates_nothing(env, tmp_path):
    out = subprocess.run([IRIS, "mlflow"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "iris demo" in out.stderr
    assert not (tmp_path / "home").exists()


def test_iris_mlflow_serves_this_homes_registry(env, tmp_path, mlflow_db_template):
    home = tmp_path / "home" / "dev"
    home.mkdir(parents=True)
    db = home / "mlflow.db"
    db.write_bytes(mlflow_db_template.read_bytes())
    from mlflow import MlflowClient  # in this process: most workers have imported it already

    uri = f"sqlite:///{db}"
    MlflowClient(uri, registry_uri=uri).create_registered_model("iris_dev.ml.iris_model")
    port = free_port()
    log = tmp_path / "mlflow.log"
    process = subprocess.Popen(
        [IRIS, "mlflow", "--port", str(port)],
        env=env,
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/search"
        deadline, models = time.monotonic() + 120, None
        while models is None and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    models = json.load(response)["registered_models"]
            except OSError:
                time.sleep(0.2)  # poll often: the wait ends as soon as it answers
        assert [m["name"] for m in models or []] == ["iris_dev.ml.iris_model"]
        assert f"MLflow UI for {home}: http://127.0.0.1:{port}" in log.read_text()
        # MLflow's job runner (GenAI jobs): processes this UI has no use for.
        assert not [c for c in group_commands(process.pid) if "mlflow.server.jobs" in c]
    finally:
        stop_group(process)


def group_commands(group: int) -> list[str]:
    """The command lines of the processes in process group ``group``."""
    commands = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == group:
                cmdline = (entry / "cmdline").read_bytes()
                commands.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # ended meanwhile
            continue
    return commands


@pytest.mark.parametrize("given, used", [(None, "false"), ("true", "true")])
def test_iris_mlflow_runs_mlflows_job_runner_only_when_asked(settings, monkeypatch, given, used):
    from iris_assets import cli

    name = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
    monkeypatch.setenv(name, "recorded")  # so that undoing restores its absence too
    if given is None:
        monkeypatch.delenv(name)
    else:
        monkeypatch.setenv(name, given)
    started = {}

    def execv(path, argv):
        started.update(argv=argv, value=os.environ.get(name))
        raise SystemExit(0)

    monkeypatch.setattr(cli.os, "execv", execv)
    with pytest.raises(SystemExit):
        cli.cmd_mlflow(types.SimpleNamespace(port=None))
    assert started["argv"][1] == "server" and started["value"] == used
