"""The run's warm worker: started by the run's orchestrator as the run starts, used by the step
processes the multiprocess executor starts, and never the only way a step can run.

The orchestrators here are scripts in a fresh interpreter (the worker is their child and they
name it in their own environment, as a run's process does); their step processes are started
with multiprocessing's spawn, as Dagster's multiprocess executor starts them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.executor_definition import multi_or_in_process_executor

from iris_assets.definitions import build_definitions
from iris_assets.resources.run_executor import ASSET_STEPS, run_step_modules, warm_run_executor
from iris_assets.resources.warm_steps import RUN_WORKER_ENV, WarmStep, WarmWorker, launch_step
from iris_assets.settings import load_settings

PROBE = textwrap.dedent(
    """
    import json, os, sys
    def parent_of(pid):
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("PPid:"):
                return int(line.split()[1])
    supervisor = os.getppid()
    with open(os.environ["PROBE_OUT"], "w") as out:
        json.dump({
            "worker": parent_of(supervisor),
            "loaded": [m for m in ("skops.io", "sklearn.pipeline", "mlflow") if m in sys.modules],
        }, out)
    """
)

ORCHESTRATOR = textwrap.dedent(
    """
    import json, multiprocessing, os, sys, time

    def step_process(module, out):
        # What LocalStepRunner does in the step process the executor started.
        from iris_assets.resources.warm_steps import launch_step
        env = {**os.environ, "PROBE_OUT": out}
        sys.exit(launch_step(sys.executable, module, env).wait(timeout=120))

    if __name__ == "__main__":
        from iris_assets.resources.warm_steps import WarmWorker, start_run_worker
        steps, probes = sys.argv[1].split(","), int(sys.argv[2])
        address = start_run_worker(steps)
        worker_pids = [w.process.pid for w in WarmWorker._workers.values()]
        reports = []
        for n in range(probes):
            out = f"probe-{n}.json"
            spawn = multiprocessing.get_context("spawn")
            process = spawn.Process(target=step_process, args=("run_probe", out))
            process.start()
            process.join(120)
            assert process.exitcode == 0, process.exitcode
            reports.append(json.load(open(out)))
            if n == 0 and probes > 1:
                time.sleep(float(sys.argv[3]))  # the later steps' imports load meanwhile
        print(json.dumps({"address": address, "worker_pids": worker_pids, "reports": reports}))
    """
)


def orchestrate(tmp_path: Path, steps: list[str], probes: int = 1, pause: float = 0) -> dict:
    (tmp_path / "run_probe.py").write_text(PROBE)
    (tmp_path / "orchestrator.py").write_text(ORCHESTRATOR)
    env = {k: v for k, v in os.environ.items() if k != RUN_WORKER_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path[1:]])
    out = subprocess.run(
        [sys.executable, "orchestrator.py", ",".join(steps), str(probes), str(pause)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_step_process_forks_its_step_from_the_runs_worker_with_the_model_libraries_loaded(
    tmp_path,
):
    run = orchestrate(tmp_path, ["iris_assets.steps.score"])
    [report] = run["reports"]
    assert run["address"] and [report["worker"]] == run["worker_pids"]
    # Loaded ahead for the score step: its model loads without importing them on its path.
    assert {"skops.io", "sklearn.pipeline"} <= set(report["loaded"])
    assert "mlflow" not in report["loaded"]


def test_the_first_step_does_not_wait_for_the_later_steps_imports(tmp_path):
    run = orchestrate(
        tmp_path, ["iris_assets.steps.ingest", "iris_assets.steps.train"], probes=2, pause=20
    )
    first, later = run["reports"]
    assert first["worker"] == later["worker"] == run["worker_pids"][0]
    assert "mlflow" not in first["loaded"], "the worker loaded the train step's MLflow first"
    assert "mlflow" in later["loaded"], "the later step's imports were not loaded while idle"


def test_a_run_worker_that_is_gone_or_for_another_python_is_passed_over(tmp_path, monkeypatch):
    (tmp_path / "run_probe.py").write_text(PROBE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    me = os.getpid()
    # A live worker, named by a process that neither is this one nor started it (a shell that
    # exported the name, another checkout's run): its code may not be this process's.
    elsewhere = WarmWorker(sys.executable)
    named = [
        json.dumps({"python": sys.executable, "address": str(tmp_path / "gone.sock"), "owner": me}),
        json.dumps({"python": "/usr/bin/python3-other", "address": elsewhere.address, "owner": me}),
        "not json",
        "[" * 5000 + "]" * 5000,
        json.dumps({"python": sys.executable, "address": 7, "owner": me}),
        json.dumps({"python": sys.executable, "address": elsewhere.address, "owner": 1}),
        json.dumps({"python": sys.executable, "address": elsewhere.address}),
    ]
    for n, value in enumerate(named):
        out = tmp_path / f"probe-{n}.json"
        env = {**os.environ, RUN_WORKER_ENV: value, "PROBE_OUT": str(out)}
        process = launch_step(sys.executable, "run_probe", env)
        assert isinstance(process, WarmStep), value  # this process's own worker took it
        assert process.wait(timeout=120) == 0, value
        assert json.loads(out.read_text())["worker"] != elsewhere.process.pid, value
    elsewhere.stop()


def test_the_local_target_runs_with_dagsters_executor_config_and_the_run_worker_first():
    defs = build_definitions(load_settings({"IRIS_HOME": "/nonexistent-iris-home"}))
    job = defs.resolve_job_def("inference_job")
    assert job.executor_def is warm_run_executor
    assert run_step_modules(job) == ["iris_assets.steps.score"]
    training = defs.resolve_job_def("training_job")
    assert run_step_modules(training) == [
        "iris_assets.steps.ingest",
        "iris_assets.steps.train",
        "iris_assets.steps.evaluate",
    ]
    # The same run config as Dagster's default executor, both of its modes.
    for execution in ({"multiprocess": {"max_concurrent": 1}}, {"in_process": {}}, {}):
        config = {"execution": {"config": execution}} if execution else {}
        for executor in (warm_run_executor, multi_or_in_process_executor):
            assert dg.validate_run_config(
                dg.JobDefinition(
                    graph_def=dg.GraphDefinition(name="g", node_defs=[]), executor_def=executor
                ),
                config,
            )
    # Every asset that runs a Pipes step is known, so its run starts the worker ahead.
    stepped = {
        key.path[-1]
        for asset in defs.resolve_asset_graph().assets_defs
        if "step_runner" in asset.required_resource_keys
        for key in asset.keys
    }
    assert stepped == set(ASSET_STEPS)


def test_the_databricks_target_keeps_dagsters_default_executor(monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "sp-app-id")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "not-printed")
    settings = load_settings({"IRIS_TARGET": "databricks", "IRIS_ENV": "prod"})
    job = build_definitions(settings).resolve_job_def("inference_job")
    assert job.executor_def is not warm_run_executor
    assert job.executor_def.name == multi_or_in_process_executor.name


@pytest.mark.parametrize("value", ["0", "off"])
def test_with_warm_steps_off_no_run_worker_is_started(value, monkeypatch):
    from iris_assets.resources.warm_steps import start_run_worker

    monkeypatch.setenv("IRIS_WARM_STEPS", value)
    monkeypatch.delenv(RUN_WORKER_ENV, raising=False)
    assert start_run_worker(["iris_assets.steps.score"]) is None
    assert RUN_WORKER_ENV not in os.environ


def test_a_run_whose_worker_cannot_be_started_ahead_still_runs(monkeypatch, caplog):
    from types import SimpleNamespace

    from dagster._core.executor.multiprocess import MultiprocessExecutor

    from iris_assets.resources import run_executor

    def broken():
        raise RuntimeError("no job here")

    context = SimpleNamespace(
        job=SimpleNamespace(get_definition=broken),
        executor_config={"multiprocess": {"retries": {"enabled": {}}}},
    )
    with caplog.at_level("WARNING"):
        executor = run_executor._create(context)
    assert isinstance(executor, MultiprocessExecutor)
    assert "not started ahead (RuntimeError: no job here)" in caplog.text
